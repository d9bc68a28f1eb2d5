"""`tf run` catches the signals it passes on to its agent from before the agent starts: a
SIGTERM that comes while the agent is being started (a supervisor stopping both at once, a
busy machine) reaches the agent once it runs, and never kills `tf run` first (which would
leave the agent running unsupervised, or kill an isolated one's sandbox with it)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

# the window made certain: the signal arrives after the handlers, before the agent exists
SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    from agentfirewall_proxy.cli.run_cmd import Supervisor

    AGENT = "import time; print('agent up', flush=True); time.sleep(60)"
    with Supervisor() as supervisor:
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        agent = subprocess.Popen([sys.executable, "-c", AGENT])
        print("exit", supervisor.wait(agent), flush=True)
    """
)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGUSR1"])
def test_a_signal_before_the_agent_starts_reaches_it(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, name], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # `tf run` itself lived on
    assert f"exit {128 + getattr(signal, name)}" in done.stdout  # the agent got it


def test_the_previous_handlers_come_back() -> None:
    from agentfirewall_proxy.cli.run_cmd import Supervisor

    before = signal.getsignal(signal.SIGTERM)
    with Supervisor():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
