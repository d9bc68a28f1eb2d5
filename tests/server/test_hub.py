"""The in-process hub: typed long-poll waits wake only on their event type."""

from __future__ import annotations

import asyncio

import pytest

from agentfirewall_server.hub import Hub


@pytest.mark.anyio
async def test_a_typed_wait_ignores_other_events_and_wakes_on_its_own() -> None:
    hub = Hub()
    waiter = asyncio.ensure_future(hub.wait(30, event_type="approval.decided"))
    await asyncio.sleep(0)
    for _ in range(3):
        hub.publish("approval.created", {})
        hub.publish("traffic", {})
        await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish("approval.decided", {"id": "apv_1"})
    assert await asyncio.wait_for(waiter, 5) is True


@pytest.mark.anyio
async def test_an_untyped_wait_wakes_on_any_event_and_close_ends_every_wait() -> None:
    hub = Hub()
    anything = asyncio.ensure_future(hub.wait(30))
    typed = asyncio.ensure_future(hub.wait(30, event_type="config"))
    await asyncio.sleep(0)
    hub.publish("traffic", {})
    assert await asyncio.wait_for(anything, 5) is True
    assert not typed.done()
    hub.close()
    assert await asyncio.wait_for(typed, 5) is False
