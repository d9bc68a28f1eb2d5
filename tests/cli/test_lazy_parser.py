"""`tf` builds only the parser of the command it runs, and nobody can tell: for every command
and sub-command path of the full parser, the lazy one (what `main` runs) prints the same
help, the same usage errors and exits with the same code, in-process."""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentfirewall_proxy.cli as cli
from agentfirewall_proxy.cli.app import COMMANDS, build_parser, parse
from tests.fuzzscale import examples

Outcome = tuple[str, str, object]


def _verbs(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[
        tuple[str, ...], argparse.ArgumentParser]]:  # fmt: skip
    """Every (sub)command path of `parser` (the bare `tf` first), with its parser."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _paths(sub, (*path, name))


FULL = build_parser()
PATHS = dict(_paths(FULL))


def _run(lazy: bool, argv: list[str]) -> Outcome:
    """What `tf ARGV` prints and ends with up to running a handler: stdout, stderr, and the
    exit code, or the flags the handler would get."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        result = parse(build_parser(lazy=True) if lazy else FULL, argv)  # argparse keeps
    parsed = result if isinstance(result, int) else vars(result)  # no state between parses
    return out.getvalue(), err.getvalue(), parsed


def _same(argv: list[str]) -> None:
    full, lazy = _run(False, argv), _run(True, argv)
    assert lazy == full, argv


def _typo(word: str) -> str:
    """`word` with its first two letters swapped (`tf stauts`), or with one added."""
    return word[1] + word[0] + word[2:] if len(word) > 1 and word[0] != word[1] else word + "x"


def _bad_invocations(path: tuple[str, ...], parser: argparse.ArgumentParser) -> Iterator[list[str]]:
    """What a user gets wrong at `path`: nothing after it, a flag it lacks, a stray word,
    a typo of each verb below it, an option without its value, a bad choice or a bad
    number for each option that takes one."""
    yield [*path]
    yield [*path, "--no-such-flag"]
    yield [*path, "stray", "words"]
    yield [*path, "--server"]
    yield [*path, "--json", "-x"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from ([*path, _typo(name)] for name in action.choices)
        elif action.option_strings and action.nargs != 0:
            flag = action.option_strings[-1]
            yield [*path, flag]
            yield [*path, flag, "not-a-choice-1x"]
            yield [*path, "--json", flag, "-1"]


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")


def test_the_help_of_every_command_is_the_same() -> None:
    assert len(PATHS) > 60  # the walk found the sub-commands
    for path in PATHS:
        full = _run(False, [*path, "--help"])
        assert full[0].startswith("usage: tf")
        assert full[2] == 0
        assert _run(True, [*path, "--help"]) == full, path


def test_every_usage_error_is_the_same() -> None:
    for path, parser in PATHS.items():
        for argv in _bad_invocations(path, parser):
            _same(argv)
    assert "invalid choice: 'stauts' (choose from 'init', 'up'" in _run(True, ["stauts"])[1]
    assert _run(True, ["--version"]) == ("tf (tameflare) 0.1.0\n", "", 0)


def test_the_list_of_commands_is_the_full_parsers() -> None:
    listed = [(a.dest, a.help) for a in _verbs(FULL)._get_subactions()]
    assert listed == [(name, line) for name, _, line in COMMANDS]
    assert list(_verbs(FULL).choices) == [name for name, _, _ in COMMANDS]  # no aliases


#: The words `tf` knows (every command, verb and option of the full parser) and some it does not.
WORDS = sorted(
    {word for path in PATHS for word in path}
    | {flag for parser in PATHS.values() for a in parser._actions for flag in a.option_strings}
    | {"stauts", "x", "-", "--", "-1", "0", "=", "--json=1", "--server=u", "--nope", "-n5"}
)


@settings(max_examples=examples(300))
@given(st.lists(st.sampled_from(WORDS), max_size=6))
def test_any_command_line_parses_the_same(argv: list[str]) -> None:
    _same(argv)


def test_only_the_command_given_is_built() -> None:
    modules = {module for _, module, _ in COMMANDS}
    for name, module, _ in COMMANDS:
        parser = build_parser(lazy=True)
        with contextlib.redirect_stdout(io.StringIO()):
            assert parse(parser, [name, "--help"]) == 0
        built = _verbs(parser)._name_parser_map.built  # type: ignore[attr-defined]
        assert sorted(built) == sorted(n for n, m, _ in COMMANDS if m == module), name
    assert len(modules) == 18


def test_version_help_and_typos_import_no_command() -> None:
    probe = (
        "import contextlib, io, sys\n"
        "from agentfirewall_proxy.cli import main\n"
        "for argv in (['--version'], ['--help'], ['stauts'], []):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO()):\n"
        "        main(argv)\n"
        "print(*sorted(m for m in sys.modules if m.endswith(('_cmd', '.monitor', '.doctor'))\n"
        "              or m.split('.')[0] in ('rich', 'yaml') or m == 'http.client'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


NO_EXTRA = (
    "error: tf needs the `proxy` extra (module `rich` is not installed)\n"
    "  → pip install 'tameflare[proxy]'\n"
)


def test_without_rich_every_command_still_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tf --version` and `tf --help` import no rich now: without the `proxy` extra they
    must still say how to install it (tests/cli/test_packaging.py, in a fresh venv)."""
    monkeypatch.setattr(cli, "find_spec", lambda name: None)
    for argv in (["--version"], ["--help"], ["status"]):
        assert cli.main(argv) == 1
        assert capsys.readouterr() == ("", NO_EXTRA)
