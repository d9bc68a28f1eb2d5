"""`Engine.decide` (context fields passed straight) equals `Engine.evaluate` with the context
built, field for field: the same decision (outcome, reasons, rules, risk, errors) or the
same error, whatever the rules read (spec fields, context fields, content attributes), with
and without access rules and kill switches, on a long-lived engine (remembered decisions)
against a fresh one; and given the spec's JSON data instead of the spec, the same answer,
or the same ActionSpecError as `parse_action_spec`, valid data or not.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.errors import ActionSpecError
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
    for turn, ((data, fields), attributes, now) in enumerate(sequence * 2):  # then remembered
        spec = parse_action_spec(data)
        given_fields = {**fields, "now": now, "attributes": attributes}
        fresh = Engine(access_rules=rules, policies=policies, kill_switches=kills)
        expected = fresh.evaluate(spec, EvaluationContext(**given_fields))
        spec_first = turn % 2 == 0  # which form the engine sees (and remembers) first
        for given_spec in (spec, data) if spec_first else (data, spec):
            assert shared.decide(given_spec, **given_fields) == expected
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
    st.lists(st.tuples(_SPECS, st.booleans(), st.booleans()), min_size=6, max_size=40),
    st.booleans(),
)
def test_requests_that_share_their_fields_get_their_own_decisions(
    first: dict[str, Any],
    changes: dict[str, Any],
    sequence: list[tuple[dict[str, Any], bool, bool]],
    access: bool,
) -> None:
    """Many specs under the same context fields (or under a second set that differs from
    the first in a few of them), none of the rules reading the context: the engine
    remembers what it settled for those fields by the rule that matched, and every answer
    is still the one a fresh engine gives that request alone. Amounts cross each rule's
    threshold, a rule raises on some bodies, the resource's provider names the connector
    in SDK mode; each request comes as a spec or as its JSON data (answered from a
    remembered route by its parameters alone, without a spec)."""
    rules = ACCESS if access else []
    policies = POLICIES[:3]  # none reads a context field
    shared = Engine(access_rules=rules, policies=policies)
    second = {**first, **changes}
    for data, other, as_data in sequence * 2:
        spec = parse_action_spec(data)
        fields = {**(second if other else first), "now": NOW}
        expected = Engine(access_rules=rules, policies=policies).evaluate(
            spec, EvaluationContext(**fields)
        )
        assert shared.decide(data if as_data else spec, **fields) == expected


# JSON data of every kind, valid or not: the common shape, its near misses (a nested or
# non-finite parameter, a lone surrogate, a bad type or resource, hints, an unknown key),
# and shapes only the model takes (a nested parameter, a float amount)
_AMOUNTS = st.sampled_from([5, 101, 1001, 2.5, "12", math.inf, math.nan, [1], {"a": 1}, None])
_DATA = st.fixed_dictionaries(
    {"type": st.sampled_from(["pay.charge.create", "svc.x.run", "Pay.charge", "pay", 7])},
    optional={
        "resource": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "environment": st.sampled_from(["prod", "", "\ud800", None, 3]),
                    "provider": st.sampled_from(["pay", "svc"]),
                    "region": st.just("eu"),  # not a resource field
                },
            ),
            st.none(),
            st.just([]),
        ),
        "parameters": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "amount": _AMOUNTS,
                    "body": st.sampled_from(["ok", "x", "x" * 4097, "bad \udc80"]),
                },
            ),
            st.just([1]),
            st.none(),
        ),
        "risk_hints": st.sampled_from([{}, {"irreversible": True}, {"x": math.nan}, {"x": [1]}]),
        "extra": st.just(1),
    },
)


@settings(max_examples=examples(300), deadline=None)
@given(_FIELDS, st.lists(_DATA, min_size=4, max_size=30), st.booleans())
def test_json_data_is_checked_and_decided_as_its_parsed_spec(
    fields: dict[str, Any], sequence: list[dict[str, Any]], access: bool
) -> None:
    """Given the JSON data, `decide` raises `parse_action_spec`'s error for the same data
    (word for word) or answers what it answers for the parsed spec, also when the data's
    fields were decided before (a remembered route, read without building a spec)."""
    rules = ACCESS if access else []
    shared = Engine(access_rules=rules, policies=POLICIES[:3])
    given_fields = {**fields, "now": NOW}

    def parsed_first(data: dict[str, Any]) -> object:
        fresh = Engine(access_rules=rules, policies=POLICIES[:3])
        return fresh.decide(parse_action_spec(data), **given_fields)

    for data in sequence * 2:
        expected = _outcome(partial(parsed_first, data))
        assert _outcome(partial(shared.decide, data, **given_fields)) == expected


def test_json_data_is_not_kept_and_not_changed() -> None:
    """The engine reads the caller's dicts and keeps none of them: a later change to the
    data changes nothing remembered, and the data is left as it was given."""
    engine = Engine(policies=POLICIES[:3])
    params = {"amount": 5}
    data = {"type": "pay.charge.create", "resource": {"environment": "prod"}, "parameters": params}
    fields: dict[str, Any] = {"agent": "Bot", "mode": "sdk", "now": NOW}
    before = engine.decide(data, **fields)
    assert engine.decide(data, **fields) is before  # answered from the remembered route
    params["amount"] = 5000
    expected = Engine(policies=POLICIES[:3]).decide(parse_action_spec(data), **fields)
    assert engine.decide(data, **fields) == expected
    assert data == {
        "type": "pay.charge.create",
        "resource": {"environment": "prod"},
        "parameters": {"amount": 5000},
    }


@pytest.mark.parametrize("data", ["pay.charge.create", ["pay.charge.create"], None, 7])
def test_anything_but_a_spec_or_its_data_is_refused_clearly(data: object) -> None:
    with pytest.raises(ActionSpecError, match="invalid action spec"):
        Engine(policies=POLICIES).decide(data, agent="Bot", mode="sdk", now=NOW)  # type: ignore[arg-type]


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
