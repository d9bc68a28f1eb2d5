# ruff: noqa: E501  (the scripts are embedded verbatim)
"""Ways out of `tf run --isolate` that do not go through the network, each closed:

- the terminal: the agent has the user's terminal as stdin/stdout/stderr but not as its
  controlling terminal, so it cannot push a command into the user's shell (``TIOCSTI``, the
  bubblewrap CVE-2017-5226 attack) nor take the terminal over (``TIOCSCTTY``), not even as
  root started with ``CAP_SYS_ADMIN`` in its inheritable and ambient sets; Ctrl-C, Ctrl-Z
  and ``fg`` still reach it, and it still reads what the user types;
- the working directory: code the agent plants there (``./agentfirewall_proxy/``) is never
  imported by the sandbox's helper, which runs outside the namespaces; a helper that dies
  before answering is a clear error, not a traceback.

The terminal tests run a pseudo-terminal whose session leader is a minimal shell (SHELL): it
runs one job in the foreground and, when the job ends, reads what is waiting in the
terminal's input, which is what a real shell would run next.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.isolate import bridge
from agentfirewall_proxy.isolate.bridge import IsolationError, start_sandbox
from tests.cli.conftest import Project, wait_for
from tests.isolate.conftest import NOBODY, RUNNER, as_nobody, host_tool, needs_isolation

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="--isolate needs Linux"
)

SHELL = """
import fcntl, json, os, signal, subprocess, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the terminal's session leader, like a login shell
job = subprocess.Popen(sys.argv[2:], process_group=0)
os.tcsetpgrp(0, job.pid)  # the job in the foreground: the terminal signals its process group
print("job", job.pid, flush=True)
result = {"code": job.wait()}
try:
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(0, os.getpgrp())
    attrs = termios.tcgetattr(0)
    attrs[3] &= ~termios.ICANON
    attrs[6][termios.VMIN] = attrs[6][termios.VTIME] = 0
    termios.tcsetattr(0, termios.TCSANOW, attrs)
    result["queued"] = os.read(0, 4096).decode(errors="replace")  # what the shell runs next
except OSError as exc:
    result["terminal"] = f"the shell lost its terminal: {exc}"
with open(sys.argv[1], "w") as out:
    json.dump(result, out)
"""

# The agent tries every way it has to type into, or take, the user's terminal.
PUSHING_AGENT = """
import errno, fcntl, json, os, termios
def attempt(call):
    try:
        call()
        return "done"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
def push():
    for ch in b"echo PUSHED-BY-THE-AGENT\\n":
        fcntl.ioctl(0, termios.TIOCSTI, bytes([ch]))
caps = int(next(l for l in open("/proc/self/status") if l.startswith("CapEff")).split()[1], 16)
print("agent-result", json.dumps({
    "dev_tty": attempt(lambda: os.close(os.open("/dev/tty", os.O_RDWR))),
    "tiocsti": attempt(push),
    "steal": attempt(lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 1)),
    "cap_sys_admin": bool(caps & (1 << 21)),
}), flush=True)
"""

INTERACTIVE_AGENT = """
import os, signal, subprocess, sys, time
# each line in one write: the agent and its child print at once, on one terminal
CHILD = "import os, signal, sys, time; signal.signal(signal.SIGINT, lambda *_: (os.write(1, b'child got SIGINT\\\\n'), sys.exit(0))); print('child ready', flush=True); time.sleep(600)"
def stop(signum, frame):
    os.write(1, f"agent got {signal.Signals(signum).name}\\n".encode())
    child.wait()
    sys.exit(3)
signal.signal(signal.SIGINT, stop)
child = subprocess.Popen([sys.executable, "-c", CHILD])  # in the agent's process group
for _ in range(10):
    print("agent read", sys.stdin.readline().strip(), flush=True)
time.sleep(600)
"""


class Terminal:
    """A pseudo-terminal with SHELL as its session leader, running `argv` in the foreground.
    Leaving the ``with`` block ends the job and the shell, whatever happened."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path, result: Path) -> None:
        self._result = result
        self._master, slave = os.openpty()
        self.shell = subprocess.Popen(
            [sys.executable, "-c", SHELL, str(result), *argv],
            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.seen = b""

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.shell.poll() is None:
            groups = [self.shell.pid]
            if "job " in self.text:
                groups.append(self.job())  # `tf run`: its sandbox and the agent die with it
            for group in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
        self.shell.wait(timeout=30)
        os.close(self._master)

    @property
    def text(self) -> str:
        return self.seen.decode(errors="replace").replace("\r\n", "\n")

    def job(self) -> int:
        """The foreground job's process group (SHELL prints it first)."""
        return int(self.text.split("job ", 1)[1].split()[0])

    def _read(self) -> bool:
        """Read what is there (waiting a little); False once every end of the terminal closed."""
        if not select.select([self._master], [], [], 0.2)[0]:
            return True
        try:
            chunk = os.read(self._master, 65536)
        except OSError:  # EIO: nobody holds the terminal any more
            return False
        self.seen += chunk
        return bool(chunk)

    def expect(self, text: str) -> None:
        deadline = time.monotonic() + 60
        while text.encode() not in self.seen:
            if not self._read() or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared on the terminal:\n{self.text}")

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def finish(self) -> dict[str, Any]:
        """Wait for the shell to end; what it recorded."""
        deadline = time.monotonic() + 90
        while self._read() and time.monotonic() < deadline:
            if self.shell.poll() is not None and not select.select([self._master], [], [], 0)[0]:
                break
        self.shell.wait(timeout=30)
        assert self._result.exists(), self.text
        result: dict[str, Any] = json.loads(self._result.read_text())
        return result


def _agent_result(terminal: Terminal) -> dict[str, Any]:
    line = next((ln for ln in terminal.text.splitlines() if ln.startswith("agent-result ")), None)
    assert line is not None, terminal.text
    result: dict[str, Any] = json.loads(line.removeprefix("agent-result "))
    return result


def _pushing_session(tmp_path: Path, prefix: list[str], python: str) -> Terminal:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    argv = [*prefix, python, "-c", RUNNER, python, "-c", PUSHING_AGENT]
    return Terminal(argv, env=env, cwd=Path("/"), result=tmp_path / "shell.json")


def _as_root_with_sys_admin_inherited() -> tuple[list[str], str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root)")
    setpriv = host_tool("setpriv")
    return [setpriv, "--inh-caps=+sys_admin", "--ambient-caps=+sys_admin", "--"], sys.executable


WHO = {
    "as-the-user-running-the-tests": lambda: ([], sys.executable),
    "as-uid-65534-in-a-user-namespace": as_nobody,
    "as-root-with-cap-sys-admin-inheritable-and-ambient": _as_root_with_sys_admin_inherited,
}


@needs_isolation
@pytest.mark.parametrize("who", list(WHO))
def test_the_agent_cannot_type_into_the_users_terminal_nor_take_it(
    tmp_path: Path, who: str
) -> None:
    prefix, python = WHO[who]()
    with _pushing_session(tmp_path, prefix, python) as terminal:
        shell = terminal.finish()
    if "refused:" in terminal.text:
        pytest.skip(f"this kernel refuses the sandbox here: {terminal.text.strip()[-200:]}")
    if "ModuleNotFoundError" in terminal.text or "PermissionError" in terminal.text:
        pytest.skip(f"uid {NOBODY} cannot run this checkout: {terminal.text.strip()[-200:]}")
    assert shell.get("queued") == "", shell  # nothing waits for the user's shell to run it
    assert shell["code"] == 0, terminal.text
    agent = _agent_result(terminal)
    assert agent["dev_tty"] == "ENXIO"  # no controlling terminal at all
    assert agent["tiocsti"] in ("EPERM", "EIO")  # EIO: dev.tty.legacy_tiocsti=0 refuses anyway
    assert agent["steal"] == "EPERM"
    assert agent["cap_sys_admin"] is False


@pytest.mark.slow
@needs_isolation
def test_ctrl_c_still_stops_the_agent_and_its_children_and_it_reads_the_terminal(
    isolated_project: Project, tmp_path: Path
) -> None:
    project = isolated_project
    project.agent("interactive.py", INTERACTIVE_AGENT)
    argv = ["tf", "run", "--name", "Bot", "--isolate", "--", "python", "interactive.py"]
    with Terminal(
        argv, env=project.env, cwd=project.root, result=tmp_path / "shell.json"
    ) as terminal:
        terminal.expect("child ready")
        terminal.type(b"hello from the user\n")
        terminal.expect("agent read hello from the user")  # stdin is still the user's terminal
        terminal.type(b"\x03")  # Ctrl-C
        shell = terminal.finish()
    assert shell["code"] == 3, terminal.text  # the agent's own exit code, from its handler
    assert terminal.text.count("agent got SIGINT") == 1  # once, like a terminal sends it
    assert terminal.text.count("child got SIGINT") == 1  # its whole process group, too
    assert shell["queued"] == ""


def _agent_state(script: str) -> str:
    """The state letter (R, S, T...) of the process running `python SCRIPT`."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv[1:2] == [script.encode()]:
                return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
    return ""


@pytest.mark.slow
@needs_isolation
def test_ctrl_z_stops_the_agent_and_fg_resumes_it(
    isolated_project: Project, tmp_path: Path
) -> None:
    project = isolated_project
    project.agent("suspended.py", INTERACTIVE_AGENT)
    argv = ["tf", "run", "--name", "Bot", "--isolate", "--", "python", "suspended.py"]
    with Terminal(
        argv, env=project.env, cwd=project.root, result=tmp_path / "shell.json"
    ) as terminal:
        terminal.expect("child ready")
        terminal.type(b"\x1a")  # Ctrl-Z
        wait_for(lambda: _agent_state("suspended.py") == "T", what="the agent to stop")
        os.killpg(terminal.job(), signal.SIGCONT)  # what `fg` does (the job kept the terminal)
        wait_for(lambda: _agent_state("suspended.py") not in ("T", ""), what="the agent to resume")
        terminal.type(b"after fg\n")
        terminal.expect("agent read after fg")
        terminal.type(b"\x03")
        assert terminal.finish()["code"] == 3, terminal.text


@needs_isolation
def test_code_planted_in_the_working_directory_never_runs_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent writes ./agentfirewall_proxy/ where it runs (the project); the next isolated
    run's helper, outside the namespaces, must not import it."""
    marker = tmp_path / "planted-code-ran"
    work = tmp_path / "project"
    (work / "agentfirewall_proxy" / "isolate").mkdir(parents=True)
    (work / "agentfirewall_proxy" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
    )
    (work / "agentfirewall_proxy" / "isolate" / "__init__.py").write_text("")
    monkeypatch.chdir(work)
    show_cwd = "import os; open('cwd.txt', 'w').write(os.getcwd())"
    box = start_sandbox([sys.executable, "-c", show_cwd], {"PATH": os.environ.get("PATH", "")}, [],
                        on_blocked=lambda _b: None)  # fmt: skip
    assert box.process.wait() == 0
    box.close()
    assert not marker.exists()
    assert (work / "cwd.txt").read_text() == str(work)  # the agent still runs where `tf run` did


@pytest.mark.parametrize(
    "helper",
    [
        # reads part of the request and dies: `tf run`'s read is a connection reset
        "import socket, sys; socket.socket(fileno=int(sys.argv[1])).recv(1); sys.exit(3)",
        # dies at once (like a helper that cannot import the package)
        "import sys; sys.exit(3)",
    ],
    ids=["reset", "end-of-stream"],
)
def test_a_helper_that_dies_before_answering_is_an_isolation_error(
    monkeypatch: pytest.MonkeyPatch, helper: str
) -> None:
    monkeypatch.setattr(bridge, "_HELPER", ("-c", helper))
    with pytest.raises(IsolationError) as caught:
        start_sandbox(["true"], {}, [], on_blocked=lambda _b: None)
    assert (
        str(caught.value) == "start the sandbox: its helper exited with status 3 before it answered"
    )
    assert "the helper's own error is above" in caught.value.advice(os.geteuid())
