"""Every change to the audit log is detected, its end included (signed checkpoints).

A table of tampering, each applied to the database with the server stopped (then
restarted) and with it running, on SQLite and PostgreSQL: `GET /api/v1/audit/verify` says
``ok: false`` and `tf audit verify` exits non-zero, every time. The attacker holds the
database (so can recompute the unkeyed hash chain), not the signing key nor the data
directory's checkpoint file.
"""

from __future__ import annotations

import gc
import hashlib
import json
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, delete, insert, select, update
from starlette.testclient import TestClient

from agentfirewall.tokens import generate_signing_key, load_signing_key
from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_server.app import create_app
from agentfirewall_server.audit import (
    GENESIS,
    canonical_text,
    content_digest,
    event_to_dict,
    link_events,
    link_hash,
    prepare_event,
)
from agentfirewall_server.checkpoints import (
    checkpoint_line,
    parse_checkpoint,
    sign_checkpoint,
    verify_export,
)
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import audit_checkpoints, audit_events
from tests.fuzzscale import examples


@pytest.fixture(autouse=True)
def _collect_closed_apps() -> Iterator[None]:
    """Pool connections of apps stopped here are finalised now, not in a later test.

    (As the harness fixture does: psycopg warns in ``__del__`` otherwise.)
    """
    yield
    _settle()


def _settle() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


Rows = list[dict[str, Any]]
Tamper = Callable[[Connection, dict[str, Any]], None]


def _events(conn: Connection) -> Rows:
    rows = conn.execute(select(audit_events).order_by(audit_events.c.id)).mappings().all()
    return [dict(r) for r in rows]


def _replace(conn: Connection, rows: Rows, *, rechain: bool = True) -> None:
    """Put `rows` in place of the log; with `rechain`, a valid chain (ids 1.., new hashes)."""
    conn.execute(delete(audit_events))
    prev = GENESIS
    for n, row in enumerate(rows, 1):
        if rechain:
            row = {**row, "id": n, "prev_hash": prev}
            row["hash"] = link_hash(n, prev, content_digest(row))
            prev = row["hash"]
        conn.execute(insert(audit_events).values(**row))


def _edit(pick: Callable[[Rows], dict[str, Any]], **values: Any) -> Tamper:
    def tamper(conn: Connection, _saved: dict[str, Any]) -> None:
        row = pick(_events(conn))
        conn.execute(update(audit_events).where(audit_events.c.id == row["id"]).values(**values))

    return tamper


def _drop(pick: Callable[[Rows], list[int]]) -> Tamper:
    def tamper(conn: Connection, _saved: dict[str, Any]) -> None:
        conn.execute(delete(audit_events).where(audit_events.c.id.in_(pick(_events(conn)))))

    return tamper


def _rechained(change: Callable[[Rows], Rows]) -> Tamper:
    def tamper(conn: Connection, _saved: dict[str, Any]) -> None:
        _replace(conn, change(_events(conn)))

    return tamper


def _rechained_keep_ids(change: Callable[[Rows], Rows]) -> Tamper:
    """Rows changed in place: ids, prev_hash and hash stay where they were."""

    def tamper(conn: Connection, _saved: dict[str, Any]) -> None:
        rows = _events(conn)
        chain = [(r["id"], r["prev_hash"], r["hash"]) for r in rows]
        changed = change(rows)
        fixed = [
            {**r, "id": i, "prev_hash": p, "hash": h}
            for r, (i, p, h) in zip(changed, chain, strict=True)
        ]
        _replace(conn, fixed, rechain=False)

    return tamper


def _swap(rows: Rows) -> Rows:
    rows[2], rows[3] = rows[3], rows[2]
    return rows


def _insert_forged(rows: Rows) -> Rows:
    forged = {**rows[1], "actor": "attacker", "data": '{"forged":true}'}
    return [*rows[:2], forged, *rows[2:]]


def _edit_deep(rows: Rows) -> Rows:
    rows[1] = {**rows[1], "actor": "someone-else"}
    return rows


def _roll_back(conn: Connection, saved: dict[str, Any]) -> None:
    """The database as it was earlier: the old events and the old checkpoints table."""
    _replace(conn, saved["events"], rechain=False)
    conn.execute(delete(audit_checkpoints))
    for row in saved["checkpoints"]:
        conn.execute(insert(audit_checkpoints).values(**row))


def _wipe_everything(conn: Connection, _saved: dict[str, Any]) -> None:
    conn.execute(delete(audit_events))
    conn.execute(delete(audit_checkpoints))


def _truncate_and_hide(conn: Connection, saved: dict[str, Any]) -> None:
    """Drop the tail and every checkpoint row that mentions it."""
    last = _events(conn)[-1]["id"]
    conn.execute(delete(audit_events).where(audit_events.c.id > last - 2))
    conn.execute(delete(audit_checkpoints).where(audit_checkpoints.c.seq > last - 2))


def _forge_checkpoint(conn: Connection, _saved: dict[str, Any]) -> None:
    """A checkpoint of a rewritten head, signed with another key under the server's kid."""
    token = conn.execute(select(audit_checkpoints.c.token)).scalars().first()
    kid = jwt.get_unverified_header(str(token))["kid"]
    forged = jwt.encode(
        {"iss": "agentfirewall", "seq": 1, "head": "0" * 64, "time": 1.0},
        generate_signing_key().private_key,
        algorithm="ES256",
        headers={"kid": kid, "typ": "tf-audit-checkpoint"},
    )
    row = {"seq": 1, "head_hash": "0" * 64, "created_at": 1.0, "kid": kid, "reason": "request"}
    conn.execute(insert(audit_checkpoints).values(**row, token=forged))


def _garble(line: str) -> str:
    record = json.loads(line)
    head, payload, sig = record["token"].split(".")
    return json.dumps({**record, "token": f"{head}.{payload}.{sig[::-1]}"}) + "\n"


def _flip(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


CASES: dict[str, Tamper] = {
    "edit data in the middle": _edit(lambda r: r[3], data='{"edited":true}'),
    "edit the actor of the first": _edit(lambda r: r[0], actor="attacker"),
    "edit the last": _edit(lambda r: r[-1], event_type="agent.deleted"),
    "edit a time": _edit(lambda r: r[2], created_at=1.0),
    "edit a prev_hash": _edit(lambda r: r[4], prev_hash="f" * 64),
    "edit a hash": _edit(lambda r: r[4], hash=_flip("x")),
    "delete the first": _drop(lambda r: [r[0]["id"]]),
    "delete one in the middle": _drop(lambda r: [r[3]["id"]]),
    "delete the last": _drop(lambda r: [r[-1]["id"]]),
    "delete the last three": _drop(lambda r: [x["id"] for x in r[-3:]]),
    "delete all": _drop(lambda r: [x["id"] for x in r]),
    "move an event to the end": _edit(lambda r: r[2], id=10_000),
    "swap two events' contents": _rechained_keep_ids(_swap),
    "reorder, hashes recomputed": _rechained(_swap),
    "insert, hashes recomputed": _rechained(_insert_forged),
    "edit, hashes recomputed": _rechained(_edit_deep),
    "replace with a shorter valid chain": _rechained(lambda r: r[:3]),
    "roll the database back to an older copy": _roll_back,
    "delete every event and every checkpoint row": _wipe_everything,
    "truncate and delete the checkpoint rows": _truncate_and_hide,
    "forge a checkpoint row": _forge_checkpoint,
}


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), base_url="http://127.0.0.1:3000")


def _admin(client: TestClient, settings: Settings, method: str, path: str, **kw: Any) -> Any:
    token = (settings.data_dir / "admin.token").read_text().strip()
    return client.request(method, "/api" + path, headers={"Authorization": f"Bearer {token}"}, **kw)


def _activity(client: TestClient, settings: Settings, names: list[str]) -> None:
    for name in names:
        assert (
            _admin(client, settings, "POST", "/v1/agents", json={"name": name}).status_code == 201
        )


def _write(settings: Settings, fn: Callable[[Connection], Any]) -> Any:
    db = Database(settings.resolved_database_url)
    try:
        return db.write_sync(fn)
    finally:
        db.close()


def _saved(conn: Connection) -> dict[str, Any]:
    rows = conn.execute(select(audit_checkpoints)).mappings().all()
    return {"events": _events(conn), "checkpoints": [dict(r) for r in rows]}


def _tf_verify(settings: Settings, url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    token = (settings.data_dir / "admin.token").read_text().strip()
    monkeypatch.setenv("TF_ADMIN_TOKEN", token)
    return tf_main(["audit", "verify", "--json", "--server", url])


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_detected(case: str, running: bool, tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "tf", database_url=database_url)
    with _client(settings) as client:
        _activity(client, settings, [f"Bot {i}" for i in range(4)])
        saved = _write(settings, _saved)  # an older copy, for the roll-back case
        _activity(client, settings, [f"Bot {i}" for i in range(4, 8)])
        assert _admin(client, settings, "POST", "/v1/audit/checkpoints").status_code == 201
        assert _admin(client, settings, "GET", "/v1/audit/verify").json()["ok"] is True
        if running:
            _write(settings, lambda c: CASES[case](c, saved))
            result = _admin(client, settings, "GET", "/v1/audit/verify").json()
    if not running:  # stopped (a shutdown checkpoint was written), tampered, restarted
        _settle()
        _write(settings, lambda c: CASES[case](c, saved))
        with _client(settings) as client:
            result = _admin(client, settings, "GET", "/v1/audit/verify").json()
    assert result["ok"] is False, result
    assert result["problem"]
    if case == "forge a checkpoint row":
        assert "signature does not verify" in result["problem"]
    if case in ("delete the last", "delete all", "delete the last three"):
        assert result["events_missing"] >= 1


def test_tf_audit_verify_exits_non_zero_on_an_emptied_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.livesrv import LiveServer

    server = LiveServer.start(tmp_path / "tf")
    settings = Settings(data_dir=tmp_path / "tf")
    try:
        server.create_agent("Bot")
        assert _tf_verify(settings, server.url, monkeypatch) == 0
    finally:
        server.stop()  # the shutdown checkpoint
    _write(settings, lambda c: c.execute(delete(audit_events)))
    server.launch(port=0)
    try:
        capsys.readouterr()
        assert _tf_verify(settings, server.url, monkeypatch) == 1
        out = json.loads(capsys.readouterr().out)
        assert out["events_checked"] == 0
        assert out["events_missing"] >= 1
    finally:
        server.stop()


def test_export_verifies_offline_with_only_the_public_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "tf")
    with _client(settings) as client:
        _activity(client, settings, ["Bot 1", "Bot 2", "Bot 3"])
        export = _admin(client, settings, "GET", "/v1/audit/export").text
        jwks = client.get("/.well-known/jwks.json").text
    (tmp_path / "jwks.json").write_text(jwks)
    lines = export.splitlines(keepends=True)
    assert any('"record": "checkpoint"' in line for line in lines)
    events = [line for line in lines if '"record": "checkpoint"' not in line]
    checkpoints = [line for line in lines if '"record": "checkpoint"' in line]
    last = json.loads(events[-1])
    forged = {**last, "id": last["id"] + 1, "event_type": "approval.responded",
              "actor": "user:ceo@example.com", "prev_hash": last["hash"],
              "data": {"status": "approved"}}  # fmt: skip
    stored = {**forged, "data": canonical_text(forged["data"]), "created_at": last["created_ts"]}
    forged["hash"] = link_hash(forged["id"], last["hash"], content_digest(stored))
    backdated = json.loads(events[0])
    backdated["created_at"] = "2019-03-01T12:00:00.000Z"
    added = events[0].replace('"actor"', '"approved_by": "ceo", "actor"', 1)
    shown = json.loads(checkpoints[-1])
    shown["seq"] += 1
    variants = {
        "intact": (lines, 0),
        "last event deleted": ([*events[:-1], *checkpoints], 1),
        "an event edited": ([events[0].replace("Bot 1", "Bot X"), *events[1:], *checkpoints], 1),
        "checkpoints removed": (events, 1),
        "checkpoint forged": ([*events, _garble(checkpoints[-1])], 1),
        # found by an adversarial pass: a chained event appended after the last checkpoint
        # (anyone can compute the chain), the readable time, a field no export writes, and a
        # checkpoint line showing other values than its token all passed
        "event appended": ([*events, json.dumps(forged) + "\n", *checkpoints], 1),
        "readable time edited": ([json.dumps(backdated) + "\n", *events[1:], *checkpoints], 1),
        "field added": ([added, *events[1:], *checkpoints], 1),
        "checkpoint line edited": ([*events, *checkpoints[:-1], json.dumps(shown) + "\n"], 1),
    }
    monkeypatch.chdir(tmp_path)
    for name, (content, code) in variants.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(content))
        argv = ["audit", "verify", "--file", str(path), "--key", str(tmp_path / "jwks.json")]
        assert tf_main(argv) == code, name


class _Anchor(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


def test_checkpoints_are_anchored_outside_the_data_directory(tmp_path: Path) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Anchor)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    anchor = tmp_path / "other-volume" / "checkpoints.jsonl"
    anchor.parent.mkdir()
    settings = Settings(
        data_dir=tmp_path / "tf",
        audit_anchor_file=anchor,
        audit_anchor_url=f"http://127.0.0.1:{receiver.server_port}/anchor",
    )
    try:
        with _client(settings) as client:
            _activity(client, settings, ["Bot 1", "Bot 2", "Bot 3"])
            made = _admin(client, settings, "POST", "/v1/audit/checkpoints").json()
            key = load_signing_key((settings.data_dir / "signing-key.pem").read_text())
    finally:
        receiver.shutdown()
        receiver.server_close()
    seq = made["checkpoint"]["seq"]
    (posted,) = [p for p in _Anchor.received if p["seq"] == seq]
    keys = {key.kid: key.public_key}
    assert parse_checkpoint(posted["token"], keys, "webhook").head == posted["head"]
    assert any(json.loads(line)["seq"] == seq for line in anchor.read_text().splitlines())

    # the attacker holds the database and the data directory, not the other volume
    def attack(conn: Connection) -> None:
        conn.execute(delete(audit_events).where(audit_events.c.id > 1))
        conn.execute(delete(audit_checkpoints))

    _write(settings, attack)
    (settings.data_dir / "audit-checkpoints.jsonl").unlink()
    with _client(settings) as client:
        result = _admin(client, settings, "GET", "/v1/audit/verify").json()
    assert result["ok"] is False
    assert result["events_missing"] == seq - 1
    assert result["checkpoint"]["source"] == "anchor file"


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)


_SCALARS = st.none() | st.booleans() | st.integers() | st.text()
_JSON = st.recursive(
    _SCALARS | st.floats(allow_nan=False, allow_infinity=False), _nested, max_leaves=12
)


@settings(max_examples=examples(100), deadline=None)
@given(
    datas=st.lists(st.dictionaries(st.text(), _JSON, max_size=5), min_size=1, max_size=4),
    stamp=st.floats(min_value=0, max_value=4e9),
    actor=st.text(),
)
def test_any_export_verifies_offline(datas: list[dict[str, Any]], stamp: float, actor: str) -> None:
    """Whatever events hold, their export re-hashes to the stored chain (fix the class)."""
    prepared = [prepare_event("x.y", actor=actor, now=stamp, data=d) for d in datas]
    rows = link_events(None, prepared)
    key = _KEY
    lines = [
        json.dumps({**event_to_dict(r), "created_ts": r["created_at"]}, sort_keys=True) + "\n"
        for r in rows
    ]
    head = rows[-1]
    token = sign_checkpoint(key, head["id"], head["hash"], 1.0)
    cp = parse_checkpoint(token, {key.kid: key.public_key}, "test")
    lines.append(checkpoint_line(cp))
    result = verify_export(lines, {key.kid: key.public_key})
    assert result.ok, result
    assert result.events_checked == len(rows)


_KEY = generate_signing_key()


def test_checkpoints_at_an_interval_reach_the_table_and_the_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "tf", audit_checkpoint_seconds=0.05)
    with _client(settings) as client:
        _activity(client, settings, ["Bot 1", "Bot 2"])
        head = _admin(client, settings, "GET", "/v1/audit?limit=1").json()["events"][0]["id"]
        for _ in range(400):  # the writer signs the head within a few intervals
            listed = _admin(client, settings, "GET", "/v1/audit/checkpoints").json()
            if any(cp["seq"] == head for cp in listed["checkpoints"]):
                break
            threading.Event().wait(0.05)
        assert any(cp["seq"] == head for cp in listed["checkpoints"]), listed
        assert listed["problems"] == []
    lines = (settings.data_dir / "audit-checkpoints.jsonl").read_text().splitlines()
    assert any(json.loads(line)["seq"] == head for line in lines)
    assert stat.S_IMODE((settings.data_dir / "audit-checkpoints.jsonl").stat().st_mode) == 0o600
