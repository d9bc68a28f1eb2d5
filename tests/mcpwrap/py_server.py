"""A real MCP server (the official Python SDK's MCPServer, stdio) for the wrap tests."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

app = MCPServer("tests")


@app.tool()
def echo(text: str) -> str:
    return text


@app.tool()
def big(size: int) -> str:
    return "x" * size


@app.tool()
def delete_repo(name: str) -> str:
    return f"deleted {name}"


@app.tool()
def merge_pr(number: int) -> str:
    return f"merged #{number}"


@app.tool()
def show_token() -> str:
    return "token: " + os.environ.get("GITHUB_TOKEN", "<unset>")


@app.tool()
def crash() -> str:
    os._exit(3)


@app.tool()
async def slow(marker: str) -> str:
    Path(marker).write_text("started")
    try:
        await anyio.sleep(120)
    except anyio.get_cancelled_exc_class():
        Path(marker).write_text("cancelled")
        raise
    return "done"


if __name__ == "__main__":
    app.run()
