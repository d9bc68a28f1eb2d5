"""A `tf run`'s proxy credential is that run's only: when the run ends its key is revoked, so
whatever kept the `HTTPS_PROXY` value (a child that outlived the run, a saved environment)
gets the gateway's 407 and nothing reaches the upstream; a `tf run` killed outright leaves a
key the gateway refuses once its lease (`RUN_LEASE_SECONDS`) has passed.

Before, the review's probe saved a `tf run --enforcement monitor` credential and, after the
run had ended and with the agent at full_enforce, still had a denied DELETE forwarded as
would_deny."""

from __future__ import annotations

import os
import secrets
import signal
import ssl
import subprocess
import time
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from agentfirewall_proxy.cli.run_cmd import RUN_LEASE_SECONDS
from agentfirewall_proxy.pipeline import KeyRefused, agent_for_key
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_server.identity import hash_secret
from tests.cli.conftest import Project, wait_for

pytestmark = pytest.mark.slow

SAVE = "import os, pathlib; pathlib.Path('saved_proxy.txt').write_text(os.environ['HTTPS_PROXY'])"
HOLD = """\
import os, pathlib, time
pathlib.Path("held.txt").write_text(f"{os.getpid()} {os.environ['HTTPS_PROXY']}")
time.sleep(120)
"""


def test_a_runs_credential_ends_with_the_run(project: Project) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    project.tf("init")
    up = project.up()
    project.tf("connector", "add", "github", "--token", "ghp_end" + secrets.token_hex(10))
    for action, decision in (("github.*", "allow"), ("github.repo.delete", "deny")):
        project.tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
                   "--action", action, "--decision", decision)  # fmt: skip

    project.tf("run", "--name", "Bot", "--enforcement", "monitor", "python", "-c", SAVE)
    trust = ssl.create_default_context(cafile=str(project.root / ".tf" / "ca.crt"))
    saved = (project.root / "saved_proxy.txt").read_text()
    with httpx.Client(proxy=saved, verify=trust, trust_env=False) as http:
        with pytest.raises(httpx.ProxyError, match="407"):
            http.delete("https://api.github.com/repos/acme/api")
    assert github.received("DELETE") == []

    # killed outright: nothing revokes the key, its lease bounds it
    held = subprocess.Popen(
        ["tf", "run", "--name", "Bot", "python", "-c", HOLD],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    held_file = project.root / "held.txt"
    wait_for(lambda: held_file.exists() and " " in held_file.read_text(), what="the agent")
    held.kill()
    held.wait()
    pid, proxy = held_file.read_text().split(" ", 1)
    try:
        key_hash = hash_secret(unquote(urlsplit(proxy).password or ""))
        token = (project.root / ".tf" / "gateway.token").read_text().strip()
        served = httpx.get(
            up["server_url"] + "/api/v1/gateway/config",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        config = compile_snapshot(served)
        expires = config.key_expires[key_hash]
        assert time.time() < expires <= time.time() + RUN_LEASE_SECONDS
        assert agent_for_key(config, key_hash, now=expires - 1).name == "Bot"
        with pytest.raises(KeyRefused):
            agent_for_key(config, key_hash, now=expires)
    finally:
        os.kill(int(pid), signal.SIGKILL)
