"""`tf init --platform P` tells a newcomer what to run next, and following it works.

It used to print the quickstart's steps whatever the template: `tf run --name "Bot"` (an
agent with none of the template's rules, so every call was denied) and a `tf connector add`
for every connector of the template, also those that already had a credential (which that
command then refuses: "already exists").
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap

import pytest

from tests.cli.conftest import Project

AGENT = textwrap.dedent(
    """\
    import requests

    api = "https://api.github.com/repos/acme/api"
    r = requests.post(f"{api}/pulls", json={"title": "t", "head": "h", "base": "main"})
    print("open PR:", r.status_code)
    """
)


def _next_steps(stdout: str) -> list[str]:
    """The commands under `next:`, their comments left out."""
    steps = stdout.split("next:\n", 1)[1].splitlines()
    return [line.split("  #")[0].strip() for line in steps if line.startswith("  ")]


def test_a_template_names_its_own_agent_and_only_the_credentials_it_lacks(
    bare_project: Project,
) -> None:
    tf = bare_project.tf
    tf("init", "--port", "0", "--proxy-port", "0")
    tf("connector", "add", "openai", "--token", "sk-test-0000")
    done = tf("init", "--platform", "langchain")
    steps = _next_steps(done.stdout)
    assert "Bot" not in done.stdout
    assert steps[-1] == 'tf run --name "langchain" python my_agent.py'
    adds = [s for s in steps if s.startswith("tf connector add")]
    assert adds == ["tf connector add anthropic --token ..."]
    assert "`openai` has a credential already" in done.stdout
    for step in adds:  # each one works as printed
        tf(*shlex.split(step.replace("...", "sk-ant-test-0000"))[1:])
    connectors = json.loads(tf("connector", "list", "--json").stdout)["connectors"]
    assert {(c["type"], c["has_credential"]) for c in connectors} == {
        ("openai", True),
        ("anthropic", True),
    }
    # every credential there: nothing to add; the JSON answer says which were missing
    again = tf("init", "--platform", "langchain", "--json")
    assert json.loads(again.stdout)["need_credentials"] == []
    steps = _next_steps(tf("init", "--platform", "langchain").stdout)
    assert steps == ["tf up", 'tf run --name "langchain" python my_agent.py']


def test_the_agent_named_with_agent_is_the_one_to_run(bare_project: Project) -> None:
    done = bare_project.tf("init", "--platform", "claude-code", "--agent", "Dev's Bot",
                           "--port", "0", "--proxy-port", "0")  # fmt: skip
    steps = _next_steps(done.stdout)
    assert shlex.split(steps[-1]) == ["tf", "run", "--name", "Dev's Bot", "python", "my_agent.py"]
    assert "rules are for the agent `Dev's Bot`" in done.stdout
    assert [s for s in steps if s.startswith("tf connector add")] == [
        "tf connector add anthropic --token ...",
        "tf connector add github --token ...",
    ]


def test_the_template_agent_is_registered_so_a_typo_of_it_is_caught(
    bare_project: Project,
) -> None:
    """Its rules alone did not make the agent known: `n9n` for `n8n` became a new agent."""
    bare_project.tf("init", "--platform", "n8n", "--port", "0", "--proxy-port", "0")
    agents = json.loads(bare_project.tf("agent", "list", "--json").stdout)["agents"]
    assert [a["name"] for a in agents] == ["n8n"]
    done = bare_project.tf("enforcement", "set", "--gateway", "n9n", "monitor", check=False)
    assert done.returncode == 2
    assert "did you mean `n8n`?" in done.stderr


def test_without_a_template_the_quickstart_steps_stay(bare_project: Project) -> None:
    steps = _next_steps(bare_project.tf("init", "--port", "0", "--proxy-port", "0").stdout)
    assert steps[-1] == 'tf run --name "Bot" python my_agent.py'
    assert any(re.match(r'tf permissions set --gateway "Bot"', s) for s in steps)


@pytest.mark.slow
def test_following_the_template_steps_lets_the_agent_through(project: Project) -> None:
    """claude-code's `next:` steps, run as printed (the tokens filled in) against a fake
    GitHub: its agent may open a pull request, with the credential the step vaulted."""
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    done = project.tf("init", "--platform", "claude-code", "--port", "0", "--proxy-port", "0")
    project.up()
    project.agent("my_agent.py", AGENT)
    for step in _next_steps(done.stdout):
        if step.startswith("tf connector add"):
            project.bash(step.replace("...", "ghp_newcomer0000"))
        elif step.startswith("tf run"):
            ran = project.bash(step)
            assert "open PR: 201" in ran.stdout, ran.stdout + ran.stderr
    assert [r.path for r in github.received("POST")] == ["/repos/acme/api/pulls"]
    assert "ghp_newcomer0000" in (github.last().header("authorization") or "")
