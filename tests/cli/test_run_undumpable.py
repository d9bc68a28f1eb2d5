"""`tf run` and `tf up` keep same-user processes out of their own environment: `tf run`
removes `--token-env` variables from the agent's, but its own still holds them, and the agent
could read `/proc/<its parent>/environ` (same uid, a dumpable process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and prctl are Linux's")

# The agent reads its parent's environment as another process of the same user would.
AGENT = r"""
import os
try:
    data = open(f"/proc/{os.getppid()}/environ", "rb").read()
except PermissionError:
    print("refused")
else:
    print("read the secret" if b"ghp_REAL_parent_secret" in data else "read, no secret")
"""

# The parent: `tf run`'s own spawn, or (the control) a plain Popen from a dumpable process.
# As root (CI), it first gives up every capability, for itself and the agent: a normal user's
# processes have none, and root's CAP_SYS_PTRACE would read any process.
PARENT = r"""
import os, subprocess, sys
if os.geteuid() == 0:
    from agentfirewall_proxy.isolate.kernel import drop_capabilities
    drop_capabilities(list(range(64)))
from agentfirewall_proxy.cli.run_cmd import spawn
command = [sys.executable, "-c", sys.argv[2]]
if sys.argv[1] == "tf-run":
    sys.exit(spawn(command, {"PATH": "/usr/bin:/bin", "PYTHONPATH": sys.argv[3]}))
sys.exit(subprocess.call(command, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": sys.argv[3]}))
"""


def _agent_sees(how: str) -> str:
    import agentfirewall_proxy

    root = str(__import__("pathlib").Path(agentfirewall_proxy.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-c", PARENT, how, AGENT, root],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": root, "GITHUB_TOKEN": "ghp_REAL_parent_secret"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_plain_parent_is_readable_so_the_probe_is_real() -> None:
    assert _agent_sees("plain") == "read the secret"


def test_the_agent_cannot_read_tf_runs_environment() -> None:
    assert _agent_sees("tf-run") == "refused"
