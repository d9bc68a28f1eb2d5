"""The seed's multi-agent example: DevOps Bot and Finance Bot behind one gateway.

Connectors come from the environment (`--token-env`), permissions are the seed's lines, and
each agent is run with `tf run`. Checked: each agent reaches only what its rules allow, with
the real credential injected and absent from its environment; one agent cannot act with the
other's identity or read anyone's traffic; the kill switch scoped to "Finance Bot" stops only
that agent.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
from urllib.parse import quote

import httpx
import pytest

from tests.cli.conftest import Project, wait_for

pytestmark = pytest.mark.slow

SETUP = """\
tf connector add github --token-env GITHUB_TOKEN
tf connector add generic --domains api.stripe.com --token-env STRIPE_KEY

tf permissions set --gateway "DevOps Bot" --connector github \\
--action "github.*" --decision allow
tf permissions set --gateway "DevOps Bot" --connector github \\
--action "github.repo.delete" --decision deny

tf permissions set --gateway "Finance Bot" --connector generic \\
--action "generic.get" --decision allow
tf permissions set --gateway "Finance Bot" --connector generic \\
--action "generic.post" --decision require_approval
"""

PROBE = """\
import json, os, sys
import requests

secrets = sys.argv[1:]
out = {"leaked": [s for s in secrets if any(s in v for v in os.environ.values())]}
for name, method, url in [
    ("pr", "POST", "https://api.github.com/repos/acme/api/pulls"),
    ("delete_repo", "DELETE", "https://api.github.com/repos/acme/api"),
    ("balance", "GET", "https://api.stripe.com/v1/balance"),
]:
    try:
        body = None if method == "GET" else {}
        out[name] = requests.request(method, url, json=body, timeout=30).status_code
    except requests.exceptions.ProxyError as exc:
        out[name] = "refused: " + ("403" if "403" in str(exc) else str(exc)[:80])
print(json.dumps(out))
"""


def _run(project: Project, name: str, env: dict[str, str], *secrets_: str) -> dict[str, object]:
    done = project.tf("run", "--name", name, "python", "probe.py", *secrets_, env=env)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_devops_and_finance_bots(project: Project) -> None:
    assert project.fakes is not None
    github, stripe = project.fakes["github"], project.fakes["stripe"]
    github.clear()
    stripe.clear()
    gh_secret = "ghp_real" + secrets.token_hex(10)
    stripe_secret = "sk_live_" + secrets.token_hex(12)
    env = {"GITHUB_TOKEN": gh_secret, "STRIPE_KEY": stripe_secret}
    project.env.update(env)  # the user's shell holds the real secrets
    project.tf("init")
    up = project.up()  # before the setup: the commands then go over HTTP (faster than offline)
    project.bash(SETUP)
    project.agent("probe.py", PROBE)

    devops = _run(project, "DevOps Bot", env, gh_secret, stripe_secret)
    finance = _run(project, "Finance Bot", env, gh_secret, stripe_secret)
    assert devops == {"leaked": [], "pr": 201, "delete_repo": 403, "balance": 403}
    assert finance == {"leaked": [], "pr": 403, "delete_repo": 403, "balance": 200}
    assert gh_secret in (github.last().header("authorization") or "")
    assert stripe_secret in (stripe.last().header("authorization") or "")
    assert not github.received("DELETE")

    # identity is the key: Finance Bot's key under DevOps Bot's name is still Finance Bot
    key = _agent_key(project, "Finance Bot")
    spoof = up["proxy_url"].replace("http://", f"http://{quote('DevOps Bot')}:{key}@")
    trust = ssl.create_default_context(cafile=str(project.root / ".tf" / "ca.crt"))
    with httpx.Client(proxy=spoof, verify=trust) as client:
        before = len(github.received())
        refused = client.post("https://api.github.com/repos/acme/api/pulls", json={})
        assert refused.status_code == 403
        assert len(github.received()) == before
        # an agent key opens no admin API: no one's traffic, no one's credentials
        for path in ("/api/v1/traffic", "/api/v1/connectors", "/api/v1/agents"):
            answer = httpx.get(up["server_url"] + path, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code in (401, 403), path
    finance_logs = wait_for(  # traffic reaches the server in batches, about once a second
        lambda: project.tf_json("logs", "--agent", "Finance Bot", "--last", "100")["traffic"],
        what="Finance Bot's traffic",
    )
    assert {t["agent"] for t in finance_logs} == {"Finance Bot"}

    # the kill switch scoped to one agent stops only that agent
    project.bash('tf kill-switch --activate --scope "Finance Bot"')
    assert "ACTIVE (scope: Finance Bot)" in project.tf("status").stdout
    stopped = _run(project, "Finance Bot", env)
    still = _run(project, "DevOps Bot", env)
    assert stopped["balance"] in ("refused: 403", 403)
    assert still["pr"] == 201
    project.bash("tf kill-switch deactivate")
    assert _run(project, "Finance Bot", env)["balance"] == 200


def _agent_key(project: Project, name: str) -> str:
    """A fresh proxy key for `name`, the way `tf run` gets one (admin API)."""
    token = (project.root / ".tf" / "admin.token").read_text().strip()
    server = json.loads((project.root / ".tf" / "up.json").read_text())["server_url"]
    answer = httpx.post(
        server + "/api/v1/agents/ensure",
        json={"name": name},
        headers={"Authorization": f"Bearer {token}"},
    )
    answer.raise_for_status()
    return str(answer.json()["api_key"])


@pytest.mark.node
def test_node_fetch_goes_through_the_gateway(project: Project) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    token = "ghp_node" + secrets.token_hex(10)
    project.tf("init")
    project.up()
    project.tf("connector", "add", "github", "--token", token)
    project.bash(
        'tf permissions set --gateway "Bot" --connector github '
        '--action "github.pr.*" --decision allow'
    )
    project.agent(
        "my_agent.js",
        "fetch('https://api.github.com/repos/acme/api/pulls', {method: 'POST',"
        " headers: {'content-type': 'application/json'}, body: '{}'})"
        ".then(async r => { console.log(r.status); })"
        ".catch(e => { console.log('error', e.cause || e); process.exit(3); });\n",
    )
    done = project.tf("run", "--name", "Bot", "node", "my_agent.js")
    assert done.stdout.strip() == "201"
    assert token in (github.last().header("authorization") or "")
    assert github.last().header("x-tameflare-agent") == "Bot"
    # http:// reaches the gateway too (it failed: `other side closed`), which sends it on
    # upgraded to https (the connector's upstream is TLS), the credential injected there
    github.clear()
    project.agent(
        "plain.js",
        "fetch('http://api.github.com/repos/acme/api/pulls')"
        ".then(async r => { console.log(r.status); })"
        ".catch(e => { console.log('error', e.cause || e); process.exit(3); });\n",
    )
    plain = project.tf("run", "--name", "Bot", "node", "plain.js")
    assert plain.stdout.strip() == "200", plain.stdout + plain.stderr
    assert github.last().path == "/repos/acme/api/pulls"
    assert token in (github.last().header("authorization") or "")


def test_run_forwards_signals_and_returns_the_exit_code(project: Project) -> None:
    project.tf("init")
    project.up()
    assert (
        project.tf("run", "--name", "Bot", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    )
    with project.spawn(
        [
            "tf", "run", "--name", "Bot", "python", "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
            "print('ready', flush=True)\ntime.sleep(60)",
        ]
    ) as child:  # fmt: skip
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        child.terminate()  # SIGTERM to `tf run`, forwarded to the agent
        assert child.wait(timeout=30) == 42
    killed = subprocess.run(
        ["tf", "run", "--name", "Bot", "sh", "-c", "kill -9 $$"],
        cwd=project.root, env=project.env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert killed.returncode == 128 + 9
