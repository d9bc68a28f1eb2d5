"""LLM budgets end to end: the official `openai` client through the gateway, streamed and
not, against the fake OpenAI returning `usage`; tokens and cost settle from the response,
and a spent budget refuses the next call naming the budget."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from agentfirewall_proxy.control import HttpControl
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, PLACEHOLDER, RunningGateway, ca_bundle, gateway_options

USAGE = {"prompt_tokens": 300, "completion_tokens": 100, "total_tokens": 400}
PRICES = {"gpt-4o-mini*": {"input": 1000.0, "output": 2000.0}}  # usd per 1M tokens
PER_CALL = (300 * 1000 + 100 * 2000) / 1_000_000  # 0.5 usd


def poll(fn: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def client(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[openai.OpenAI]:
    fakes["openai"].settings["usage"] = USAGE
    key = live_server.create_agent("Chat-Bot")
    connector = {"type": "openai", "token": CREDENTIALS["openai"]}
    assert live_server.admin("POST", "/v1/connectors", json=connector).status_code == 201
    rule = {"agent": "Chat-Bot", "connector": "openai", "action_pattern": "openai.*",
            "decision": "allow"}  # fmt: skip
    assert live_server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    budgets = {
        "llm-tokens": {"connector": "openai", "measure": "tokens", "window": "day",
                       "limit": 1000},
        "llm-spend": {"connector": "openai", "measure": "cost", "limit": 10,
                      "window": "calendar_month", "timezone": "America/New_York"},
    }  # fmt: skip
    for name, body in budgets.items():
        assert live_server.admin("PUT", f"/v1/budgets/{name}", json=body).status_code == 201
    assert live_server.admin("PUT", "/v1/llm-prices", json={"prices": PRICES}).status_code == 200
    control = HttpControl(live_server.url, live_server.gateway_token)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    poll(lambda: running.gateway and running.gateway.config and running.gateway.config.budgets)
    bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")
    http = httpx.Client(proxy=running.proxy_url(key, "Chat-Bot"), trust_env=False,
                        verify=ssl.create_default_context(cafile=str(bundle)))  # fmt: skip
    try:
        yield openai.OpenAI(api_key=PLACEHOLDER, http_client=http, max_retries=0)
    finally:
        http.close()
        running.stop()
        fakes["openai"].settings.pop("usage", None)


def _used(server: LiveServer, name: str, expected: float) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        state: dict[str, Any] = server.admin("GET", f"/v1/budgets/{name}").json()["state"]
        return (
            state if state["in_flight"] == 0 and state["used"] == pytest.approx(expected) else None
        )

    found: dict[str, Any] = poll(settled)
    return found


def test_token_and_cost_budgets_settle_from_usage(
    live_server: LiveServer, client: openai.OpenAI
) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert answer.usage is not None
    assert answer.usage.total_tokens == 400
    _used(live_server, "llm-tokens", 400)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].usage is not None
    _used(live_server, "llm-tokens", 800)
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # 200 remain: goes
    state = _used(live_server, "llm-tokens", 1200)
    assert state["by_agent"] == {"Chat-Bot": 1200}
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    body = refused.value.response.json()
    assert body["error"] == "budget_exceeded"
    assert "budget `llm-tokens` exceeded: 1200 of 1000 tokens used this day" in body["reason"]
    _used(live_server, "llm-spend", 3 * PER_CALL)
