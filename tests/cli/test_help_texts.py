"""`--help` teaches: every option and argument of every `tf` command says what it is for."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from agentfirewall_proxy.cli.app import build_parser


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("tf",)
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_every_option_and_argument_has_a_help_text() -> None:
    silent = [
        f"{command} {'/'.join(action.option_strings) or action.dest}"
        for command, parser in _commands(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not action.help
    ]
    assert silent == []


def test_the_walk_reaches_nested_commands() -> None:
    names = {command for command, _ in _commands(build_parser())}
    assert {"tf logs", "tf kill-switch", "tf permissions set", "tf policy shadow add"} <= names
