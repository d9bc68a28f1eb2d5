"""Traffic the gateway resends because an answer was lost is listed once (a real control
plane): the two ways a batch that arrived is sent again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.traffic import TrafficShipper
from tests.livesrv import LiveServer


def _records(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"{prefix}{i}",
            "agent": "Bot",
            "decision": "allow",
            "created_at": f"2026-12-06T09:00:00.{i:06d}Z",
        }
        for i in range(count)
    ]


def _listed(server: LiveServer, prefix: str) -> list[str]:
    """(Each batch was stored before its answer was written: one read sees all.)"""
    rows = server.admin("GET", "/v1/traffic", params={"limit": 1000}).json()["traffic"]
    return sorted(r["request_id"] for r in rows if r["request_id"].startswith(prefix))


class _AnswerLost(httpx.AsyncBaseTransport):
    """Delivers every request; for the first traffic batch, the answer never comes back
    (`stall`: the call waits forever; else a read timeout, as after a dropped connection)."""

    def __init__(self, *, stall: bool = False) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.stall = stall
        self.delivered = asyncio.Event()
        self.lost = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.real.handle_async_request(request)
        if self.lost or not request.url.path.endswith("/gateway/traffic"):
            return response
        await response.aread()
        assert response.status_code == 200  # the control plane stored the batch
        self.lost = True
        self.delivered.set()
        if self.stall:
            await asyncio.sleep(3600)
        raise httpx.ReadTimeout("the answer was lost", request=request)

    async def aclose(self) -> None:
        await self.real.aclose()


def test_a_batch_resent_after_a_lost_answer_is_listed_once(live_server: LiveServer) -> None:
    prefix = f"lost{uuid.uuid4().hex[:6]}-"

    async def main() -> None:
        transport = _AnswerLost()
        control = HttpControl(live_server.url, live_server.gateway_token, transport=transport)
        try:
            await control.send_traffic(_records(prefix, 5))  # sent, answer lost, sent again
        finally:
            await control.aclose()
        assert transport.lost

    asyncio.run(main())
    assert _listed(live_server, prefix) == [f"{prefix}{i}" for i in range(5)]


def test_a_batch_in_flight_when_the_gateway_stops_is_listed_once(live_server: LiveServer) -> None:
    """Stopping cancels the shipper with its batch delivered but unanswered; its final
    flush sends the batch again."""
    prefix = f"stop{uuid.uuid4().hex[:6]}-"

    async def main() -> None:
        transport = _AnswerLost(stall=True)
        control = HttpControl(live_server.url, live_server.gateway_token, transport=transport)
        shipper = TrafficShipper(control, interval=0.01)
        for record in _records(prefix, 3):
            shipper.record(record)
        task = asyncio.create_task(shipper.run())
        try:
            await asyncio.wait_for(transport.delivered.wait(), 10)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await control.aclose()
        assert shipper.sent == 3  # the final flush got its answer

    asyncio.run(main())
    assert _listed(live_server, prefix) == [f"{prefix}{i}" for i in range(3)]
