"""The project's files fail closed, in one clear line.

- `tf init --force` never deletes a state a server (`python -m agentfirewall_server`, whose
  data directory is `./.tf`) or a `tf up` holds: it names the process and what to do.
- A damaged vault key file stops `tf up` and the server with `error: vault: <file>: ...`
  (restore it from a backup), never a traceback, and the file is left as it is.
- Of two `tf up` started at once, one serves and the other says another `tf up` runs (its
  pid), nothing else.
- No error echoes a URL's password (`--upstream-proxy`, `--control-plane`; `tf`'s
  `--server`, `TF_SERVER`, `TF_PROXY`, `config.yaml`), however mistyped the URL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.errors import VaultError
from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_proxy.cli.init_cmd import create_state
from agentfirewall_proxy.cli.state import Config
from agentfirewall_proxy.main import parse_args
from agentfirewall_proxy.options import shown_url
from agentfirewall_proxy.up import UpError, holding_up_lock
from agentfirewall_server.keystore import KEYRING_FILE, load_keyring
from agentfirewall_server.main import main as server_main
from agentfirewall_server.settings import Settings
from tests.cli.conftest import Project
from tests.fuzzscale import examples

TOKEN = "ghp_" + "s" * 36
UP = ("tf", "up", "--port", "0", "--proxy-port", "0")
SERVER = (sys.executable, "-m", "agentfirewall_server", "--port", "0")


def _stop(process: subprocess.Popen[str]) -> str:
    """Stop `process` (SIGINT, then SIGKILL) and return what it printed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return (out or "") + (err or "")


def _serving(project: Project) -> tuple[subprocess.Popen[str], str]:
    """`python -m agentfirewall_server --port 0` in the project (data directory `.tf`): the
    process and its URL once it answers."""
    server = subprocess.Popen(
        SERVER,
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    seen = []
    for line in server.stdout:  # it prints its URL once it listens
        seen.append(line)
        if found := re.search(r"http://127\.0\.0\.1:\d+", line):
            url = found.group(0)
            break
    else:
        raise AssertionError("the server did not start:\n" + "".join(seen))
    for _ in range(300):
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.05)
    _stop(server)
    raise AssertionError("the server does not answer")


def _state(project: Project) -> dict[str, bytes]:
    state = project.root / ".tf"
    return {name: (state / name).read_bytes() for name in ("encryption.key", "admin.token")}


def _one_error(text: str) -> str:
    """The only line `text` holds (after a `tf` or server failure): `error: ...`."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    return lines[0]


# tf init --force ------------------------------------------------------------------------


def test_init_force_refuses_while_a_server_runs_on_the_state(bare_project: Project) -> None:
    project = bare_project
    project.tf("init")
    server, url = _serving(project)
    try:
        admin = (project.root / ".tf" / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {admin}"}
        made = httpx.post(
            f"{url}/api/v1/connectors",
            headers=headers,
            json={"type": "github", "token": TOKEN},  # sealed in the vault
            timeout=30,
        )
        assert made.status_code == 201, made.text
        before = _state(project)
        forced = project.tf("init", "--force", check=False)
        assert forced.returncode == 1, forced.stdout + forced.stderr
        assert "Traceback" not in forced.stderr
        assert f"(pid {server.pid})" in forced.stderr
        assert "stop it" in forced.stderr
        assert _state(project) == before
        assert (project.root / ".tf" / "agentfirewall.db").is_file()
        listed = httpx.get(f"{url}/api/v1/connectors", headers=headers, timeout=30)
        assert [c["type"] for c in listed.json()["connectors"]] == ["github"]
    finally:
        _stop(server)
    project.tf("init", "--force")  # stopped: it starts over
    assert not (project.root / ".tf" / "encryption.key").exists()
    assert (project.root / ".tf" / "admin.token").read_bytes() != before["admin.token"]


def test_a_starting_tf_up_keeps_init_force_and_another_tf_up_away(
    bare_project: Project,
) -> None:
    """A `tf up` holds its lock from before it opens the data (no up.json yet): held here
    by this process, as a `tf up` still starting holds it."""
    project = bare_project
    project.tf("init")
    state = project.root / ".tf"
    with holding_up_lock(state):
        forced = project.tf("init", "--force", check=False)
        assert forced.returncode == 1
        assert f"another `tf up` is starting or running for {state} (pid {os.getpid()})" in (
            forced.stderr
        )
        assert "stop it" in forced.stderr
        assert (state / "admin.token").is_file()
        second = project.tf(*UP[1:], check=False)
        assert second.returncode == 1
        line = _one_error(second.stdout + second.stderr)
        assert f"another `tf up` is starting or running for {state} (pid {os.getpid()})" in line
        with pytest.raises(UpError, match="another `tf up`"):  # and within one process
            with holding_up_lock(state):
                pass


@pytest.mark.parametrize("initialised", [False, True], ids=["fresh", "after-init"])
def test_two_tf_up_started_at_once_one_serves_the_other_says_so(
    bare_project: Project, initialised: bool
) -> None:
    project = bare_project
    if initialised:
        project.tf("init")
    both = [project.spawn(UP), project.spawn(UP)]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and all(p.poll() is None for p in both):
            time.sleep(0.05)
        stopped = [p for p in both if p.poll() is not None]
        assert len(stopped) == 1, [_stop(p) for p in both]
        loser, winner = stopped[0], next(p for p in both if p is not stopped[0])
        said = _stop(loser)
        assert loser.returncode == 1, said
        line = _one_error(said)
        assert "`tf up`" in line, said
        assert f"(pid {winner.pid}" in line, said
        up_file = project.root / ".tf" / "up.json"
        while time.monotonic() < deadline and not up_file.exists():
            assert winner.poll() is None, _stop(winner)
            time.sleep(0.05)
        server_url = json.loads(up_file.read_text())["server_url"]
        assert httpx.get(f"{server_url}/api/health", timeout=30).status_code == 200
    finally:
        outputs = [_stop(p) for p in both]
    assert all("Traceback" not in text for text in outputs), outputs


def test_a_state_another_made_meanwhile_is_used_whole(tmp_path: Path) -> None:
    """The fresh-project race, in order: another `tf up` or `tf init` renames its `.tf/` into
    place while this one builds its own (here: from within the build)."""
    theirs: list[Path] = []

    def meanwhile(project: object) -> None:
        if not theirs:
            theirs.append(create_state(tmp_path, Config()).state_dir)

    ours = create_state(tmp_path, Config(), meanwhile)
    assert ours.state_dir == theirs[0]
    assert ours.read_token("admin.token") == (theirs[0] / "admin.token").read_text().strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", ".tf"]  # no .tf-new-*


# a damaged vault key file --------------------------------------------------------------


def _garbage(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda state: (state / name).write_bytes(data)


def _directory(name: str) -> Callable[[Path], None]:
    def spoil(state: Path) -> None:
        (state / name).unlink(missing_ok=True)
        (state / name).mkdir()

    return spoil


def _unreadable(state: Path) -> None:
    (state / "encryption.key").chmod(0)


#: Each way a vault key file can be damaged: (the file, how); also tests/cli/
#: test_state_started_twice.py's (`tf backup`).
KEY_DAMAGES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "key-binary": ("encryption.key", _garbage("encryption.key", b"\xe2\x28\xa1" * 20)),
    "keyring-binary": (KEYRING_FILE, _garbage(KEYRING_FILE, b"\xa8\x00\xff" * 30)),
    "key-directory": ("encryption.key", _directory("encryption.key")),
    "keyring-directory": (KEYRING_FILE, _directory(KEYRING_FILE)),
    "key-unreadable": ("encryption.key", _unreadable),
}
DAMAGES = {k: KEY_DAMAGES[k] for k in ("key-binary", "keyring-binary", "key-directory")}


def _snapshot(path: Path) -> object:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else path.read_bytes()


def _keys(state: Path) -> dict[str, object]:
    return {p.name: _snapshot(p) for p in state.iterdir() if p.name.startswith("encryption")}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_key_file_stops_the_start_in_one_line(
    sealed_project: Path,
    tmp_path: Path,
    tf_bin: Path,
    damage: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "proj"
    shutil.copytree(sealed_project, root)
    state = root / ".tf"
    name, spoil = DAMAGES[damage]
    spoil(state)
    kept = _keys(state)
    env = Project(root, tf_bin, None).env
    up = subprocess.run(UP, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 1, up.stdout + up.stderr
    assert _one_error(up.stdout + up.stderr).startswith(f"error: vault: {state / name}: ")
    assert _keys(state) == kept  # nothing overwritten, nothing made
    capsys.readouterr()
    # the server's own start (`python -m agentfirewall_server`), in-process: the same code
    assert server_main(["--data-dir", str(state), "--port", "0"]) == 1
    said = capsys.readouterr()
    line = _one_error(said.out + said.err)
    assert line.startswith(f"error: vault: {state / name}: "), line
    assert "restore it from a backup" in line, line
    assert _keys(state) == kept


def _vault_problem(settings: Settings) -> str | None:
    """None when the keyring loads (or there is no key), else the `VaultError`'s message."""
    try:
        load_keyring(settings)
    except VaultError as exc:
        return str(exc)
    return None


@settings(max_examples=examples(60), deadline=None)
@given(
    which=st.sampled_from(["encryption.key", KEYRING_FILE]),
    data=st.binary(max_size=80) | st.text(max_size=80).map(str.encode),
)
def test_any_key_file_content_is_a_keyring_or_a_vault_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory, which: str, data: bytes
) -> None:
    data_dir = tmp_path_factory.mktemp("keys")
    (data_dir / "encryption.key").write_text("ab" * 32)
    (data_dir / which).write_bytes(data)
    problem = _vault_problem(Settings(data_dir=data_dir))
    assert problem is None or problem.startswith(f"{data_dir / which}: "), problem
    assert (data_dir / which).read_bytes() == data


# URLs in errors -------------------------------------------------------------------------

PASSWORD = "Pr0xyPassw0rd"


@pytest.mark.parametrize(
    ("flag", "url"),
    [
        ("--upstream-proxy", f"https://corp:{PASSWORD}@proxy.corp:3128"),  # the report's
        ("--upstream-proxy", f"http://corp:{PASSWORD}@proxy.corp:31z8"),
        ("--upstream-proxy", f"corp:{PASSWORD}@proxy.corp:3128"),
        ("--upstream-proxy", f"http//corp:{PASSWORD}@proxy.corp:3128"),
        ("--upstream-proxy", f"http://corp:{PASSWORD}/x@proxy.corp:3128/"),
        ("--control-plane", f"ftp://admin:{PASSWORD}@cp.corp:3000"),
    ],
)
def test_the_gateway_never_prints_a_url_password(
    flag: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m agentfirewall_proxy`'s command line, read as its `main` reads it."""
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--control-plane", "http://127.0.0.1:1", "--token", "x", flag, url])
    assert stopped.value.code == 2
    said = capsys.readouterr()
    assert f"{flag} `" in said.err, said.err
    assert ":***@" in said.err, said.err
    assert PASSWORD not in said.out + said.err


@pytest.mark.parametrize("where", ["--server", "TF_SERVER", "TF_PROXY", "config.yaml"])
def test_tf_never_prints_a_url_password(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    url = f"ftp://admin:{PASSWORD}@cp.corp:3000"
    monkeypatch.chdir(tmp_path)
    for name in ("TF_SERVER", "TF_PROXY", "TF_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if where == "config.yaml":
        (tmp_path / ".tf").mkdir(mode=0o700)
        (tmp_path / ".tf" / "config.yaml").write_text(f"server_url: {url}\n")
        (tmp_path / ".tf" / "admin.token").write_text("tfa_x\n")
    elif where != "--server":
        monkeypatch.setenv(where, url)
    code = tf_main(["status", *(["--server", url] if where == "--server" else [])])
    said = capsys.readouterr()
    assert code in (1, 2), said
    assert "ftp://admin:***@cp.corp:3000`" in said.err, said.err
    assert PASSWORD not in said.out + said.err


_USER = st.text(st.characters(blacklist_characters=":@/", blacklist_categories=["Cs"]))
_HOST = st.text(st.characters(blacklist_characters="@", blacklist_categories=["Cs"]))


@settings(max_examples=examples(300), deadline=None)
@given(
    scheme=st.sampled_from(["http://", "https://", "ftp://", "http//", "http:/", ""]),
    user=_USER,
    password=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1),
    host=_HOST,
)
def test_shown_url_masks_any_password(scheme: str, user: str, password: str, host: str) -> None:
    shown = shown_url(f"{scheme}{user}:{password}@{host}")
    assert shown.endswith(f":***@{host}")
    assert password not in shown.removesuffix(f":***@{host}") or password in scheme + user


@pytest.mark.parametrize("command", [["agent", "list"], ["status"], ["logs", "--last", "1"]])
def test_tf_never_prints_the_password_of_a_server_it_cannot_reach(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """A well-formed URL that no server answers: the error that names it (and its hint)
    shows its password as `***`, as every error and warning of `tf` does."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TF_SERVER", f"http://admin:{PASSWORD}@127.0.0.1:9/")
    monkeypatch.setenv("TF_ADMIN_TOKEN", "tfa_x")
    code = tf_main(command)
    said = capsys.readouterr()
    assert code == 1, said
    assert "http://admin:***@127.0.0.1:9" in said.err, said.err
    assert PASSWORD not in said.out + said.err
