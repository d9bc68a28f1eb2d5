"""Budgets on both engines: the admin API, reserve/settle through the Gateway API, windows.

Reservations from many threads through two apps sharing one database (two replicas on
PostgreSQL) never overspend; failed calls release; LLM budgets settle from ``usage``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agentfirewall.budgets import BudgetDef, window_end, window_start
from tests.scale.conftest import replica_keys
from tests.server.conftest import Harness

STRIPE = {"agents": ["Finance-Bot"], "connector": "stripe", "action": "stripe.transfer.*",
          "measure": "sum", "currency": "usd", "limit": 100_000}  # fmt: skip


def _reserve(h: Harness, amount: int | None = 2500, **extra: Any) -> dict[str, Any]:
    parameters: dict[str, Any] = {"currency": "usd"}
    if amount is not None:
        parameters["amount"] = amount
    body = {"agent": "Finance-Bot", "connector": "stripe", "action": "stripe.transfer.create",
            "parameters": parameters, **extra}  # fmt: skip
    answer = h.gateway("POST", "/v1/gateway/budgets/reserve", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _settle(h: Harness, reservation: str, ok: bool, **extra: Any) -> int:
    body = {"reservation": reservation, "ok": ok, **extra}
    answer = h.gateway("POST", "/v1/gateway/budgets/settle", json=body)
    assert answer.status_code == 200, answer.text
    settled: int = answer.json()["settled"]
    return settled


def _state(h: Harness, name: str) -> dict[str, Any]:
    answer = h.admin("GET", f"/v1/budgets/{name}")
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()["state"]
    return state


BAD = [
    ("Bad Name", STRIPE, "name"),
    ("b", {**STRIPE, "measure": "tokens"}, None),
    ("b", {**STRIPE, "measure": "count", "parameter": "amount"}, None),
    ("b", {**STRIPE, "timezone": "Mars/Olympus"}, "timezone"),
    ("b", {**STRIPE, "limit": 0}, "limit"),
    ("b", {**STRIPE, "window": "fortnight"}, "window"),
    ("b", {**STRIPE, "action": "Stripe.*"}, "action"),
    ("b", {**STRIPE, "outcome": "shrug"}, "outcome"),
    ("b", {**STRIPE, "surprise": 1}, "surprise"),
    ("b", {k: v for k, v in STRIPE.items() if k != "limit"}, "limit"),
]


def test_admin_api_and_bad_input(harness: Harness) -> None:
    h = harness
    created = h.admin("PUT", "/v1/budgets/stripe-daily", json=STRIPE)
    assert created.status_code == 201, created.text
    assert created.json()["window"] == "calendar_day"
    again = h.admin("PUT", "/v1/budgets/stripe-daily", json={**STRIPE, "limit": 50_000})
    assert again.status_code == 200
    listed = h.admin("GET", "/v1/budgets").json()["budgets"]
    assert [(b["name"], b["limit"], b["state"]["used"]) for b in listed] == [
        ("stripe-daily", 50_000, 0)]  # fmt: skip
    for name, body, field in BAD:
        answer = h.admin("PUT", f"/v1/budgets/{name.replace(' ', '%20')}", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json().get("field") == field, (body, answer.json())
    assert h.admin("GET", "/v1/budgets/nothing").status_code == 404
    assert h.admin("DELETE", "/v1/budgets/stripe-daily").status_code == 200
    assert h.admin("GET", "/v1/budgets").json()["budgets"] == []
    config = h.gateway("GET", "/v1/gateway/config").json()
    assert config["budgets"] == []
    agent = h.create_agent("Finance-Bot")
    assert h.agent(agent, "GET", "/v1/budgets").status_code == 403


def test_reservations_across_two_apps_never_overspend(
    harness_factory: Any, database_url: str
) -> None:
    """64 threads, two apps on one PostgreSQL database (one app on SQLite, which serves
    one server per file): exactly 40 of the $25 reservations fit."""
    keys = replica_keys()  # two replicas: the same keys
    first: Harness = harness_factory("a", **keys)
    second: Harness = first if database_url.startswith("sqlite") else harness_factory("b", **keys)
    assert first.admin("PUT", "/v1/budgets/stripe-daily", json=STRIPE).status_code == 201
    deadline = time.monotonic() + 30
    while "stripe-daily" not in second.state.snapshot.budgets:  # the other app follows
        assert time.monotonic() < deadline, "the second app never saw the budget"
        time.sleep(0.05)
    barrier = threading.Barrier(64)

    def one(index: int) -> dict[str, Any]:
        barrier.wait(30)
        return _reserve(first if index % 2 else second, request_id=f"r{index}")

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(64)))
    reserved = [a["reservation"] for a in answers if a["reservation"]]
    refused = [a["refused"] for a in answers if a["refused"]]
    assert (len(reserved), len(refused)) == (40, 24)
    assert {r["budget"] for r in refused} == {"stripe-daily"}
    assert all("budget `stripe-daily` exceeded" in r["reason"] for r in refused)
    assert _state(first, "stripe-daily")["in_flight"] == 100_000
    for index, reservation in enumerate(reserved):  # every fourth upstream call failed
        assert _settle(first, reservation, ok=index % 4 != 0) == 1
    assert _settle(first, reserved[0], ok=True) == 0  # settled once
    state = _state(second, "stripe-daily")
    assert (state["used"], state["in_flight"], state["requests"]) == (75_000, 0, 30)
    assert state["by_agent"] == {"Finance-Bot": 75_000}
    assert _reserve(second, 25_000)["reservation"] is not None  # the released room is back
    assert _reserve(second, 1)["refused"]["outcome"] == "deny"
    metrics = second.admin("GET", "/metrics").text
    assert 'aaf_budget_refusals_total{budget="stripe-daily",outcome="deny"}' in metrics
    assert 'aaf_budget_limit{budget="stripe-daily"} 100000.0' in metrics


def test_fail_closed_and_outcomes(harness: Harness) -> None:
    h = harness
    held = {**STRIPE, "outcome": "require_approval", "limit": 5000}
    assert h.admin("PUT", "/v1/budgets/stripe-held", json=held).status_code == 201
    missing = _reserve(h, None)
    assert missing["refused"]["outcome"] == "deny"
    assert "parameter `amount` is not a number" in missing["refused"]["reason"]
    assert _reserve(h, -5)["refused"]["outcome"] == "deny"
    over = _reserve(h, 6000)
    assert over["refused"]["outcome"] == "require_approval"
    forced = _reserve(h, 6000, force=True)  # a human approved it: recorded past the limit
    assert forced["remaining"] == {"stripe-held": -1000}
    hard = {**STRIPE, "limit": 1000}
    assert h.admin("PUT", "/v1/budgets/stripe-hard", json=hard).status_code == 201
    both = _reserve(h, 2000, force=True)  # past both: a deny budget is never forced
    assert both["refused"] == {"budget": "stripe-hard", "outcome": "deny",
                               "reason": both["refused"]["reason"]}  # fmt: skip
    eur = h.gateway("POST", "/v1/gateway/budgets/reserve", json={
        "agent": "Finance-Bot", "connector": "stripe", "action": "stripe.transfer.create",
        "parameters": {"amount": 10**9, "currency": "eur"}}).json()  # fmt: skip
    assert eur == {"reservation": None, "refused": None, "remaining": {}}
    bad = h.gateway("POST", "/v1/gateway/budgets/reserve", json={"agent": "x"})
    assert bad.status_code == 422
    assert h.admin("POST", "/v1/gateway/budgets/reserve", json={}).status_code == 403


def test_llm_tokens_and_cost_settle_from_usage(harness: Harness) -> None:
    h = harness
    tokens = {"connector": "openai", "action": "openai.*", "measure": "tokens",
              "window": "hour", "limit": 1000}  # fmt: skip
    cost = {"connector": "openai", "measure": "cost", "window": "calendar_month",
            "timezone": "America/New_York", "limit": 1.0,
            "outcome": "require_approval"}  # fmt: skip
    assert h.admin("PUT", "/v1/budgets/llm-tokens", json=tokens).status_code == 201
    assert h.admin("PUT", "/v1/budgets/llm-spend", json=cost).status_code == 201
    prices = {"prices": {"gpt-4o*": {"input": 100.0, "output": 400.0}}}
    assert h.admin("PUT", "/v1/llm-prices", json=prices).status_code == 200
    assert h.admin("PUT", "/v1/llm-prices", json={"prices": {"a*b": {"input": 1, "output": 1}}}
                   ).status_code == 422  # fmt: skip

    def call(usage: dict[str, int]) -> dict[str, Any]:
        answer = h.gateway("POST", "/v1/gateway/budgets/reserve", json={
            "agent": "Bot", "connector": "openai", "action": "openai.chat.create",
            "parameters": {"model": "gpt-4o-mini"}}).json()  # fmt: skip
        if answer["reservation"]:
            _settle(h, answer["reservation"], True, model="gpt-4o-mini", usage=usage)
        return answer

    call({"prompt_tokens": 300, "completion_tokens": 200})  # openai's names
    call({"input_tokens": 400, "output_tokens": 100})  # anthropic's and responses'
    assert _state(h, "llm-tokens")["used"] == 1000
    assert _state(h, "llm-spend")["used"] == pytest.approx((700 * 100 + 300 * 400) / 1e6)
    refused = call({"prompt_tokens": 1})
    assert refused["refused"]["budget"] == "llm-tokens"
    assert "1000 of 1000 tokens used this hour" in refused["refused"]["reason"]


def test_settlements_in_one_batch(harness: Harness) -> None:
    """The gateway settles the reservations of the same moment in one call."""
    h = harness
    assert h.admin("PUT", "/v1/budgets/stripe-daily", json=STRIPE).status_code == 201
    kept, released = _reserve(h)["reservation"], _reserve(h)["reservation"]
    batch = {"settlements": [{"reservation": kept, "ok": True},
                             {"reservation": released, "ok": False}]}  # fmt: skip
    answer = h.gateway("POST", "/v1/gateway/budgets/settle/batch", json=batch)
    assert answer.json() == {"settled": 2}
    state = _state(h, "stripe-daily")
    assert (state["used"], state["in_flight"]) == (2500, 0)
    again = h.gateway("POST", "/v1/gateway/budgets/settle/batch", json=batch)
    assert again.json() == {"settled": 0}  # sent twice: nothing changes
    for bad in ({"settlements": [{"reservation": kept}]}, {"settlements": "all"}, {}):
        answer = h.gateway("POST", "/v1/gateway/budgets/settle/batch", json=bad)
        assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(
    ("window", "zone", "at", "start", "end"),
    [
        ("calendar_day", "Europe/Paris", "2026-03-29T12:00:00+02:00",
         "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),  # DST starts that day
        ("calendar_month", "America/New_York", "2026-12-01T03:00:00+00:00",
         "2026-11-01T00:00:00-04:00", "2026-12-01T00:00:00-05:00"),  # still November there
        ("calendar_month", "UTC", "2026-12-31T23:59:59+00:00",
         "2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
    ],
)  # fmt: skip
def test_calendar_windows(window: str, zone: str, at: str, start: str, end: str) -> None:
    budget = BudgetDef.model_validate({**STRIPE, "name": "x", "window": window,
                                       "timezone": zone})  # fmt: skip
    moment = datetime.fromisoformat(at).timestamp()
    assert window_start(budget, moment) == datetime.fromisoformat(start).timestamp()
    assert window_end(budget, moment) == datetime.fromisoformat(end).timestamp()
    assert datetime.fromtimestamp(window_start(budget, moment), ZoneInfo(zone)).hour == 0


def test_rolling_windows() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    for window, seconds in (("minute", 60), ("hour", 3600), ("day", 86400)):
        budget = BudgetDef.model_validate({**STRIPE, "name": "x", "window": window})
        assert window_start(budget, moment) == moment - seconds
        assert window_end(budget, moment) is None
