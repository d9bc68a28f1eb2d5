"""Budgets attacked as a hostile agent, a fuzzer and the calendar would (SQLite and PostgreSQL).

- An amount no float holds (``10**400``, a JSON integer Python reads exactly) raised
  ``OverflowError`` in the spend rule: a 500 from the control plane's reserve, lease and
  ``POST /api/v1/actions`` (and an error at the gateway). Now such a request is refused
  naming the budget and the parameter, as any amount that cannot be spent is.
- A calendar window in a zone whose clocks go back at 01:00 to midnight (America/Havana)
  started its day again at the second midnight: the first hour's spend dropped out of the
  day, and the budget could be spent twice over. Now a day starts at its first midnight.
- A lease of an LLM (``tokens``/``cost``) budget with nothing left was granted where a
  reservation is refused: the lease checked the limit by its own rule. Now both ask the
  core's one rule (``agentfirewall.budgets.refusal``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.budgets import BudgetDef, window_end, window_start
from agentfirewall.budgetspend import spend_of
from tests.server.budgetharness import budget_state, with_budget
from tests.server.conftest import Harness

STRIPE = {"agents": ["Bot"], "connector": "stripe", "action": "stripe.transfer.*",
          "measure": "sum", "currency": "usd", "limit": 100_000}  # fmt: skip
LLM = {"connector": "openai", "measure": "tokens", "limit": 100, "window": "day"}
#: Zones whose midnight comes twice or never on some day, and two plain ones.
ZONES = ["America/Havana", "America/Santiago", "Asia/Gaza", "America/Asuncion",
         "Europe/Paris", "UTC"]  # fmt: skip
HAVANA_SECOND_MIDNIGHT = datetime(2025, 11, 2, 5, 30, tzinfo=UTC).timestamp()
HUGE = st.integers(min_value=10**309, max_value=10**600) | st.integers(
    min_value=-(10**600), max_value=-(10**309)
)


def _reserve_body(amount: Any) -> dict[str, Any]:
    return {"agent": "Bot", "connector": "stripe", "action": "stripe.transfer.create",
            "parameters": {"amount": amount, "currency": "usd"}}  # fmt: skip


@given(amount=HUGE)
def test_an_amount_no_float_holds_is_refused_not_an_error(amount: int) -> None:
    cover = spend_of("daily", "sum", None, "usd", {"amount": amount, "currency": "usd"})
    assert cover is not None
    assert cover.problem is not None
    assert cover.problem.startswith("budget `daily`: parameter `amount`")


def test_a_huge_amount_is_refused_on_every_path(harness: Harness) -> None:
    """The gateway's reserve and lease, and an SDK action: refused naming the budget
    (``deny``), nothing spent, never a 500."""
    h = with_budget(harness, "daily", STRIPE)
    huge = 10**400
    for path in ("/v1/gateway/budgets/reserve", "/v1/gateway/budgets/lease"):
        answer = h.gateway("POST", path, json=_reserve_body(huge))
        assert answer.status_code == 200, answer.text
        refused = answer.json()["refused"]
        assert (refused["budget"], refused["outcome"]) == ("daily", "deny")
        assert "parameter `amount` is too large" in refused["reason"]
    key = h.create_agent("Bot")
    spec = {"type": "stripe.transfer.create", "resource": {"provider": "stripe"},
            "parameters": {"amount": huge, "currency": "usd", "destination": "acct_1"}}  # fmt: skip
    answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert answer.status_code < 500, answer.text
    if answer.status_code == 200:
        assert answer.json()["status"] == "denied"
    state = budget_state(h, "daily")
    assert (state["used"], state["leased"]) == (0, 0)


@settings(max_examples=300)
@given(
    zone=st.sampled_from(ZONES),
    window=st.sampled_from(["calendar_day", "calendar_month"]),
    now=st.floats(min_value=1.6e9, max_value=1.9e9),
)
@example(zone="America/Havana", window="calendar_day", now=HAVANA_SECOND_MIDNIGHT)
@example(
    zone="America/Havana",
    window="calendar_month",
    now=datetime(2026, 11, 1, 5, 30, tzinfo=UTC).timestamp(),
)
def test_a_calendar_window_starts_at_the_first_moment_of_its_day(
    zone: str, window: str, now: float
) -> None:
    """The window holding `now` starts at the first moment of its local date (the moment
    before is another date) and ends after `now`: no hour of the day is left out."""
    d = BudgetDef(name="b", connector="stripe", limit=1, window=window, timezone=zone)  # type: ignore[arg-type]
    start, end = window_start(d, now), window_end(d, now)
    assert end is not None
    assert start <= now < end
    tz = ZoneInfo(zone)
    first = datetime.fromtimestamp(start, tz)
    assert datetime.fromtimestamp(start - 1, tz).date() != first.date()
    today = datetime.fromtimestamp(now, tz).date()
    assert first.date() == (today.replace(day=1) if window == "calendar_month" else today)


def test_havana_second_midnight_still_counts_the_first_hour() -> None:
    d = BudgetDef(name="b", connector="stripe", limit=1, timezone="America/Havana")
    first_hour = datetime(2025, 11, 2, 4, 30, tzinfo=UTC).timestamp()  # 00:30, -04:00
    assert window_start(d, HAVANA_SECOND_MIDNIGHT) == window_start(d, first_hour)
    assert window_start(d, HAVANA_SECOND_MIDNIGHT) < first_hour


def test_a_lease_of_a_spent_llm_budget_is_refused_as_a_reservation_is(
    harness: Harness,
) -> None:
    h = with_budget(harness, "tok", LLM)
    body = {"agent": "Bot", "connector": "openai", "action": "openai.chat.create",
            "parameters": {}}  # fmt: skip
    first = h.gateway("POST", "/v1/gateway/budgets/reserve", json=body).json()
    usage = {"prompt_tokens": 60, "completion_tokens": 40}  # exactly the limit
    settled = {"reservation": first["reservation"], "ok": True, "usage": usage}
    assert h.gateway("POST", "/v1/gateway/budgets/settle", json=settled).json()["settled"] == 1
    reserved = h.gateway("POST", "/v1/gateway/budgets/reserve", json=body).json()
    leased = h.gateway("POST", "/v1/gateway/budgets/lease", json=body).json()
    assert reserved["refused"]["budget"] == "tok"
    assert leased["leases"] == {}
    assert leased["refused"]["reason"] == reserved["refused"]["reason"]
    assert leased["refused"]["outcome"] == "deny"


@pytest.mark.parametrize("amount", [-1, -0.5, "5000", True, None, [1, 2], {"value": 1}])
def test_an_amount_that_cannot_be_spent_is_refused(harness: Harness, amount: Any) -> None:
    """Negative, a string, a boolean, missing, a list, an object: refused naming the
    budget, nothing leased (NaN and Infinity are no JSON: refused before, 422)."""
    h = with_budget(harness, "daily", STRIPE)
    body = _reserve_body(amount)
    if amount is None:
        del body["parameters"]["amount"]
    answer = h.gateway("POST", "/v1/gateway/budgets/lease", json=body)
    assert answer.json()["refused"]["budget"] == "daily", answer.text
    assert budget_state(h, "daily")["leased"] == 0
