"""docs/mcp.md, read by a newcomer and run: its commands (taken from the page, so they cannot
drift) against the real control plane, `tf mcp wrap` as the client starts it (pipes), a bare
JSON-RPC server behind it, and what the page says the client sees, byte for byte.

Then the newcomer's mistakes: a command that does not exist, a server that crashes at start,
stdin or stdout that are not pipes, a wrong gateway token, an unknown agent, an `--env`
naming no connector, a session started under a kill switch, `tf mcp install` outside a
project. Each fails closed and says what to do next.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from agentfirewall_proxy.cli.app import main
from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import RAW_SERVER, wrap_args, wrap_env
from tests.mcpwrap.test_wrap_protocol import Wire

DOC = (Path(__file__).resolve().parents[2] / "docs" / "mcp.md").read_text(encoding="utf-8")
AGENT = "Bot"  # the page's agent


def _blocks(language: str = "") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC, flags=re.S | re.M)


def _tf(server: LiveServer, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`tf ARGS` as a user types it, against the test's control plane."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_SERVER=server.url, TF_ADMIN_TOKEN=server.admin_token)
    done = subprocess.run([sys.executable, "-m", "agentfirewall_proxy.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if check:
        assert done.returncode == 0, f"tf {shlex.join(args)}\n{done.stdout}{done.stderr}"
    return done


def _wrap(
    server: LiveServer,
    *args: str,
    stdin: bytes | IO[bytes] = b"",
    env: dict[str, str] | None = None,
    cwd: Path,
) -> subprocess.CompletedProcess[str]:
    """`python ARGS` (`tf mcp wrap …`) run to its end; stdin is a pipe fed `stdin` unless it
    is a file."""
    piped = isinstance(stdin, bytes)
    done = subprocess.run([sys.executable, *args], input=stdin if piped else None,
                          stdin=None if piped else stdin, capture_output=True,
                          env={**os.environ, **wrap_env(server), **(env or {})}, cwd=cwd,
                          timeout=60, check=False)  # fmt: skip
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())  # fmt: skip


@asynccontextmanager
async def _session(server: LiveServer, tmp_path: Path, *flags: str,
                   child: list[str] | None = None) -> AsyncIterator[Wire]:  # fmt: skip
    """A session of agent `Bot` with the bare server (answers every request with its method)
    named `github`, the client's side a pipe, as an MCP client starts it."""
    args = wrap_args(AGENT, "--server-name", "github", *flags,
                     child=child or [sys.executable, str(RAW_SERVER)])  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, **wrap_env(server)},
    )  # fmt: skip
    try:
        yield Wire(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 30)


def _call(request_id: int | None, tool: str, progress: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": {"number": 7}}
    if progress is not None:
        params["_meta"] = {"progressToken": progress}
    message = {"jsonrpc": "2.0", "method": "tools/call", "params": params}
    return message if request_id is None else {**message, "id": request_id}


def _ping(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "ping"}


def _forwarded(request_id: int, method: str) -> dict[str, Any]:
    """What the bare server answers: the request reached it."""
    return {"jsonrpc": "2.0", "id": request_id, "result": {"method": method}}


def _pending(server: LiveServer) -> list[dict[str, Any]]:
    rows = server.admin("GET", "/v1/approvals?status=pending").json()["approvals"]
    return [a for a in rows if a.get("agent") == AGENT]


@pytest.fixture(scope="module")
def rules(server: LiveServer) -> str:
    """The page's `tf permissions set` lines, as written (they register `Bot`)."""
    [block] = [b for b in _blocks() if b.startswith("tf permissions set")]
    for line in block.splitlines():
        _tf(server, *shlex.split(line)[1:])
    return block


# -- the page's commands and what the client sees -----------------------------------------


@pytest.mark.anyio
async def test_the_pages_rules_decide_a_session(
    server: LiveServer, rules: str, tmp_path: Path
) -> None:
    assert rules.count("--connector mcp") == 4
    async with _session(server, tmp_path) as wire:
        await wire.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        assert await wire.receive() == _forwarded(1, "initialize")  # `mcp.rpc.*`
        await wire.send(_call(2, "get_issue"))  # `mcp.tools.get_*`
        assert await wire.receive() == _forwarded(2, "tools/call")
        await wire.send({"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {}})
        assert await wire.receive() == _forwarded(3, "resources/read")

        await wire.send(_call(4, "create_issue"))  # no rule: denied
        denied = (await wire.receive())["error"]
        assert denied["code"] == -32001
        assert denied["message"].startswith("TameFlare denied `mcp.tools.create_issue`: no "
                                            "permission for `mcp.tools.create_issue`")  # fmt: skip
        assert denied["message"].endswith(" (rule `default_deny`)")
        assert set(denied["data"]) == {"action", "rule", "reason", "request_id"}
        assert denied["data"]["rule"] == "default_deny"
        for request_id, tool, action in ((5, "list", "mcp.tools.list_tool"),
                                         (6, "Delete-Repo", "mcp.tools.delete-repo")):  # fmt: skip
            await wire.send(_call(request_id, tool))
            assert (await wire.receive())["error"]["data"]["action"] == action
        await wire.send(_call(None, "create_issue"))  # a denied notification: dropped
        await wire.send(_ping(7))
        assert await wire.receive() == _forwarded(7, "ping")  # (nothing came before it)

        # held: progress while it waits, forwarded once approved with `tf approvals approve`
        await wire.send(_call(8, "merge_pull_request", progress="p8"))
        progress = await wire.receive()
        assert progress["method"] == "notifications/progress"
        assert progress["params"]["progressToken"] == "p8"
        [held] = _pending(server)
        assert held["id"] in progress["params"]["message"]
        assert held["action_spec"]["type"] == "mcp.tools.merge_pull_request"
        listed = json.loads(_tf(server, "approvals", "list", "--json").stdout)["approvals"]
        assert held["id"] in {a["id"] for a in listed}
        _tf(server, "approvals", "approve", held["id"])
        while (answer := await wire.receive()).get("method") == "notifications/progress":
            pass
        assert answer == _forwarded(8, "tools/call")

        # cancelled while held: the hold ends; approved later, an identical retry (new id)
        # goes through once on that approval, the next one is held again
        await wire.send(_call(9, "merge_pull_request", progress="p9"))
        assert (await wire.receive())["method"] == "notifications/progress"
        cancel = {"requestId": 9, "reason": "user gave up"}
        await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
        [again] = _pending(server)
        _tf(server, "approvals", "approve", again["id"])
        await wire.send(_call(10, "merge_pull_request"))
        while (answer := await wire.receive()).get("method") == "notifications/progress":
            pass  # (p9's last notifications, sent before the cancel was read)
        assert answer == _forwarded(10, "tools/call")
        await wire.send(_call(11, "merge_pull_request", progress="p11"))
        assert (await wire.receive())["params"]["progressToken"] == "p11"  # held again
        await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                         "params": {"requestId": 11}})  # fmt: skip
        await wire.send(_ping(12))
        while (answer := await wire.receive()).get("method") == "notifications/progress":
            pass
        assert answer == _forwarded(12, "ping")
    for approval in _pending(server):
        server.admin("POST", f"/v1/approvals/{approval['id']}/deny", json={})

    # every client message is a traffic record: method MCP, host = server name, path = method
    rows = server.admin("GET", f"/v1/traffic?agent={AGENT}&limit=100").json()["traffic"]
    seen = {(r["method"], r["host"], r["path"], r["action"], r["decision"]) for r in rows}
    assert ("MCP", "github", "/tools/call", "mcp.tools.get_issue", "allow") in seen
    assert ("MCP", "github", "/tools/call", "mcp.tools.create_issue", "deny") in seen
    assert ("MCP", "github", "/resources/read", "mcp.rpc.resources_read", "allow") in seen


@pytest.mark.anyio
async def test_the_pages_policy_holds_one_servers_writes(
    server: LiveServer, rules: str, tmp_path: Path
) -> None:
    """With `mcp.tools.*` allowed, the page's policy holds `github`'s writes only."""
    [policy] = [b for b in _blocks("yaml") if "github-mcp-writes-need-a-human" in b]
    (tmp_path / "policy.yaml").write_text(policy, encoding="utf-8")
    _tf(server, "policy", "add", str(tmp_path / "policy.yaml"))
    _tf(server, "permissions", "set", "--gateway", AGENT, "--connector", "mcp",
        "--action", "mcp.tools.*", "--decision", "allow")  # fmt: skip
    try:
        async with _session(server, tmp_path) as wire:
            await wire.send(_call(1, "get_issue"))
            assert await wire.receive() == _forwarded(1, "tools/call")
            await wire.send(_call(2, "create_issue", progress="p2"))
            assert (await wire.receive())["method"] == "notifications/progress"  # held
            [held] = _pending(server)
            assert "github-mcp-writes-need-a-human/github-writes" in held["reason"]
            server.admin("POST", f"/v1/approvals/{held['id']}/deny", json={})
            while (answer := await wire.receive()).get("method") == "notifications/progress":
                pass
            assert answer["error"]["code"] == -32002
            assert "approval denied" in answer["error"]["message"]
        # another server: the rule decides; a `deny` budget counts its calls
        _tf(server, "budget", "set", "issues-daily", "--agent", AGENT, "--connector", "mcp",
            "--action", "mcp.tools.create_issue", "--limit", "2")  # fmt: skip
        async with _session(server, tmp_path, "--server-name", "fs") as wire:
            for request_id in (3, 4):
                await wire.send(_call(request_id, "create_issue"))
                assert await wire.receive() == _forwarded(request_id, "tools/call")
            await wire.send(_call(5, "create_issue"))
            refused = (await wire.receive())["error"]
        assert (refused["code"], refused["data"]["error"]) == (-32001, "budget_exceeded")
        assert refused["message"] == ("TameFlare: `mcp.tools.create_issue`: budget "
                                      "`issues-daily` exceeded: 2 of 2 requests used this "
                                      "day, this request needs 1")  # fmt: skip
        assert refused["message"] in " ".join(DOC.split())
    finally:
        _tf(server, "budget", "remove", "issues-daily", check=False)
        _tf(server, "policy", "remove", "github-mcp-writes-need-a-human")
        rows = server.admin("GET", f"/v1/permissions?agent={AGENT}").json()["permissions"]
        for row in rows:
            if row["action_pattern"] == "mcp.tools.*":
                server.admin("DELETE", f"/v1/permissions/{row['id']}")


def test_a_session_under_a_kill_switch_does_not_start(
    server: LiveServer, rules: str, tmp_path: Path
) -> None:
    """Each scope the page names: `tf mcp wrap` exits 1 and says so, the server never runs.
    (It used to start the server and relay; only a request it read was refused.)"""
    marker = tmp_path / "started"
    child = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]
    for scope in ('"Bot"', "mcp", "connector:github"):
        _tf(server, "kill-switch", "--activate", "--scope", scope.strip('"'),
            "--reason", "incident 42")  # fmt: skip
        try:
            done = _wrap(server, *wrap_args(AGENT, "--server-name", "github", child=child),
                         cwd=tmp_path)  # fmt: skip
        finally:
            _tf(server, "kill-switch", "--deactivate", "--scope", scope.strip('"'))
        assert done.returncode == 1, (scope, done.stderr)
        assert ("error: a kill switch covers this session (incident 42): the server was not "
                "started") in done.stderr, scope  # fmt: skip
        assert "tf kill-switch status" in done.stderr
        assert not marker.exists(), scope
        assert done.stdout == ""  # no request was read: none answered
        assert f"`--scope {scope}`" in DOC


# -- what a newcomer gets wrong -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_server_that_crashes_at_start_answers_every_request(
    server: LiveServer, rules: str, tmp_path: Path
) -> None:
    crash = [sys.executable, "-c", "import sys; sys.stdin.readline(); "
             "print('boom: GITHUB_TOKEN is not set', file=sys.stderr); sys.exit(2)"]  # fmt: skip
    async with _session(server, tmp_path, "--server-name", "boom", child=crash) as wire:
        await wire.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        answer = await wire.receive()
        code = await asyncio.wait_for(wire.process.wait(), 30)
        assert wire.process.stderr is not None
        stderr = (await wire.process.stderr.read()).decode()
    assert answer["error"] == {
        "code": -32003,
        "message": "TameFlare: mcp server `boom` exited with code 2",
        "data": {"server": "boom", "exit_code": 2},
    }
    assert code == 2  # the server's
    assert "tf mcp wrap: TameFlare: mcp server `boom` exited with code 2" in stderr
    assert "boom: GITHUB_TOKEN is not set" in stderr  # its own words pass through


def test_starting_mistakes_fail_closed_and_say_what_to_do(
    server: LiveServer, rules: str, tmp_path: Path
) -> None:
    ping = json.dumps(_ping(1)).encode() + b"\n"
    args = wrap_args(AGENT, "--server-name", "github", child=["no-such-mcp-server", "--stdio"])
    done = _wrap(server, *args, stdin=ping, cwd=tmp_path)
    assert done.returncode == 1
    assert "error: cannot start `no-such-mcp-server`: No such file or directory" in done.stderr
    assert "check the command after `--`" in done.stderr

    # an `--env` naming no connector: the server never runs with a missing credential
    marker = tmp_path / "started"
    child = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]
    args = wrap_args(AGENT, "--env", "GITHUB_TOKEN=connector:gitlab", child=child)
    done = _wrap(server, *args, stdin=ping, cwd=tmp_path)
    assert done.returncode == 1
    assert "--env `GITHUB_TOKEN`: connector `gitlab` is not configured" in done.stderr
    assert "`tf connector list`" in done.stderr
    assert not marker.exists()

    # a gateway token the control plane refuses: at once, not after 15 s of retries
    args = wrap_args(AGENT, child=child)
    done = _wrap(server, *args, stdin=ping, cwd=tmp_path, env={"TF_GATEWAY_TOKEN": "tfg_wrong"})
    assert done.returncode == 1
    assert "error: the control plane refused the gateway token (401)" in done.stderr
    assert "TF_GATEWAY_TOKEN" in done.stderr
    assert not marker.exists()

    # no command after `--`: a usage error with the example to copy
    done = _wrap(server, "-m", "agentfirewall_proxy.cli", "mcp", "wrap", "--name", AGENT, "--",
                 cwd=tmp_path)  # fmt: skip
    assert (done.returncode, "no MCP server to run" in done.stderr) == (2, True)


def test_stdin_or_stdout_that_is_a_file_is_refused(
    server: LiveServer, rules: str, tmp_path: Path
) -> None:
    """`tf mcp wrap … < requests.jsonl` (or `> out.jsonl`, `> /dev/null`) used to end in a
    traceback (asyncio) or SIGABRT (uvloop), with the server already started."""
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(_ping(1)) + "\n")
    marker = tmp_path / "started"
    args = wrap_args(AGENT, child=[sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    with open(requests, "rb") as stdin:
        done = _wrap(server, *args, stdin=stdin, cwd=tmp_path)
    with open(requests, "rb") as stdin, open(tmp_path / "out.jsonl", "wb") as stdout:
        to_file = subprocess.run(
            [sys.executable, *args],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={**os.environ, **wrap_env(server)},
            cwd=tmp_path,
            timeout=60,
            check=False,
        )  # (and stdout a file)
    assert done.returncode == 1
    assert "error: stdin is a file: `tf mcp wrap` speaks JSON-RPC over pipes" in done.stderr
    assert "cat requests.jsonl | tf mcp wrap" in done.stderr  # how to try it by hand
    assert "Traceback" not in done.stderr
    assert to_file.returncode == 1
    assert b"error: stdin is a file" in to_file.stderr
    assert not marker.exists()
    # the page's way to try it by hand works
    piped = _wrap(server, *wrap_args(AGENT, "--server-name", "github",
                                     child=[sys.executable, str(RAW_SERVER)]),
                  stdin=requests.read_bytes(), cwd=tmp_path)  # fmt: skip
    assert "cat requests.jsonl | tf mcp wrap" in DOC
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["id"] == 1


def test_an_unknown_agent_is_denied_by_name(server: LiveServer, tmp_path: Path) -> None:
    """Without an admin token the wrapper cannot register the agent: every message is denied
    (-32001, the action named), not answered -32600 "invalid request" for `unnamed message`
    as if the client had sent something malformed."""
    ping = json.dumps(_ping(1)).encode() + b"\n"
    done = _wrap(server, *wrap_args("Nobody Yet", child=[sys.executable, str(RAW_SERVER)]),
                 stdin=ping, cwd=tmp_path, env={"TF_ADMIN_TOKEN": ""})  # fmt: skip
    [answer] = [json.loads(line) for line in done.stdout.splitlines()]
    assert answer["error"]["code"] == -32001
    assert answer["error"]["message"] == (
        "TameFlare denied `mcp.rpc.ping`: agent `Nobody Yet` is unknown or not active"
    )
    assert answer["error"]["data"]["action"] == "mcp.rpc.ping"
    assert "agent `Nobody Yet` is unknown: every message will be denied" in done.stderr
    assert 'tf agent add "Nobody Yet"' in done.stderr
    assert "agent `X` is unknown or not active" in DOC


def test_the_wrap_flags_are_the_pages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "wrap", "--help"]) == 0
    helped = capsys.readouterr().out
    synopsis = next(b for b in _blocks() if b.startswith("tf mcp wrap --name"))
    for flag in re.findall(r"--[a-z-]+", synopsis + DOC):
        if flag in {"--name", "--server-name", "--env", "--show-denied", "--project",
                    "--config", "--progress-interval", "--max-message"}:  # fmt: skip
            assert flag in helped, flag
    assert "(default 10)" in helped
    assert "(default 10)" in DOC
    assert f"(default {32 * 1024 * 1024})" in helped
    assert "(default 32 MiB)" in DOC


def test_install_outside_a_project_warns_that_servers_will_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entries written with no `--project` find no gateway token where the client starts
    them: `install` said nothing, and every wrapped server then failed to start."""
    config = tmp_path / "mcp.json"
    servers = {"mcpServers": {"fs": {"command": "npx", "args": ["-y", "fs"], "env": {"A": "1"}}}}
    config.write_text(json.dumps(servers), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for name in ("TF_SERVER", "TF_ADMIN_TOKEN", "TF_GATEWAY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    flags = ("--client", "cursor", "--config-file", str(config))
    assert main(["mcp", "install", *flags, "--name", "Claude"]) == 0
    err = capsys.readouterr().err
    assert "warning: no `tf init` project here" in err
    assert "TF_GATEWAY_TOKEN" in err
    entry = json.loads(config.read_text(encoding="utf-8"))["mcpServers"]["fs"]
    assert "--project" not in entry["args"]
    assert entry["env"] == {"A": "1"}  # each entry keeps its env

    assert main(["mcp", "uninstall", *flags]) == 0
    assert main(["init", "--port", "0", "--proxy-port", "0"]) == 0  # now a project
    capsys.readouterr()
    assert main(["mcp", "install", *flags, "--name", "Claude"]) == 0
    assert "warning" not in capsys.readouterr().err
    args = json.loads(config.read_text(encoding="utf-8"))["mcpServers"]["fs"]["args"]
    assert args[args.index("--project") + 1] == str(tmp_path)
    assert args[args.index("--") :] == ["--", "npx", "-y", "fs"]
