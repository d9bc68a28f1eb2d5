"""The fast paths of ``POST /api/v1/actions`` give the same answers and rows as the slow ones.

Covers the audit digest and data text written without ``json.dumps`` (same bytes), the
writer's record batches (``then`` after the commit, a bad row failing alone with
SQLAlchemy's IntegrityError), idempotency under concurrency, and the direct dispatch's
answer to an unexpected error.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from agentfirewall.actions import canonical_json, parse_action_spec
from agentfirewall.decisions import Decision
from agentfirewall.errors import ActionSpecError
from agentfirewall.policy.record import RECORD_VERSION
from agentfirewall_server.app import create_app
from agentfirewall_server.audit import (
    append_event,
    canonical_text,
    content_digest,
    prepare_event,
    verify_chain,
)
from agentfirewall_server.replaystore import MAX_INPUT_BYTES, input_text
from agentfirewall_server.routes.actions import canonical_spec, event_data_texts
from agentfirewall_server.store.db import Database, StoreError
from agentfirewall_server.store.schema import action_requests, audit_events
from agentfirewall_server.web import json_fast
from tests.server.conftest import SPEC, Harness, make_settings

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
TRICKY = ["", 'é\n\t"\\/', "\u2028\u2029\x7f\x00\x1f", "😀", "a" * 300]


def _old_digest(row: dict[str, Any]) -> str:
    fields = ("event_type", "actor", "agent", "subject", "data", "created_at")
    return hashlib.sha256(canonical_json({k: row[k] for k in fields})).hexdigest()


@given(st.dictionaries(st.text(), SCALARS, max_size=6))
def test_canonical_text_is_canonical_json(data: dict[str, Any]) -> None:
    assert canonical_text(data) == canonical_json(data).decode("utf-8")


@given(
    st.text() | st.sampled_from(TRICKY),
    st.none() | st.text(),
    st.floats(min_value=0, max_value=4e9) | st.integers(min_value=0, max_value=2**40),
)
def test_content_digest_hashes_the_canonical_json_of_the_content(
    actor: str, agent: str | None, created_at: float
) -> None:
    row = {
        "event_type": "action.allowed",
        "actor": actor,
        "agent": agent,
        "subject": None,
        "data": '{"x":[1,2]}',
        "created_at": created_at,
    }
    assert content_digest(row) == _old_digest(row)


def test_nested_data_still_goes_through_canonical_json() -> None:
    data = {"b": [1, {"y": None}], "a": {"z": 1.5}}
    assert canonical_text(data) == canonical_json(data).decode("utf-8")
    with pytest.raises(ValueError):
        canonical_text({"x": float("nan")})


REASONS = st.text() | st.sampled_from(TRICKY)


@given(
    st.text() | st.sampled_from(TRICKY),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64) | st.text(),
    REASONS,
    st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70),
    st.sampled_from([None, "allow", "deny", "require_approval"]),
)
def test_action_event_texts_are_the_canonical_text_of_their_data(
    action_type: str, action_hash: str, reason: str, risk: float, decided: Any
) -> None:
    decision = Decision(outcome="allow", reason=reason, risk_score=risk, decided_outcome=decided)
    data = {"action_type": action_type, "action_hash": action_hash}
    requested_text, decided_text = event_data_texts(action_type, action_hash, decision)
    assert requested_text == canonical_text(data)
    full = {**data, "reason": reason, "risk_score": risk, "would_outcome": decision.would_outcome}
    assert decided_text == canonical_text(full)
    row = prepare_event("action.allowed", actor="policy", now=1.5, data=full)
    assert prepare_event("action.allowed", actor="policy", now=1.5, data_text=decided_text) == row


class _OrjsonResponse(JSONResponse):  # json_fast before: Starlette's own header work
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), JSON_VALUES, max_size=5))
def test_json_fast_answers_what_jsonresponse_answers(data: dict[str, Any]) -> None:
    fast, slow = json_fast(data), _OrjsonResponse(data)
    assert (fast.status_code, fast.raw_headers, fast.body, fast.background) == (
        slow.status_code,
        slow.raw_headers,
        slow.body,
        slow.background,
    )
    assert fast.headers["content-type"] == "application/json"


#: floats that orjson and json write differently (1e-05: ``0.00001`` against ``1e-05``)
FLOATS = [1e-05, 1.5e-07, 1e16, 1e22, -0.0, 5e-324, 0.1]
RECORD_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(FLOATS)
    | st.text()
    | st.sampled_from(TRICKY),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), RECORD_VALUES, max_size=5), st.booleans())
def test_input_text_reads_back_as_the_record(data: dict[str, Any], attributes: bool) -> None:
    """A record of this version is stored as JSON text that `json.loads` reads back equal,
    within the size limit; anything else (the generated keys may replace ``v``) is not
    stored. A record with context attributes is written by `json` itself."""
    data = {"v": RECORD_VERSION, **data, "n": 1764763200.123456}
    if attributes:
        data["a"] = {"detector": "x"}
    text = input_text(data)
    if data["v"] != RECORD_VERSION:
        assert text is None
        return
    by_json = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:  # what is written: orjson's text unless attributes or a 65-bit integer forbid it
        written = by_json.encode("utf-8") if "a" in data else orjson.dumps(data)
    except orjson.JSONEncodeError:
        written = by_json.encode("utf-8")
    assert (text is None) == (len(written) > MAX_INPUT_BYTES)
    if text is not None:
        assert text.encode("utf-8") == written
        assert json.loads(text) == data


def test_input_text_refuses_nan_in_attributes_as_before() -> None:
    with pytest.raises(ValueError):
        input_text({"v": RECORD_VERSION, "t": "a.b", "a": {"score": float("nan")}})


def _spec_data(draw: st.DrawFn) -> dict[str, Any]:
    values = st.sampled_from(FLOATS) | st.floats(allow_nan=False, allow_infinity=False)
    flat = st.dictionaries(st.text() | st.sampled_from(TRICKY), values | RECORD_VALUES, max_size=4)
    scalars = st.dictionaries(
        st.text() | st.sampled_from(TRICKY),
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
        max_size=4,
    )
    names = st.none() | st.text(st.characters(min_codepoint=33), min_size=1, max_size=8)
    return {
        "type": draw(st.sampled_from(["github.pr.merge", "stripe.transfer.create", "a.b"])),
        "resource": draw(
            st.fixed_dictionaries(
                {}, optional={k: names for k in ("provider", "account", "target", "environment")}
            )
        ),
        "parameters": draw(scalars | flat),
        "risk_hints": draw(scalars | flat),
    }


@given(st.composite(_spec_data)())
@example({"type": "a.b", "parameters": {"x": 1e-05}})
@example({"type": "a.b", "risk_hints": {"y": 2**64}, "resource": {"target": "é\u2028"}})
def test_canonical_spec_is_the_specs_canonical_form(data: dict[str, Any]) -> None:
    try:
        spec = parse_action_spec(data)
    except ActionSpecError:  # a resource name the model refuses
        return
    assert canonical_spec(spec) == spec.canonical()
    assert canonical_spec(spec) == canonical_json(spec.to_dict())


# --- the writer's record batches --------------------------------------------------------


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    database.start()
    yield database
    database.close()


def _action(action_id: str, key: str | None = None) -> dict[str, Any]:
    return {
        "id": action_id,
        "agent_id": "agt_1",
        "agent": "Bot",
        "action_type": "github.pr.merge",
        "action_spec": "{}",
        "action_hash": "0" * 64,
        "status": "allowed",
        "decision": "{}",
        "risk_score": 0.0,
        "idempotency_key": key,
        "approval_id": None,
        "response": None,
        "execution": None,
        "created_at": 1.0,
        "updated_at": 1.0,
    }


def _events(action_id: str) -> list[dict[str, Any]]:
    return [prepare_event("action.requested", actor="Bot", now=1.0, subject=action_id)]


def _count(db: Database, table: Any) -> int:
    return int(
        db.read_sync(lambda c: c.execute(select(func.count()).select_from(table)).scalar_one())
    )


@pytest.mark.anyio
async def test_record_returns_what_then_gives_after_the_commit(db: Database) -> None:
    def then() -> int:  # runs once the row is committed: a reader already sees it
        return _count(db, action_requests)

    assert await db.record([(action_requests, _action("act_1"))], _events("act_1"), then=then) == 1
    plain: Awaitable[object] = db.record([(action_requests, _action("act_2"))], _events("act_2"))
    assert await plain is None  # no `then`: None once committed
    assert db.read_sync(verify_chain).ok


@pytest.mark.anyio
async def test_a_failing_then_reaches_the_caller_and_the_write_stays(db: Database) -> None:
    def then() -> None:
        raise RuntimeError("signing failed")

    with pytest.raises(RuntimeError, match="signing failed"):
        await db.record([(action_requests, _action("act_1"))], _events("act_1"), then=then)
    assert _count(db, action_requests) == 1


@pytest.mark.anyio
async def test_a_duplicate_in_a_batch_fails_alone_with_an_integrity_error(db: Database) -> None:
    import asyncio

    results = await asyncio.gather(
        db.record([(action_requests, _action("act_1", "k"))], _events("act_1")),
        db.record([(action_requests, _action("act_2", "k"))], _events("act_2")),  # same key
        db.record([(action_requests, _action("act_3"))], _events("act_3")),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], IntegrityError)
    assert _count(db, action_requests) == 2
    assert _count(db, audit_events) == 2  # the failed record's event was not appended
    assert db.read_sync(verify_chain).ok


@pytest.mark.anyio
async def test_records_and_jobs_interleaved_keep_one_valid_chain(db: Database) -> None:
    import asyncio

    def job(n: int) -> Any:
        def run(conn: Connection) -> None:
            append_event(conn, "settings.updated", actor="admin", now=2.0, data={"n": n})

        return run

    calls: list[Awaitable[object]] = []
    for n in range(30):
        calls.append(db.record([(action_requests, _action(f"act_{n}"))], _events(f"act_{n}")))
        if n % 3 == 0:
            calls.append(db.write(job(n)))
    await asyncio.gather(*calls)
    assert _count(db, audit_events) == 40
    result = db.read_sync(verify_chain)
    assert result.ok
    assert result.events_checked == 40


# --- through the API ----------------------------------------------------------------------


def test_concurrent_retries_with_one_idempotency_key_make_one_action(harness: Harness) -> None:
    key = harness.create_agent("Bot")

    def send(_: int) -> Any:
        return harness.agent(
            key,
            "POST",
            "/v1/actions",
            json={"action_spec": SPEC},
            headers={"Idempotency-Key": "k1"},
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["action_request_id"] for a in answers}) == 1
    assert all(a.json()["decision_token"] for a in answers)
    assert _count(harness.state.db, action_requests) == 1


def test_an_unexpected_error_answers_500_json(tmp_path: Path, database_url: str) -> None:
    app = create_app(make_settings(tmp_path / "data", database_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        admin = (tmp_path / "data" / "admin.token").read_text().strip()
        made = client.post(
            "/api/v1/agents", json={"name": "Bot"}, headers={"Authorization": f"Bearer {admin}"}
        )
        api_key = made.json()["api_key"]
        db = app.state.af.db

        async def broken(*_args: object, **_kw: object) -> None:
            raise RuntimeError("not an error the route expects")

        db.record = db.write = broken  # (a closed database is a 503: test_database_stalls)
        r = client.post(
            "/api/v1/actions",
            json={"action_spec": SPEC},
            headers={"Authorization": f"Bearer {api_key}"},
        )
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error", "message": "the server failed: see its log"}


def test_sqlite_synchronous_is_full_by_default_and_checked(tmp_path: Path) -> None:
    def mode(database: Database) -> int:
        with database.writer_engine.connect() as conn:
            return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

    full = Database(f"sqlite:///{tmp_path / 'a.db'}")
    normal = Database(f"sqlite:///{tmp_path / 'b.db'}", synchronous="normal")
    try:
        assert mode(full) == 2  # FULL: a commit survives power loss
        assert mode(normal) == 1  # NORMAL: survives a crash of the process
    finally:
        full.close()
        normal.close()
    for bad in ("OFF", "FULL; DROP TABLE x", "fast"):
        with pytest.raises(StoreError, match="invalid SQLite synchronous mode"):
            Database(f"sqlite:///{tmp_path / 'c.db'}", synchronous=bad)


def test_the_synchronous_setting_is_checked_before_the_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from agentfirewall_server.settings import Settings

    monkeypatch.setenv("AGENTFIREWALL_SQLITE_SYNCHRONOUS", "normal")
    assert Settings(data_dir=tmp_path).sqlite_synchronous == "NORMAL"
    monkeypatch.setenv("AGENTFIREWALL_SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(ValidationError, match="sqlite_synchronous"):
        Settings(data_dir=tmp_path)
