"""End-to-end helpers: `tf` as a subprocess in a temporary project, `tf up` in the background.

``tf`` is a small shell script on PATH that runs ``python -m agentfirewall_proxy.cli`` from this
checkout, so the commands of the seed run exactly as a user types them (also through bash).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeUpstreams, start_fakes
from tests.machinelock import machine_lock

REPO = Path(__file__).resolve().parents[2]
#: the resource `default_ports()` locks (a shell: `flock` on `lock_file(DEFAULT_PORTS)`)
DEFAULT_PORTS = "tf up on the default ports 3000 and 8443"
_DROP = (
    "TF_SERVER",
    "TF_ADMIN_TOKEN",
    "TF_PROXY",
    "TF_CA_CERT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "NODE_OPTIONS",
)


@pytest.fixture(scope="session")
def tf_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bin")
    script = directory / "tf"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agentfirewall_proxy.cli "$@"\n')
    script.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def upstreams() -> Iterator[FakeUpstreams]:
    running = start_fakes(["github", "stripe"])
    try:
        yield running
    finally:
        running.stop()


class Project:
    """A directory where a user runs `tf`; `up()` starts `tf up` on free ports."""

    def __init__(self, root: Path, tf_bin: Path, fakes: FakeUpstreams | None) -> None:
        self.root = root
        self.fakes = fakes
        self.env = {k: v for k, v in os.environ.items() if k not in _DROP}
        self.env["PATH"] = f"{tf_bin}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["PYTHONPATH"] = str(REPO)
        self.env["COLUMNS"] = "200"
        self.up_process: subprocess.Popen[str] | None = None
        self.up_log = root.parent / f"{root.name}-up.log"

    def tf(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["tf", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"tf {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def tf_json(self, *args: str) -> Any:
        return json.loads(self.tf(*args, "--json").stdout)

    def bash(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"bash exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def spawn(
        self, args: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            list(args),
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # tf up ---------------------------------------------------------------------------

    def up(self, *extra: str) -> dict[str, Any]:
        args = ["tf", "up", "--port", "0", "--proxy-port", "0", *extra]
        if self.fakes is not None:
            for entry in self.fakes.resolve_entries():
                args += ["--resolve", entry]
            args += ["--upstream-ca", str(self.fakes.ca_path)]
        log = open(self.up_log, "a")  # noqa: SIM115 (closed in stop_up)
        self.up_process = subprocess.Popen(
            args, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        self._log = log
        deadline = time.monotonic() + 60
        up_file = self.root / ".tf" / "up.json"
        while time.monotonic() < deadline:
            if up_file.exists():
                try:
                    return dict(json.loads(up_file.read_text()))
                except ValueError:
                    pass
            if self.up_process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"tf up did not start:\n{self.up_log.read_text()}")

    def stop_up(self) -> int:
        process = self.up_process
        if process is None:
            return 0
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        self.up_process = None
        self._log.close()
        return code

    def agent(self, name: str, source: str) -> Path:
        path = self.root / name
        path.write_text(source)
        return path


def default_ports() -> AbstractContextManager[None]:
    """Held while a test takes the default ports of `tf up` (3000 and 8443, or the next free
    ones, as a user's `tf up` does), until they are bound. Two started at once (two
    pytest-xdist workers) never share a port (`tf up` holds the one it chooses from the
    choice on); the lock only keeps which one gets 3000 predictable. `Project.up()` asks for
    any free ports (0) instead and needs no lock."""
    return machine_lock(DEFAULT_PORTS)


@pytest.fixture
def project(tmp_path: Path, tf_bin: Path, upstreams: FakeUpstreams) -> Iterator[Project]:
    root = tmp_path / "myproject"
    root.mkdir()
    proj = Project(root, tf_bin, upstreams)
    try:
        yield proj
    finally:
        proj.stop_up()


@pytest.fixture
def bare_project(tmp_path: Path, tf_bin: Path) -> Iterator[Project]:
    """A project directory without fakes (for commands that need no upstream)."""
    root = tmp_path / "bare"
    root.mkdir()
    proj = Project(root, tf_bin, None)
    try:
        yield proj
    finally:
        proj.stop_up()


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def tameflare_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` of this checkout: the sdist, and the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def fresh_venv(path: Path) -> dict[str, str]:
    """A new virtualenv at `path`; the environment that runs its `pip`, `python` and `tf`."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in _DROP and k != "PYTHONPATH"}
    env["PATH"] = f"{path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(path)
    env["COLUMNS"] = "200"
    return env


@pytest.fixture(scope="module")
def sealed_project(tmp_path_factory: pytest.TempPathFactory, tf_bin: Path) -> Path:
    """A project whose vault holds one credential (made once, copied by each test)."""
    root = tmp_path_factory.mktemp("sealed") / "proj"
    root.mkdir()
    project = Project(root, tf_bin, None)
    project.tf("init")
    project.tf("connector", "add", "github", "--token", "ghp_" + "s" * 36)
    return root
