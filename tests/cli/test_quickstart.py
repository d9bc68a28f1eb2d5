"""The seed's proxy quick start, as written, with `tf` as a subprocess in a fresh directory.

`tf up` runs in the background on free ports with api.github.com resolved to a local fake on
real TLS. The agent uses `requests` unchanged; what reaches "GitHub" is checked on the fake.
"""

from __future__ import annotations

import json
import secrets
import stat

import pytest

from tests.cli.conftest import Project, wait_for

pytestmark = pytest.mark.slow

AGENT = """\
import json, os, sys
import requests

REAL = sys.argv[1]
out = {
    "token_in_env": any(REAL in v for v in os.environ.values()),
    "github_token": os.environ.get("GITHUB_TOKEN"),
}
headers = {"Authorization": "token " + os.environ["GITHUB_TOKEN"]}
r = requests.post("https://api.github.com/repos/acme/api/pulls", headers=headers,
                  json={"title": "fix", "head": "fix", "base": "main"})
out["create"] = r.status_code
r = requests.delete("https://api.github.com/repos/acme/api", headers=headers)
out["delete"] = r.status_code
out["delete_body"] = r.json()
print(json.dumps(out), flush=True)
r = requests.put("https://api.github.com/repos/acme/api/pulls/1/merge", headers=headers,
                 json={"merge_method": "squash"})
out["merge"] = r.status_code
print(json.dumps(out), flush=True)
"""

PERMISSIONS = """\
tf permissions set --gateway "Bot" --connector github \\
--action "github.pr.*" --decision allow
tf permissions set --gateway "Bot" --connector github \\
--action "github.pr.merge" --decision require_approval
tf permissions set --gateway "Bot" --connector github \\
--action "github.repo.delete" --decision deny
"""


def test_seed_quick_start(project: Project) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    token = "ghp_test" + secrets.token_hex(12)
    project.up()  # README: `tf up` first (creates .tf/), then `tf init` in the same place
    init = project.tf("init")
    assert "already initialised" in init.stdout
    project.tf("connector", "add", "github", "--token", token)
    project.bash(PERMISSIONS)
    project.agent("my_agent.py", AGENT)

    agent = project.spawn(["tf", "run", "--name", "Bot", "python", "my_agent.py", token])
    pending = wait_for(
        lambda: project.tf_json("approvals", "list")["approvals"], what="a held merge"
    )
    assert pending[0]["agent"] == "Bot"
    assert pending[0]["action_spec"]["type"] == "github.pr.merge"
    assert not github.received("PUT", "/repos/acme/api/pulls/1/merge")
    project.tf("approvals", "approve", pending[0]["id"])  # from another process
    stdout, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])

    assert result["token_in_env"] is False
    assert result["github_token"] != token
    assert result["create"] == 201
    assert result["delete"] == 403
    assert result["delete_body"]["action"] == "github.repo.delete"
    assert result["merge"] == 200
    created = github.received("POST", "/repos/acme/api/pulls")
    assert len(created) == 1
    assert token in (created[0].header("authorization") or "")
    assert not github.received("DELETE", "/repos/acme/api")
    assert len(github.received("PUT", "/repos/acme/api/pulls/1/merge")) == 1

    status = project.tf("status").stdout
    assert "online" in status
    assert "kill switch: off" in status

    # the gateway ships its records in batches: the merge's may still be on its way
    def logged() -> str | None:
        out = project.tf("logs").stdout
        actions = ("github.pr.create", "github.repo.delete", "github.pr.merge")
        return out if all(action in out for action in actions) else None

    logs = wait_for(logged, what="every request in `tf logs`")
    assert token not in logs + status + project.up_log.read_text()

    # Ctrl-C loses no record: after a restart every decision is still there
    assert project.stop_up() == 0
    assert not (project.root / ".tf" / "up.json").exists()
    project.up()
    traffic = project.tf_json("logs", "--last", "50")["traffic"]
    actions = sorted(t["action"] for t in traffic)
    assert actions == ["github.pr.create", "github.pr.merge", "github.repo.delete"]
    assert project.tf_json("audit", "verify")["ok"] is True


def test_state_is_private_and_git_ignored(project: Project) -> None:
    (project.root / ".gitignore").write_text("node_modules/")
    project.tf("init")
    state = project.root / ".tf"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert (project.root / ".gitignore").read_text().splitlines()[-1] == ".tf/"
    before = (state / "admin.token").read_text()
    again = project.tf("init")
    assert "already initialised" in again.stdout
    assert (state / "admin.token").read_text() == before
    project.tf("init", "--force")
    assert (state / "admin.token").read_text() != before
    assert (project.root / ".gitignore").read_text().count(".tf/") == 1


def test_token_env_secret_is_removed_from_the_agent(project: Project) -> None:
    assert project.fakes is not None
    stripe = project.fakes["stripe"]
    stripe.clear()
    secret = "sk_live_" + secrets.token_hex(16)
    project.tf("init", "--port", "0", "--proxy-port", "0")  # offline writes, then `tf up`
    project.tf(
        "connector", "add", "generic", "--domains", "api.stripe.com", "--token-env",
        "STRIPE_KEY", env={"STRIPE_KEY": secret},
    )  # fmt: skip
    project.tf(
        "permissions", "set", "--gateway", "Bot", "--connector", "generic", "--preset",
        "allow-all",
    )  # fmt: skip
    project.up()
    project.agent(
        "stripe_agent.py",
        "import os, requests\n"
        "print(os.environ.get('STRIPE_KEY'), os.environ['STRIPE_API_KEY'])\n"
        "print(requests.get('https://api.stripe.com/v1/balance').status_code)\n",
    )
    done = project.tf(
        "run", "--name", "Bot", "python", "stripe_agent.py", env={"STRIPE_KEY": secret}
    )
    assert done.stdout.split() == ["None", "sk_test_tameflare_placeholder", "200"]
    assert secret in (stripe.last().header("authorization") or "")
