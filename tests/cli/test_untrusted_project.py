"""A `.tf/` chooses where `tf` sends tokens and credentials, so `tf` uses only one the user owns
and no one else may write, and sends a user's token only to a server the user named.

Another user's state is simulated as root with `chown` (the tests that need it skip
otherwise); every server that must get nothing is a recorder on 127.0.0.1
(tests/cli/recorder.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import Project
from tests.cli.recorder import recording

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another uid needs root"
)
OTHER_UID = 23001
VICTIM_TOKEN = "ghp_victims_real_github_token"
USERS_ADMIN_TOKEN = "tfa_the_users_token_for_their_real_server"


def _plant(state: Path, server_url: str, files: dict[str, str] | None = None) -> None:
    state.mkdir(mode=0o700)
    config = f"server_url: {server_url}\nproxy_url: http://127.0.0.1:1\n"
    (state / "config.yaml").write_text(config)
    for name, text in (files or {}).items():
        (state / name).write_text(text)


def _chown(path: Path, uid: int) -> None:
    for item in (path, *path.rglob("*")):
        os.chown(item, uid, uid)


@needs_root
def test_another_users_tf_in_a_parent_directory_is_refused(bare_project: Project) -> None:
    """A shared, world-writable parent (like /tmp) with a `.tf/` another user planted."""
    shared = bare_project.root / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = shared / "victim-project"
    victim.mkdir()
    with recording() as attacker:
        _plant(shared / ".tf", attacker.url, {"admin.token": "tfa_attackers_token\n"})
        (shared / ".tf").chmod(0o755)
        _chown(shared / ".tf", OTHER_UID)
        bare_project.root = victim
        added = bare_project.tf("connector", "add", "github", "--token", VICTIM_TOKEN, check=False)
        status = bare_project.tf("status", check=False)
        bare_project.root = shared  # `tf init` where the other user's `.tf/` is
        init = bare_project.tf("init", check=False)
    for done in (added, status, init):
        assert done.returncode == 1, done.stderr
        assert "belongs to another user (uid 23001)" in done.stderr
        assert "run `tf init` in your project's directory" in done.stderr
        assert "Traceback" not in done.stderr
    assert attacker.requests == []
    assert sorted(p.name for p in (shared / ".tf").iterdir()) == ["admin.token", "config.yaml"]
    assert (shared / ".tf").stat().st_uid == OTHER_UID
    # the user's own project in the subdirectory is found first and works
    bare_project.root = victim
    bare_project.tf("init")
    bare_project.tf("connector", "add", "github", "--token", VICTIM_TOKEN)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702], ids=oct)
def test_a_tf_other_users_may_write_is_refused(bare_project: Project, mode: int) -> None:
    bare_project.tf("init")
    state = bare_project.root / ".tf"
    state.chmod(mode)
    done = bare_project.tf("connector", "list", check=False)
    assert done.returncode == 1
    assert "is writable by other users" in done.stderr
    assert f"chmod 700 {state}" in done.stderr
    state.chmod(0o700)
    bare_project.tf("connector", "list")


@needs_root
def test_under_sudo_the_invoking_users_project_is_theirs(bare_project: Project) -> None:
    """`sudo tf run --isolate` in your own project (git's safe.directory does the same)."""
    bare_project.tf("init")
    _chown(bare_project.root / ".tf", OTHER_UID)
    refused = bare_project.tf("connector", "list", check=False)
    assert refused.returncode == 1
    assert "belongs to another user" in refused.stderr
    bare_project.tf("connector", "list", env={"SUDO_UID": str(OTHER_UID)})


@pytest.mark.parametrize(
    "shipped",
    [{}, {"admin.token": "tfa_the_repositorys_own\n"}],
    ids=["config only", "config and admin token, no signing key"],
)
def test_a_cloned_repositorys_config_never_gets_the_users_token(
    bare_project: Project, shipped: dict[str, str]
) -> None:
    """The repository ships `.tf/config.yaml` naming a server on this machine (a listener of
    another local user, say); `TF_ADMIN_TOKEN` is meant for the user's real server."""
    with recording() as planted:
        _plant(bare_project.root / ".tf", planted.url, shipped)
        done = bare_project.tf("status", env={"TF_ADMIN_TOKEN": USERS_ADMIN_TOKEN}, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "--server URL with TF_ADMIN_TOKEN" in done.stderr
    assert [r.authorization for r in planted.requests if r.authorization] == []
    assert USERS_ADMIN_TOKEN not in planted.everything()


@pytest.mark.parametrize("where", ["config.yaml", "up.json"])
def test_a_server_elsewhere_that_only_the_projects_files_name_gets_no_token(
    bare_project: Project, where: str
) -> None:
    bare_project.tf("init")
    state = bare_project.root / ".tf"
    elsewhere = "http://tameflare.invalid:3000"
    if where == "config.yaml":
        text = (state / "config.yaml").read_text()
        (state / "config.yaml").write_text(text.replace("http://127.0.0.1:3000", elsewhere))
    else:  # as a `tf up` would write it, with a pid that is alive (this test's)
        up = {"pid": os.getpid(), "server_url": elsewhere, "proxy_url": "http://127.0.0.1:1"}
        (state / "up.json").write_text(json.dumps(up))
    done = bare_project.tf("status", env={"TF_ADMIN_TOKEN": USERS_ADMIN_TOKEN}, check=False)
    assert done.returncode == 1
    assert f"`{state / where}` names the server {elsewhere}, which is not on this machine" in (
        done.stderr
    )
    assert f"--server {elsewhere} (or TF_SERVER) with TF_ADMIN_TOKEN" in done.stderr


def test_the_projects_own_server_gets_the_projects_token_never_tf_admin_token(
    bare_project: Project,
) -> None:
    bare_project.tf("init")
    up = bare_project.up()
    # TF_ADMIN_TOKEN is for a server the user names; the project's server gets its own token
    mine = bare_project.tf("status", env={"TF_ADMIN_TOKEN": "tfa_for_another_server"})
    assert str(up["server_url"]) in mine.stdout
    wrong = {"TF_ADMIN_TOKEN": "tfa_wrong"}
    named = bare_project.tf("status", "--server", str(up["server_url"]), env=wrong, check=False)
    assert named.returncode == 1
    assert "refused the admin token" in named.stderr
    # with no signing key to compare with, nothing proves the server is the project's
    key = bare_project.root / ".tf" / "signing-key.pem"
    shutil.move(key, key.with_name("signing-key.moved"))
    try:
        unproven = bare_project.tf("status", check=False)
    finally:
        shutil.move(key.with_name("signing-key.moved"), key)
    assert unproven.returncode == 1
    assert "cannot tell whether the server at" in unproven.stderr
    bare_project.tf("status")


@pytest.mark.parametrize(
    ("url", "here"),
    [
        ("http://127.0.0.1:3000", True),
        ("http://127.8.9.10:3000", True),
        ("http://localhost:3000", True),
        ("http://LOCALHOST.:3000", True),
        ("http://[::1]:3000", True),
        ("http://0.0.0.0:3000", True),  # `tf init --host 0.0.0.0`
        ("http://[::]:3000", True),
        ("http://10.0.0.5:3000", False),
        ("http://203.0.113.9:3000", False),
        ("https://tameflare.example.com", False),
        ("http://evil.localhost:3000", False),  # a name: DNS answers what it likes
        ("http://localhost.evil.example:3000", False),
        ("http://127.0.0.1.nip.io:3000", False),
        ("http://[::ffff:8.8.8.8]:3000", False),
    ],
)
def test_which_servers_are_on_this_machine(url: str, here: bool) -> None:
    from agentfirewall_proxy.cli.state import on_this_machine

    assert on_this_machine(url) is here


def test_mcp_wrap_never_sends_the_projects_gateway_token_to_a_named_server(
    bare_project: Project,
) -> None:
    bare_project.tf("init")
    token = (bare_project.root / ".tf" / "gateway.token").read_text().strip()
    with recording() as named:
        done = subprocess.run(
            ["tf", "mcp", "wrap", "--server", named.url, "--name", "Bot", "--", "true"],
            cwd=bare_project.root, env=bare_project.env, input="", capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"no gateway token for {named.url}" in done.stderr
    assert "set TF_GATEWAY_TOKEN" in done.stderr
    assert token not in named.everything()


def test_a_gateway_elsewhere_that_only_the_projects_files_name_gets_no_agent(
    bare_project: Project,
) -> None:
    """A cloned repository's `.tf/config.yaml` naming a gateway on another machine must not
    carry the agent's traffic and its proxy key there; `TF_PROXY` names it on purpose."""
    bare_project.tf("init")
    config = bare_project.root / ".tf" / "config.yaml"
    elsewhere = "http://gateway.invalid:8443"
    text = config.read_text()
    config.write_text(text.replace("http://127.0.0.1:8443", elsewhere))
    assert elsewhere in config.read_text()
    done = bare_project.tf("run", "--name", "Bot", "--", "true", check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"this project's files name the gateway {elsewhere}" in done.stderr
    assert f"TF_PROXY={elsewhere} tf run" in done.stderr
