"""A stdio session following its control plane: the config long poll, each answer applied,
and the watchdog past ``--max-config-age`` (:class:`~agentfirewall_proxy.contact.ContactWatch`,
the gateway's rule).

Every answer says the config in force is the current one (but a config older than it: a
replica behind the others, never applied): a kill switch covering the session cuts it; its
agent no longer active (suspended or removed) ends what it began.
When the control plane has not answered for longer than ``--max-config-age`` (its config
may miss a kill switch), every unanswered request is refused, and so is every later one
(the relay asks ``contact.lost``), until a config fetch answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from typing import Any

from agentfirewall_proxy.contact import ContactWatch
from agentfirewall_proxy.control import Control, ControlError, StaticControl
from agentfirewall_proxy.mcpwrap.gate import Gate
from agentfirewall_proxy.mcpwrap.session import Session
from agentfirewall_proxy.snapshot import compile_snapshot, refusing_config

__all__ = ["Follower"]

#: Seconds a config long-poll may take beyond its wait before it is given up and asked again
#: (as at the gateway: a longer one is lost in the network).
_POLL_SLACK = 5.0


class Follower:
    def __init__(
        self,
        session: Session,
        gate: Gate,
        control: Control,
        version: int,
        *,
        wait: float,
        bound: float,
    ) -> None:
        self.session = session
        self.gate = gate
        self.control = control
        #: The version of the config in force.
        self.version = version
        self._refused: int | None = None  # the last older version refused (said once)
        self.wait = wait
        self.contact = ContactWatch(bound, lose=self._lose, found=self._found, probe=self._probe)

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        """What runs for the session: the long poll, and the watchdog (unless there is no
        bound, or no control plane to lose: a snapshot file)."""
        if self.contact.bound > 0 and not isinstance(self.control, StaticControl):
            return [self._follow(), self.contact.watch()]
        return [self._follow()]

    def active(self) -> bool:
        """Whether the session's agent is active in the config in force."""
        agent = self.gate.agent()
        return agent is not None and agent.status == "active"

    def inactive(self) -> str:
        return f"agent `{self.gate.agent_name}` is no longer active (suspended or removed)"

    async def _follow(self) -> None:
        while not self.session.closing:
            try:
                async with asyncio.timeout(self.wait + _POLL_SLACK):
                    snapshot = await self.control.fetch_config(self.version, self.wait)
            except (ControlError, TimeoutError):
                await asyncio.sleep(1.0)
                continue
            if not await self._answered(snapshot):
                await asyncio.sleep(1.0)  # asked again: the replica catches up, or is left

    async def _answered(self, snapshot: dict[str, Any] | None) -> bool:
        """A config fetch answered (`snapshot` None: unchanged). False for a config older
        than the one in force (a replica behind the others, cut off from the database: it
        may miss a kill switch): neither applied nor word from the control plane."""
        if snapshot is not None and (older := int(snapshot.get("version", 0))) < self.version:
            if self._refused != older:
                self._refused = older
                print(f"tf mcp wrap: config {older} refused: older than configuration "
                      f"{self.version} in force", file=sys.stderr)  # fmt: skip
            return False
        if snapshot is not None:
            self.version = int(snapshot.get("version", 0))
            try:
                self.gate.config = compile_snapshot(snapshot)
            except Exception as exc:  # refuse everything: the last one misses what changed
                print(f"tf mcp wrap: config {self.version} rejected: {exc}", file=sys.stderr)
                if self.gate.config is not None:
                    self.gate.config = refusing_config(self.gate.config, self.version, exc)
        self.contact.heard(config=True)
        reason = self.gate.kill_switch()
        if reason is not None:
            await self.session.cut(reason)
        elif not self.active():
            await self.session.cut_unanswered(self.inactive(), "agent_inactive", "inactive")
        return True

    # -- the control plane lost (--max-config-age) ---------------------------------------

    async def _probe(self) -> None:
        asked = self.version
        with contextlib.suppress(ControlError, TimeoutError):
            async with asyncio.timeout(self.contact.probe_timeout):
                snapshot = await self.control.fetch_config(asked, 0)
            # (one the long poll applied meanwhile is as new: not replaced by this one)
            await self._answered(snapshot if self.version == asked else None)

    async def _lose(self) -> None:
        print(f"tf mcp wrap: no word from the control plane for {self.contact.bound:g} "
              "s (--max-config-age): every request is refused until it answers",
              file=sys.stderr)  # fmt: skip
        reason = self.contact.unheard()
        await self.session.cut_unanswered(reason, "control_plane_unreachable", "outage")

    def _found(self) -> None:
        print(f"tf mcp wrap: the control plane answers again: enforcing configuration "
              f"{self.version}", file=sys.stderr)  # fmt: skip
