"""The words a newcomer reads in `tf`: hints that name the command to run, empty lists that
say what is empty, options that say what they take, and help examples that work as shown.

Before: an unknown approval or grant id answered "list what exists with the `list`
command"; `tf grants list --all` with no grant said "no active grants"; `tf mcp --help` had
no examples; the `tf policy --help` example, run on the shipped protect-main.yaml, decided
"allow, out of scope" (it lacked `--env production`).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest

from agentfirewall_proxy.cli.app import build_parser, main
from tests.cli.conftest import REPO, Project

#: the commands whose options this fix wrote the help of
OWNED = ("init", "approvals", "grants", "mcp", "policy validate", "policy test",
         "policy explain", "policy add", "policy remove", "policy install")  # fmt: skip


def _parser(path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in path.split():
        verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = verbs.choices[word]
    return parser


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and every subcommand under it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _commands(sub)
    return found


def _help(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    assert main([*words, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("path", OWNED)
def test_every_option_says_what_it_takes(path: str) -> None:
    bare = [
        f"{command.prog}: {action.option_strings or action.dest}"
        for command in _commands(_parser(path))
        for action in command._actions
        if action.help is None and not isinstance(action, argparse._SubParsersAction)
    ]
    assert bare == []


def test_mcp_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    examples = _help(capsys, "mcp").split("examples:\n", 1)[1]
    assert "tf mcp wrap" in examples
    assert "tf mcp install" in examples


def test_the_policy_help_example_decides_as_the_shipped_policy_says(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `tf policy test` example of `tf policy --help` and `tf policy test --help`, run on
    examples/policies/protect-main.yaml, holds the merge to main for a human (exit 4)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "protect-main.yaml").write_bytes(
        (REPO / "examples" / "policies" / "protect-main.yaml").read_bytes()
    )
    pages = _help(capsys, "policy") + _help(capsys, "policy", "test")
    tests = [line.strip() for line in pages.splitlines() if line.startswith("  tf policy test ")]
    assert len(tests) == 2
    for line in tests:
        assert main([*shlex.split(line)[1:], "--json"]) == 4, line
        decided = json.loads(capsys.readouterr().out)["decision"]
        assert decided["outcome"] == "require_approval", line


def _error(project: Project, *args: str) -> str:
    done = project.tf(*args, check=False)
    assert done.returncode == 1, (args, done.stdout, done.stderr)
    return done.stderr


@pytest.mark.slow
def test_unknown_ids_name_the_command_that_lists_them(bare_project: Project) -> None:
    tf = bare_project.tf
    tf("init", "--port", "0", "--proxy-port", "0")
    bare_project.up()
    for verb, lister in (
        ("approve", "`tf approvals list`"),
        ("deny", "`tf approvals list`"),
        ("show", "`tf approvals list --status recent`"),
    ):
        stderr = _error(bare_project, "approvals", verb, "apv_0KX3NOSUCH")
        assert "no approval `apv_0KX3NOSUCH`" in stderr
        assert lister in stderr
        assert "the `list` command" not in stderr
    stderr = _error(bare_project, "grants", "revoke", "grt_0KX9NOSUCH")
    assert "`tf grants list --all`" in stderr
    assert "the `list` command" not in stderr
    stderr = _error(bare_project, "budget", "show", "no-such-budget")
    assert "`tf budget list`" in stderr
    assert "no grants" in tf("grants", "list", "--all").stdout
    assert "no active grants" not in tf("grants", "list", "--all").stdout
    assert "no active grants" in tf("grants", "list").stdout
