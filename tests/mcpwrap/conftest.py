"""A real control plane (one for the package), agents with MCP rules, and wrapped sessions driven
by the official MCP Python SDK's client."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.livesrv import LiveServer

pytest.importorskip("mcp", reason="the official MCP SDK (pip install mcp; in the dev extra)")

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

HERE = Path(__file__).resolve().parent
PY_SERVER = HERE / "py_server.py"
RAW_SERVER = HERE / "raw_server.py"

#: The rules every test agent gets (connector `mcp`), as `tf permissions set` would write.
RULES = {
    "mcp.rpc.*": "allow",
    "mcp.tools.list": "allow",
    "mcp.tools.echo": "allow",
    "mcp.tools.big": "allow",
    "mcp.tools.show_token": "allow",
    "mcp.tools.crash": "allow",
    "mcp.tools.slow": "allow",
    "mcp.tools.delete_repo": "deny",
    "mcp.tools.merge_pr": "require_approval",
}


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer.start(tmp_path_factory.mktemp("mcpwrap") / "tf")
    yield live
    live.stop()


def add_agent(server: LiveServer, name: str, rules: dict[str, str] | None = None) -> str:
    server.create_agent(name)
    for pattern, decision in (rules or RULES).items():
        body = {"agent": name, "connector": "mcp", "action_pattern": pattern, "decision": decision}
        server.admin("POST", "/v1/permissions", json=body).raise_for_status()
    return name


def wrap_env(server: LiveServer) -> dict[str, str]:
    return {
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "TF_SERVER": server.url,
        "TF_GATEWAY_TOKEN": server.gateway_token,
        "TF_ADMIN_TOKEN": server.admin_token,
    }


def wrap_args(agent: str, *flags: str, child: list[str] | None = None) -> list[str]:
    return [
        "-m", "agentfirewall_proxy.cli", "mcp", "wrap", "--name", agent,
        "--server-name", "tests", "--progress-interval", "0.2", *flags,
        "--", *(child or [sys.executable, str(PY_SERVER)]),
    ]  # fmt: skip


@asynccontextmanager
async def wrapped(
    server: LiveServer, agent: str, cwd: Path, *flags: str, **session: Any
) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session with the test server under `tf mcp wrap`."""
    params = StdioServerParameters(
        command=sys.executable, args=wrap_args(agent, *flags), env=wrap_env(server), cwd=cwd
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write, **session) as s:
        await s.initialize()
        yield s


def pending_approvals(server: LiveServer, agent: str) -> list[dict[str, Any]]:
    rows = server.admin("GET", "/v1/approvals?status=pending").json()["approvals"]
    return [a for a in rows if a.get("agent") == agent]
