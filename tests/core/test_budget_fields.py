"""`budget.<name>.remaining` / `.used` as policy condition fields (filled by the gateway)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.conditions import compile_condition
from agentfirewall.policy.models import FieldCondition

SPEC = parse_action_spec({"type": "stripe.transfer.create", "parameters": {"amount": 1}})
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"budget.daily.remaining": 5000}, True),
        ({"budget.daily.remaining": 20000}, False),
        ({}, False),
    ],
)
def test_remaining_reads_the_attribute(attributes: dict[str, object], expected: bool) -> None:
    leaf = FieldCondition(field="budget.daily.remaining", operator="lt", value=10000)
    ctx = EvaluationContext(agent="a", mode="proxy", now=NOW, attributes=attributes)
    assert compile_condition(leaf)(SPEC, ctx) is expected


@pytest.mark.parametrize("field", ["budget.daily", "budget.daily.left", "budget.a.b.remaining"])
def test_other_budget_fields_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match="budget fields are"):
        FieldCondition(field=field, operator="lt", value=1)
