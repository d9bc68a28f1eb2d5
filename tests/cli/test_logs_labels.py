"""What `tf logs` and `tf status` say: how holds ended, kill-switch refusals with their action,
unknown agents, and the doctor's own agent left out. Real `tf up`, real `requests` agents."""

from __future__ import annotations

import httpx
import pytest

from tests.cli.conftest import Project, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TWO_MERGES = """\
import requests
for number in (1, 2):
    r = requests.put(f"https://api.github.com/repos/acme/api/pulls/{number}/merge", json={})
    print(r.status_code, flush=True)
"""
LIST_PRS = """\
import requests
r = requests.get("https://api.github.com/repos/acme/api/pulls")
print(r.status_code, r.headers.get("X-TameFlare-Kill-Switch"), r.json().get("action"))
"""


def _pending(project: Project, seen: set[str]) -> str:
    def fresh() -> str | None:
        for approval in project.tf_json("approvals", "list")["approvals"]:
            if approval["id"] not in seen:
                return str(approval["id"])
        return None

    found = str(wait_for(fresh, timeout=60, what="a held merge"))
    seen.add(found)
    return found


def test_logs_say_how_holds_ended_and_name_kill_switch_refusals(project: Project) -> None:
    project.up()
    project.tf("connector", "add", "github", "--token", "ghp_labels_test_token")
    project.bash(
        'tf permissions set --gateway "Bot" --connector github --action "github.pr.*" '
        "--decision allow\n"
        'tf permissions set --gateway "Bot" --connector github --action "github.pr.merge" '
        "--decision require_approval\n"
    )
    project.agent("merges.py", TWO_MERGES)
    agent = project.spawn(["tf", "run", "--name", "Bot", "python", "merges.py"])
    seen: set[str] = set()
    project.tf("approvals", "approve", _pending(project, seen))
    project.tf("approvals", "deny", _pending(project, seen))
    stdout, stderr = agent.communicate(timeout=90)
    assert stdout.split() == ["200", "403"], stderr

    project.tf("kill-switch", "--activate", "--scope", "Bot")
    project.agent("list_prs.py", LIST_PRS)
    wait_for(
        lambda: (
            project.tf("run", "--name", "Bot", "python", "list_prs.py").stdout.split()[0] == "403"
        ),
        what="the kill switch to reach the gateway",
    )
    refused = project.tf("run", "--name", "Bot", "python", "list_prs.py").stdout.split()
    assert refused == ["403", "active", "github.pr.list"]

    def rows() -> list[str]:
        out = project.tf("logs", "--last", "50").stdout.splitlines()
        return out if sum("kill switch" in line for line in out) >= 2 else []

    lines = wait_for(rows, what="the refusals in the traffic log")
    held = [line for line in lines if "github.pr.merge" in line]
    assert any("held → approved" in line for line in held), held
    assert any("held → denied" in line for line in held), held
    killed = [line for line in lines if "kill switch" in line]
    assert all("github.pr.list" in line for line in killed), killed
    assert "require_approval" not in "\n".join(lines)


def test_logs_refuse_an_unknown_agent(project: Project) -> None:
    project.up()
    project.tf("run", "--name", "Bot", "true")  # the agent exists, no traffic yet
    quiet = project.tf("logs", "--agent", "Bot")
    assert "no traffic yet" in quiet.stdout
    unknown = project.tf("logs", "--agent", "Nobody", check=False)
    assert unknown.returncode == 1
    assert "unknown agent `Nobody`" in unknown.stderr
    typo = project.tf("logs", "--agent", "bot", check=False)
    assert "did you mean `Bot`?" in typo.stderr


def test_status_leaves_out_the_doctor_agent(project: Project) -> None:
    up = project.up()
    token = (project.root / ".tf" / "admin.token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    for name in ("Bot", "tf-doctor"):
        answer = httpx.post(
            f"{up['server_url']}/api/v1/agents/ensure", json={"name": name}, headers=headers
        )
        assert answer.status_code < 300, answer.text
    status = project.tf_json("status")
    assert status["agents"]["total"] == 1
    assert status["agents"]["active"] == 1
    assert "tf-doctor" not in status["agents"].get("without_rules", [])
    assert "agents: 1 (1 active)" in project.tf("status").stdout
