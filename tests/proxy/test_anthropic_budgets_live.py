"""LLM budgets with the official `anthropic` client through the gateway, streamed and not,
against the fake Anthropic returning `usage` (cache tokens included; streamed: input in
``message_start``, output in ``message_delta``): tokens and cost settle from the response,
and a spent budget refuses the next call naming the budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import PLACEHOLDER
from tests.proxy.test_llm_budgets_live import budget_used, llm_gateway

if TYPE_CHECKING:  # imported where used: ~3 s of imports, paid by every worker's collection
    import anthropic

USAGE = {"input_tokens": 200, "cache_read_input_tokens": 100, "output_tokens": 100}
PRICES = {"claude-sonnet-4*": {"input": 1000.0, "output": 2000.0}}  # usd per 1M tokens
PER_CALL = (300 * 1000 + 100 * 2000) / 1_000_000  # 0.5 usd
MODEL = "claude-sonnet-4-5"


@pytest.fixture
def client(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[anthropic.Anthropic]:
    fakes["anthropic"].settings["usage"] = USAGE
    budgets = {
        "claude-tokens": {"connector": "anthropic", "measure": "tokens", "window": "day",
                          "limit": 1000},
        "claude-spend": {"connector": "anthropic", "measure": "cost", "limit": 1.2,
                         "window": "calendar_month", "timezone": "Europe/Berlin"},
    }  # fmt: skip
    running, proxy, verify = llm_gateway(
        live_server,
        fakes,
        tmp_path,
        agent="Claude-Bot",
        connector="anthropic",
        budgets=budgets,
        prices=PRICES,
    )
    import anthropic

    # the client's own HTTP stack (recent releases use `httpx2`, not `httpx`)
    http = anthropic.DefaultHttpxClient(proxy=proxy, trust_env=False, verify=verify)
    try:
        yield anthropic.Anthropic(api_key=PLACEHOLDER, http_client=http, max_retries=0)
    finally:
        http.close()
        running.stop()
        fakes["anthropic"].settings.pop("usage", None)


MESSAGES: Any = [{"role": "user", "content": "hi"}]


def _streamed(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as events:
        events.get_final_message()


def _once(client: anthropic.Anthropic) -> None:
    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)


def _refused(client: anthropic.Anthropic, *, stream: bool) -> str:
    import anthropic

    call = _streamed if stream else _once
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        call(client)
    body = refused.value.response.json()
    assert body["error"] == "budget_exceeded"
    reason: str = body["reason"]
    return reason


def test_token_and_cost_budgets_settle_from_anthropic_usage(
    live_server: LiveServer, client: anthropic.Anthropic
) -> None:
    answer = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (200, 100)
    budget_used(live_server, "claude-tokens", 400)  # cache reads count as input
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 100  # from message_delta (message_start said 1)
    budget_used(live_server, "claude-tokens", 800)
    budget_used(live_server, "claude-spend", 2 * PER_CALL)
    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)  # 200 remain: goes
    state = budget_used(live_server, "claude-tokens", 1200)
    assert state["by_agent"] == {"Claude-Bot": 1200}
    assert budget_used(live_server, "claude-spend", 3 * PER_CALL)["remaining"] == pytest.approx(
        -0.3
    )
    # both spent, both deny: the refusal names one of them, streamed or not
    assert "budget `claude-" in _refused(client, stream=True)
    assert live_server.admin("DELETE", "/v1/budgets/claude-tokens").status_code == 200
    reason = _refused(client, stream=False)
    assert "budget `claude-spend` exceeded: 1.5 of 1.2 usd used this month" in reason
    budget_used(live_server, "claude-spend", 3 * PER_CALL)  # refusals spend nothing
