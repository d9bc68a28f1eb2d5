"""The server keeps its audit evidence, on SQLite and PostgreSQL: it never signs a log cut or
rewritten under its checkpoints, warns when its data directory keeps none of a log that has
events, and goes on verifying the checkpoints of a retired signing key whose public half it
is given (never publishing that key, which SDKs would take for decision tokens).

The attacker holds the database, not the data directory: deleting the last events with
their checkpoint rows (and chaining new ones in their place, or an `audit.restored` event
naming the newest checkpoint as discarded) must not make the server sign the result, which
a replica with a fresh data directory would then take for the truth. Only the signed restore
record `tf restore --discard-newer-audit` writes into the checkpoint files lets it sign a
rolled-back log, and only the checkpoints signed before that record stop binding.
"""

from __future__ import annotations

import gc
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr, ValidationError
from sqlalchemy import Connection, delete, insert, select
from starlette.testclient import TestClient

from agentfirewall.tokens import SigningKey, generate_signing_key
from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_server.app import create_app
from agentfirewall_server.audit import link_events, prepare_event
from agentfirewall_server.backup import backup, restore, verify_data
from agentfirewall_server.checkpointer import newest_kept
from agentfirewall_server.checkpoints import (
    Checkpoint,
    SigningKeyError,
    checkpoint_line,
    restore_line,
    sign_checkpoint,
)
from agentfirewall_server.settings import Settings, describe
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import audit_checkpoints, audit_events
from agentfirewall_server.vault import generate_key_text

UNANCHORED = "holds no signed checkpoint"


@pytest.fixture(autouse=True)
def _collect_closed_apps() -> Iterator[None]:
    """Pool connections of apps stopped here are finalised now (psycopg warns otherwise)."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), base_url="http://127.0.0.1:3000")


def _admin(client: TestClient, settings: Settings, method: str, path: str) -> Any:
    token = (settings.data_dir / "admin.token").read_text().strip()
    return client.request(method, "/api" + path, headers={"Authorization": f"Bearer {token}"})


def _agents(client: TestClient, settings: Settings, *names: str) -> None:
    token = (settings.data_dir / "admin.token").read_text().strip()
    for name in names:
        made = client.post(
            "/api/v1/agents", json={"name": name}, headers={"Authorization": f"Bearer {token}"}
        )
        assert made.status_code == 201, made.text


def _write(url: str, fn: Callable[[Connection], Any]) -> Any:
    db = Database(url)
    try:
        return db.write_sync(fn)
    finally:
        db.close()


def _tokens(conn: Connection) -> set[str]:
    return set(conn.execute(select(audit_checkpoints.c.token)).scalars())


def _cut(conn: Connection) -> int:
    """Delete the last three events and every checkpoint row covering them: the new end."""
    last = conn.execute(select(audit_events.c.id).order_by(audit_events.c.id.desc())).scalar()
    end = int(last or 0) - 3
    conn.execute(delete(audit_events).where(audit_events.c.id > end))
    conn.execute(delete(audit_checkpoints).where(audit_checkpoints.c.seq > end))
    return end


def _cut_and_refill(conn: Connection) -> int:
    """As `_cut`, then forged events chained in their place, one more than were cut."""
    end = _cut(conn)
    head = conn.execute(
        select(audit_events.c.id, audit_events.c.hash).where(audit_events.c.id == end)
    ).one()
    forged = [prepare_event("agent.registered", actor="attacker", now=1.0) for _ in range(4)]
    conn.execute(insert(audit_events), link_events((head.id, head.hash), forged))
    return end + 4


def _cut_and_forge_restored(conn: Connection) -> int:
    """As `_cut`, then one forged `audit.restored` event naming the newest checkpoint as the
    head `tf restore --discard-newer-audit` discarded (its seq and hash are in any export)."""
    newest = conn.execute(
        select(audit_checkpoints.c.seq, audit_checkpoints.c.head_hash)
        .order_by(audit_checkpoints.c.seq.desc())
        .limit(1)
    ).one()
    end = _cut(conn)
    head = conn.execute(
        select(audit_events.c.id, audit_events.c.hash).where(audit_events.c.id == end)
    ).one()
    named = {"discarded_head": {"seq": newest.seq, "head": newest.head_hash}}
    forged = prepare_event("audit.restored", actor="restore", now=1.0, subject="audit", data=named)
    conn.execute(insert(audit_events), link_events((head.id, head.hash), [forged]))
    return end + 1


ATTACKS = {
    "truncated": (_cut, "truncated or rolled back"),
    "truncated and refilled": (_cut_and_refill, "history rewritten"),
    "truncated under a forged restore event": (_cut_and_forge_restored, "truncated or rolled"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_log_cut_under_a_checkpoint_is_never_signed(
    attack: str, tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tamper, said = ATTACKS[attack]
    settings = Settings(data_dir=tmp_path / "tf", database_url=database_url)
    with _client(settings) as client:
        _agents(client, settings, "Bot 1", "Bot 2", "Bot 3", "Bot 4")
        assert _admin(client, settings, "POST", "/v1/audit/checkpoints").status_code == 201
        head = _write(database_url, tamper)
        signed = _write(database_url, _tokens)
        for _ in range(2):  # refused each time, recorded once
            refused = _admin(client, settings, "POST", "/v1/audit/checkpoints")
            assert refused.status_code == 409, refused.text
            assert said in refused.json()["message"]
        listed = _admin(client, settings, "GET", "/v1/audit?event_type=audit.checkpoint_refused")
        assert [e["data"]["head_seq"] for e in listed.json()["events"]] == [head]
        assert _admin(client, settings, "GET", "/v1/audit/verify").json()["ok"] is False
    assert _write(database_url, _tokens) == signed  # the shutdown checkpoint: refused too
    refusals = [r for r in caplog.records if "audit checkpoint refused" in r.getMessage()]
    assert refusals
    assert all(r.levelno == logging.ERROR for r in refusals)


def _cut_two(conn: Connection) -> int:
    """Delete the last two events and every checkpoint row covering them: the new end."""
    end = int(conn.execute(select(audit_events.c.id).order_by(audit_events.c.id.desc())).scalar())
    conn.execute(delete(audit_events).where(audit_events.c.id > end - 2))
    conn.execute(delete(audit_checkpoints).where(audit_checkpoints.c.seq > end - 2))
    return end - 2


def test_a_restore_that_discarded_newer_audit_signs_again_and_guards_what_it_signs(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tf restore --discard-newer-audit` signs a restore record of the restored head into
    the checkpoint file: the server signs the restored log's new events again (verify, online
    and offline, goes on reporting the rollback), and a cut of what it signed since is refused
    although the discarded log's newest checkpoint is the file's newest."""
    settings = Settings(data_dir=tmp_path / "tf", database_url=database_url)
    with _client(settings) as client:
        _agents(client, settings, "before-backup")
    backup(settings, tmp_path / "backup")
    with _client(settings) as client:
        _agents(client, settings, *(f"evidence-{n}" for n in range(8)))
    restore(tmp_path / "backup", settings, force=True, discard_newer_audit=True)
    file = settings.data_dir / "audit-checkpoints.jsonl"
    record = json.loads(file.read_text().splitlines()[-1])
    restored = _write(database_url, lambda c: c.execute(
        select(audit_events.c.id, audit_events.c.hash)
        .where(audit_events.c.event_type == "audit.restored")
    ).one())  # fmt: skip
    assert (record["record"], record["seq"], record["head"]) == ("restore", *restored)
    with _client(settings) as client:
        _agents(client, settings, *(f"after-restore-{n}" for n in range(4)))
        made = _admin(client, settings, "POST", "/v1/audit/checkpoints")
        assert made.status_code == 201, made.text
        assert _admin(client, settings, "GET", "/v1/audit/verify").json()["ok"] is False
        export, jwks = tmp_path / "audit.jsonl", tmp_path / "jwks.json"
        export.write_text(_admin(client, settings, "GET", "/v1/audit/export").text)
        jwks.write_text(client.get("/.well-known/jwks.json").text)
        argv = ["--file", str(export), "--checkpoints", str(file), "--key", str(jwks)]
        assert tf_main(["audit", "verify", *argv]) == 1  # the record line read, passed over
        assert "(log truncated or rolled back)" in capsys.readouterr().err

        _write(database_url, _cut_two)  # the attacker: the file's newest is still discarded
        signed = _write(database_url, _tokens)
        refused = _admin(client, settings, "POST", "/v1/audit/checkpoints")
        assert refused.status_code == 409, refused.text
        assert "truncated or rolled back" in refused.json()["message"]
    assert _write(database_url, _tokens) == signed


KEY = generate_signing_key()
OTHER = generate_signing_key()


def _cp(seq: int, time: float, key: SigningKey = KEY) -> str:
    token = sign_checkpoint(key, seq, f"{seq:064x}", time)
    return checkpoint_line(Checkpoint(seq, f"{seq:064x}", time, key.kid, token, "test"))


def _restored(seq: int, time: float, key: SigningKey = KEY) -> str:
    return restore_line(key, seq, f"{seq:064x}", time)


def _kind(line: str, kind: str) -> str:
    """`line` relabelled as a line of `kind`, its token unchanged (a forged record)."""
    return json.dumps({**json.loads(line), "record": kind}) + "\n"


#: the data directory's file, the anchor file -> the seq the log must extend
KEPT = {
    "no restore record: the newest": ([_cp(3, 1), _cp(5, 2)], [], 5),
    "a restore record sets those signed before it aside": ([_cp(9, 2), _restored(4, 3)], [], 4),
    "checkpoints signed after it bind": ([_cp(9, 2), _restored(4, 3), _cp(6, 4)], [], 6),
    "a record copied again later sets nothing newer aside": (
        [_cp(9, 2), _restored(4, 3), _cp(6, 4), _restored(4, 3)],
        [_restored(4, 3)],
        6,
    ),
    "the newest record of either file": ([_cp(9, 2), _restored(4, 3)], [_restored(5, 5)], 5),
    "a restore line holding a checkpoint's token is no record": (
        [_cp(9, 2), _kind(_cp(4, 3), "restore")],
        [],
        9,
    ),
    "a checkpoint line holding a restore record's token is no checkpoint": (
        [_restored(4, 3), _kind(_restored(9, 4), "checkpoint")],
        [],
        4,
    ),
    "a record signed by another key is no record": ([_cp(9, 2), _restored(4, 3, OTHER)], [], 9),
}


@pytest.mark.parametrize("case", list(KEPT))
def test_the_files_bind_the_newest_checkpoint_since_their_newest_restore_record(
    case: str, tmp_path: Path
) -> None:
    ours, anchored, expected = KEPT[case]
    settings = Settings(data_dir=tmp_path, audit_anchor_file=tmp_path / "anchor.jsonl")
    (tmp_path / "audit-checkpoints.jsonl").write_text("".join(ours))
    (tmp_path / "anchor.jsonl").write_text("".join(anchored))
    kept = newest_kept(settings, {KEY.kid: KEY.public_key})
    assert kept is not None
    assert kept.seq == expected


def test_a_data_directory_that_keeps_no_checkpoint_is_warned_about(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A pod restarted on an `emptyDir`: the log has events, its data directory no
    checkpoint, no anchor is set. (The database is outside the data directory here.)"""
    caplog.set_level(logging.WARNING, logger="agentfirewall_server")
    keys = {"signing_key": generate_signing_key().to_pem().decode(),  # the replicas' keys
            "encryption_key": generate_key_text()}  # fmt: skip

    def start(data: str, **extra: Any) -> list[str]:
        caplog.clear()
        settings = Settings(data_dir=tmp_path / data, database_url=database_url, **keys, **extra)
        with _client(settings) as client:  # a checkpoint request reads the files first
            assert _admin(client, settings, "POST", "/v1/audit/checkpoints").status_code == 201
        return [r.getMessage() for r in caplog.records if UNANCHORED in r.getMessage()]

    assert start("first") == []  # a new log: nothing to keep yet
    first = Settings(data_dir=tmp_path / "first", database_url=database_url, **keys)
    with _client(first) as client:
        _agents(client, first, "Bot 1")
    assert start("first") == []  # its own checkpoints
    (warned,) = start("fresh")
    assert str(tmp_path / "fresh") in warned
    assert "AGENTFIREWALL_AUDIT_ANCHOR_FILE" in warned
    assert start("anchored", audit_anchor_url="http://127.0.0.1:9/anchor") == []


def _public_pem(key: SigningKey) -> str:
    return key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_checkpoints_of_a_retired_signing_key_verify_with_its_public_half(
    tmp_path: Path, database_url: str
) -> None:
    old, new = generate_signing_key(), generate_signing_key()

    def settings(key: SigningKey, *previous: str) -> Settings:
        return Settings(
            data_dir=tmp_path / "tf",
            database_url=database_url,
            signing_key=SecretStr(key.to_pem().decode()),
            signing_keys_previous=list(previous),
        )

    first = settings(old)
    with _client(first) as client:
        _agents(client, first, "Bot 1", "Bot 2")
    rotated = settings(new)  # the old key's public half not given: refused at start
    with pytest.raises(SigningKeyError, match=f"signed with key `{old.kid}`"), _client(rotated):
        pass

    remembered = settings(new, _public_pem(old))
    with _client(remembered) as client:
        assert _admin(client, remembered, "GET", "/v1/audit/verify").json()["ok"] is True
        _agents(client, remembered, "Bot 3")
        made = _admin(client, remembered, "POST", "/v1/audit/checkpoints").json()
        assert made["checkpoint"]["kid"] == new.kid
        published = client.get("/.well-known/jwks.json").json()["keys"]
        assert [k["kid"] for k in published] == [new.kid]  # tokens: the current key only
    assert verify_data(remembered)["audit"]["ok"] is True  # backup and restore check so too


def test_a_previous_signing_key_must_be_a_public_key() -> None:
    private = generate_signing_key().to_pem().decode()
    for value in (private, "not a key", "bm90IGEga2V5"):
        with pytest.raises(ValidationError) as caught:
            Settings(signing_keys_previous=value)
        shown = describe(caught.value)
        assert shown.startswith("AGENTFIREWALL_SIGNING_KEYS_PREVIOUS: ")
        assert value not in shown
