"""A settlement's LLM ``usage`` is read fail closed, and one settlement never costs the others
theirs (DESIGN.md section 7: fail closed; no 500 on any input), on SQLite and PostgreSQL.

The gateway copies ``usage`` from the upstream's answer as it is: ``prompt_tokens`` of
``10**309`` raised OverflowError, so the whole settle batch was a 500 and every honest
settlement in it was lost (their calls counted 0 tokens); ``1e400`` (infinity) and negative
counts were read as 0. Now a count that is none (past ``MAX_TOKENS``, negative, not finite,
not a number) is read as ``MAX_TOKENS``, logged by field name, and each settlement of a
batch runs in its own savepoint.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agentfirewall_server.llmprices import DEFAULT_PRICES, MAX_TOKENS, cost_of, tokens_of
from agentfirewall_server.routes import budgets as budget_routes
from tests.server.budgetharness import budget_state, with_budget
from tests.server.conftest import Harness

TOKENS = {"connector": "openai", "measure": "tokens", "window": "day", "limit": 10_000}


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (4000, 4000),
        (None, 0),  # absent or null: none used
        (10**309, MAX_TOKENS),  # past float range (OverflowError before)
        (float("inf"), MAX_TOKENS),  # `1e400` in JSON (0 before)
        (float("nan"), MAX_TOKENS),
        (-5, MAX_TOKENS),  # (0 before)
        (MAX_TOKENS + 1, MAX_TOKENS),
        ("4000", MAX_TOKENS),
        (True, MAX_TOKENS),
    ],
    ids=["count", "null", "10**309", "inf", "nan", "negative", "past", "text", "bool"],
)
def test_a_count_that_is_none_is_read_as_the_most(value: object, read: int) -> None:
    odd: list[str] = []
    assert tokens_of({"prompt_tokens": value, "completion_tokens": 1}, odd) == (read, 1)
    assert odd == ([] if read in (4000, 0) else ["prompt_tokens"])
    cost = cost_of(DEFAULT_PRICES, "gpt-4o", {"input_tokens": value})
    assert cost == read * 2.5 / 1_000_000


def _reserve(h: Harness, request_id: str) -> str:
    body = {"agent": "Bot", "connector": "openai", "action": "openai.chat.create",
            "parameters": {}, "request_id": request_id}  # fmt: skip
    reservation: str = h.gateway("POST", "/v1/gateway/budgets/reserve", json=body).json()[
        "reservation"
    ]
    return reservation


@pytest.fixture
def h(harness: Harness) -> Harness:
    return with_budget(harness, "llm-tokens", TOKENS)


def test_an_oversized_usage_is_charged_the_most_and_the_batch_settles(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    honest, poisoned = _reserve(h, "r1"), _reserve(h, "r2")
    settlements = [
        {"reservation": honest, "ok": True, "model": "gpt-4o",
         "usage": {"prompt_tokens": 4000, "completion_tokens": 1000}},
        {"reservation": poisoned, "ok": True, "model": "gpt-4o",
         "usage": {"prompt_tokens": 10**309, "completion_tokens": 1}},
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="agentfirewall_server"):
        answer = h.gateway("POST", "/v1/gateway/budgets/settle/batch",
                           json={"settlements": settlements})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"settled": 2}
    state = budget_state(h, "llm-tokens")
    assert (state["used"], state["in_flight"]) == (5000 + MAX_TOKENS + 1, 0)
    said = [r.getMessage() for r in caplog.records if poisoned in r.getMessage()]
    assert said
    assert "prompt_tokens" in said[0]
    assert "1000000000000000000000" not in said[0]  # the field, not what it held


def test_a_settlement_that_fails_costs_the_others_nothing(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever goes wrong with one (a bug), the others in its batch are settled; it stays
    reserved, counted as it was (never under-count)."""
    first, broken, last = _reserve(h, "r1"), _reserve(h, "r2"), _reserve(h, "r3")
    real = budget_routes.settle

    def settle(conn: Any, reservation: str, *args: Any, **kwargs: Any) -> int:
        if reservation == broken:
            real(conn, reservation, *args, **kwargs)  # (its writes are rolled back)
            raise RuntimeError("a bug")
        return real(conn, reservation, *args, **kwargs)

    monkeypatch.setattr(budget_routes, "settle", settle)
    usage = {"prompt_tokens": 100, "completion_tokens": 10}
    settlements = [{"reservation": r, "ok": True, "model": "gpt-4o", "usage": usage}
                   for r in (first, broken, last)]  # fmt: skip
    answer = h.gateway("POST", "/v1/gateway/budgets/settle/batch",
                       json={"settlements": settlements})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"settled": 2}
    state = budget_state(h, "llm-tokens")
    assert state["used"] == 220  # the two others
    assert state["requests"] == 3  # the broken one still reserved
