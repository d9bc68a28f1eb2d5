"""The project's state, started twice at once; backups of a damaged key.

- A start (`python -m agentfirewall_server`, `tf up`) holds the data directory's lock from
  its check until it stops: at no step of the start could another one take it (checked at
  every step, in-process).
- Of a `tf up` and a `python -m agentfirewall_server`, or of two servers, started at the same
  instant on one `.tf`, one serves and the other stops with one line naming the first (its
  pid), exit 1; the state's keys and tokens are left as they were.
- The loser of two `tf up` on the default ports says only that another `tf up` runs: no
  "port is taken" warning before it.
- `tf backup` of a damaged vault key file stops with `error: vault: <file>: ...` (nothing
  written); `tf restore` is refused while a `tf up` starts or runs on the data directory.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.errors import VaultError
from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_proxy.cli.state import DEFAULT_PROXY, DEFAULT_SERVER
from agentfirewall_proxy.up import UpInfo, UpOptions, holding_up_lock, run_up
from agentfirewall_server import main as server_module
from agentfirewall_server import vaultcheck
from agentfirewall_server.datalock import DataBusy, ServerLock
from agentfirewall_server.keystore import KEYRING_FILE, load_keyring
from agentfirewall_server.settings import Settings
from tests.cli.conftest import Project, default_ports
from tests.cli.test_project_state_guards import KEY_DAMAGES
from tests.fuzzscale import examples

TOKEN = "ghp_" + "t" * 36
#: How many times the processes are started at the same instant (each round a new race).
ROUNDS = 4
#: Waits on the pipe `argv[1]` (the barrier: its writer closes it), then runs `main(argv[2:])`.
LAUNCH = """
import os, sys
from {module} import main
os.read(int(sys.argv[1]), 1)
sys.exit(main(sys.argv[2:]))
"""
TF = ("agentfirewall_proxy.cli.app", "up", "--port", "0", "--proxy-port", "0")
SERVER = ("agentfirewall_server.main", "--port", "0")
#: What each says once it serves.
SERVING = {
    "agentfirewall_proxy.cli.app": "TameFlare is up",
    "agentfirewall_server.main": "startup complete",
}


def _one_error(text: str) -> str:
    """The only line `text` holds: `error: ...` (no traceback, no warning before it)."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    return lines[0]


def _state(state: Path) -> dict[str, bytes]:
    names = ("encryption.key", "admin.token", "gateway.token", "signing-key.pem")
    return {name: (state / name).read_bytes() for name in names}


@pytest.fixture
def sealed(bare_project: Project) -> Project:
    """A project whose vault holds one credential (its database and key made)."""
    bare_project.tf("init")
    bare_project.tf("connector", "add", "github", "--token", TOKEN)
    return bare_project


# the lock is held at every step of a start ---------------------------------------------


def _free(data: Path) -> bool:
    """Could another start take the data directory's lock now?"""
    lock = ServerLock(data, Settings(data_dir=data).resolved_database_url)
    try:
        lock.acquire()
    except DataBusy:
        return False
    lock.release()
    return True


def _probing(
    monkeypatch: pytest.MonkeyPatch, data: Path, seen: dict[str, bool], owner: Any, name: str
) -> None:
    """`owner.name` first records whether the lock is free at that step."""
    real = getattr(owner, name)

    def step(*args: Any, **kwargs: Any) -> Any:
        seen[name] = _free(data)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, step)


def test_a_server_start_holds_the_lock_from_its_check_until_it_stops(
    sealed: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sealed.root / ".tf"
    seen: dict[str, bool] = {}
    for owner, name in [
        (vaultcheck, "preflight"),
        (server_module, "listen"),
        (server_module, "ensure_data_dir"),
        (server_module, "_has_owner"),
        (server_module, "build_server"),
    ]:
        _probing(monkeypatch, data, seen, owner, name)
    real_startup = server_module._Server.startup

    async def startup(self: Any, sockets: Any = None) -> None:
        await real_startup(self, sockets)
        seen["serving"] = _free(data)
        self.should_exit = True  # served: stop at once (the lifespan's stop runs)

    monkeypatch.setattr(server_module._Server, "startup", startup)
    monkeypatch.setattr(server_module, "GC_FREEZE", False)  # this process's collector is kept
    monkeypatch.setattr(server_module, "GC_THRESHOLDS", None)
    assert server_module.main(["--data-dir", str(data), "--port", "0"]) == 0
    assert seen == dict.fromkeys(
        ["preflight", "listen", "ensure_data_dir", "_has_owner", "build_server", "serving"],
        False,
    )
    assert _free(data)  # stopped: released


def test_a_failed_server_start_releases_the_lock(sealed: Project) -> None:
    data = sealed.root / ".tf"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert server_module.main(["--data-dir", str(data), "--port", str(port)]) == 1
    assert _free(data)


def test_a_tf_up_start_holds_the_lock_from_its_check_until_it_stops(
    sealed: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentfirewall_server import app, bootstrap

    data = sealed.root / ".tf"
    seen: dict[str, bool] = {}
    for owner, name in [
        (vaultcheck, "preflight"),
        (bootstrap, "ensure_data_dir"),
        (app, "create_app"),
    ]:
        _probing(monkeypatch, data, seen, owner, name)

    async def serve() -> None:
        stop = asyncio.Event()

        def ready(info: UpInfo) -> None:
            seen["serving"] = _free(data)
            stop.set()

        await run_up(UpOptions(state_dir=data, port=0, proxy_port=0), ready, stop)

    asyncio.run(serve())
    assert seen == dict.fromkeys(["preflight", "ensure_data_dir", "create_app", "serving"], False)
    assert _free(data)


# started at the same instant, in real processes -----------------------------------------


class _Started:
    """A process started behind the barrier, its output read as it comes."""

    def __init__(self, project: Project, command: tuple[str, ...], barrier: int) -> None:
        module, *args = command
        self.serving = SERVING[module]
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH.format(module=module), str(barrier), *args],
            cwd=project.root,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=(barrier,),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def said(self) -> str:
        return "".join(self.lines)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()
        return self.said


def _race(project: Project, first: tuple[str, ...], second: tuple[str, ...]) -> None:
    """Start both at once: one serves, the other says who, in one line; no key changes."""
    state = project.root / ".tf"
    before = _state(state)
    read, write = os.pipe()
    try:
        both = [_Started(project, first, read), _Started(project, second, read)]
    finally:
        os.close(read)
    os.close(write)  # the barrier falls: both read its end at once
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and all(s.process.poll() is None for s in both):
            time.sleep(0.05)
        stopped = [s for s in both if s.process.poll() is not None]
        assert len(stopped) == 1, [s.stop() for s in both]
        loser, winner = stopped[0], next(s for s in both if s is not stopped[0])
        said = loser.stop()
        assert loser.process.returncode == 1, said
        line = _one_error(said)
        assert f"(pid {winner.process.pid})" in line, said
        while time.monotonic() < deadline and winner.serving not in winner.said:
            assert winner.process.poll() is None, winner.stop()
            time.sleep(0.05)
        assert winner.serving in winner.said, winner.stop()
    finally:
        for started in both:
            started.stop()
    assert _state(state) == before


@pytest.mark.parametrize(
    "pair", [(TF, SERVER), (SERVER, SERVER)], ids=["tf-up-and-server", "two-servers"]
)
def test_two_starts_at_the_same_instant_one_serves_the_other_says_so(
    sealed: Project, pair: tuple[tuple[str, ...], tuple[str, ...]]
) -> None:
    for _ in range(ROUNDS):
        _race(sealed, *pair)


# the loser of two `tf up` on the default ports -----------------------------------------


@contextmanager
def _taken(*ports: int) -> Iterator[None]:
    """`ports` held on 127.0.0.1 (one another program holds is taken all the same)."""
    held = []
    for port in ports:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            sock.close()
            continue
        held.append(sock)
    try:
        yield
    finally:
        for sock in held:
            sock.close()


def test_the_loser_of_two_tf_up_on_the_default_ports_says_only_that(sealed: Project) -> None:
    """The other `tf up` holds the lock (here: this process, as one still starting) and the
    default ports (here: taken by this test): the loser never gets as far as moving on."""
    state = sealed.root / ".tf"
    ports = int(DEFAULT_SERVER.rsplit(":", 1)[1]), int(DEFAULT_PROXY.rsplit(":", 1)[1])
    with default_ports(), _taken(*ports), holding_up_lock(state):
        second = sealed.tf("up", check=False)
    assert second.returncode == 1
    line = _one_error(second.stdout + second.stderr)
    assert f"another `tf up` is starting or running for {state} (pid {os.getpid()})" in line


# tf backup of a damaged key; tf restore while a tf up starts -----------------------------


DAMAGES = KEY_DAMAGES


@pytest.fixture(scope="module")
def sealed_state(sealed_project: Path) -> Path:
    """A `.tf` whose vault holds one credential (made once, copied by each test)."""
    return sealed_project / ".tf"


def _copy(sealed_state: Path, where: Path) -> Path:
    state = where / ".tf"
    shutil.copytree(sealed_state, state)
    return state


def _snapshot(path: Path) -> object:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else path.read_bytes()


def _files(state: Path) -> dict[str, object]:
    return {p.name: _snapshot(p) for p in state.iterdir()}


def _tf(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = tf_main(list(args))
    said = capsys.readouterr()
    return code, said.out + said.err


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_backup_of_a_damaged_key_file_stops_in_one_line(
    sealed_state: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if damage == "key-unreadable" and os.geteuid() == 0:
        pytest.skip("root reads any file")
    state = _copy(sealed_state, tmp_path)
    name, spoil = DAMAGES[damage]
    spoil(state)
    kept = _files(state)
    out = tmp_path / "backup"
    code, said = _tf(capsys, "backup", "--data-dir", str(state), str(out))
    assert code == 1, said
    assert _one_error(said).startswith(f"error: vault: {state / name}: "), said
    assert "restore it from a backup" in said
    assert _files(state) == kept  # nothing changed
    assert not out.exists()  # no half backup (it would hold the keys)


@settings(max_examples=examples(40), deadline=None)
@given(
    which=st.sampled_from(["encryption.key", KEYRING_FILE]),
    data=st.binary(max_size=80) | st.text(max_size=80).map(str.encode),
)
def test_a_backup_of_any_key_file_content_is_made_or_names_the_file(
    sealed_state: Path,
    tmp_path_factory: pytest.TempPathFactory,
    which: str,
    data: bytes,
) -> None:
    where = tmp_path_factory.mktemp("any")
    state = _copy(sealed_state, where)
    (state / which).write_bytes(data)
    try:
        load_keyring(Settings(data_dir=state))
    except VaultError as exc:
        problem: str | None = str(exc)
    else:
        problem = None
    out = where / "backup"
    code, said = _tf_quietly("backup", "--data-dir", str(state), str(out))
    if problem is not None:
        assert code == 1, said
        assert _one_error(said) == f"error: vault: {problem}", said
        assert not out.exists()
    else:
        assert "Traceback" not in said, said
        assert code in (0, 1), said
    assert (state / which).read_bytes() == data


def _tf_quietly(*args: str) -> tuple[int, str]:
    """`tf` in-process, its output captured (Hypothesis forbids capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = tf_main(list(args))
    return code, out.getvalue() + err.getvalue()


def test_restore_is_refused_while_a_tf_up_starts_on_the_data(
    sealed_state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `tf up` holds `up.lock` from before it binds, `server.lock` only later: a restore
    in between would replace the data under it."""
    state = _copy(sealed_state, tmp_path)
    code, said = _tf(capsys, "backup", "--data-dir", str(state), str(tmp_path / "backup"))
    assert code == 0, said
    with holding_up_lock(state):  # as a `tf up` still starting holds it
        kept = _files(state)
        code, said = _tf(
            capsys, "restore", str(tmp_path / "backup"), "--data-dir", str(state), "--force"
        )
        assert code == 1, said
        line = _one_error(said)
        assert f"another `tf up` is starting or running for {state} (pid {os.getpid()})" in line
        assert _files(state) == kept
    code, said = _tf(  # stopped: the restore goes ahead
        capsys, "restore", str(tmp_path / "backup"), "--data-dir", str(state), "--force"
    )
    assert code == 0, said
