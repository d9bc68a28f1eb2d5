"""The ``--max-config-age`` watch of the gateway and ``tf mcp wrap`` (``contact.ContactWatch``),
on a clock the test moves and a real event loop (a tick is a quarter of a 0.2 s bound)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from agentfirewall_proxy.contact import ContactWatch

pytestmark = pytest.mark.anyio


class Proxy:
    """One side of the watch: counts what it is told, and each tick (``answers`` is read
    once a tick: traffic shipped so far)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.ticks = self.shipped = self.losses = self.founds = self.probes = 0
        self.contact = ContactWatch(
            0.2,
            lose=self.lose,
            found=self.found,
            probe=self.probe,
            answers=self.answers,
            clock=lambda: self.now,
        )

    def answers(self) -> int:
        self.ticks += 1
        return self.shipped

    async def lose(self) -> None:
        assert self.contact.lost  # (already refusing while its side acts)
        self.losses += 1

    def found(self) -> None:
        self.founds += 1

    async def probe(self) -> None:  # (never answered: the control plane is away)
        self.probes += 1

    async def ticks_pass(self) -> None:
        """Until a whole tick has run since now."""
        until = self.ticks + 2
        async with asyncio.timeout(5):
            while self.ticks < until:
                await asyncio.sleep(0.01)


@asynccontextmanager
async def watched() -> AsyncIterator[Proxy]:
    proxy = Proxy()
    task = asyncio.ensure_future(proxy.contact.watch())
    try:
        yield proxy
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_only_a_config_answer_ends_an_outage() -> None:
    """Once lost, a heartbeat's answer or traffic shipped says nothing of what changed
    meanwhile (a kill switch): still lost, until a config fetch answers."""
    async with watched() as proxy:
        contact = proxy.contact
        proxy.now = 0.3
        await proxy.ticks_pass()
        assert (contact.lost, proxy.losses, proxy.founds) == (True, 1, 0)
        assert contact.unheard() == "no word from the control plane for 0 s (--max-config-age 0.2)"
        contact.heard()
        proxy.shipped += 1
        await proxy.ticks_pass()
        assert (contact.lost, contact.heard_at, proxy.losses) == (True, 0.0, 1)  # lost once
        probes = proxy.probes
        await proxy.ticks_pass()
        assert proxy.probes > probes  # it keeps asking
        contact.heard(config=True)
        assert (contact.lost, contact.age, proxy.founds) == (False, 0.0, 1)


async def test_other_answers_count_while_not_lost_and_probes_begin_at_half_the_bound() -> None:
    async with watched() as proxy:
        contact = proxy.contact
        proxy.now = 0.1  # half the bound, not past it
        await proxy.ticks_pass()
        assert proxy.probes == 0
        proxy.now = 0.15
        await proxy.ticks_pass()
        assert proxy.probes > 0
        proxy.shipped += 1  # traffic shipped: an answer too
        await proxy.ticks_pass()
        assert contact.heard_at == 0.15
        proxy.now = 0.3
        await proxy.ticks_pass()
        assert (contact.lost, proxy.losses) == (False, 0)  # 0.15 s since it was heard
