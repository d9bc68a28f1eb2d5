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

from agentfirewall_proxy import budgets
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


def llm_gateway(
    server: LiveServer,
    fakes: FakeUpstreams,
    tmp_path: Path,
    *,
    agent: str,
    connector: str,
    budgets: dict[str, dict[str, Any]],
    prices: dict[str, dict[str, float]],
) -> tuple[RunningGateway, str, ssl.SSLContext]:
    """The real gateway for `agent` on an LLM `connector` allowed everything, with `budgets`
    and `prices` set: the gateway, the agent's proxy URL and a context trusting its CA."""
    key = server.create_agent(agent)
    body = {"type": connector, "token": CREDENTIALS[connector]}
    assert server.admin("POST", "/v1/connectors", json=body).status_code == 201
    rule = {"agent": agent, "connector": connector, "action_pattern": f"{connector}.*",
            "decision": "allow"}  # fmt: skip
    assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    for name, budget in budgets.items():
        assert server.admin("PUT", f"/v1/budgets/{name}", json=budget).status_code == 201
    assert server.admin("PUT", "/v1/llm-prices", json={"prices": prices}).status_code == 200
    control = HttpControl(server.url, server.gateway_token)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    poll(lambda: running.gateway and running.gateway.config and running.gateway.config.budgets)
    bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")
    return running, running.proxy_url(key, agent), ssl.create_default_context(cafile=str(bundle))


@pytest.fixture
def client(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[openai.OpenAI]:
    fakes["openai"].settings["usage"] = USAGE
    budgets = {
        "llm-tokens": {"connector": "openai", "measure": "tokens", "window": "day",
                       "limit": 1000},
        "llm-spend": {"connector": "openai", "measure": "cost", "limit": 10,
                      "window": "calendar_month", "timezone": "America/New_York"},
    }  # fmt: skip
    running, proxy, verify = llm_gateway(
        live_server,
        fakes,
        tmp_path,
        agent="Chat-Bot",
        connector="openai",
        budgets=budgets,
        prices=PRICES,
    )
    http = httpx.Client(proxy=proxy, trust_env=False, verify=verify)
    try:
        yield openai.OpenAI(api_key=PLACEHOLDER, http_client=http, max_retries=0)
    finally:
        http.close()
        running.stop()
        fakes["openai"].settings.pop("usage", None)


def budget_used(server: LiveServer, name: str, expected: float) -> dict[str, Any]:
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
    budget_used(live_server, "llm-tokens", 400)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].usage is not None
    budget_used(live_server, "llm-tokens", 800)
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # 200 remain: goes
    state = budget_used(live_server, "llm-tokens", 1200)
    assert state["by_agent"] == {"Chat-Bot": 1200}
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    body = refused.value.response.json()
    assert body["error"] == "budget_exceeded"
    assert "budget `llm-tokens` exceeded: 1200 of 1000 tokens used this day" in body["reason"]
    budget_used(live_server, "llm-spend", 3 * PER_CALL)


def test_calls_one_after_another_stop_at_the_limit(
    live_server: LiveServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call's usage is settled from its answer in the background: the next call, sent
    the moment the previous answered, is checked against it (three calls of 1,000,000
    tokens all passed a 2,000,000 budget when sent back to back on a loaded machine)."""
    monkeypatch.setattr(budgets, "_SETTLE_TICK", 2.0)  # a slow settlement, every time
    messages: Any = [{"role": "user", "content": "hi"}]
    for _ in range(3):  # 400, 800, 1200 of 1000: the third may start (200 remained)
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert refused.value.response.json()["error"] == "budget_exceeded"
    budget_used(live_server, "llm-tokens", 1200)
