"""`tf run --isolate` tests: a project with `tf up` in front of fake upstreams, and the kernel
facts the tests depend on (each test that needs one skips with the reason when it is absent)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Project, tf_bin  # noqa: F401 (a fixture)
from tests.fakes import FakeUpstreams, start_fakes

__all__ = [
    "AGENT_USERS",
    "NOBODY",
    "RUNNER",
    "SYSTEM_PYTHON",
    "as_nobody",
    "echo_server",
    "isolation_available",
    "kernel_refusal",
    "needs_isolation",
    "run_agent_as",
]

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534

# start_sandbox around argv, as `tf run --isolate` does (no gateway: nothing to bridge).
RUNNER = """
import sys
from agentfirewall_proxy.isolate.bridge import IsolationError, start_sandbox
try:
    box = start_sandbox(sys.argv[1:], {"PATH": "/usr/bin:/bin"}, [], on_blocked=lambda _b: None)
except IsolationError as exc:
    print("refused:", exc, flush=True)
    sys.exit(0)
code = box.process.wait()
box.close()
sys.exit(code)
"""


def kernel_refusal() -> str | None:
    """Why this machine cannot run `--isolate` (None when it can)."""
    if not sys.platform.startswith("linux"):
        return "--isolate needs Linux"
    from agentfirewall_proxy.isolate.run import check_available

    found = check_available()
    return None if found.ok else f"the kernel refuses: {found.detail}"


_REFUSAL = kernel_refusal()


def isolation_available() -> bool:
    return _REFUSAL is None


needs_isolation = pytest.mark.skipif(_REFUSAL is not None, reason=_REFUSAL or "")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


@pytest.fixture(scope="session")
def isolate_fakes() -> Iterator[FakeUpstreams]:
    running = start_fakes(["github", "openai", "git"])
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def isolated_project(
    tmp_path_factory: pytest.TempPathFactory,
    tf_bin: Path,  # noqa: F811 (the fixture imported above)
    isolate_fakes: FakeUpstreams,
) -> Iterator[Project]:
    """One project and `tf up` for every isolate test: github (and git) and openai connectors, every
    action of both allowed for `Bot`."""
    root = tmp_path_factory.mktemp("isolate") / "proj"
    root.mkdir()
    project = Project(root, tf_bin, isolate_fakes)
    try:
        project.tf("init")
        project.up()
        project.tf("connector", "add", "github", "--token", "ghp_isolate_real_token")
        project.tf("connector", "add", "openai", "--token", "sk-isolate-real-key")
        for connector in ("github", "openai"):
            project.tf("permissions", "set", "--gateway", "Bot", "--connector", connector,
                       "--action", f"{connector}.*", "--decision", "allow")  # fmt: skip
        yield project
    finally:
        project.stop_up()


def host_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed")
    return path


def run_as_root_without_sys_admin(
    argv: list[str], **kw: object
) -> subprocess.CompletedProcess[str]:
    """Root with CAP_SYS_ADMIN dropped: a container's default (`docker run` without
    --privileged), where creating namespaces is refused."""
    setpriv = host_tool("setpriv")
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [setpriv, "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--", *argv],
        capture_output=True, text=True, timeout=120, check=False, **kw,
    )  # fmt: skip


def as_nobody() -> tuple[list[str], str]:
    """The command prefix that runs as uid 65534 (an ordinary user), and the interpreter it can
    run (the tests' own may live where that user cannot read)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become uid 65534 (CI runs as root)")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"no {SYSTEM_PYTHON}")
    setpriv = host_tool("setpriv")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return prefix, SYSTEM_PYTHON


@contextlib.contextmanager
def echo_server(host: str) -> Iterator[int]:
    """A server on the host's `host` that answers ``pong:`` and what it got; its port."""
    server = socket.create_server((host, 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"pong:" + conn.recv(64))

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def _as_the_user_running_the_tests() -> tuple[list[str], str]:
    return [], sys.executable


_USERS = {
    "as-the-user-running-the-tests": _as_the_user_running_the_tests,
    "as-uid-65534-in-a-user-namespace": as_nobody,
}
AGENT_USERS = list(_USERS)
_REPO = Path(__file__).resolve().parents[2]


@functools.cache
def run_agent_as(who: str, agent: str) -> dict[str, Any]:
    """Run the Python source `agent` in the sandbox (RUNNER) as `who`, one of AGENT_USERS: the
    JSON it printed after ``agent-result `` (skips where the sandbox or the user cannot run);
    run once per test session."""
    prefix, python = _USERS[who]()
    done = subprocess.run(
        [*prefix, python, "-c", RUNNER, python, "-c", agent],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(_REPO)},
        cwd="/", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "refused:" in done.stdout:
        pytest.skip(f"this kernel refuses the sandbox here: {done.stdout.strip()[-200:]}")
    if "ModuleNotFoundError" in done.stderr or "PermissionError" in done.stderr:
        pytest.skip(f"uid {NOBODY} cannot run this checkout: {done.stderr.strip()[-200:]}")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("agent-result ")), None)
    assert line is not None, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(line.removeprefix("agent-result "))
    return result
