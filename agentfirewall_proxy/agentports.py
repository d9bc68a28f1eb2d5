"""Optional dedicated proxy ports, one per agent, allocated by the gateway.

With ``--agent-ports 10001-10100`` every active agent gets its own listener (the port the
control plane suggested when it is in the range and free, else the lowest free one). A
port adds isolation, not identity: the agent's credential is still required there, and
must be that agent's (identity is always the credential). The allocation is reported in
heartbeats as ``agent_ports``: at once when it changes (so `tf run` finds a new agent's port
within a moment, not at the next periodic heartbeat), then with every heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfirewall_proxy.gateway import Gateway

__all__ = ["AgentPorts"]


class AgentPorts:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.ports: dict[str, int] = {}
        self._servers: dict[str, asyncio.Server] = {}
        self._announcing: set[asyncio.Task[None]] = set()

    def _wanted(self) -> dict[str, int | None]:
        config = self.gateway.config
        if config is None:
            return {}
        wanted: dict[str, int | None] = {}
        for agent in config.agents.values():
            if agent.status == "active":
                wanted[agent.name] = agent.proxy_port
        return dict(sorted(wanted.items()))

    async def sync(self) -> None:
        """Open listeners for new agents, close those of agents that are gone."""
        span = self.gateway.options.agent_ports
        if span is None:
            return
        wanted = self._wanted()
        before = dict(self.ports)
        for name in [n for n in self.ports if n not in wanted]:
            self._servers.pop(name).close()
            del self.ports[name]
        for name, suggested in wanted.items():
            if name in self.ports:
                continue
            port = await self._bind(name, suggested, span)
            if port is None:
                break  # the range is full: later agents use the shared port only
        if self.ports != before and self.gateway.ready.is_set():
            self._announce()  # (before `ready`, the first periodic heartbeat carries them)

    def _announce(self) -> None:
        """Send a heartbeat now, in the background: the allocation changed."""
        task = asyncio.ensure_future(self._heartbeat())
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _heartbeat(self) -> None:
        # a failed announcement is retried by the next periodic heartbeat; at shutdown the
        # control client may be closed under it
        with contextlib.suppress(Exception):
            await self.gateway.control.heartbeat(self.gateway.heartbeat_payload())

    async def _bind(self, name: str, suggested: int | None, span: tuple[int, int]) -> int | None:
        used = set(self.ports.values())
        candidates = [suggested] if suggested and span[0] <= suggested <= span[1] else []
        candidates += [p for p in range(span[0], span[1] + 1) if p not in used]
        for port in candidates:
            if port in used:
                continue
            try:
                server = await self.gateway.listen(self.gateway.options.listen_host, port, name)
            except OSError:
                continue
            self._servers[name] = server
            self.ports[name] = port
            return port
        return None
