"""Optional dedicated proxy ports, one per agent, allocated by the gateway.

With ``--agent-ports 10001-10100`` every active agent gets its own listener (the port the
control plane suggested when it is in the range and free, else the lowest free one). A
port adds isolation, not identity: the agent's credential is still required there, and
must be that agent's (identity is always the credential). The allocation is reported in
heartbeats as ``agent_ports``: at once when it changes (so `tf run` finds a new agent's port
within a moment, not at the next periodic heartbeat), then with every heartbeat.

Ports are given in name order, so without memory a restart would shift them whenever an
agent registered at run time sorts before others, and an agent still running with its old
port would meet another agent's listener (407). The allocation is therefore kept in
``agent-ports.json`` beside the CA, by agent id, and each agent gets its port back first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agentfirewall_proxy.control import Control
    from agentfirewall_proxy.options import Options
    from agentfirewall_proxy.snapshot import CompiledConfig

__all__ = ["MEMORY_FILE", "AgentPorts", "PortsHost"]

#: In the gateway's state directory (``--ca-dir``): which agent had which port, by agent id.
MEMORY_FILE = "agent-ports.json"


class PortsHost(Protocol):
    """What the allocation uses of the gateway (``gateway.Gateway``): it opens listeners
    with it and announces them through its heartbeat."""

    @property
    def options(self) -> Options: ...

    @property
    def config(self) -> CompiledConfig | None: ...

    @property
    def control(self) -> Control: ...

    @property
    def ready(self) -> asyncio.Event: ...

    async def listen(
        self, host: str, port: int, port_agent: str | None = None
    ) -> asyncio.Server: ...

    def heartbeat_payload(self) -> dict[str, Any]: ...


class AgentPorts:
    def __init__(self, gateway: PortsHost) -> None:
        self.gateway = gateway
        self.ports: dict[str, int] = {}
        self._servers: dict[str, asyncio.Server] = {}
        self._announcing: set[asyncio.Task[None]] = set()
        self._memory_path = gateway.options.ca_dir / MEMORY_FILE
        self._memory: dict[str, int] | None = None  # agent id -> port, loaded on first sync

    def _wanted(self) -> dict[str, tuple[str, int | None]]:
        """Active agents by name: (id, the control plane's suggested port)."""
        config = self.gateway.config
        if config is None:
            return {}
        wanted: dict[str, tuple[str, int | None]] = {}
        for agent in config.agents.values():
            if agent.status == "active":
                wanted[agent.name] = (agent.id, agent.proxy_port)
        return dict(sorted(wanted.items()))

    async def sync(self) -> None:
        """Open listeners for new agents, close those of agents that are gone."""
        span = self.gateway.options.agent_ports
        if span is None:
            return
        memory = self._remembered()
        wanted = self._wanted()
        before = dict(self.ports)
        for name in [n for n in self.ports if n not in wanted]:
            self._servers.pop(name).close()
            del self.ports[name]
        for name, (agent_id, suggested) in wanted.items():
            if name in self.ports:
                continue
            port = await self._bind(name, self._candidates(agent_id, suggested, span))
            if port is None:
                break  # the range is full: later agents use the shared port only
            memory[agent_id] = port
        if self.ports != before:
            self._remember(memory)
            if self.gateway.ready.is_set():
                self._announce()  # (before `ready`, the first periodic heartbeat carries them)

    def _candidates(self, agent_id: str, suggested: int | None, span: tuple[int, int]) -> list[int]:
        """The control plane's port, this agent's port before a restart, then free ports (those
        remembered for other agents last, so a suspended agent tends to get its port back)."""
        memory = self._remembered()
        used = set(self.ports.values())
        others = {p for a, p in memory.items() if a != agent_id}
        first = [suggested, memory.get(agent_id)]
        rest = range(span[0], span[1] + 1)
        ordered = [p for p in first if p is not None and span[0] <= p <= span[1]]
        ordered += [p for p in rest if p not in others] + [p for p in rest if p in others]
        return [p for p in dict.fromkeys(ordered) if p not in used]

    async def _bind(self, name: str, candidates: list[int]) -> int | None:
        for port in candidates:
            try:
                server = await self.gateway.listen(self.gateway.options.listen_host, port, name)
            except OSError:
                continue  # another program holds it
            self._servers[name] = server
            self.ports[name] = port
            return port
        return None

    # -- the allocation survives restarts ------------------------------------------------

    def _remembered(self) -> dict[str, int]:
        if self._memory is None:
            self._memory = _load(self._memory_path)
        return self._memory

    def _remember(self, memory: dict[str, int]) -> None:
        config = self.gateway.config
        known = {a.id for a in config.agents.values()} if config is not None else set(memory)
        self._memory = {a: p for a, p in sorted(memory.items()) if a in known}
        with contextlib.suppress(OSError):  # a read-only state dir: ports are just not kept
            tmp = self._memory_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._memory, indent=1) + "\n", encoding="utf-8")
            tmp.chmod(0o600)  # like every file of the state dir (`tf doctor` checks)
            os.replace(tmp, self._memory_path)

    # -- telling the control plane -------------------------------------------------------

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


def _load(path: Path) -> dict[str, int]:
    """`{agent id: port}` from the last run; anything unreadable counts as nothing."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if type(v) is int and 0 < v < 65536}
