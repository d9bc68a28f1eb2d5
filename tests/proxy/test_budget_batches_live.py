"""A JSON-RPC batch spends from budgets per member, through a real gateway and control plane
(DESIGN.md section 7, guarantee 1; the units: ``test_budget_members.py``).

Budgets matched a batch by its own name, ``mcp.rpc.batch``: once a ``count`` budget of 2 and
a ``sum`` budget of 100 on ``mcp.tools.transfer`` were spent, a batch of five transfers of
1,000,000 was still forwarded, and counted nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentfirewall_proxy.control import HttpControl
from tests.batchhold import add_payer, proxied, transfer
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import RunningGateway, ca_bundle, gateway_options

URL = "https://mcp.example.com/mcp"


@pytest.fixture
def payer(live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path) -> Iterator[httpx.Client]:
    server = live_server
    key = add_payer(server)
    for name, extra in (("transfers-count", {"limit": 2}),
                        ("transfers-sum", {"measure": "sum", "limit": 100})):  # fmt: skip
        budget = {"connector": "mcp", "action": "mcp.tools.transfer", **extra}
        assert server.admin("PUT", f"/v1/budgets/{name}", json=budget).status_code == 201
    control = HttpControl(server.url, server.gateway_token)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    deadline = time.monotonic() + 20
    while not (running.gateway and running.gateway.config and running.gateway.config.budgets):
        assert time.monotonic() < deadline, "the gateway never got its budgets"
        time.sleep(0.05)
    bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")
    client = proxied(running.proxy_url(key, "Payer"), bundle)
    try:
        yield client
    finally:
        client.close()
        running.stop()


def test_a_batch_spends_per_member_and_one_past_the_budget_sends_nothing(
    payer: httpx.Client, fakes: FakeUpstreams
) -> None:
    upstream = fakes["mcp"]
    upstream.clear()
    ok = payer.post(URL, json=[transfer(1, amount=40), transfer(2, amount=40)])
    assert ok.status_code < 300, ok.text
    assert len(upstream.requests) == 1
    # the batch spent both calls of the count budget: a single transfer is past it now
    single = payer.post(URL, json=transfer(3, amount=1))
    assert single.status_code == 403
    assert "budget `transfers-count` exceeded" in single.text
    big = payer.post(URL, json=[transfer(10 + i, amount=1_000_000, to="x") for i in range(5)])
    assert big.status_code == 403
    assert "budget_exceeded" in big.text
    assert len(upstream.requests) == 1  # nothing of either refusal went upstream
