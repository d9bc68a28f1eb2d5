"""`tf run --enforcement monitor` applies to that run only: the gateway knows the run by its
proxy credential. A later plain `tf run` is enforced, and so is a plain run alongside a
monitored one; `tf run` says which level applies either way."""

from __future__ import annotations

import secrets
import ssl
from urllib.parse import quote

import httpx

from tests.cli.conftest import Project

DELETE = """\
import requests
print(requests.delete("https://api.github.com/repos/acme/api").status_code)
"""


def test_a_runs_enforcement_level_is_that_runs_only(project: Project) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    project.tf("init")
    up = project.up()
    project.tf("connector", "add", "github", "--token", "ghp_run" + secrets.token_hex(10))
    project.tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
               "--action", "github.repo.delete", "--decision", "deny")  # fmt: skip
    project.agent("delete.py", DELETE)

    monitored = project.tf("run", "--name", "Bot", "--enforcement", "monitor", "python",
                           "delete.py")  # fmt: skip
    assert monitored.stdout.strip() == "204"  # forwarded, recorded as would_deny
    assert "monitor for this run only; the agent is full_enforce" in monitored.stderr
    assert len(github.received("DELETE")) == 1

    plain = project.tf("run", "--name", "Bot", "python", "delete.py")
    assert plain.stdout.strip() == "403"
    assert "(full_enforce;" in plain.stderr
    assert len(github.received("DELETE")) == 1
    assert project.tf_json("agent", "show", "Bot")["enforcement_level"] == "full_enforce"

    # side by side: each run's credential carries its own level
    token = (project.root / ".tf" / "admin.token").read_text().strip()

    def run_key(**body: str) -> str:
        url = up["server_url"] + "/api/v1/agents/ensure"
        answer = httpx.post(
            url, json={"name": "Bot", **body}, headers={"Authorization": f"Bearer {token}"}
        )
        answer.raise_for_status()
        return str(answer.json()["api_key"])

    monitor_key, plain_key = run_key(run_enforcement_level="L0"), run_key()
    trust = ssl.create_default_context(cafile=str(project.root / ".tf" / "ca.crt"))
    statuses = []
    for key in (plain_key, monitor_key, plain_key):
        proxy = up["proxy_url"].replace("http://", f"http://Bot:{quote(key)}@")
        statuses.append(_delete_once(proxy, trust))
    assert statuses == [403, 204, 403]
    assert len(github.received("DELETE")) == 2

    # the override is on the record
    exported = project.tf("audit", "export", "--format", "jsonl").stdout
    assert exported.count('"agent.run_enforcement"') == 2


def _delete_once(proxy: str, trust: ssl.SSLContext) -> int:
    """The DELETE's status, sent once: a key made by `ensure` a moment ago is let in even
    when the gateway's configuration long poll has not brought it yet (the gateway looks
    once more before a 407)."""
    with httpx.Client(proxy=proxy, verify=trust, trust_env=False) as http:
        return http.delete("https://api.github.com/repos/acme/api").status_code
