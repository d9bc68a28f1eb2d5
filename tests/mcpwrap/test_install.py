"""`tf mcp install|uninstall|list`: client configs rewritten, backed up, restored, and the
rewritten entry really runs the server under `tf mcp wrap`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from agentfirewall_proxy.cli.app import main
from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import PY_SERVER, add_agent, wrap_env

ORIGINAL: dict[str, Any] = {
    "globalShortcut": "Ctrl+Space",
    "mcpServers": {
        "tests": {"command": sys.executable, "args": [str(PY_SERVER)], "env": {"A": "1"}},
        "git": {"command": "uvx", "args": ["mcp-server-git"]},
        "remote": {"url": "https://mcp.example.com/mcp"},
    },
}


def _tf(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_install_list_uninstall_claude_desktop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / ".config" / "Claude" / "claude_desktop_config.json"
    path.parent.mkdir(parents=True)
    raw = json.dumps(ORIGINAL, indent=4)
    path.write_text(raw, encoding="utf-8")

    done = _tf(capsys, "mcp", "install", "--client", "claude-desktop", "--name", "Bot")
    assert done["wrapped"] == ["tests", "git"]  # the remote server is the gateway's
    assert Path(done["backup"]).read_text(encoding="utf-8") == raw
    data = json.loads(path.read_text(encoding="utf-8"))
    args = data["mcpServers"]["git"]["args"]
    assert args[args.index("--") :] == ["--", "uvx", "mcp-server-git"]
    head = args[: args.index("--")]
    assert head[head.index("mcp") :] == ["mcp", "wrap", "--name", "Bot", "--server-name", "git"]
    assert data["mcpServers"]["remote"] == ORIGINAL["mcpServers"]["remote"]
    assert data["globalShortcut"] == "Ctrl+Space"

    again = _tf(capsys, "mcp", "install", "--client", "claude-desktop", "--name", "Bot")
    assert again["wrapped"] == []  # never wrapped twice

    listed = _tf(capsys, "mcp", "list", "--client", "claude-desktop")["servers"]
    assert {(s["name"], s["wrapped"], s["agent"], s["remote"]) for s in listed} == {
        ("tests", True, "Bot", False),
        ("git", True, "Bot", False),
        ("remote", False, None, True),
    }
    assert next(s for s in listed if s["name"] == "git")["command"] == ["uvx", "mcp-server-git"]

    undone = _tf(capsys, "mcp", "uninstall", "--client", "claude-desktop")
    assert undone["unwrapped"] == ["tests", "git"]
    assert json.loads(path.read_text(encoding="utf-8")) == ORIGINAL


def test_vscode_layout_and_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["mcp", "list", "--client", "vscode"]) == 1
    assert "no MCP config at" in capsys.readouterr().err
    path = tmp_path / ".vscode" / "mcp.json"
    path.parent.mkdir()
    servers = {"servers": {"fs": {"type": "stdio", "command": "npx", "args": ["-y", "fs"]},
                           "web": {"type": "http", "url": "https://x.example/mcp"}}}  # fmt: skip
    path.write_text(json.dumps(servers), encoding="utf-8")
    assert _tf(capsys, "mcp", "install", "--client", "vscode", "--name", "Bot")["wrapped"] == ["fs"]
    assert json.loads(path.read_text(encoding="utf-8"))["servers"]["fs"]["type"] == "stdio"
    _tf(capsys, "mcp", "uninstall", "--client", "vscode")
    assert json.loads(path.read_text(encoding="utf-8")) == servers


@pytest.mark.anyio
async def test_the_installed_entry_runs_governed(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = add_agent(server, "McpInstalled")
    path = tmp_path / "cursor-mcp.json"
    path.write_text(json.dumps(ORIGINAL), encoding="utf-8")
    flags = ("--client", "cursor", "--config-file", str(path))
    _tf(capsys, "mcp", "install", *flags, "--name", agent)
    entry = json.loads(path.read_text(encoding="utf-8"))["mcpServers"]["tests"]
    params = StdioServerParameters(
        command=entry["command"],
        args=entry["args"],
        env={**entry["env"], **wrap_env(server)},
        cwd=tmp_path,
    )
    with anyio.fail_after(60):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = {t.name for t in (await session.list_tools()).tools}
    assert "echo" in names
    assert "delete_repo" not in names  # decided by the agent's rules: it runs governed
