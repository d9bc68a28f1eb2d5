"""A Node MCP server (the official ``@modelcontextprotocol/sdk`` from npm) under `tf mcp wrap`,
driven by the Python SDK's client: the relay is language-independent.

CI installs the package (``.ci/run``: ``npm install`` in ``tests/mcpwrap/node``); locally the
test installs it when missing and skips only when node or npm is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import HERE, add_agent, wrap_args, wrap_env

pytestmark = [pytest.mark.anyio, pytest.mark.node]

PACKAGE = HERE / "node"


def _node_server() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed here (CI installs them)")
    if not (PACKAGE / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PACKAGE, check=True, timeout=300, capture_output=True,
        )  # fmt: skip
    return PACKAGE / "server.mjs"


async def test_node_server_is_governed(server: LiveServer, tmp_path: Path) -> None:
    script = _node_server()
    agent = add_agent(server, "McpNode")
    node = shutil.which("node")
    assert node is not None
    params = StdioServerParameters(
        command=sys.executable,
        args=wrap_args(agent, child=[node, str(script)]),
        env=wrap_env(server),
        cwd=tmp_path,
    )
    with anyio.fail_after(60):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert [t.name for t in (await session.list_tools()).tools] == ["echo"]
            result = await session.call_tool("echo", {"text": "hi"})
            assert [getattr(c, "text", None) for c in result.content] == ["node: hi"]
            with pytest.raises(MCPError) as denied:
                await session.call_tool("delete_repo", {"name": "prod"})
    assert denied.value.error.code == -32001
    assert denied.value.error.data["action"] == "mcp.tools.delete_repo"
