"""`tf run --isolate` as a long-running agent's supervisor: signals are forwarded, the exit
code is the agent's, and a SIGKILL of `tf run` leaves no namespace, process or device."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import Project, wait_for
from tests.isolate.conftest import needs_isolation

pytestmark = [pytest.mark.slow, needs_isolation]

LONG_RUNNING = """
import os, signal, subprocess, sys, time
def stop(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
    sys.exit(3)
if sys.argv[1] == "handles":
    signal.signal(signal.SIGTERM, stop)
# a grandchild that would outlive its parent if nothing cleaned up
subprocess.Popen(["sleep", "600"])
print(os.readlink("/proc/self/ns/net"), flush=True)
time.sleep(600)
"""


def _start(project: Project, mode: str) -> tuple[subprocess.Popen[str], str]:
    project.agent("long.py", LONG_RUNNING)
    child = project.spawn(
        ["tf", "run", "--name", "Bot", "--isolate", "--", "python", "long.py", mode]
    )
    assert child.stdout is not None
    namespace = child.stdout.readline().strip()
    assert namespace.startswith("net:["), child.stderr.read() if child.stderr else ""
    return child, namespace


def _holders(namespace: str) -> list[str]:
    """Every process, and every open descriptor, that keeps `namespace` alive."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        links = [proc / "ns" / "net"]
        with contextlib.suppress(OSError):
            links += list((proc / "fd").iterdir())
        for link in links:
            try:
                if os.readlink(link) == namespace:
                    found.append(str(link))
            except OSError:
                continue
    return found


def test_sigterm_reaches_the_agent_and_its_exit_code_returns(isolated_project: Project) -> None:
    child, namespace = _start(isolated_project, "handles")
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=60)
    assert "got SIGTERM" in out
    assert child.returncode == 3
    wait_for(lambda: not _holders(namespace), what="the namespace to go")


def test_a_signal_that_ends_the_agent_is_reported_as_128_plus_n(isolated_project: Project) -> None:
    child, namespace = _start(isolated_project, "default")
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM
    wait_for(lambda: not _holders(namespace), what="the namespace to go")


def test_sigkill_of_tf_run_leaves_nothing(isolated_project: Project) -> None:
    devices = socket.if_nameindex()
    child, namespace = _start(isolated_project, "handles")
    assert _holders(namespace)  # the agent and its grandchild live in it
    child.kill()
    child.communicate(timeout=60)
    # the kernel takes the sandbox, the agent and its grandchild, and frees the namespace
    wait_for(lambda: not _holders(namespace), what="every process in the namespace to end")
    assert socket.if_nameindex() == devices  # no device was ever made on the host
