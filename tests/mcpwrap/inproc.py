"""The relay in process: a stand-in for the wrapped server's pipes, and the client's side a
list of the messages written to it."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any, cast

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.mcpwrap.gate import Gate
from agentfirewall_proxy.mcpwrap.relay import Relay, RelayOptions


class StandInServer:
    """The wrapped server's stdin (what the relay sent it) and stdout (fed by the test)."""

    def __init__(self, limit: int) -> None:
        self.sent: list[Any] = []
        self.stdout = asyncio.StreamReader(limit=limit)

    def write(self, data: bytes) -> None:
        self.sent.append(json.loads(data))

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None

    async def wait(self) -> int:
        return 0


def in_process(
    gate: Gate, options: RelayOptions | None = None, control: StaticControl | None = None
) -> tuple[Relay, list[Any], StandInServer]:
    """A relay for `gate`, what it writes to the client, and its stand-in server."""
    options = options or RelayOptions()
    server = StandInServer(options.limit)
    process = SimpleNamespace(stdin=server, stdout=server.stdout, wait=server.wait, returncode=0)
    version = gate.config.version if gate.config is not None else 1
    relay = Relay(
        gate,
        control or StaticControl({"version": 1}),
        options,
        cast(asyncio.subprocess.Process, process),
        version,
    )
    to_client: list[Any] = []

    async def write(data: bytes) -> None:
        to_client.append(json.loads(data))

    relay.write = write  # type: ignore[method-assign]
    return relay, to_client, server
