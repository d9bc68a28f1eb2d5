"""The wrapped server ends whole, however it was started: a client config often runs it
through ``npx`` or a shell, so its work runs in a grandchild of the wrapper. The server runs
in a process group of its own and the whole group is signalled: a kill switch stops the
in-flight work at once (before: only the shell got SIGTERM, after an EOF grace, and the
grandchild finished the work), and what the server leaves running when it exits ends too."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from agentfirewall_proxy.mcpwrap.child import Child
from tests.mcpwrap.conftest import HERE, wrap_args

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.name != "posix", reason="POSIX process groups"),
]

SNAPSHOT = {
    "agents": [{"name": "Bot", "api_keys": ["unused"]}],
    "permissions": [
        {"agent": "Bot", "connector": "mcp", "action_pattern": p, "decision": "allow"}
        for p in ("mcp.rpc.*", "mcp.tools.deploy")
    ],
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")  # (Linux: a zombie left to an init that reaps late)
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def _pid_in(path: Path) -> int:
    for _ in range(3000):  # (bounded: until the process wrote it)
        if path.exists() and path.read_text():
            return int(path.read_text())
        await asyncio.sleep(0.01)
    raise AssertionError(f"`{path.name}` was never written")


async def test_a_kill_switch_stops_the_work_of_a_server_started_through_a_shell(
    tmp_path: Path,
) -> None:
    files = {name: tmp_path / name.lower() for name in ("STARTED", "RELEASE", "EFFECT")}
    config = tmp_path / "snapshot.yaml"
    config.write_text(yaml.safe_dump(SNAPSHOT), encoding="utf-8")
    server = f"{shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'effect_server.py'))}"
    args = wrap_args("Bot", "--config", str(config), child=["sh", "-c", f"{server}; exit $?"])
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=tmp_path, env={**os.environ, **{k: str(v) for k, v in files.items()}},
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "deploy"}}
        process.stdin.write(json.dumps(call).encode() + b"\n")
        worker = await _pid_in(files["STARTED"])  # in flight, in the shell's child
        switch = {"scope": "all", "reason": "stop everything"}
        config.write_text(yaml.safe_dump({**SNAPSHOT, "kill_switches": [switch]}))
        answer = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert (answer["id"], answer["error"]["data"]["kill_switch"]) == (1, True)
        assert await asyncio.wait_for(process.wait(), 30) == 1
        assert not _alive(worker)  # stopped with the session, not left to finish
    finally:
        files["RELEASE"].touch()  # (a survivor would do its work now)
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert not files["EFFECT"].exists()


async def test_what_a_server_leaves_running_ends_with_it(tmp_path: Path) -> None:
    started = tmp_path / "started"
    code = f"import os, pathlib, time; pathlib.Path({str(started)!r}).write_text(str(os.getpid())); time.sleep(60)"  # noqa: E501
    process = await asyncio.create_subprocess_exec(
        "sh", "-c", f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} & exit 0",
        stdin=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert await process.wait() == 0  # the server itself has exited...
    worker = await _pid_in(started)  # ...its worker runs on
    await Child(process, grace=0.2).stop()
    assert not _alive(worker)
