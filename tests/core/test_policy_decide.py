"""`Engine.decide` (context fields passed straight) equals `Engine.evaluate` with the context
built, field for field: the same decision (outcome, reasons, rules, risk, errors) or the
same error, whatever the rules read (spec fields, context fields, content attributes), with
and without access rules and kill switches, on a long-lived engine (remembered decisions)
against a fresh one.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import Engine, EvaluationContext, KillSwitch
from tests.core.test_policy_memo import ACCESS, NOW, POLICIES, _policy, requests
from tests.fuzzscale import examples

CONTEXT_POLICIES = [
    *POLICIES,
    _policy(
        "office-hours",
        ["pay.refund.*"],
        [
            {
                "name": "late",
                "decision": "require_approval",
                "risk_score": 40,
                "conditions": [
                    {
                        "field": "context.time",
                        "operator": "time_window",
                        "value": {"start": "13:00", "end": "18:00", "timezone": "UTC"},
                    }
                ],
            }
        ],
    ),
    _policy(
        "secrets",
        ["svc.*"],
        [
            {
                "name": "leak",
                "decision": "deny",
                "conditions": [{"field": "content.secrets", "operator": "exists"}],
            },
            {
                "name": "team",
                "decision": "allow",
                "conditions": [{"field": "context.team", "operator": "equals", "value": "ops"}],
            },
        ],
    ),
]
SWITCHES = [KillSwitch("agent", "ci-2", "stop"), KillSwitch("connector", "svc", "outage")]
ATTRIBUTES: list[dict[str, object]] = [{}, {"team": "ops"}, {"content.secrets": ["aws"]}]
TIMES = [NOW, NOW + timedelta(hours=3), NOW.astimezone(timezone(timedelta(hours=-5)))]


def _outcome(call: Any) -> tuple[str, object]:
    try:
        return "decision", call()
    except Exception as exc:  # the same error type and message on both paths
        return "error", (type(exc), str(exc))


@settings(max_examples=examples(150), deadline=None)
@given(
    st.lists(
        st.tuples(requests(), st.sampled_from(ATTRIBUTES), st.sampled_from(TIMES)),
        min_size=1,
        max_size=20,
    ),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["spec fields", "no catch-all", "context fields"]),
)
def test_decide_equals_evaluate_with_the_context_built(
    sequence: list[tuple[tuple[dict[str, Any], dict[str, Any]], dict[str, object], datetime]],
    access: bool,
    switches: bool,
    which: str,
) -> None:
    rules = ACCESS if access else []
    kills = SWITCHES if switches else []
    policies = {
        "spec fields": POLICIES,
        "no catch-all": POLICIES[:3],  # some plans hold no policy
        "context fields": CONTEXT_POLICIES,
    }[which]
    shared = Engine(access_rules=rules, policies=policies, kill_switches=kills)
    for (data, fields), attributes, now in sequence * 2:  # the second pass: remembered
        spec = parse_action_spec(data)
        given_fields = {**fields, "now": now, "attributes": attributes}
        fresh = Engine(access_rules=rules, policies=policies, kill_switches=kills)
        expected = fresh.evaluate(spec, EvaluationContext(**given_fields))
        assert shared.decide(spec, **given_fields) == expected
        assert shared.evaluate(spec, EvaluationContext(**given_fields)) == expected


_FIELD_VALUES: dict[str, list[Any]] = {
    "agent": ["Bot", "Other", "ci-1"],
    "mode": ["sdk", "proxy"],
    "connector": [None, "pay", "svc"],
    "sdk_default": ["allow", "deny"],
    "enforcement_level": ["full_enforce", "monitor"],
    "risk": [None, "low", "high"],
}
_FIELDS = st.fixed_dictionaries({name: st.sampled_from(v) for name, v in _FIELD_VALUES.items()})
# a second set of fields: the first one with a few (often one) of them changed
_CHANGES = st.fixed_dictionaries(
    {}, optional={name: st.sampled_from(v) for name, v in _FIELD_VALUES.items()}
)
_SPECS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["pay.charge.create", "svc.x.run"]),
        "resource": st.fixed_dictionaries(
            {},
            optional={
                "environment": st.just("prod"),
                "provider": st.sampled_from(["pay", "svc"]),
            },
        ),
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "amount": st.sampled_from([5, 101, 1001, "12"]),
                "body": st.sampled_from(["ok", "x", "okx", "x" * 4097]),  # the last raises
            },
        ),
    }
)


@settings(max_examples=examples(300), deadline=None)
@given(
    _FIELDS,
    _CHANGES,
    st.lists(st.tuples(_SPECS, st.booleans()), min_size=6, max_size=40),
    st.booleans(),
)
def test_requests_that_share_their_fields_get_their_own_decisions(
    first: dict[str, Any],
    changes: dict[str, Any],
    sequence: list[tuple[dict[str, Any], bool]],
    access: bool,
) -> None:
    """Many specs under the same context fields (or under a second set that differs from
    the first in a few of them), none of the rules reading the context: the engine
    remembers what it settled for those fields by the rule that matched, and every answer
    is still the one a fresh engine gives that request alone. Amounts cross each rule's
    threshold, a rule raises on some bodies, the resource's provider names the connector
    in SDK mode."""
    rules = ACCESS if access else []
    policies = POLICIES[:3]  # none reads a context field
    shared = Engine(access_rules=rules, policies=policies)
    second = {**first, **changes}
    for data, other in sequence * 2:
        spec = parse_action_spec(data)
        fields = {**(second if other else first), "now": NOW}
        expected = Engine(access_rules=rules, policies=policies).evaluate(
            spec, EvaluationContext(**fields)
        )
        assert shared.decide(spec, **fields) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"mode": "batch"},
        {"now": datetime(2026, 1, 5, 12)},  # naive
        {"now": "2026-01-05T12:00:00Z"},  # not a datetime
        {"enforcement_level": "L1"},  # normalised, as the context does
        {"enforcement_level": "strict"},
        {"sdk_default": "maybe"},
        {"risk": "extreme"},
        {"risk": ["low"]},  # unhashable
        {"mode": "proxy", "risk": "high", "connector": "pay"},
    ],
)
def test_decide_refuses_and_normalises_as_the_context_does(fields: dict[str, Any]) -> None:
    spec = parse_action_spec({"type": "pay.charge.create", "parameters": {"amount": 5}})
    given_fields: dict[str, Any] = {"agent": "Bot", "mode": "sdk", "now": NOW, **fields}
    engine = Engine(access_rules=ACCESS, policies=POLICIES)
    for mode, connector in (("sdk", None), ("proxy", "pay")):  # remembered first, valid
        engine.decide(spec, agent="Bot", mode=mode, now=NOW, connector=connector)
        engine.decide(spec, agent="Bot", mode=mode, now=NOW, connector=connector, risk="high")
    expected = _outcome(
        lambda: Engine(access_rules=ACCESS, policies=POLICIES).evaluate(
            spec, EvaluationContext(**given_fields)
        )
    )
    assert _outcome(lambda: engine.decide(spec, **given_fields)) == expected


_CLOCK = _policy(
    "night",
    ["pay.*"],
    [{"name": "late", "decision": "deny",
      "conditions": [{"field": "context.time", "operator": "time_window",
                      "value": {"start": "22:00", "end": "06:00", "timezone": "UTC"}}]}],
)  # fmt: skip


@pytest.mark.parametrize(
    ("action", "environment", "kill", "expected"),
    [
        ("pay.charge", None, False, False),  # the night rule reads the time
        ("pay.charge", "prod", False, False),
        ("repo.merge", None, False, True),  # no rule in play reads the context
        ("repo.merge", None, True, False),  # a kill switch: never remembered
    ],
)
def test_timeless_says_whether_the_context_is_read(
    action: str, environment: str | None, kill: bool, expected: bool
) -> None:
    switches = [KillSwitch("agent", "someone-else")] if kill else []
    engine = Engine(access_rules=ACCESS, policies=[*POLICIES, _CLOCK], kill_switches=switches)
    spec = parse_action_spec({"type": action, "resource": {"environment": environment}})
    assert engine.timeless(spec, "Bot") is expected
    if expected:  # and then the decision is the same at any time
        decisions = {
            engine.evaluate(spec, EvaluationContext(agent="Bot", mode="proxy", now=NOW + step))
            for step in (timedelta(0), timedelta(hours=12), timedelta(days=3))
        }
        assert len(decisions) == 1
