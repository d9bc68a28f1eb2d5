"""A content rule reading responses leaves LLM token budgets counting, end to end: the real
control plane and gateway, the official `openai` client, the fake OpenAI reporting 400
tokens a call, and docs/policies.md's `cut-injected-tool-output` (it reads every
response's content, and applies to `mcp.` actions only). A 1,000-token budget lets three
calls through and refuses the fourth.

Before: with any rule reading `response.*`, every response took the content-checked path,
which read no `usage`: every call settled at 0 tokens and the budget never filled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import PLACEHOLDER
from tests.proxy.test_llm_budgets_live import PRICES, USAGE, budget_used, llm_gateway, poll
from tests.proxy.test_llm_usage_metered import MCP_ONLY


def test_a_response_rule_leaves_token_budgets_counting(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> None:
    document = {"document": json.dumps(MCP_ONLY)}
    assert live_server.admin("POST", "/v1/policies", json=document).status_code in (200, 201)
    fakes["openai"].settings["usage"] = USAGE
    budget = {"connector": "openai", "measure": "tokens", "window": "day", "limit": 1000}
    running, proxy, verify = llm_gateway(live_server, fakes, tmp_path, agent="Chat-Bot",
                                         connector="openai", budgets={"llm-tokens": budget},
                                         prices=PRICES)  # fmt: skip
    http = httpx.Client(proxy=proxy, trust_env=False, verify=verify)
    try:
        assert running.gateway is not None
        poll(lambda: running.gateway.config.guard.response is not None)  # type: ignore[union-attr]
        client = openai.OpenAI(api_key=PLACEHOLDER, http_client=http, max_retries=0)
        messages: Any = [{"role": "user", "content": "hi"}]
        answered = []
        for _ in range(4):  # 400, 800, 1200 of 1000: the third may start (200 remained)
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=messages)
                answered.append("ok")
            except openai.PermissionDeniedError as exc:
                answered.append(exc.response.json()["error"])
        assert answered == ["ok", "ok", "ok", "budget_exceeded"]
        budget_used(live_server, "llm-tokens", 1200)
    finally:
        http.close()
        running.stop()
        fakes["openai"].settings.pop("usage", None)
