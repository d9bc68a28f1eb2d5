"""A second project on the same machine: its own ports, its own server, no half-made state.

Real `tf` subprocesses and real `tf up` servers on 127.0.0.1 (tests/cli/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfirewall_proxy.cli.state import DEFAULT_PROXY, DEFAULT_SERVER
from tests.cli.conftest import Project, default_ports, wait_for

pytestmark = pytest.mark.slow


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextlib.contextmanager
def _taken(*ports: int) -> Iterator[None]:
    """Hold `ports` on 127.0.0.1 (one already held by another program is taken all the same)."""
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


def _wait_up(project: Project) -> dict[str, object]:
    up_file = project.root / ".tf" / "up.json"

    def read() -> dict[str, object] | None:
        assert project.up_process is not None
        if project.up_process.poll() is not None:
            raise AssertionError(project.up_log.read_text())
        try:
            return dict(json.loads(up_file.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    return dict(wait_for(read, timeout=60, what="tf up"))


def _log_once_it_says(log: Path, text: str, timeout: float = 60.0) -> str:
    """The log once ``text`` is in it: up.json can be written before the banner is flushed."""
    deadline = time.monotonic() + timeout
    said = log.read_text()
    while text not in said and time.monotonic() < deadline:
        time.sleep(0.1)
        said = log.read_text()
    return said


def test_tf_up_moves_off_taken_default_ports_and_says_so(bare_project: Project) -> None:
    server, proxy = _port(DEFAULT_SERVER), _port(DEFAULT_PROXY)
    with default_ports(), _taken(server, proxy):
        log = open(bare_project.up_log, "a")  # noqa: SIM115 (closed by stop_up)
        bare_project._log = log
        bare_project.up_process = subprocess.Popen(
            ["tf", "up"], cwd=bare_project.root, env=bare_project.env, stdout=log,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        up = _wait_up(bare_project)
        assert _port(str(up["server_url"])) != server
        assert _port(str(up["proxy_url"])) != proxy
        said = _log_once_it_says(bare_project.up_log, str(up["dashboard_url"]))
        assert f"server port {server} is taken" in said
        assert f"gateway port {proxy} is taken" in said
        assert str(up["dashboard_url"]) in said
        status = bare_project.tf("status")  # the CLI finds the moved server (up.json)
        assert str(up["server_url"]) in status.stdout
    assert bare_project.stop_up() == 0


def test_a_projects_cli_never_talks_to_another_projects_server(
    tmp_path: Path, project: Project, tf_bin: Path
) -> None:
    first = project.up()
    first_port = _port(str(first["server_url"]))
    # the second project's config names the first one's port (as two default configs would)
    second = Project(tmp_path / "second", tf_bin, None)
    second.root.mkdir()
    second.tf("init", "--port", str(first_port), "--proxy-port", "0")
    refused = second.tf("status", check=False)
    assert refused.returncode == 1
    assert "is not this project's" in refused.stderr
    # offline writes go to the second project's own state, in-process
    second.tf("connector", "add", "github", "--token", "ghp_second_project_token")
    listed = second.tf_json("connector", "list")["connectors"]
    assert [c["type"] for c in listed] == ["github"]
    assert project.tf_json("connector", "list")["connectors"] == []
    # a platform template in a third project lands in that project only
    third = Project(tmp_path / "third", tf_bin, None)
    third.root.mkdir()
    third.tf("init", "--platform", "langchain", "--port", str(first_port))
    assert {c["type"] for c in third.tf_json("connector", "list")["connectors"]} >= {"openai"}
    assert project.tf_json("connector", "list")["connectors"] == []
    # and `tf init` where `tf up` already runs does not tell the user to start it
    again = project.tf("init")
    assert "already initialised" in again.stdout
    assert "tf up " not in again.stdout


def test_tf_init_is_all_or_nothing(bare_project: Project) -> None:
    root = bare_project.root
    broken = {"AGENTFIREWALL_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nothing"}
    failed = bare_project.tf("init", "--platform", "n8n", env=broken, check=False)
    assert failed.returncode == 1, failed.stderr
    assert "nothing was left behind" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert sorted(p.name for p in root.iterdir()) == []  # no .tf/, no temporary, no .gitignore
    # in-process through httpx.ASGITransport: not one warning (PYTHONWARNINGS=error fails on any)
    done = bare_project.tf("init", "--platform", "n8n", env={"PYTHONWARNINGS": "error"})
    assert "platform n8n" in done.stdout
    assert "Warning" not in done.stderr
    assert sorted(p.name for p in root.iterdir()) == [".gitignore", ".tf"]
    assert bare_project.tf_json("connector", "list")["connectors"]


def test_tf_init_refuses_a_foreign_tf_directory(bare_project: Project) -> None:
    (bare_project.root / ".tf").mkdir()
    (bare_project.root / ".tf" / "notes.txt").write_text("mine")
    failed = bare_project.tf("init", check=False)
    assert failed.returncode == 1
    assert "holds no TameFlare state" in failed.stderr
    assert [p.name for p in (bare_project.root / ".tf").iterdir()] == ["notes.txt"]
