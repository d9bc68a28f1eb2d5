"""`tf up --upstream-ca FILE` is trusted by the control plane it runs too, not the gateway only.

An SDK action in Mode A is executed by the control plane (`POST /api/v1/actions/{id}/execute`);
`tf up` built that control plane's settings without the CA, so an execution against an
upstream signed by it failed 502 ``upstream_unreachable`` unless the undocumented
``AGENTFIREWALL_UPSTREAM_CA`` was also set. Without the option, that variable still counts.
In process (`run_up`), against a fake upstream whose certificate only that CA signed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.up import UpInfo, UpOptions, run_up
from tests.fakes import FakeUpstreams

BALANCE = {"type": "stripe.balance.get", "parameters": {},
           "resource": {"provider": "stripe", "account": "acct", "target": "balance",
                        "environment": "production"}}  # fmt: skip


async def _execute(info: UpInfo, stripe_url: str) -> httpx.Response:
    """Connector and agent made as an admin, then the agent's action executed."""
    admin = {"Authorization": f"Bearer {(info.state_dir / 'admin.token').read_text().strip()}"}
    async with httpx.AsyncClient(base_url=info.server_url + "/api/v1", timeout=30) as client:
        made = await client.post(
            "/connectors",
            json={"type": "stripe", "token": "sk_test_vaulted", "base_url": stripe_url},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        agent = await client.post("/agents", json={"name": "Bot"}, headers=admin)
        key = {"Authorization": f"Bearer {agent.json()['api_key']}"}
        decided = (await client.post("/actions", json={"action_spec": BALANCE}, headers=key)).json()
        return await client.post(
            f"/actions/{decided['action_request_id']}/execute",
            json={"decision_token": decided["decision_token"]},
            headers=key,
        )


@pytest.mark.anyio
@pytest.mark.parametrize("given", ["--upstream-ca", "AGENTFIREWALL_UPSTREAM_CA"])
async def test_sdk_executions_trust_the_upstream_ca_tf_up_is_given(
    given: str, upstreams: FakeUpstreams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stripe = upstreams["stripe"]
    stripe.clear()
    if given == "AGENTFIREWALL_UPSTREAM_CA":
        monkeypatch.setenv(given, str(upstreams.ca_path))
    ca = upstreams.ca_path if given == "--upstream-ca" else None
    options = UpOptions(state_dir=tmp_path / ".tf", port=0, proxy_port=0, upstream_ca=ca)
    stop = asyncio.Event()
    answers: list[Any] = []

    async def execute(info: UpInfo) -> None:
        try:
            answers.append(await _execute(info, stripe.url))
        finally:
            stop.set()

    tasks: list[asyncio.Task[None]] = []
    await run_up(options, lambda info: tasks.append(asyncio.ensure_future(execute(info))), stop)
    await asyncio.gather(*tasks)
    (executed,) = answers
    assert executed.status_code == 200, executed.text
    assert executed.json()["result"]["status_code"] == 200
    (seen,) = stripe.received("GET", "/v1/balance")
    assert seen.header("authorization") == "Bearer sk_test_vaulted"
