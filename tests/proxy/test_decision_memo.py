"""The gateway remembers a decision that reads no time and no body (``pipeline.decide``):
a remembered answer must be the one a fresh decision gives, whatever came before.

Each request is decided twice: by one long-lived configuration (which remembers), and by a
configuration compiled afresh for that request alone (which cannot). Requests repeat, their
headers vary, some carry a body, the clock moves across a maintenance window that a policy
reads, and kill switches and new snapshots come between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest
from agentfirewall.decisions import Decision
from agentfirewall_proxy import pipeline
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.snapshot import CompiledConfig, compile_snapshot
from tests.fuzzscale import examples
from tests.proxy.support import KEY, OTHER_KEY, connector, key_hash, rule, snapshot

#: Saturday 2026-12-05 21:00 UTC: the maintenance window opens at 22:00.
SATURDAY = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)

_WINDOW = {
    "name": "maintenance",
    "document": {
        "name": "maintenance", "scope": {"action_types": ["github.*"]},
        "rules": [{"name": "freeze", "decision": "deny", "reason": "frozen", "conditions": {
            "field": "context.time", "operator": "time_window",
            "value": {"start": "22:00", "end": "06:00", "days": ["sat"], "timezone": "UTC"}}}],
    },
}  # fmt: skip
_MERGES = {
    "name": "merges",
    "document": {
        "name": "merges", "scope": {"action_types": ["github.pr.merge"]},
        "rules": [{"name": "hold", "decision": "require_approval", "reason": "merge",
                   "conditions": {"field": "action_spec.resource.target", "operator": "equals",
                                  "value": "acme/api"}}],
    },
}  # fmt: skip

_TARGETS = [
    ("GET", "/repos/acme/api/pulls/1"),
    ("GET", "/repos/acme/web/pulls/2"),
    ("PUT", "/repos/acme/api/pulls/1/merge"),
    ("PUT", "/repos/acme/web/pulls/2/merge"),
    ("DELETE", "/repos/acme/api/git/refs/heads/x"),
    ("POST", "/repos/acme/api/issues"),
    ("GET", "/repos/acme/api/pulls/1%2F..%2F2"),
    ("PATCH", "/no/such/route"),
]


def _snapshot(window: bool, killed: bool, level: str) -> dict[str, Any]:
    return snapshot(
        [rule("github.*", "allow"), rule("github.git.*", "deny", agent="Other")],
        connectors=[connector("github")],
        level=level,
        policies=[_WINDOW, _MERGES] if window else [_MERGES],
        kill_switches=[{"scope": "agent", "target": "Other"}] if killed else [],
    )


@contextmanager
def _clock(moment: datetime) -> Iterator[None]:
    """`pipeline.decide` reads the time from `datetime.now`: fix it."""

    class Fixed(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return moment

    with mock.patch.object(pipeline, "datetime", Fixed):
        yield


def _decide(
    config: CompiledConfig, key: str, asked: tuple[str, int, int, int, int]
) -> tuple[Flow, Decision]:
    kind, target, extra_header, minutes, body_size = asked
    agent = config.agent_for_key(key_hash(key))
    assert agent is not None
    method, path = _TARGETS[target]
    routed = config.route("api.github.com")
    flow = Flow(request_id="req_1", method=method, scheme="https", host="api.github.com",
                port=443, path=path, agent=agent, connector=routed)  # fmt: skip
    headers: tuple[tuple[str, str], ...] = (("Host", "api.github.com"),)
    if extra_header:
        headers += ((kind, str(extra_header)),)
    body = [b"", b'{"title": "x"}', b'{"_method": "DELETE"}'][body_size]
    request = HttpRequest(method, "https", "api.github.com", 443, path, "", headers, body, True)
    with _clock(SATURDAY + timedelta(minutes=minutes)):
        decision = pipeline.decide(config, flow, request)
    return flow, decision


def _seen(flow: Flow, decision: object) -> tuple[object, ...]:
    record = dict(flow.input or {})
    return (decision, flow.action, flow.parsed, record)


_steps = st.tuples(
    st.sampled_from(["X-Trace", "Accept", "X-HTTP-Method-Override"]),  # an extra header's name
    st.sampled_from([0, 0, 2, 2, 5, 6, 7, 1, 3, 4]),  # the target: a few come back often
    st.sampled_from([0, 0, 0, 1, 2]),  # its value (0: no extra header)
    # the same request asked again: at these times (minutes after Saturday 21:00), with or
    # without a body (2: one that overrides the method, refused)
    st.lists(
        st.tuples(st.sampled_from([0, 30, 61, 90, 540]), st.sampled_from([0, 0, 0, 1, 2])),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),  # the other agent asks
    st.sampled_from([False, False, False, True]),  # a new snapshot comes first
    st.integers(0, 5),  # which snapshot: window or not, kill switch or not, level
)
_Step = tuple[str, int, int, list[tuple[int, int]], bool, bool, int]


def _options(choice: int) -> tuple[bool, bool, str]:
    levels = ["full_enforce", "monitor", "full_enforce"]
    return choice % 2 == 0, choice == 5, levels[choice % 3]


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(_steps, min_size=1, max_size=20))
def test_a_remembered_decision_is_the_one_a_fresh_decision_gives(steps: list[_Step]) -> None:
    options = _options(0)
    config = compile_snapshot(_snapshot(*options))
    for name, target, extra, asks, other, fresh_snapshot, choice in steps:
        if fresh_snapshot:
            options = _options(choice)
            config = compile_snapshot(_snapshot(*options))
        key = OTHER_KEY if other else KEY
        for minutes, body in asks:
            request = (name, target, extra, minutes, body)
            remembered = _seen(*_decide(config, key, request))
            fresh = _seen(*_decide(compile_snapshot(_snapshot(*options)), key, request))
            assert remembered == fresh


def test_a_repeated_request_is_answered_from_memory_until_the_clock_matters() -> None:
    """Without a rule reading the time, the second identical request is not parsed again;
    with the maintenance window, every request is decided at its own time."""
    step = ("X-Trace", 2, 0, 0, 0)
    calm = compile_snapshot(_snapshot(False, False, "full_enforce"))
    _decide(calm, KEY, step)
    assert not calm.decided  # once: traffic that never repeats keeps nothing
    _decide(calm, KEY, step)
    assert len(calm.decided) == 1
    with mock.patch.object(type(calm.engine), "evaluate", side_effect=AssertionError):
        flow, decision = _decide(calm, KEY, step)
    assert flow.action == "github.pr.merge"
    assert decision.outcome == "require_approval"
    assert flow.input is not None
    assert flow.input["n"] == SATURDAY.timestamp()

    timed = compile_snapshot(_snapshot(True, False, "full_enforce"))
    early = ("X-Trace", 2, 0, 30, 0)
    late = ("X-Trace", 2, 0, 90, 0)
    assert _decide(timed, KEY, early)[1].outcome == "require_approval"
    assert _decide(timed, KEY, late)[1].outcome == "deny"
    assert _decide(timed, KEY, early)[1].outcome == "require_approval"
    assert not timed.decided


def test_a_request_with_a_body_is_never_remembered() -> None:
    config = compile_snapshot(_snapshot(False, False, "full_enforce"))
    _decide(config, KEY, ("X-Trace", 5, 0, 0, 1))
    _decide(config, KEY, ("X-Trace", 5, 0, 0, 1))
    assert not config.decided


def test_the_memory_is_bounded() -> None:
    config = compile_snapshot(_snapshot(False, False, "full_enforce"))
    for value in range(5000):
        for _ in range(2):
            _decide(config, KEY, ("X-Trace", 0, value + 1, 0, 0))
    assert 0 < len(config.decided) <= 4096
