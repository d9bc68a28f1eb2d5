"""A stored policy `tf up` cannot read stops every request, and `tf` says which and how out.

The row is rewritten in the database behind the server's back, as another TameFlare version
or a hand edit would leave it; the next configuration change makes the server reload.
"""

from __future__ import annotations

import sqlite3
import ssl

import httpx

from tests.cli.conftest import Project, wait_for
from tests.cli.test_multi_agent import _agent_key

POLICY = """\
name: no-deletes
rules:
  - name: delete
    conditions:
      - {field: action_spec.type, operator: equals, value: github.repo.delete}
    decision: deny
"""


def _pr(project: Project, proxy: str) -> httpx.Response:
    trust = ssl.create_default_context(cafile=str(project.root / ".tf" / "ca.crt"))
    with httpx.Client(proxy=proxy, verify=trust) as client:
        return client.post("https://api.github.com/repos/acme/api/pulls", json={"title": "t"})


def test_tf_names_the_unreadable_policy_and_the_gateway_fails_closed(project: Project) -> None:
    project.tf("init")
    up = project.up()
    project.env["GITHUB_TOKEN"] = "ghp_unreadable_test"
    project.tf("connector", "add", "github", "--token-env", "GITHUB_TOKEN")
    project.tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
               "--action", "*", "--decision", "allow")  # fmt: skip
    policy = project.root / "no-deletes.yaml"
    policy.write_text(POLICY)
    project.tf("policy", "add", str(policy))
    proxy = up["proxy_url"].replace("http://", f"http://Bot:{_agent_key(project, 'Bot')}@")
    assert _pr(project, proxy).status_code == 201

    (database,) = (project.root / ".tf").rglob("*.db")
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE policies SET document = ?",
                     (POLICY.replace("operator: equals", "operator: rhymes_with"),))  # fmt: skip
    project.tf("agent", "add", "Other")  # any change: the server reloads what is stored

    status = project.tf("status")
    said = status.stdout + status.stderr
    assert "stored policy `no-deletes` cannot be read" in said
    assert "rhymes_with" in said
    assert "tf policy add FILE --replace" in said
    assert "ACTIVE (scope: all, unreadable configuration)" in said
    switch = project.tf("kill-switch", "status")
    assert "stored policy `no-deletes` cannot be read" in switch.stdout + switch.stderr

    refused = wait_for(lambda: (r := _pr(project, proxy)).status_code == 403 and r,
                       what="the gateway to deny")  # fmt: skip
    assert "stored policy `no-deletes` cannot be read" in refused.text

    project.tf("policy", "add", str(policy), "--replace")
    status = project.tf("status")
    assert "cannot be read" not in status.stdout + status.stderr
    assert "kill switch" in status.stdout
    assert "off" in status.stdout
    assert wait_for(lambda: _pr(project, proxy).status_code == 201, what="traffic again")
