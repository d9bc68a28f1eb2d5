"""Budget leases at the API (``routes/budgetleases.py``), on SQLite and PostgreSQL: slices
shrink near the limit and never pass it, cumulative reports are idempotent whatever their
order or repetition (Hypothesis), bad bodies are 422s."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzscale import examples
from tests.server.budgetharness import budget_state, with_budget
from tests.server.conftest import Harness

STRIPE = {"agents": ["Finance-Bot"], "connector": "stripe", "action": "stripe.transfer.*",
          "measure": "sum", "currency": "usd", "limit": 100_000}  # fmt: skip


def _lease(h: Harness, amount: int = 2500, want: float = 0, **extra: Any) -> dict[str, Any]:
    body = {"agent": "Finance-Bot", "connector": "stripe", "action": "stripe.transfer.create",
            "parameters": {"amount": amount, "currency": "usd"},
            "want": {"stripe-daily": want}, **extra}  # fmt: skip
    answer = h.gateway("POST", "/v1/gateway/budgets/lease", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _report(h: Harness, *reports: dict[str, Any]) -> int:
    answer = h.gateway("POST", "/v1/gateway/budgets/leases/report", json={"reports": reports})
    assert answer.status_code == 200, answer.text
    changed: int = answer.json()["changed"]
    return changed


@pytest.fixture
def budget(harness: Harness) -> Harness:
    return with_budget(harness, "stripe-daily", STRIPE)


def test_slices_shrink_near_the_limit_and_never_pass_it(budget: Harness) -> None:
    h = budget
    first = _lease(h, want=20_000)["leases"]["stripe-daily"]
    assert (first["amount"], first["request"]) == (22_500, 2500)  # asked for, in whole requests
    state = budget_state(h, "stripe-daily")
    assert (state["used"], state["leased"], state["remaining"]) == (0, 22_500, 77_500)
    granted = [first["amount"]]
    while True:  # ask for everything each time: a quarter of what remains, then the request
        answer = _lease(h, want=1e9)
        if answer["refused"]:
            break
        granted.append(answer["leases"]["stripe-daily"]["amount"])
        assert granted[-1] <= 2500 + (100_000 - sum(granted[:-1]) - 2500) * 0.25
    assert sum(granted) == 100_000  # exactly the limit, in whole transfers
    refused = answer["refused"]
    assert refused["budget"] == "stripe-daily"
    assert "budget `stripe-daily` exceeded: 100000 of 100000 usd used" in refused["reason"]
    assert refused["retry"] is True  # the live slices could come back
    state = budget_state(h, "stripe-daily")
    assert (state["used"], state["leased"], state["remaining"]) == (0, 100_000, 0)


def test_reports_move_spend_and_hand_slices_back(budget: Harness) -> None:
    h = budget
    lease = _lease(h, want=20_000)["leases"]["stripe-daily"]["lease"]
    assert _report(h, {"lease": lease, "spent": {"Finance-Bot": 5000}}) == 1
    state = budget_state(h, "stripe-daily")
    assert (state["used"], state["leased"], state["by_agent"]) == (
        5000,
        17_500,
        {"Finance-Bot": 5000},
    )
    assert _report(h, {"lease": lease, "spent": {"Finance-Bot": 5000}}) == 0  # sent twice
    done = {"lease": lease, "spent": {"Finance-Bot": 7500}, "freed": 2500, "done": True}
    assert _report(h, done) == 1
    state = budget_state(h, "stripe-daily")
    assert (state["used"], state["leased"], state["remaining"]) == (7500, 0, 92_500)
    assert _report(h, done) == 0  # closed: nothing changes
    whole = _lease(h, amount=92_500)
    assert whole["refused"] is None  # the handed-back slice is spendable again
    assert _lease(h, amount=1)["refused"]["retry"] is True  # if that slice came back
    lease = whole["leases"]["stripe-daily"]["lease"]
    _report(h, {"lease": lease, "spent": {"Finance-Bot": 92_500}, "done": True})
    assert _lease(h, amount=1)["refused"]["retry"] is False  # nothing could come back


Report = tuple[int, int, bool]  # cumulative (spent, freed), done


@settings(
    max_examples=examples(8),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=6),
    order=st.randoms(use_true_random=False),
)
def test_cumulative_reports_in_any_order_count_the_most_reported(
    budget: Harness, steps: list[tuple[int, int]], order: Any
) -> None:
    """Reports are cumulative: sent twice, late or out of order, the budget counts the
    largest spend reported, never more than was leased, and closing returns the rest."""
    h = budget
    assert h.admin("DELETE", "/v1/budgets/stripe-daily").status_code == 200  # a fresh one
    with_budget(h, "stripe-daily", STRIPE)
    answer = _lease(h, amount=100, want=10_000)["leases"]["stripe-daily"]
    lease, granted = answer["lease"], answer["amount"]
    assert granted == 10_100
    spent = freed = 0
    reports = []
    for more_spent, more_freed in steps:  # the gateway's totals only grow
        spent, freed = spent + more_spent * 100, freed + more_freed * 100
        reports.append({"lease": lease, "spent": {"Finance-Bot": spent}, "freed": freed})
    shuffled = reports + reports[: len(reports) // 2]
    order.shuffle(shuffled)
    for item in shuffled:
        _report(h, item)
    state = budget_state(h, "stripe-daily")
    assert state["used"] == spent  # the largest cumulative spend, counted once
    assert state["leased"] == granted - spent - freed
    _report(h, {**reports[-1], "done": True})
    state = budget_state(h, "stripe-daily")
    assert (state["used"], state["leased"]) == (spent, 0)


BAD_REPORTS: list[Any] = [
    {"reports": [{"lease": "lse_1", "spent": {"a": -1}}]},
    {"reports": [{"lease": "lse_1", "spent": {}, "freed": "lots"}]},
    {"reports": [{"lease": "", "spent": {}}]},
    {"reports": [{"lease": "lse_1", "spent": {}, "extra": 1}]},
    {"reports": "all"},
]


def test_bad_reports_are_422(budget: Harness) -> None:
    for body in BAD_REPORTS:  # one harness for all (a server start each would cost more)
        answer = budget.gateway("POST", "/v1/gateway/budgets/leases/report", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]


def test_bad_leases_are_422_and_need_the_gateway_token(budget: Harness) -> None:
    body = {"agent": "Finance-Bot", "connector": "stripe", "action": "stripe.transfer.create",
            "parameters": {"amount": 1, "currency": "usd"}}  # fmt: skip
    for bad in ({"want": {"stripe-daily": -5}}, {"want": {"Bad Name": 1}}, {"agent": ""}):
        answer = budget.gateway("POST", "/v1/gateway/budgets/lease", json=body | bad)
        assert answer.status_code == 422, answer.text
    answer = budget.admin("POST", "/v1/gateway/budgets/lease", json=body)
    assert answer.status_code in (401, 403)
    # a covered request that does not say how much: refused, naming the budget
    missing = body | {"parameters": {"currency": "usd"}}
    answer = budget.gateway("POST", "/v1/gateway/budgets/lease", json=missing).json()
    assert "parameter `amount` is not a number" in answer["refused"]["reason"]
