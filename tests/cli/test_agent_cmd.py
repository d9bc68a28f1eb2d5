"""`tf agent add|list|show|rotate-key|remove`: an SDK key from the CLI, shown once, that
works with the SDK against the running server, and stops working when rotated or removed."""

from __future__ import annotations

import pytest

from agentfirewall import AgentFirewall
from agentfirewall.errors import AuthenticationError
from tests.cli.conftest import Project


def _allowed(server_url: str, key: str) -> str:
    with AgentFirewall(api_key=key, base_url=server_url + "/api") as firewall:
        result = firewall.request_action(action_type="email.send", provider="mail")
    return str(result.status)


def test_agent_keys_from_the_cli(project: Project) -> None:
    project.tf("init")
    server = project.up()["server_url"]

    added = project.tf("agent", "add", "Mail Bot")
    key = next(
        line.split("=", 1)[1]
        for line in added.stdout.splitlines()
        if line.startswith("AAF_API_KEY=")
    )
    assert key.startswith("aaf_live_")
    assert f"AAF_BASE_URL={server}/api" in added.stdout.splitlines()
    assert "shown once" in added.stdout
    assert _allowed(server, key) == "allowed"

    # the key is shown once: never again in list or show, plain or --json
    for args in (("agent", "list"), ("agent", "show", "Mail Bot")):
        assert key not in project.tf(*args).stdout
        assert key not in project.tf(*args, "--json").stdout
    listed = project.tf_json("agent", "list")["agents"]
    mine = next(a for a in listed if a["name"] == "Mail Bot")
    assert key.startswith(mine["key_prefix"])
    shown = project.tf_json("agent", "show", mine["id"][:12])  # an id prefix finds it too
    assert shown["name"] == "Mail Bot"

    test_key = project.tf_json("agent", "add", "Test Bot", "--environment", "test")["api_key"]
    assert test_key.startswith("aaf_test_")

    rotated = project.tf_json("agent", "rotate-key", "Mail Bot")["api_key"]
    assert rotated != key
    with pytest.raises(AuthenticationError):
        _allowed(server, key)
    assert _allowed(server, rotated) == "allowed"

    assert "removed" in project.tf("agent", "remove", "Mail Bot").stdout
    with pytest.raises(AuthenticationError):
        _allowed(server, rotated)
    assert project.tf_json("agent", "show", "Mail Bot")["status"] == "revoked"
    assert _allowed(server, test_key) == "allowed"  # the other agent is untouched

    # the name is free again: a new agent, with a new key; the name finds the new one
    again = project.tf_json("agent", "add", "Mail Bot")
    assert again["agent"]["id"] != mine["id"]
    assert _allowed(server, again["api_key"]) == "allowed"
    assert project.tf_json("agent", "show", "Mail Bot")["id"] == again["agent"]["id"]
    assert project.tf_json("agent", "rotate-key", "Mail Bot")["agent"]["id"] == again["agent"]["id"]
    assert project.tf_json("agent", "show", mine["id"])["status"] == "revoked"


def test_agent_names_are_checked(bare_project: Project) -> None:
    bare_project.tf("init")
    bare_project.tf("agent", "add", "Finance Bot", "--json")
    twin = bare_project.tf("agent", "add", "finance bot", check=False)
    assert twin.returncode == 2
    assert "did you mean `Finance Bot`?" in twin.stderr
    assert "--force" in twin.stderr
    assert bare_project.tf("agent", "add", "finance bot", "--force", "--json").returncode == 0
    missing = bare_project.tf("agent", "show", "Finanse Bot", check=False)
    assert missing.returncode == 1
    assert "unknown agent `Finanse Bot`" in missing.stderr
    assert "did you mean" in missing.stderr
    duplicate = bare_project.tf("agent", "add", "Finance Bot", check=False)
    assert duplicate.returncode != 0
    assert "already exists" in duplicate.stderr
    # a removed agent's name is free: a near spelling of it is no typo of a live agent
    bare_project.tf("agent", "add", "Ops Bot", "--json")
    bare_project.tf("agent", "remove", "Ops Bot")
    assert bare_project.tf("agent", "add", "ops bot", "--json").returncode == 0
