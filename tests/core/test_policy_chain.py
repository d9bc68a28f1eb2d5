"""A plan's first-match function (chain.py) answers as the loop over its tests does: the
same position, or the same exception, for generated rules (parameter tests with and
without the int fast path, every other field, nested all / any / not, rules without a
condition) and generated requests; and its function of the parameters alone exists exactly
when every test that can decide is a parameter test, and answers as the loop does.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import EvaluationContext, load_policy
from agentfirewall.policy.chain import _MAX_INLINE, _parameter_leaf, compile_plan
from agentfirewall.policy.globs import dot_prefixes
from agentfirewall.policy.index import PolicyIndex, _always
from tests.core.test_policy_memo import NOW, requests
from tests.fuzzscale import examples

LEAVES: list[dict[str, Any]] = [
    {"field": "parameters.amount", "operator": "gt", "value": 100},
    {"field": "parameters.amount", "operator": "lte", "value": 5.5},
    {"field": "action_spec.parameters.amount", "operator": "gte", "value": 101},
    {"field": "parameters.amount", "operator": "equals", "value": "12"},
    {"field": "parameters.amount", "operator": "in", "value": [5, 101]},
    {"field": "parameters.amount", "operator": "exists"},
    {"field": "parameters.amount", "operator": "not_exists"},
    {"field": "parameters.body", "operator": "matches", "value": "ok"},  # raises when long
    {"field": "parameters.body", "operator": "contains", "value": "x"},
    {"field": "parameters.body.0", "operator": "equals", "value": "o"},
    {"field": "resource.environment", "operator": "equals", "value": "prod"},
    {"field": "resource.provider", "operator": "exists"},
    {"field": "type", "operator": "starts_with", "value": "pay."},
    {"field": "context.agent", "operator": "equals", "value": "Bot"},
    {"field": "context.mode", "operator": "equals", "value": "sdk"},
]

leaves = st.sampled_from(LEAVES)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda c: {"all": c}),
        st.lists(inner, min_size=1, max_size=3).map(lambda c: {"any": c}),
        inner.map(lambda c: {"not": c}),
    ),
    max_leaves=4,
)
rules = st.lists(
    st.tuples(st.sampled_from(["allow", "deny", "require_approval"]), st.none() | conditions),
    min_size=1,
    max_size=6,
)


def _loop(tests: Any, spec: Any, ctx: Any) -> int:
    for position, test in enumerate(tests):
        if test(spec, ctx):
            return position
    return -1


def _answer(call: Any, *args: Any) -> tuple[str, object]:
    try:
        return "position", call(*args)
    except Exception as exc:
        return "error", type(exc)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(rules, min_size=1, max_size=3), st.lists(requests(), min_size=1, max_size=8))
def test_first_equals_the_loop_over_the_tests(
    policies: list[list[tuple[str, Any]]], sequence: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    documents = [
        load_policy(
            {
                "name": f"p{i}",
                "scope": {"action_types": ["*"]},
                "rules": [
                    {"name": f"r{j}", "decision": decision, "conditions": condition}
                    for j, (decision, condition) in enumerate(rule_list)
                ],
            }
        )
        for i, rule_list in enumerate(policies)
    ]
    index = PolicyIndex(documents)
    for data, fields in sequence:
        spec = parse_action_spec(data)
        ctx = EvaluationContext(now=NOW, **fields)
        prefixes = dot_prefixes(spec.type)
        plan = index.plan(ctx.agent, spec.type, spec.resource.environment, prefixes)
        expected = _answer(_loop, plan.tests, spec, ctx)
        assert _answer(plan.first, spec, ctx) == expected
        deciding = [
            (test, rule.tree)
            for test, rule in zip(plan.tests, plan.rules, strict=True)
            if test is not _always
        ][: plan.tests.index(_always) if _always in plan.tests else None]
        parameters_only = all(_parameter_leaf(tree, test) for test, tree in deciding)
        assert (plan.by_parameters is not None) is parameters_only
        if plan.by_parameters is not None:
            assert _answer(plan.by_parameters, spec.parameters) == expected
        # the loop the long plans use
        times = _MAX_INLINE // max(len(plan.tests), 1) + 1
        trees = [rule.tree for rule in plan.rules] * times
        padded, padded_by_parameters = compile_plan(plan.tests * times, trees, _always)
        assert _answer(padded, spec, ctx) == expected
        if plan.tests:  # long plans keep the loop (an empty plan stays empty)
            assert padded_by_parameters is None
