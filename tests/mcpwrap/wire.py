"""Driving `tf mcp wrap` byte for byte: its stdin and stdout are the test's, the wrapped
server is ``tool_server.py`` (what it received is in ``received``)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.mcpwrap.conftest import HERE, wrap_args

TOOL_SERVER = HERE / "tool_server.py"


class Wire:
    def __init__(self, process: asyncio.subprocess.Process, received: Path) -> None:
        self.process = process
        self.received_file = received
        #: What the wrapper wrote to stderr so far (when piped).
        self.stderr = bytearray()

    async def read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(1 << 16):
            self.stderr += chunk

    async def send(self, data: bytes | object) -> None:
        assert self.process.stdin is not None
        line = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.process.stdin.write(line + b"\n")
        await self.process.stdin.drain()

    async def receive(self, seconds: float = 30) -> Any:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), seconds)
        assert line, "the relay closed stdout"
        return json.loads(line)

    async def call(self, request_id: object, tool: str, **arguments: object) -> Any:
        """A tools/call and its answer (the next message that is not a notification)."""
        params = {"name": tool, "arguments": arguments}
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                         "params": params})  # fmt: skip
        while "id" not in (found := await self.receive()):
            pass
        return found

    def received(self) -> list[Any]:
        """Every message the server read."""
        if not self.received_file.exists():
            return []
        return [json.loads(line) for line in self.received_file.read_text().splitlines()]


@asynccontextmanager
async def wire(
    cwd: Path, agent: str, env: Mapping[str, str], *flags: str, stderr: bool = False
) -> AsyncIterator[Wire]:
    """`tf mcp wrap` over ``tool_server.py``; `stderr`: its stderr piped (else inherited)."""
    received = cwd / f"received-{agent}.jsonl"
    args = wrap_args(agent, *flags, child=[sys.executable, str(TOOL_SERVER)])
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr else None,
        cwd=cwd, env={**env, "RECEIVED": str(received)}, limit=1 << 24,
    )  # fmt: skip
    found = Wire(process, received)
    reading = asyncio.ensure_future(found.read_stderr()) if stderr else None
    try:
        yield found
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        if reading is not None:
            await asyncio.wait_for(reading, 30)
