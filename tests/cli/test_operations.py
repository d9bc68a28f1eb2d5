"""Day-two commands against a running `tf up`: deny a held call, monitor mode, live logs,
policy explain and packs, audit export and verify, doctor, and `tf up` refusing a busy port."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import threading
import time

import pytest

from agentfirewall import AgentFirewall
from agentfirewall.errors import TransportError
from tests.cli.conftest import Project, wait_for

pytestmark = pytest.mark.slow

MERGE = """\
import requests
r = requests.put("https://api.github.com/repos/acme/api/pulls/7/merge", json={})
print(r.status_code, r.json().get("error"))
"""
DELETE = """\
import requests
print(requests.delete("https://api.github.com/repos/acme/api").status_code)
"""


def _configure(project: Project) -> str:
    token = "ghp_ops" + secrets.token_hex(10)
    project.tf("init")
    project.up()
    project.tf("connector", "add", "github", "--token", token)
    project.bash(
        'tf permissions set --gateway "Bot" --connector github --action "github.pr.*" '
        "--decision allow\n"
        'tf permissions set --gateway "Bot" --connector github --action "github.pr.merge" '
        "--decision require_approval\n"
        'tf permissions set --gateway "Bot" --connector github --action "github.repo.delete" '
        "--decision deny\n"
    )
    return token


def test_deny_monitor_logs_and_audit(project: Project) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    _configure(project)
    project.agent("merge.py", MERGE)
    project.agent("delete.py", DELETE)
    follow = project.spawn(["tf", "logs", "--follow", "--interval", "0.2"])

    agent = project.spawn(["tf", "run", "--name", "Bot", "python", "merge.py"])
    pending = wait_for(lambda: project.tf_json("approvals", "list")["approvals"], what="hold")
    project.tf("approvals", "deny", pending[0]["id"], "--note", "not today")
    stdout, _ = agent.communicate(timeout=60)
    assert stdout.split()[0] == "403"
    assert not github.received("PUT")
    decided = project.tf_json("approvals", "list", "--status", "recent")["approvals"]
    assert decided[0]["status"] == "denied"
    assert decided[0]["note"] == "not today"
    twice = project.tf("approvals", "approve", pending[0]["id"], check=False)
    assert twice.returncode == 1
    assert "conflict" in twice.stderr

    # monitor: the denied deletion is forwarded and logged as would_deny
    monitored = project.tf(
        "run", "--name", "Bot", "--enforcement", "monitor", "python", "delete.py"
    )
    assert monitored.stdout.strip() != "403"
    assert len(github.received("DELETE", "/repos/acme/api")) == 1
    project.tf("enforcement", "set", "--gateway", "Bot", "full_enforce")
    enforced = project.tf("run", "--name", "Bot", "python", "delete.py")
    assert enforced.stdout.strip() == "403"

    wait_for(
        lambda: any(
            t.get("would_outcome") == "would_deny"
            for t in project.tf_json("logs", "--agent", "Bot")["traffic"]
        ),
        what="a would_deny record",
    )
    follow.send_signal(signal.SIGINT)
    live, _ = follow.communicate(timeout=30)
    assert "github.pr.merge" in live
    assert "github.repo.delete" in live

    assert project.tf_json("audit", "verify")["ok"] is True
    exported = project.tf("audit", "export", "--format", "jsonl").stdout.strip().splitlines()
    types = {json.loads(line).get("event_type") for line in exported}  # + checkpoints
    assert "connector.created" in types
    project.tf("audit", "export", "--format", "csv", "-o", "audit.csv")
    assert (project.root / "audit.csv").read_text().startswith("id,")


def test_policy_explain_packs_and_doctor(project: Project) -> None:
    _configure(project)
    base = ("policy", "explain", "--gateway", "Bot", "--connector", "github")
    assert project.tf(*base, "--action", "github.pr.create").returncode == 0
    assert project.tf(*base, "--action", "github.repo.delete", check=False).returncode == 3
    held = project.tf(*base, "--action", "github.pr.merge", "--json", check=False)
    assert held.returncode == 4
    steps = [s["step"] for s in json.loads(held.stdout)["explanation"]]
    assert steps[0] == "kill_switch"
    packs = {p["name"] for p in project.tf_json("policy", "packs")["packs"]}
    assert "github-safe-defaults" in packs
    typo = project.tf("policy", "install", "github-safe-default", check=False)
    assert typo.returncode == 2
    assert "did you mean `github-safe-defaults`" in typo.stderr
    assert "tf policy packs" in typo.stderr
    project.tf("policy", "install", "github-safe-defaults")
    assert [p["name"] for p in project.tf_json("policy", "list")["policies"]] == [
        "github-safe-defaults"
    ]

    # add, refused twice, replaced, removed
    held_merges = "name: hold-merges\nrules:\n  - {name: r, decision: requires_approval}\n"
    (project.root / "hold.yaml").write_text(held_merges)
    assert "hold-merges added" in project.tf("policy", "add", "hold.yaml").stdout
    again = project.tf("policy", "add", "hold.yaml", check=False)
    assert again.returncode == 1
    assert "tf policy add hold.yaml --replace" in again.stderr
    replaced = project.tf("policy", "add", "hold.yaml", "--replace")
    assert "hold-merges replaced (version 2)" in replaced.stdout
    (project.root / "typo.yaml").write_text("name: t\nrules:\n  - {name: r, decison: deny}\n")
    typo = project.tf("policy", "add", "typo.yaml", check=False)
    assert typo.returncode == 1
    assert "typo.yaml:3" in typo.stderr  # the file and line, as `validate` shows them
    assert "`rules[0].decison`: unknown field" in typo.stderr
    project.tf("policy", "remove", "hold-merges")
    assert [p["name"] for p in project.tf_json("policy", "list")["policies"]] == [
        "github-safe-defaults"
    ]

    doctor = project.tf("doctor", "--json", check=False)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    for client in ("python3 requests", "python3 httpx", "python3 urllib"):
        assert checks[client]["ok"], checks[client]


def test_up_refuses_a_busy_port(bare_project: Project) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = bare_project.tf("up", "--port", str(port), "--proxy-port", "0", check=False)
    assert done.returncode == 1
    assert "--port" in done.stderr
    assert not (bare_project.root / ".tf" / "up.json").exists()


def test_a_held_approval_survives_a_restart(project: Project) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    _configure(project)
    project.agent("merge.py", MERGE)
    agent = project.spawn(["tf", "run", "--name", "Bot", "python", "merge.py"])
    pending = wait_for(lambda: project.tf_json("approvals", "list")["approvals"], what="hold")
    assert project.stop_up() == 0  # Ctrl-C while the call is held: the agent's call fails...
    agent.communicate(timeout=60)
    assert agent.returncode != 0
    project.up()  # ...but the approval is still there after the restart
    again = project.tf_json("approvals", "list")["approvals"]
    assert [a["id"] for a in again] == [pending[0]["id"]]
    project.tf("approvals", "approve", pending[0]["id"])
    retried = project.tf("run", "--name", "Bot", "python", "merge.py")  # the agent retries
    assert retried.stdout.split()[0] == "200"
    assert len(github.received("PUT", "/repos/acme/api/pulls/7/merge")) == 1


def test_ctrl_c_answers_an_sdk_agents_wait_instead_of_cutting_it(project: Project) -> None:
    """An SDK agent long-polling for an approval when `tf up` stops gets the action's state
    (still pending), then a connection error it can retry on: not a 500 from a request cut
    at the graceful timeout, and no traceback in `tf up`'s output."""
    project.tf("init")
    up = project.up()
    key = project.tf_json("agent", "add", "Bot")["api_key"]
    project.tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
               "--action", "github.pr.merge", "--decision", "require_approval")  # fmt: skip
    outcome: dict[str, object] = {}
    with AgentFirewall(api_key=key, base_url=up["server_url"] + "/api") as firewall:
        held = firewall.request_action(action_type="github.pr.merge", provider="github")
        assert held.status == "pending_approval"

        def wait() -> None:
            try:
                outcome["result"] = firewall.wait_for_approval(held.action_request_id, 120)
            except Exception as exc:  # what the agent would see
                outcome["error"] = exc

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(1.0)  # the long-poll is open on the server (nothing shows it from here)
        assert project.stop_up() == 0
        waiter.join(60)
    assert isinstance(outcome.get("error"), TransportError), outcome
    assert "Traceback" not in project.up_log.read_text()
