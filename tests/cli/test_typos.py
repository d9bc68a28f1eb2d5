"""Typos are refused, not accepted silently: unknown agents, connectors and action names get
"did you mean …?" (close matches, case-insensitive); --create / --force say the new name is
meant. The pure helpers are checked for every name of the catalogue and any casing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.connectors import connector_types, get_connector
from agentfirewall_proxy.cli.names import catalogue_actions, close_matches, unknown_action
from tests.cli.conftest import Project

NAMES = ["Finance Bot", "DevOps Bot", "Support Bot", "github", "stripe"]


@given(st.sampled_from(NAMES), st.data())
def test_any_casing_of_a_known_name_suggests_it(name: str, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    typed = "".join(c.swapcase() if flip else c for c, flip in zip(name, flips, strict=True))
    assert close_matches(typed, NAMES)[0] == name


@given(st.sampled_from(NAMES), st.integers(min_value=0, max_value=30),
       st.sampled_from("abcdefghijklmnopqrstuvwxyz"))  # fmt: skip
def test_one_letter_off_suggests_the_name(name: str, where: int, letter: str) -> None:
    where %= len(name)
    typed = name[:where] + letter + name[where + 1 :]
    assert name in close_matches(typed, NAMES)


def test_every_catalogue_action_and_its_prefix_glob_is_accepted() -> None:
    for kind in connector_types():
        for info in get_connector(kind).actions():
            name = info.type.replace("<name>", "create_issue").replace("<method>", "ping")
            assert unknown_action(name, kind) is None, name
            assert unknown_action(name.rsplit(".", 1)[0] + ".*", kind) is None, name
            assert unknown_action(name, "*") is None, name
        assert unknown_action(f"{kind}.delete", kind) is None  # the fallback name
    assert unknown_action("generic.get", "generic") is None  # the seed's alias
    # the requests no route names: what the gateway's 403 tells the user to allow
    assert unknown_action("github.unknown.*", "github") is None
    assert unknown_action("github.unknown.put", "github") is None
    assert unknown_action("stripe.unknown.*", "github") is not None
    assert "github.pr.merge" in catalogue_actions("github")


def test_unknown_actions_get_the_closest_names() -> None:
    problem = unknown_action("github.pull.merge", "github")
    assert problem is not None
    assert "did you mean `github.pr.merge`" in problem.message
    assert unknown_action("stripe.*", "github") is not None  # another connector's actions
    cased = unknown_action("GitHub.pr.merge", "github")
    assert cased is not None
    assert "`github.pr.merge`" in cased.message


def _refused(project: Project, *args: str) -> str:
    done = project.tf(*args, check=False)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    return done.stderr


def test_typos_in_the_cli_are_refused(project: Project) -> None:
    project.tf("init")
    project.up()
    project.tf("agent", "add", "Finance Bot", "--json")

    # the kill switch: a typo must not leave "Finance Bot" running
    for typo in ("Finanse Bot", "finance bot"):
        stderr = _refused(project, "kill-switch", "--activate", "--scope", typo)
        assert "did you mean `Finance Bot`?" in stderr
    assert "did you mean `github`?" in _refused(project, "kill-switch", "--activate",
                                                "--scope", "gitlab")  # fmt: skip
    assert project.tf_json("kill-switch", "status")["active"] == []
    project.tf("kill-switch", "--activate", "--scope", "Finance Bot")
    stderr = _refused(project, "kill-switch", "--deactivate", "--scope", "Finanse Bot")
    assert "no active kill switch for `Finanse Bot`: did you mean `Finance Bot`?" in stderr
    project.tf("kill-switch", "--deactivate", "--scope", "Finance Bot")
    project.tf("kill-switch", "--activate", "--scope", "Future Bot", "--force")
    assert [s["target"] for s in project.tf_json("kill-switch", "status")["active"]] == [
        "Future Bot"
    ]
    project.tf("kill-switch", "--deactivate")
    # an agent named as a connector type: the bare name would stop the connector for all
    project.tf("agent", "add", "stripe", "--json")
    stderr = _refused(project, "kill-switch", "--activate", "--scope", "stripe")
    assert "say which: --scope agent:stripe or --scope connector:stripe" in stderr
    project.tf("kill-switch", "--activate", "--scope", "agent:stripe")
    assert [(s["scope"], s["target"]) for s in project.tf_json("kill-switch", "status")[
        "active"]] == [("agent", "stripe")]  # fmt: skip
    project.tf("kill-switch", "--deactivate")

    # permissions: agent, connector and action are each checked
    rule = ["permissions", "set", "--gateway", "Finance Bot", "--connector", "github"]
    allow = ["--action", "github.pr.*", "--decision", "allow"]
    stderr = _refused(project, "permissions", "set", "--gateway", "finance bot",
                      "--connector", "github", *allow)  # fmt: skip
    assert "did you mean `Finance Bot`?" in stderr
    assert "--create" in stderr
    stderr = _refused(project, "permissions", "set", "--gateway", "Finance Bot",
                      "--connector", "gitlab", *allow)  # fmt: skip
    assert "unknown connector `gitlab`: did you mean `github`?" in stderr
    stderr = _refused(project, *rule, "--action", "github.pull.merge", "--decision", "allow")
    assert "did you mean `github.pr.merge`" in stderr
    assert "--force" in stderr
    assert "did you mean `Finance Bot`?" in _refused(
        project, "enforcement", "set", "--gateway", "finance bot", "monitor"
    )
    assert project.tf_json("permissions", "list")["permissions"] == []
    listed = project.tf("permissions", "list", "--gateway", "Finanse Bot", check=False)
    assert listed.returncode == 1
    assert "unknown agent `Finanse Bot`: did you mean `Finance Bot`?" in listed.stderr

    # naming the future on purpose
    project.tf(*rule, "--action", "github.pr.*", "--decision", "allow")
    project.tf(*rule, "--action", "github.pulls.merge", "--decision", "deny", "--force")
    project.tf("permissions", "set", "--gateway", "finance bot", "--create",
               "--connector", "github", *allow)  # fmt: skip
    project.tf("permissions", "set", "--gateway", "Finance Bot", "--connector", "payments",
               "--action", "payments.transfer.*", "--decision", "deny", "--force")  # fmt: skip
    fresh = project.tf("permissions", "set", "--gateway", "Release Bot", "--connector",
                       "github", *allow)  # fmt: skip
    assert "new agent `Release Bot` registered" in fresh.stderr
    explain = ["policy", "explain", "--connector", "github", "--gateway"]
    assert "did you mean `github.pr.merge`" in _refused(
        project, *explain, "Finance Bot", "--action", "github.pull.merge"
    )
    assert "did you mean `Finance Bot`" in _refused(
        project, *explain, "Finanse Bot", "--action", "github.pr.merge"
    )
    assert project.tf(*explain, "Finance Bot", "--action", "github.pr.merge").returncode == 0
    rules = {
        (p["agent"], p["connector"], p["action_pattern"])
        for p in project.tf_json("permissions", "list")["permissions"]
    }
    assert rules == {
        ("Finance Bot", "github", "github.pr.*"),
        ("Finance Bot", "github", "github.pulls.merge"),
        ("finance bot", "github", "github.pr.*"),
        ("Finance Bot", "payments", "payments.transfer.*"),
        ("Release Bot", "github", "github.pr.*"),
    }
