"""LLM budgets with the official `anthropic` client through the gateway, streamed and not,
against the fake Anthropic returning `usage` (cache tokens included; streamed: input in
``message_start``, output in ``message_delta``): tokens and cost settle from the response,
and a spent budget refuses the next call naming the budget."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from agentfirewall_proxy.control import HttpControl
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, PLACEHOLDER, RunningGateway, ca_bundle, gateway_options
from tests.proxy.test_llm_budgets_live import poll

USAGE = {"input_tokens": 200, "cache_read_input_tokens": 100, "output_tokens": 100}
PRICES = {"claude-sonnet-4*": {"input": 1000.0, "output": 2000.0}}  # usd per 1M tokens
PER_CALL = (300 * 1000 + 100 * 2000) / 1_000_000  # 0.5 usd
MODEL = "claude-sonnet-4-5"


@pytest.fixture
def client(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[anthropic.Anthropic]:
    fakes["anthropic"].settings["usage"] = USAGE
    key = live_server.create_agent("Claude-Bot")
    connector = {"type": "anthropic", "token": CREDENTIALS["anthropic"]}
    assert live_server.admin("POST", "/v1/connectors", json=connector).status_code == 201
    rule = {"agent": "Claude-Bot", "connector": "anthropic", "action_pattern": "anthropic.*",
            "decision": "allow"}  # fmt: skip
    assert live_server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    budgets = {
        "claude-tokens": {"connector": "anthropic", "measure": "tokens", "window": "day",
                          "limit": 1000},
        "claude-spend": {"connector": "anthropic", "measure": "cost", "limit": 1.2,
                         "window": "calendar_month", "timezone": "Europe/Berlin"},
    }  # fmt: skip
    for name, body in budgets.items():
        assert live_server.admin("PUT", f"/v1/budgets/{name}", json=body).status_code == 201
    assert live_server.admin("PUT", "/v1/llm-prices", json={"prices": PRICES}).status_code == 200
    control = HttpControl(live_server.url, live_server.gateway_token)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    poll(lambda: running.gateway and running.gateway.config and running.gateway.config.budgets)
    bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")
    # the client's own HTTP stack (recent releases use `httpx2`, not `httpx`)
    verify = ssl.create_default_context(cafile=str(bundle))
    proxy = running.proxy_url(key, "Claude-Bot")
    http = anthropic.DefaultHttpxClient(proxy=proxy, trust_env=False, verify=verify)
    try:
        yield anthropic.Anthropic(api_key=PLACEHOLDER, http_client=http, max_retries=0)
    finally:
        http.close()
        running.stop()
        fakes["anthropic"].settings.pop("usage", None)


def _used(server: LiveServer, name: str, expected: float) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        state: dict[str, Any] = server.admin("GET", f"/v1/budgets/{name}").json()["state"]
        return (
            state if state["in_flight"] == 0 and state["used"] == pytest.approx(expected) else None
        )

    found: dict[str, Any] = poll(settled)
    return found


MESSAGES: Any = [{"role": "user", "content": "hi"}]


def _streamed(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as events:
        events.get_final_message()


def _once(client: anthropic.Anthropic) -> None:
    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)


def _refused(client: anthropic.Anthropic, *, stream: bool) -> str:
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
    _used(live_server, "claude-tokens", 400)  # cache reads count as input
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 100  # from message_delta (message_start said 1)
    _used(live_server, "claude-tokens", 800)
    _used(live_server, "claude-spend", 2 * PER_CALL)
    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)  # 200 remain: goes
    state = _used(live_server, "claude-tokens", 1200)
    assert state["by_agent"] == {"Claude-Bot": 1200}
    assert _used(live_server, "claude-spend", 3 * PER_CALL)["remaining"] == pytest.approx(-0.3)
    # both spent, both deny: the refusal names one of them, streamed or not
    assert "budget `claude-" in _refused(client, stream=True)
    assert live_server.admin("DELETE", "/v1/budgets/claude-tokens").status_code == 200
    reason = _refused(client, stream=False)
    assert "budget `claude-spend` exceeded: 1.5 of 1.2 usd used this month" in reason
    _used(live_server, "claude-spend", 3 * PER_CALL)  # refusals spend nothing
