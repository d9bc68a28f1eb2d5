"""The gateway's control-plane client over several replicas: what is sent again, and where.

Two small HTTP servers on 127.0.0.1 stand in for replicas: one that reads a request and
drops the connection without answering (a replica dying mid-request), and one that
answers and records what it received. A read may be sent again to the next replica; an
approval created or consumed may not (it might have been recorded already): that call
fails, and the gateway fails closed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from agentfirewall_proxy.control import ControlError, HttpControl, control_urls


class Replica:
    """`drop`: read the request head and close; otherwise answer 200 `{"id": "apv_1", ...}`."""

    def __init__(self, drop: bool) -> None:
        self.drop = drop
        self.received: list[str] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode()
        length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                       if h.lower().startswith(b"content-length:")), 0)  # fmt: skip
        await reader.readexactly(length)
        self.received.append(line)
        if not self.drop:
            body = json.dumps({"id": "apv_1", "status": "pending", "version": 3,
                               "approvals": []}).encode()  # fmt: skip
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            writer.write(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Replica, Replica]]:
    dying, healthy = Replica(drop=True), Replica(drop=False)
    for replica in (dying, healthy):
        replica.server = await asyncio.start_server(replica.handle, "127.0.0.1", 0)
    yield dying, healthy
    for replica in (dying, healthy):
        assert replica.server is not None
        replica.server.close()


@pytest.mark.anyio
async def test_reads_and_long_polls_move_to_the_next_replica(
    pair: tuple[Replica, Replica],
) -> None:
    dying, healthy = pair
    control = HttpControl(f"{dying.url},{healthy.url}", "tfg_token")
    try:
        assert (await control.fetch_config(None, 0) or {})["version"] == 3
        assert await control.wait_approvals(["apv_1"], 1) == []
    finally:
        await control.aclose()
    assert len(dying.received) == 1  # sent once there, then the replica was left
    assert [line.split()[0] for line in healthy.received] == ["GET", "POST"]
    assert control.url == healthy.url + "/api"
    assert control.failovers == 1


@pytest.mark.anyio
async def test_an_approval_that_may_have_been_recorded_is_not_sent_again(
    pair: tuple[Replica, Replica],
) -> None:
    dying, healthy = pair
    control = HttpControl([dying.url, healthy.url], "tfg_token")
    try:
        with pytest.raises(ControlError):
            await control.create_approval({"agent": "Bot"})
        assert healthy.received == []  # never created twice
        assert control.url == healthy.url + "/api"  # the next call goes to the live one
        assert (await control.create_approval({"agent": "Bot"}))["id"] == "apv_1"
    finally:
        await control.aclose()


@pytest.mark.anyio
async def test_a_budget_reservation_that_may_have_been_recorded_is_not_sent_again(
    pair: tuple[Replica, Replica],
) -> None:
    """Reserved twice, spend would be held that no response ever settles."""
    dying, healthy = pair
    control = HttpControl([dying.url, healthy.url], "tfg_token")
    try:
        with pytest.raises(ControlError):
            await control.reserve_budget({"agent": "Bot"})
        assert healthy.received == []
        assert len(dying.received) == 1
    finally:
        await control.aclose()


@pytest.mark.anyio
async def test_a_replica_that_refuses_connections_is_skipped_even_for_approvals(
    pair: tuple[Replica, Replica],
) -> None:
    _, healthy = pair
    control = HttpControl(["http://127.0.0.1:1", healthy.url], "tfg_token")
    try:
        assert (await control.create_approval({"agent": "Bot"}))["id"] == "apv_1"
    finally:
        await control.aclose()
    assert len(healthy.received) == 1


def test_control_urls_split_commas_and_refuse_none() -> None:
    assert control_urls(" http://a:1, http://b:2 ,") == ["http://a:1", "http://b:2"]
    assert control_urls(["http://a:1", "http://b:2,http://c:3"]) == [
        "http://a:1",
        "http://b:2",
        "http://c:3",
    ]
    with pytest.raises(ValueError, match="no control-plane URL"):
        control_urls(" , ")
