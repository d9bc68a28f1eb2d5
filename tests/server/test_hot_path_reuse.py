"""What ``POST /api/v1/actions`` now builds once, or more cheaply, gives what it built before.

Round 8 of issue 18 (benchmarks/README.md): the body's spec read by orjson and the core's
hand-checked path, a decision's JSON encoded once per decision object, the two audit events
of an action prepared together, ids written from a cached millisecond prefix, an agent's
principal kept per agent record, the requests counter's child remembered per label set, the
duplicate ``Authorization`` check found in the headers' one pass. Each against the generic
code it replaces; Hypothesis draws the inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from agentfirewall.decisions import Decision
from agentfirewall_server import auth, clock
from agentfirewall_server.audit import prepare_event, prepare_events
from agentfirewall_server.auth import Principal, key_holder, require_agent
from agentfirewall_server.metrics import Metrics
from agentfirewall_server.routes.actions import (
    _STORED,
    _Envelope,
    _wire,
    canonical_spec,
    common_spec,
)
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import action_requests
from agentfirewall_server.web import ApiError, json_fast, json_text, repeated_header
from tests.fuzzscale import examples
from tests.server.conftest import SPEC, Harness
from tests.server.test_hot_path import FLOATS, TRICKY, _spec_data

# --- the body's spec -------------------------------------------------------------------


def _models(raw: bytes) -> Any:
    """What the model makes of a body: its spec, or None when it refuses it."""
    try:
        return _Envelope.model_validate_json(raw).action_spec
    except ValueError:  # pydantic's ValidationError, an ActionSpecError inside it
        return None


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    """Bodies of the common shape, near misses (a wrong type, an extra key, nesting, a
    float orjson and the model might read apart) and texts with repeated keys."""
    spec: Any = draw(st.composite(_spec_data)())
    if draw(st.booleans()):
        spec = {k: v for k, v in spec.items() if draw(st.booleans())}
    if draw(st.booleans()):
        spec["parameters"] = draw(
            st.dictionaries(
                st.text(max_size=3),
                st.sampled_from(FLOATS)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.integers(-(2**65), 2**65)
                | st.sampled_from([[1], {"a": None}, "", "\x00", *TRICKY]),
                max_size=3,
            )
        )
    body: Any = {"action_spec": spec}
    shape = draw(st.sampled_from(["plain", "extra", "list", "spec-null", "type-int", "twice"]))
    if shape == "extra":
        body["other"] = 1
    elif shape == "list":
        body = [body]
    elif shape == "spec-null":
        body = {"action_spec": None}
    elif shape == "type-int":
        spec["type"] = 7
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    if shape == "twice":  # the same key twice: the last one counts, for both readers
        text = text[:-1] + ', "action_spec": {"type": "a.b", "parameters": {"x": 1, "x": 2}}}'
    return text.encode("utf-8", "surrogatepass")  # (a lone surrogate: bytes no reader takes)


@settings(max_examples=examples(300), deadline=None)
@given(_bodies())
@example(b'{"action_spec": {"type": "a.b", "parameters": {"x": 1e400}}}')
@example(b'{"action_spec": {"type": "a.b", "parameters": {"x": 18446744073709551616}}}')
@example(b'{"action_spec": {"type": "a.b", "resource": {"target": "\\ud800"}}}')
@example(b'\xef\xbb\xbf{"action_spec": {"type": "a.b"}}')
@example(b'{"action_spec": {"type": "A.b"}}')
@example(b'{"action_spec": {"type": "a.b", "resource": {"provider": ""}}}')
def test_common_spec_is_the_spec_the_model_gives(raw: bytes) -> None:
    fast, model = common_spec(raw), _models(raw)
    if fast is None:  # the model parses it (and words its errors), as before
        return
    assert model is not None
    assert fast.__dict__ == model.__dict__
    assert list(fast.parameters) == list(model.parameters)  # same order: the stored input's
    assert [repr(v) for v in fast.parameters.values()] == [
        repr(v) for v in model.parameters.values()
    ]  # the same floats, bit for bit
    assert fast.model_fields_set == model.model_fields_set
    assert canonical_spec(fast) == canonical_spec(model) == model.canonical()


def test_the_common_body_takes_the_fast_path() -> None:
    assert common_spec(json.dumps({"action_spec": SPEC}).encode()) is not None


# --- a decision's JSON, once per decision object ----------------------------------------

_decisions = st.builds(
    Decision,
    outcome=st.sampled_from(["allow", "deny", "require_approval"]),
    reason=st.text() | st.sampled_from(TRICKY),
    risk_score=st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(FLOATS),
    matched_policies=st.lists(st.text(max_size=5), max_size=2).map(tuple),
    matched_rules=st.lists(st.text(max_size=5), max_size=2).map(tuple),
    errors=st.lists(st.text(max_size=5), max_size=2).map(tuple),
    default_applied=st.booleans(),
    decided_outcome=st.none() | st.sampled_from(["allow", "deny", "require_approval"]),
    kill_switch=st.booleans(),
)


@given(_decisions)
def test_a_decisions_wire_form_is_its_dict_encoded(decision: Decision) -> None:
    fragment, text = _wire(decision)
    assert text == json_text(decision.to_dict())
    assert _wire(decision) == (fragment, text)  # remembered
    twin = dataclasses.replace(decision)  # equal, another object: its own entry, same text
    assert _wire(twin)[1] == text
    answer = {"action_request_id": "act_1", "status": decision.status, "decision": fragment}
    before = {**answer, "decision": decision.to_dict()}
    assert json_fast(answer).body == json_fast(before).body


@pytest.mark.parametrize("status", ["allowed", "denied", "pending_approval"])
def test_the_stored_answer_is_the_dict_written(status: str) -> None:
    assert _STORED[status] == json_text({"status": status, "approval": None})


# --- the two audit events -----------------------------------------------------------------

_names = st.none() | st.text() | st.sampled_from(TRICKY)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["action.requested", "action.allowed", "action.denied"]),
            st.text() | st.sampled_from(TRICKY),
            st.text() | st.sampled_from(['{"a":1}', *TRICKY]),
        ),
        max_size=3,
    ),
    st.floats(min_value=0, max_value=4e9) | st.integers(min_value=0, max_value=2**40),
    _names,
    _names,
)
def test_events_prepared_together_are_each_prepared_alone(
    events: list[tuple[str, str, str]], now: float, agent: str | None, subject: str | None
) -> None:
    together = prepare_events(events, now=now, agent=agent, subject=subject)
    alone = [
        prepare_event(kind, actor=actor, now=now, agent=agent, subject=subject, data_text=data)
        for kind, actor, data in events
    ]
    assert together == alone


# --- ids ------------------------------------------------------------------------------------


def _old_id_time(ms: int) -> str:
    """The ten characters the id's time took before (50 bits, two characters per 10)."""
    value = ms << 80
    return "".join(clock._PAIRS[value >> shift & 1023] for shift in range(120, 79, -10))


def test_an_id_is_its_milliseconds_then_80_random_bits() -> None:
    before = int(time.time() * 1000)
    made = [clock.new_id("act_") for _ in range(2000)]
    after = int(time.time() * 1000)
    times = {_old_id_time(ms) for ms in range(before, after + 1)}
    for ident in made:
        assert ident.startswith("act_")
        assert len(ident) == 30
        assert set(ident[4:]) <= set(clock._CROCKFORD)
        assert ident[4:14] in times  # written as before: the ids still sort by time
    assert made == sorted(made, key=lambda i: i[4:14])
    assert len(set(made)) == len(made)
    # every random character is used (5 uniform bits each): 2000 x 16 draws of 32
    assert {c for ident in made for c in ident[14:]} == set(clock._CROCKFORD)


@given(st.integers(min_value=0, max_value=2**50 - 1))
def test_the_time_prefix_is_written_as_before(ms: int) -> None:
    real = clock.time
    try:  # the clock module's own `time`, stopped at `ms`
        clock.time = SimpleNamespace(time=lambda: (ms + 0.5) / 1000)  # type: ignore[assignment]
        assert clock.new_id("x")[1:11] == _old_id_time(ms)
        assert clock.new_id("x")[1:11] == _old_id_time(ms)  # from the cached prefix
    finally:
        clock.time = real


def test_random_bytes_are_the_keyed_blake2b_of_the_counter() -> None:
    for size in (10, 16, 32, 64):
        start = next(clock._COUNTER) + 1
        made = clock.random_bytes(size)
        expected = {  # (another thread may take a number meanwhile)
            hashlib.blake2b(n.to_bytes(16, "big"), key=clock._PRF_KEY, digest_size=size).digest()
            for n in range(start, start + 1000)
        }
        assert made in expected


# --- the writer's deliveries ------------------------------------------------------------------


def test_records_from_two_event_loops_are_each_answered_on_their_own(tmp_path: Path) -> None:
    """A committed batch wakes each event loop with its own records (one server has one
    loop; an embedding process may have several)."""
    import asyncio
    import threading

    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    database.migrate()
    database.start()
    answers: dict[str, list[object]] = {"a": [], "b": []}

    def run(name: str) -> None:
        async def main() -> None:
            loop = asyncio.get_running_loop()

            async def one(n: int) -> object:
                ident = f"act_{name}{n}"
                row = {**_action_row(ident), "created_at": float(n)}
                event = prepare_event("action.requested", actor="Bot", now=1.0, subject=ident)
                got = await database.record(
                    [(action_requests, row)], [event], then=lambda: (asyncio.get_running_loop(), n)
                )
                assert got == (loop, n)  # `then` ran on this loop, for this record
                return n

            answers[name] = await asyncio.gather(*(one(n) for n in range(40)))

        asyncio.run(main())

    threads = [threading.Thread(target=run, args=(name,)) for name in answers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        database.close()
    assert answers == {"a": list(range(40)), "b": list(range(40))}


def _action_row(ident: str) -> dict[str, Any]:
    return {
        "id": ident, "agent_id": "agt_1", "agent": "Bot", "action_type": "github.pr.merge",
        "action_spec": "{}", "action_hash": "0" * 64, "status": "allowed", "decision": "{}",
        "risk_score": 0.0, "idempotency_key": None, "approval_id": None, "response": None,
        "execution": None, "created_at": 1.0, "updated_at": 1.0,
    }  # fmt: skip


# --- headers, the caller --------------------------------------------------------------------

_raw_headers = st.lists(
    st.tuples(
        st.sampled_from([b"authorization", b"Authorization", b"content-length", b"x-a"]),
        st.binary(max_size=6),
    ),
    max_size=6,
)


@given(_raw_headers, st.sampled_from([b"authorization", b"content-length", b"x-b"]))
def test_repeated_header_counts_the_raw_headers(
    raw: list[tuple[bytes, bytes]], name: bytes
) -> None:
    scope = {"type": "http", "headers": raw}
    request = Request(scope)
    assert repeated_header(request, name) == (sum(1 for k, _ in raw if k == name) > 1)
    assert repeated_header(request, name) == (sum(1 for k, _ in raw if k == name) > 1)


def _record(name: str = "Bot", status: str = "active") -> AgentRecord:
    return AgentRecord(
        id="agt_1", name=name, status=status, environment="live", description="",
        enforcement_level="full_enforce", sdk_default="allow", rate_limit_per_minute=None,
        proxy_port=None, created_at=0.0, key_prefix=None, key_hashes=(),
    )  # fmt: skip


def test_an_agents_principal_is_kept_per_record() -> None:
    record = _record()
    state: Any = SimpleNamespace(agent_for_key=lambda _key: record)
    first = auth._agent_principal(state, "aaf_x")
    assert first == Principal("agent", "Bot", agent=record)
    assert auth._agent_principal(state, "aaf_x") is first
    record = _record(name="Bot2")  # a new snapshot's record: a principal of its own
    assert auth._agent_principal(state, "aaf_x") == Principal("agent", "Bot2", agent=record)
    record = _record(status="suspended")
    with pytest.raises(ApiError, match="suspended"):
        auth._agent_principal(state, "aaf_x")


def _caller(harness: Harness, headers: list[tuple[bytes, bytes]]) -> Any:
    """What `require_agent` answers, and what the hot path's `key_holder` (then
    `require_agent`) answers, for fresh requests with `headers`."""
    import asyncio

    app = harness.client.app

    def scope() -> dict[str, Any]:
        return {"type": "http", "method": "POST", "headers": list(headers), "app": app}

    def outcome(call: Any) -> Any:
        try:
            return ("agent", asyncio.run(call(Request(scope()))).name)
        except ApiError as exc:
            return ("error", exc.status, exc.message)

    async def hot(request: Request) -> Any:
        return key_holder(request, harness.state) or await require_agent(request)

    return outcome(require_agent), outcome(hot)


@pytest.mark.parametrize(
    "sent",
    [
        "key",
        "wrong-key",
        "admin",
        "gateway",
        "none",
        "twice",
        "basic",
        "empty",
    ],
)
def test_the_hot_path_finds_the_caller_require_agent_finds(harness: Harness, sent: str) -> None:
    key = harness.create_agent("Bot")
    bearer = {
        "key": f"Bearer {key}",
        "wrong-key": "Bearer aaf_live_nope",
        "admin": f"Bearer {harness.admin_token}",
        "gateway": f"Bearer {harness.gateway_token}",
        "basic": f"Basic {key}",
        "empty": "Bearer ",
    }
    headers: list[tuple[bytes, bytes]] = []
    if sent == "twice":
        headers = [(b"authorization", f"Bearer {key}".encode())] * 2
    elif sent != "none":
        headers = [(b"authorization", bearer[sent].encode())]
    slow, fast = _caller(harness, headers)
    assert fast == slow
    if sent == "key":
        assert fast == ("agent", "Bot")


def test_a_suspended_agents_key_is_refused_on_the_hot_path(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    assert harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).status_code == 200
    assert harness.admin("POST", "/v1/agents/Bot/suspend").status_code == 200
    refused = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
    assert refused.status_code == 401


# --- the requests counter -------------------------------------------------------------------


def _samples(metrics: Metrics) -> dict[Any, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name in ("aaf_requests_total", "aaf_metrics_folded_samples_total")
    }


@settings(max_examples=examples(60), deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["github", "nope", ""]),
            st.sampled_from(["allow", "deny"]),
            st.sampled_from(["github.pr.merge", "x.y", "github.issue.create"]),
        ),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=6),
)
def test_remembered_children_count_as_the_labels_would(
    calls: list[tuple[str, str, str, str]], cap: int
) -> None:
    remembered, fresh = Metrics(max_label_sets=cap), Metrics(max_label_sets=cap)
    for call in calls:
        remembered.count_request(*call)
        fresh._request_children.clear()  # resolved through the labels every time
        fresh.count_request(*call)
    assert _samples(remembered) == _samples(fresh)
