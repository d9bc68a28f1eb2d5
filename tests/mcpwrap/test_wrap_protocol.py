"""The relay's protocol handling, byte for byte: a bare JSON-RPC server (no SDK), a snapshot
file as the control plane (``--config``), and a test driving stdin/stdout directly."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.mcpwrap.conftest import RAW_SERVER, wrap_args

pytestmark = pytest.mark.anyio

SNAPSHOT = {
    "agents": [{"name": "Bot", "api_keys": ["unused"]}],
    "permissions": [
        {"agent": "Bot", "connector": "mcp", "action_pattern": p, "decision": d}
        for p, d in [
            ("mcp.rpc.*", "allow"),
            ("mcp.tools.ask", "allow"),
            ("mcp.tools.delete_repo", "deny"),
        ]
    ],
}


class Wire:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def send(self, data: bytes | object) -> None:
        assert self.process.stdin is not None
        line = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.process.stdin.write(line + b"\n")
        await self.process.stdin.drain()

    async def receive(self) -> Any:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        assert line, "the relay closed stdout"
        return json.loads(line)


@asynccontextmanager
async def relay(tmp_path: Path, *flags: str) -> AsyncIterator[Wire]:
    config = tmp_path / "snapshot.yaml"
    config.write_text(yaml.safe_dump(SNAPSHOT), encoding="utf-8")
    args = wrap_args("Bot", "--config", str(config), *flags,
                     child=[sys.executable, str(RAW_SERVER)])  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=tmp_path, env={**os.environ}, limit=1 << 24,
    )  # fmt: skip
    try:
        yield Wire(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        code = await asyncio.wait_for(process.wait(), 30)
        assert code == 0  # the client left: the server got EOF, the relay ended cleanly


async def test_protocol_errors_never_end_the_session(tmp_path: Path) -> None:
    async with relay(tmp_path, "--max-message", "100000") as wire:
        await wire.send(b"{not json")
        assert (await wire.receive())["error"]["code"] == -32700
        await wire.send({"jsonrpc": "2.0", "id": 1, "METHOD": "tools/call"})  # a case variant
        refused = await wire.receive()
        assert refused["id"] == 1
        assert refused["error"]["code"] == -32600
        assert "case variant" in refused["error"]["message"]
        await wire.send(b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"'
                        + b"x" * 200_000 + b'"}}')  # fmt: skip
        too_large = await wire.receive()
        assert too_large["error"]["code"] == -32600
        await wire.send(b"")  # blank lines are ignored
        await wire.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        # the server's first line was noise (not JSON-RPC): dropped, not relayed
        assert await wire.receive() == {"jsonrpc": "2.0", "id": 3, "result": {"method": "ping"}}


async def test_batches_are_decided_whole_and_member_by_member(tmp_path: Path) -> None:
    async with relay(tmp_path) as wire:
        pings = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in (1, 2)]
        await wire.send(pings)  # `mcp.rpc.*` allows the batch and both members
        assert [a["id"] for a in await wire.receive()] == [1, 2]
        smuggled = [
            {"jsonrpc": "2.0", "id": 3, "method": "ping"},
            {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
             "params": {"name": "delete_repo", "arguments": {}}},
        ]  # fmt: skip
        await wire.send(smuggled)
        answers = [await wire.receive(), await wire.receive()]
        # a denied member refuses the whole batch: nothing of it reaches the server
        assert sorted(a["id"] for a in answers) == [3, 4]
        assert {a["error"]["data"]["action"] for a in answers} == {"mcp.tools.delete_repo"}


async def test_server_requests_and_client_answers_are_relayed(tmp_path: Path) -> None:
    async with relay(tmp_path) as wire:
        call = {"name": "ask", "arguments": {}, "_meta": {"progressToken": "p1"}}
        await wire.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": call})
        asked = await wire.receive()  # the server's own request (sampling), relayed
        assert asked["method"] == "sampling/createMessage"
        await wire.send({"jsonrpc": "2.0", "id": asked["id"], "result": {"text": "42"}})
        answer = await wire.receive()
        assert answer == {"jsonrpc": "2.0", "id": 7, "result": {"answer": {"text": "42"}}}
        await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await wire.send({"jsonrpc": "2.0", "id": 8, "method": "ping"})
        assert (await wire.receive())["id"] == 8


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 2.0, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"},
        [{"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
         {"jsonrpc": "2.0", "id": 5, "method": "ping"}],
    ],
    ids=["float", "object", "twice in a batch"],
)  # fmt: skip
async def test_a_request_whose_answer_could_not_be_matched_is_refused(
    tmp_path: Path, message: object
) -> None:
    """The relay filters a `tools/list` answer by matching it to its request: an id the
    server answers otherwise (`2.0` as `2`), one that is no scalar, or one used twice let
    the list through unfiltered, the denied tools in it."""
    async with relay(tmp_path) as wire:
        await wire.send(message)
        refused = await wire.receive()
        assert (refused["id"], refused["error"]["code"]) == (None, -32600)
        await wire.send({"jsonrpc": "2.0", "id": 6, "method": "ping"})
        assert (await wire.receive())["id"] == 6  # the session goes on
