"""`tf doctor` probes the user's interpreters and tools, and names every bypassing client.

A real `tf up`, real clients (requests, httpx, urllib, urllib3, aiohttp, stripe, Node, curl,
wget) run by the interpreters the doctor finds. The connector's domain is `doctor.test`
(RFC 2606): a client that goes through gets the gateway's 403; one that bypasses cannot even
resolve the name, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.runenv import render_wgetrc
from tests.cli.conftest import Project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _doctor(project: Project, *args: str, path: str | None = None) -> tuple[int, dict[str, Any]]:
    env = {"PATH": path} if path else None
    done = project.tf("doctor", "--json", *args, check=False, env=env, timeout=240)
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)}


@pytest.fixture
def doctor_project(bare_project: Project) -> Project:
    bare_project.up()
    bare_project.tf("connector", "add", "generic", "--domains", "doctor.test")
    return bare_project


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_doctor_checks_the_projects_clients_and_names_each_bypass(
    doctor_project: Project,
) -> None:
    code, checks = _doctor(doctor_project)
    assert code == 1  # some installed clients bypass the gateway
    assert checks["python3"]["ok"] is True
    for client in ("requests", "httpx", "urllib", "stripe"):
        assert checks[f"python3 {client}"]["ok"] is True, checks[f"python3 {client}"]
        assert checks[f"python3 {client}"]["detail"] == "through the gateway, CA trusted"
    pool = checks["python3 urllib3 PoolManager"]
    assert pool["ok"] is False
    assert "bypasses the gateway" in pool["detail"]
    assert "urllib3.ProxyManager" in pool["detail"]
    aiohttp = checks["python3 aiohttp"]
    assert aiohttp["ok"] is False
    assert "ClientSession(trust_env=True)" in aiohttp["detail"]
    if shutil.which("node"):
        assert checks["node"]["ok"] is True  # recent enough, and it loads the preload
        assert checks["node fetch"]["ok"] is True
        assert checks["node https"]["ok"] is True  # the preload routes Node's agents too
    assert checks["curl"]["ok"] is True
    if shutil.which("wget"):
        assert checks["wget"]["ok"] is True  # WGETRC names the gateway CA bundle
    human = doctor_project.tf("doctor", check=False, timeout=240)
    assert "these clients will bypass the gateway" in human.stderr
    assert "python3 aiohttp" in human.stderr


def test_doctor_runs_the_interpreter_given_with_python(
    doctor_project: Project, tmp_path: Path
) -> None:
    # an interpreter that ignores PYTHONPATH (-E): `tf run`'s sitecustomize never loads, so
    # stripe-python keeps its own CA list and refuses the gateway's certificate
    isolated = _script(tmp_path / "isolated-python", f'#!/bin/sh\nexec {sys.executable} -E "$@"\n')
    bare = tmp_path / "bare-venv"
    _, checks = _doctor(doctor_project, "--python", str(isolated), "--python", str(bare))
    name = str(isolated)
    assert checks[name]["ok"] is True
    assert checks[f"{name} requests"]["ok"] is True
    stripe = checks[f"{name} stripe"]
    assert stripe["ok"] is False
    assert "does not trust the gateway CA" in stripe["detail"]
    assert "PYTHONPATH" in stripe["detail"]
    assert checks[str(bare)]["ok"] is False  # a path that is no interpreter is said so
    assert "does not run" in checks[str(bare)]["detail"]


def test_a_missing_library_is_not_a_failure(doctor_project: Project, tmp_path: Path) -> None:
    # `python -S` has no site-packages: requests & co. are not installed for it
    no_site = _script(tmp_path / "no-site-python", f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    _, checks = _doctor(doctor_project, "--python", str(no_site))
    name = str(no_site)
    assert checks[f"{name} requests"]["ok"] is None
    assert checks[f"{name} requests"]["detail"] == "not installed (not checked)"
    assert checks[f"{name} urllib"]["ok"] is True  # the standard library is always there


@pytest.mark.skipif(shutil.which("wget") is None, reason="needs wget")
def test_wget_trusts_the_gateway_only_through_wgetrc(
    doctor_project: Project, tmp_path: Path
) -> None:
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    wget = shutil.which("wget")
    _script(wrappers / "wget", f'#!/bin/sh\nunset WGETRC\nexec {wget} "$@"\n')
    path = f"{wrappers}:{doctor_project.env['PATH']}"
    _, checks = _doctor(doctor_project, path=path)
    assert checks["wget"]["ok"] is False
    assert "does not trust the gateway CA" in checks["wget"]["detail"]


@pytest.mark.skipif(shutil.which("wget") is None, reason="needs wget")
def test_tf_run_wget_goes_through_the_gateway(project: Project, tmp_path: Path) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    token = "ghp_wget" + secrets.token_hex(10)
    project.up()
    project.tf("connector", "add", "github", "--token", token)
    project.tf(
        "permissions", "set", "--gateway", "Bot", "--connector", "github", "--action",
        "github.repo.*", "--decision", "allow",
    )  # fmt: skip
    home = tmp_path / "home"
    home.mkdir()
    (home / ".wgetrc").write_text("user_agent = my-agent/1.0\n")
    done = project.tf(
        "run", "--name", "Bot", "wget", "-q", "-O", "-", "https://api.github.com/repos/acme/api",
        env={"HOME": str(home)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [seen] = github.received("GET", "/repos/acme/api")
    assert token in (seen.header("authorization") or "")
    assert seen.header("user-agent") == "my-agent/1.0"  # the user's own wgetrc is kept


def test_render_wgetrc_keeps_the_users_settings() -> None:
    text = render_wgetrc(Path("/p/ca-bundle.pem"), "tries = 2")
    assert text.splitlines()[1:] == ["tries = 2", "ca_certificate = /p/ca-bundle.pem"]
