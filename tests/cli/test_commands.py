"""`tf` commands as a user meets them: help, usage errors, hints, exit codes, offline writes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.cli.conftest import Project

POLICY = textwrap.dedent(
    """\
    name: protect-main
    scope: {action_types: ["github.pr.*"]}
    rules:
      - name: merge-to-main
        conditions:
          all:
            - {field: action_spec.type, operator: equals, value: github.pr.merge}
            - {field: action_spec.parameters.base, operator: equals, value: main}
        decision: requires_approval
        reason: merges to main need a human
      - name: no-force
        conditions:
          all:
            - {field: action_spec.parameters.force, operator: equals, value: true}
        decision: deny
        reason: no force pushes
    """
)


def test_help_teaches_with_examples(bare_project: Project) -> None:
    top = bare_project.tf("--help")
    assert "tf up" in top.stdout
    assert "Exit codes" in top.stdout
    for command in (
        "init",
        "up",
        "connector add",
        "permissions set",
        "run",
        "logs",
        "approvals approve",
        "kill-switch",
        "policy test",
        "audit export",
        "doctor",
    ):
        page = bare_project.tf(*command.split(), "--help")
        assert "examples:" in page.stdout, command
        assert f"tf {command.split()[0]}" in page.stdout.split("examples:")[1], command


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("connector",),
        ("permissions", "set", "--gateway", "Bot"),
        ("permissions", "set", "--gateway", "Bot", "--connector", "github", "--decision", "maybe"),
        ("no-such-command",),
    ],
)
def test_usage_errors_exit_2(bare_project: Project, args: tuple[str, ...]) -> None:
    assert bare_project.tf(*args, check=False).returncode == 2


def test_commands_outside_a_project_say_what_to_do(bare_project: Project) -> None:
    done = bare_project.tf("connector", "list", check=False)
    assert done.returncode == 1
    assert "tf init" in done.stderr
    done = bare_project.tf("run", "--name", "Bot", "true", check=False)
    assert done.returncode == 1


def test_server_down_points_at_tf_up(bare_project: Project) -> None:
    bare_project.tf("init", "--port", "0", "--proxy-port", "0")
    done = bare_project.tf("status", check=False)
    assert done.returncode == 1
    assert "no TameFlare server at http://127.0.0.1:0" in done.stderr
    assert "start one with `tf up`" in done.stderr
    done = bare_project.tf("run", "--name", "Bot", "python", "-V", check=False)
    assert done.returncode == 1
    assert "`tf up`" in done.stderr


def test_remote_server_needs_an_admin_token(bare_project: Project) -> None:
    done = bare_project.tf("status", "--server", "http://127.0.0.1:9", check=False)
    assert done.returncode == 1
    assert "TF_ADMIN_TOKEN" in done.stderr


def test_offline_configuration_before_the_first_tf_up(bare_project: Project) -> None:
    """The seed's order works: init, connector add, permissions set, all before `tf up`."""
    bare_project.tf("init", "--port", "0", "--proxy-port", "0")
    bare_project.tf("connector", "add", "github", "--token", "ghp_offline_secret")
    bare_project.tf(
        "permissions", "set", "--gateway", "Bot", "--connector", "github",
        "--action", "github.pr.*", "--decision", "allow",
    )  # fmt: skip
    connectors = bare_project.tf_json("connector", "list")["connectors"]
    assert [(c["type"], c["has_credential"]) for c in connectors] == [("github", True)]
    assert "ghp_offline_secret" not in json.dumps(connectors)
    rules = bare_project.tf_json("permissions", "list", "--gateway", "Bot")["permissions"]
    assert [(r["action_pattern"], r["decision"]) for r in rules] == [("github.pr.*", "allow")]


def test_platform_template_claude_code(bare_project: Project) -> None:
    bare_project.tf("init", "--platform", "claude-code", "--port", "0", "--proxy-port", "0")
    bare_project.up()  # what the template wrote offline is what the server serves
    connectors = {c["type"] for c in bare_project.tf_json("connector", "list")["connectors"]}
    assert connectors == {"anthropic", "github"}
    rules = bare_project.tf_json("permissions", "list", "--gateway", "claude-code")
    decided = {(r["connector"], r["action_pattern"]): r["decision"] for r in rules["permissions"]}
    assert decided[("github", "github.pr.merge")] == "require_approval"
    assert decided[("github", "github.repo.delete")] == "deny"
    assert decided[("anthropic", "*")] == "allow"
    names = [p["name"] for p in bare_project.tf_json("policy", "list")["policies"]]
    assert names == ["github-safe-defaults"]
    # a credential added later replaces the template's empty connector
    bare_project.tf("connector", "add", "github", "--token", "ghp_later")
    listed = bare_project.tf_json("connector", "list")["connectors"]
    github = [c for c in listed if c["type"] == "github"]
    assert len(github) == 1
    assert github[0]["has_credential"] is True
    again = bare_project.tf("connector", "add", "github", "--token", "ghp_2", check=False)
    assert again.returncode == 1
    assert "--replace" in again.stderr
    bare_project.tf("connector", "add", "github", "--token", "ghp_2", "--replace")
    merge_rule = next(
        r["id"] for r in rules["permissions"] if r["action_pattern"] == "github.pr.merge"
    )
    bare_project.tf("permissions", "remove", merge_rule)
    left = bare_project.tf_json("permissions", "list", "--gateway", "claude-code")["permissions"]
    assert merge_rule not in {r["id"] for r in left}
    bare_project.tf("connector", "remove", "anthropic")
    listed = bare_project.tf_json("connector", "list")["connectors"]
    assert {c["type"] for c in listed} == {"github"}
    bare_project.stop_up()


@pytest.mark.parametrize("platform", ["langchain", "n8n"])
def test_other_platform_templates(bare_project: Project, platform: str) -> None:
    done = bare_project.tf_json("init", "--platform", platform, "--port", "0", "--proxy-port", "0")
    assert done["platform"] == platform
    assert done["rules"] > 0
    assert done["connectors"]


def test_policy_validate_and_test_exit_codes(bare_project: Project) -> None:
    (bare_project.root / "protect-main.yaml").write_text(POLICY)
    (bare_project.root / "broken.yaml").write_text("name: x\nrules:\n  - decision: maybe\n")
    assert bare_project.tf("policy", "validate", "protect-main.yaml").returncode == 0
    broken = bare_project.tf("policy", "validate", "broken.yaml", check=False)
    assert broken.returncode == 1
    assert "broken.yaml" in broken.stderr
    base = ("policy", "test", "protect-main.yaml", "--action", "github.pr.merge")
    assert bare_project.tf(*base, "--param", "base=main", check=False).returncode == 4
    assert bare_project.tf(*base, "--param", "base=dev", check=False).returncode == 0
    denied = bare_project.tf(*base, "--param", "force=true", "--json", check=False)
    assert denied.returncode == 3
    assert json.loads(denied.stdout)["decision"]["outcome"] == "deny"


def test_tf_starts_without_the_server_or_the_models() -> None:
    """Every `tf` command starts by building the whole parser: that loads no pydantic model,
    no database layer, no server, no HTTP library but the standard library's, no asyncio and
    no cryptography (each command imports what it needs when it runs)."""
    probe = (
        "import sys, agentfirewall_proxy.cli.app as app\n"
        "app.build_parser()\n"
        "heavy = ('pydantic', 'sqlalchemy', 'uvicorn', 'starlette', 'agentfirewall_server',\n"
        "         'httpx', 'httpcore', 'anyio', 'asyncio', 'jwt', 'cryptography')\n"
        "print(*[m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_a_command_that_asks_the_server_loads_no_http_library_nor_pyjwt(project: Project) -> None:
    """`tf status` talks to its project's `tf up` (and proves it is that project's: the key id
    in the server's JWKS) with the standard library: no httpx, no PyJWT, no asyncio to start."""
    project.tf("init")
    project.up()
    probe = (
        "import sys\n"
        "from agentfirewall_proxy.cli import main\n"
        "code = main(['status', '--json'])\n"
        "heavy = ('httpx', 'httpcore', 'anyio', 'asyncio', 'jwt', 'pydantic', 'sqlalchemy')\n"
        "print(code, *[m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split()[-1:] == ["0"], done.stdout + done.stderr
