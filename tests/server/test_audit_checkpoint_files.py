"""Checkpoint files and exports read back whatever happened to them, and offline
verification always ends in a verdict.

A checkpoint line cut at any byte by a crash (or a short write) leaves the next checkpoint
readable; a write that writes less is finished, one that writes nothing raises. An export
with any value changed (NaN, a huge number, a string id, a lone surrogate, deep nesting) and
an export that is not UTF-8 give `tf audit verify --file` a clear verdict, never a traceback.
Offline verification takes the public keys of retired signing keys with `--key`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.tokens import SigningKey, generate_signing_key, jwks_from_keys
from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_server import bootstrap, checkpointer
from agentfirewall_server.audit import VerifyResult, event_to_dict, link_events, prepare_event
from agentfirewall_server.checkpointer import append_line
from agentfirewall_server.checkpoints import (
    checkpoint_line,
    parse_checkpoint,
    read_checkpoint_file,
    sign_checkpoint,
    verify_export,
)
from tests.fuzzscale import examples

KEY = generate_signing_key()
KEYS = {KEY.kid: KEY.public_key}


def _line(seq: int, key: SigningKey = KEY) -> str:
    token = sign_checkpoint(key, seq, f"{seq:064x}", 1.0 + seq)
    return checkpoint_line(parse_checkpoint(token, {key.kid: key.public_key}, "test"))


def test_a_checkpoint_line_cut_at_any_byte_leaves_the_next_one_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # (durability is not the point here)
    first, second = _line(1), _line(2)
    path = tmp_path / "audit-checkpoints.jsonl"
    for cut in range(len(first) + 1):  # every byte a crash may leave of the first append
        path.write_text(first[:cut])
        append_line(path, second)
        found, problems = read_checkpoint_file(path, KEYS, "file")
        assert problems == [], cut
        assert [cp.seq for cp in found] == ([1, 2] if cut >= len(first) - 1 else [2]), cut


def test_a_garbled_checkpoint_line_is_still_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "audit-checkpoints.jsonl"
    path.write_text(_line(1).replace('"head"', '"he"ad"') + _line(2))
    found, problems = read_checkpoint_file(path, KEYS, "file")
    assert [cp.seq for cp in found] == [2]
    assert problems == ["file: line 1 is not JSON"]


def _short_writes(monkeypatch: pytest.MonkeyPatch, most: int) -> None:
    """`os.write` writes at most `most` bytes a call (0: nothing, as a full disk may)."""
    real = os.write

    def short(fd: int, data: Any) -> int:
        return real(fd, bytes(data)[:most]) if most else 0

    monkeypatch.setattr(os, "write", short)


def test_short_writes_are_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, first, second = tmp_path / "audit-checkpoints.jsonl", _line(1), _line(2)
    _short_writes(monkeypatch, 7)
    append_line(path, first)
    append_line(path, second)
    bootstrap.write_secret_file(tmp_path / "admin.token", b"tfa_" + b"x" * 40)
    monkeypatch.undo()
    assert path.read_text() == first + second
    assert (tmp_path / "admin.token").read_bytes() == b"tfa_" + b"x" * 40


def test_a_write_that_writes_nothing_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _short_writes(monkeypatch, 0)
    with pytest.raises(OSError, match="no byte written"):
        checkpointer.append_line(tmp_path / "audit-checkpoints.jsonl", _line(1))
    with pytest.raises(OSError, match="no byte written"):
        bootstrap.write_secret_file(tmp_path / "admin.token", b"secret")


def _export(key: SigningKey = KEY, count: int = 3) -> list[dict[str, Any]]:
    """A genuine export's records: `count` events, then the checkpoint of its head."""
    prepared = [
        prepare_event("agent.registered", actor="admin", now=1.7e9 + n, data={"n": n})
        for n in range(count)
    ]
    rows = link_events(None, prepared)
    records = [{**event_to_dict(r), "created_ts": r["created_at"]} for r in rows]
    token = sign_checkpoint(key, rows[-1]["id"], rows[-1]["hash"], 1.8e9)
    cp = parse_checkpoint(token, {key.kid: key.public_key}, "test")
    return [*records, json.loads(checkpoint_line(cp))]


def _text(records: list[Any]) -> list[str]:
    return [json.dumps(r, sort_keys=True) + "\n" for r in records]


CRAFTED: dict[str, Any] = {
    "id a string": ("id", "1"),
    "id null": ("id", None),
    "id a bool": ("id", True),
    "created_ts NaN": ("created_ts", float("nan")),
    "created_ts infinite": ("created_ts", float("inf")),
    "created_ts 1e20": ("created_ts", 1e20),
    "created_ts -1e20": ("created_ts", -1e20),
    "created_ts a huge integer": ("created_ts", 10**400),
    "created_ts a string": ("created_ts", "2026-01-01"),
    "data a list": ("data", [5]),
    "data a string": ("data", "x"),
    "data holding NaN": ("data", {"x": float("nan")}),
    "actor a lone surrogate": ("actor", "\ud800"),
    "actor deep": ("actor", json.loads("[" * 400 + "]" * 400)),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_export_is_refused_with_a_message(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    field, value = CRAFTED[case]
    records = _export()
    records[0] = {**records[0], field: value}
    path, keys = tmp_path / "audit.jsonl", tmp_path / "jwks.json"
    path.write_text("".join(_text(records)))
    keys.write_text(json.dumps(jwks_from_keys([KEY])))
    assert tf_main(["audit", "verify", "--file", str(path), "--key", str(keys)]) == 1
    shown = capsys.readouterr().err
    assert shown.startswith("error: audit "), shown
    assert "None" not in shown


def test_an_export_that_is_not_utf8_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, keys = tmp_path / "audit.jsonl", tmp_path / "jwks.json"
    path.write_bytes("".join(_text(_export())).replace('"actor"', '"act\udcffor"').encode(
        "utf-8", "surrogateescape"
    ))  # fmt: skip
    keys.write_text(json.dumps(jwks_from_keys([KEY])))
    assert tf_main(["audit", "verify", "--file", str(path), "--key", str(keys)]) == 1
    assert capsys.readouterr().err.strip() == f"error: cannot read `{path}`: it is not UTF-8 text"


def test_a_problem_of_no_event_is_said_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, keys = tmp_path / "audit.jsonl", tmp_path / "jwks.json"
    path.write_text("".join(_text(_export()[:-1])))  # no checkpoint
    keys.write_text(json.dumps(jwks_from_keys([KEY])))
    assert tf_main(["audit", "verify", "--file", str(path), "--key", str(keys)]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: audit log not verified: the export holds no signed checkpoint: its end "
        "cannot be verified"
    )


def test_offline_verify_takes_a_retired_key_as_one_more_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = generate_signing_key()
    records = _export(KEY, 4)
    older = _export(old, 2)[-1]  # an earlier checkpoint of the same log, by the old key
    path, jwks, pem = tmp_path / "audit.jsonl", tmp_path / "jwks.json", tmp_path / "old.pem"
    path.write_text("".join(_text([*records, older])))
    jwks.write_text(json.dumps(jwks_from_keys([KEY])))
    pem.write_bytes(
        old.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    argv = ["audit", "verify", "--file", str(path), "--key", str(jwks)]
    assert tf_main(argv) == 1
    assert f"unknown key `{old.kid}`" in capsys.readouterr().err
    assert tf_main([*argv, "--key", str(pem)]) == 0


_ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**320)
    | st.floats()  # NaN and the infinities included
    | st.text()
    | st.sampled_from(["\ud800", "\udfff", "1", "", "0" * 64]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_GENUINE = _export()


@settings(max_examples=examples(300), deadline=None)
@given(line=st.integers(0, len(_GENUINE) - 1), field=st.text(max_size=12), value=_ANY_JSON,
       known=st.booleans())  # fmt: skip
def test_any_value_changed_in_an_export_gets_a_verdict(
    line: int, field: str, value: Any, known: bool
) -> None:
    """Change (or add) any field of any line to any JSON value: verify answers, never
    raises, and says `ok` only when nothing was changed."""
    records = [dict(r) for r in _GENUINE]
    if known:  # a field the line has
        field = sorted(records[line])[len(field) % len(records[line])]
    records[line][field] = value
    result = verify_export(_text(records), KEYS)
    assert isinstance(result, VerifyResult)
    if result.ok:
        assert json.loads(json.dumps(records)) == json.loads(json.dumps(_GENUINE))
