"""Leased budget slices through a real gateway and control plane (``budgetlease.py``).

A ``count`` budget on a generic connector aimed at the fake GitHub: requests are debited
from the gateway's slice (a handful of lease calls for many requests, none per request),
the limit is exact (slices shrink to the request near it), failed upstream calls give
their amount back, reports make ``used`` truthful, and a budget removed and set again is
never spent from an old slice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import HttpControl
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import RunningGateway, gateway_options


class CountingControl(HttpControl):
    """The real HTTP control, counting the budget calls the gateway makes."""

    leases = 0
    reserves = 0

    async def lease_budget(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.leases += 1
        return await super().lease_budget(payload)

    async def reserve_budget(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.reserves += 1
        return await super().reserve_budget(payload)


@pytest.fixture
def setup(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[tuple[httpx.Client, CountingControl, RunningGateway, str]]:
    key = live_server.create_agent("Lease-Bot")
    base = fakes["github"].http_url
    connector = {"type": "generic", "name": "leased", "token": "upstream-secret",
                 "domains": ["127.0.0.1"], "base_url": base}  # fmt: skip
    assert live_server.admin("POST", "/v1/connectors", json=connector).status_code == 201
    rule = {"agent": "Lease-Bot", "connector": "generic", "action_pattern": "generic.*",
            "decision": "allow"}  # fmt: skip
    assert live_server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    control = CountingControl(live_server.url, live_server.gateway_token)
    running = RunningGateway(gateway_options(tmp_path, None), control).start()
    http = httpx.Client(proxy=running.proxy_url(key, "Lease-Bot"), trust_env=False, timeout=30)
    fakes["github"].settings["responses"] = {("GET", "/fail"): (500, {"message": "outage"})}
    try:
        yield http, control, running, base
    finally:
        http.close()
        running.stop()
        fakes["github"].settings.pop("responses", None)


def _budget(server: LiveServer, running: RunningGateway, limit: int) -> None:
    """Set the budget and wait until the gateway's snapshot has this very one."""

    def keys() -> set[str]:  # the definitions the gateway knows (id/digest)
        config = running.gateway.config if running.gateway else None
        return {s.id for s in config.budgets} if config is not None else set()

    before = keys()
    body = {"connector": "generic", "measure": "count", "window": "day", "limit": limit}
    answer = server.admin("PUT", "/v1/budgets/leased", json=body)
    assert answer.status_code in (200, 201), answer.text
    ident = answer.json()["id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(k.startswith(f"{ident}/") and k not in before for k in keys()):
            return
        time.sleep(0.05)
    raise AssertionError("the gateway never got the budget")


def _state(server: LiveServer) -> dict[str, Any]:
    state: dict[str, Any] = server.admin("GET", "/v1/budgets/leased").json()["state"]
    return state


def _reported(server: LiveServer, used: float) -> dict[str, Any]:
    """The state once the gateway handed its slices back and reported (idle: < 2 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = _state(server)
        if state["leased"] == 0 and state["in_flight"] == 0 and state["used"] == used:
            return state
        time.sleep(0.1)
    raise AssertionError(f"never reported: {_state(server)}")


def test_a_count_budget_is_spent_from_leased_slices(
    live_server: LiveServer, setup: tuple[httpx.Client, CountingControl, RunningGateway, str]
) -> None:
    http, control, running, base = setup
    _budget(live_server, running, 40)
    outcomes = [http.get(f"{base}/user").status_code for _ in range(40)]
    assert outcomes == [200] * 40
    assert control.reserves == 0  # no per-request reservation
    assert control.leases < 15  # a few leases for 40 (slices shrink near the limit)
    outcomes = [http.get(f"{base}/user").status_code for _ in range(5)]
    assert outcomes == [403] * 5  # exactly the limit, never past it
    state = _reported(live_server, 40)
    assert state["remaining"] == 0
    refused = http.get(f"{base}/user")
    assert refused.status_code == 403
    assert refused.json()["error"] == "budget_exceeded"
    assert "budget `leased` exceeded" in refused.json()["reason"]

    # removed and set again: another budget, never spent from the old slices
    assert live_server.admin("DELETE", "/v1/budgets/leased").status_code == 200
    _budget(live_server, running, 6)
    statuses = [http.get(f"{base}/fail").status_code for _ in range(4)]
    assert statuses == [500] * 4  # failed upstream calls give their amount back
    statuses = [http.get(f"{base}/user").status_code for _ in range(10)]
    assert (statuses.count(200), statuses.count(403)) == (6, 4)
    state = _reported(live_server, 6)
    assert state["by_agent"] == {"Lease-Bot": 6}

    # a limit lowered under a live slice: the slice is the old definition's, not spent from
    assert live_server.admin("DELETE", "/v1/budgets/leased").status_code == 200
    _budget(live_server, running, 1000)
    assert [http.get(f"{base}/user").status_code for _ in range(3)] == [200] * 3
    assert _state(live_server)["leased"] > 3  # a slice larger than what was spent is live
    _budget(live_server, running, 2)
    assert http.get(f"{base}/user").status_code == 403
    _reported(live_server, 3)
