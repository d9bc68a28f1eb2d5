"""An agent that writes escape sequences into what approvers read: `tf` shows them as text.

The agent chooses an action's target and parameters; `tf approvals list` and `show` print
them to the person deciding. Raw, a terminal would obey them (clear the screen, rewrite the
row above, reorder `acme/api`): every one must arrive as its printed escape, on stdout and
in `--json`, where the value itself stays exactly what the agent sent.
"""

from __future__ import annotations

import json

from agentfirewall import AgentFirewall
from tests.cli.conftest import Project
from tests.core.test_display import HOSTILE, hidden


def test_an_agents_escape_sequences_reach_the_approver_as_text(project: Project) -> None:
    project.tf("init")
    up = project.up()
    key = project.tf_json("agent", "add", "Bot")["api_key"]
    project.tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
               "--action", "github.pr.merge", "--decision", "require_approval")  # fmt: skip
    sent = [text for text in HOSTILE if "\ud800" not in text]  # JSON carries no lone surrogate
    # (a resource name holds no NUL: refused at the API; the parameters carry it)
    target = "acme/api" + "".join(sent).replace("\x00", "")
    with AgentFirewall(api_key=key, base_url=up["server_url"] + "/api") as firewall:
        held = firewall.request_action(
            action_type="github.pr.merge", provider="github", target=target,
            parameters={"note": "".join(sent)},
        )  # fmt: skip
    assert held.status == "pending_approval"

    pending = project.tf_json("approvals", "list")["approvals"]
    listed = project.tf("approvals", "list")
    shown = project.tf("approvals", "show", pending[0]["id"])
    for printed in (listed.stdout, listed.stderr, shown.stdout, shown.stderr):
        assert not hidden(printed, keep="\n"), printed
    # the approver reads the target, every escape of it as text, on one line
    resource = next(line for line in shown.stdout.splitlines() if line.startswith("resource: "))
    assert resource.startswith("resource: acme/api\\x1b[2J\\x1b[H\\x1b[1A")
    assert "\\x9b31mok\\x0dapproveda\\x0abacme/\\u202eipa" in resource
    assert resource.endswith(" (github)")
    assert "acme/api\\x1b[2J" in listed.stdout

    raw = project.tf("approvals", "show", pending[0]["id"], "--json").stdout
    assert not hidden(raw, keep="\n")
    assert json.loads(raw)["id"] == pending[0]["id"]
    assert json.loads(raw)["action_spec"]["resource"]["target"] == target  # the value, unchanged
