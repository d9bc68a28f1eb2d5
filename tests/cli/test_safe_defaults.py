"""`tf init` offers the safe-default packs; `tf status` names agents with no rules at all."""

from __future__ import annotations

from agentfirewall_server.coverage import SAFE_DEFAULT_PACKS
from tests.cli.conftest import Project


def test_tf_init_offers_the_packs_and_installs_them_when_asked(bare_project: Project) -> None:
    first = bare_project.tf("init", "--port", "0", "--proxy-port", "0")
    assert "tf init --safe-defaults" in first.stdout + first.stderr
    done = bare_project.tf_json("init", "--safe-defaults")
    assert done["packs"] == sorted(SAFE_DEFAULT_PACKS)
    again = bare_project.tf_json("init", "--safe-defaults")  # installed once, kept
    assert again["packs"] == sorted(SAFE_DEFAULT_PACKS)


def test_tf_status_names_agents_that_run_with_no_rules(bare_project: Project) -> None:
    bare_project.tf("init")
    bare_project.up()
    try:
        bare_project.tf("agent", "add", "Loose Bot")
        bare_project.tf("agent", "add", "Guarded Bot")
        bare_project.tf(
            "permissions", "set", "--gateway", "Guarded Bot", "--connector", "github",
            "--action", "github.pr.*", "--decision", "allow",
        )  # fmt: skip
        status = bare_project.tf_json("status")
        assert status["agents"]["without_rules"] == ["Loose Bot"]
        text = bare_project.tf("status")
        shown = text.stdout + text.stderr
        assert "no rules at all: Loose Bot" in shown
        assert "Guarded Bot" not in shown
        bare_project.tf("init", "--safe-defaults")
        assert bare_project.tf_json("status")["agents"]["without_rules"] == []
    finally:
        bare_project.stop_up()
