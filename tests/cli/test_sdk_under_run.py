"""An agent that uses both modes under `tf run`: its SDK calls (``AAF_BASE_URL`` names the
server as ``localhost``, as in the seed) reach the control plane directly through
``NO_PROXY``, while its HTTP calls — a GET carrying a JSON body among them — still go
through the gateway with the connector credential injected."""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlsplit

import httpx
import pytest

from tests.cli.conftest import Project

pytestmark = pytest.mark.slow

AGENT = """\
import json, os, requests
from agentfirewall import AgentFirewall

firewall = AgentFirewall(api_key=os.environ["AAF_API_KEY"], base_url=os.environ["AAF_BASE_URL"])
result = firewall.request_action(
    action_type="github.pr.create", provider="github", target="acme/api", parameters={}
)
pr = requests.post("https://api.github.com/repos/acme/api/pulls", json={})
listed = requests.get("https://api.github.com/repos/acme/api/pulls", json={})
print(json.dumps({"sdk": result.status, "id": result.action_request_id,
                  "pr": pr.status_code, "list": listed.status_code,
                  "no_proxy": os.environ["NO_PROXY"]}))
"""


def test_sdk_reaches_the_server_and_http_goes_through_the_gateway(project: Project) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    token = "ghp_sdk" + secrets.token_hex(10)
    project.tf("init")
    up = project.up()
    project.tf("connector", "add", "github", "--token", token)
    project.bash(
        'tf permissions set --gateway "Bot" --connector github '
        '--action "github.pr.*" --decision allow'
    )
    admin = (project.root / ".tf" / "admin.token").read_text().strip()
    server = str(up["server_url"])
    ensured = httpx.post(
        server + "/api/v1/agents/ensure",
        json={"name": "Bot"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    ensured.raise_for_status()
    base = server.replace(urlsplit(server).hostname or "", "localhost", 1) + "/api"
    project.agent("agent.py", AGENT)
    env = {"AAF_API_KEY": str(ensured.json()["api_key"]), "AAF_BASE_URL": base}
    done = project.tf("run", "--name", "Bot", "python", "agent.py", env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["no_proxy"] == "127.0.0.1,localhost"
    assert result["sdk"] == "allowed"  # decided by the server: the `github.pr.*` rule
    assert result["id"].startswith("act_")
    assert (result["pr"], result["list"]) == (201, 200)
    assert [r.method for r in github.received()] == ["POST", "GET"]
    assert github.last().body == b"{}"
    assert token in (github.last().header("authorization") or "")
