"""`tf`: the parser, the dispatch and the mapping of failures to exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["COMMANDS", "build_parser", "main", "parse"]

#: argparse's exit code for a usage error (`output.EXIT_USAGE`, which loads rich)
EXIT_USAGE = 2

_EPILOG = """\
the newcomer path:
  tf up                                       # terminal 1: server + dashboard + gateway
  tf connector add github --token ghp_xxx     # terminal 2
  tf permissions set --gateway "Bot" --connector github --action "github.pr.*" --decision allow
  tf run --name "Bot" python my_agent.py
  tf logs --follow

every command takes --json (machine-readable output) and --server URL (or TF_SERVER with
TF_ADMIN_TOKEN) to manage a remote gateway. Exit codes: 0 ok, 1 error, 2 usage,
3 denied, 4 approval pending or timed out. `tf COMMAND --help` shows examples.
"""


#: Every command: its name, the module whose `register` builds its parser, its one line in
#: `tf --help` (the same as that `register` gives it; tests/cli/test_lazy_parser.py compares),
#: in the order `tf --help` lists them.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("init", "init_cmd",
     "create this project's TameFlare state (.tf/), optionally from a platform template"),
    ("up", "up_cmd",
     "run the control plane, the dashboard and the gateway proxy (one process)"),
    ("connector", "connectors_cmd",
     "add, list, update and remove connectors (which APIs agents may reach)"),
    ("agent", "agent_cmd",
     "add, list, show, remove and isolate agents; make and rotate SDK keys"),
    ("permissions", "permissions_cmd",
     "set, list and remove access rules (agent x connector x action)"),
    ("enforcement", "permissions_cmd",
     "set an agent's enforcement level (monitor, soft_enforce, full_enforce)"),
    ("run", "run_cmd", "run an agent with all its HTTP(S) traffic going through the gateway"),
    ("mcp", "mcp_cmd", "govern local (stdio) MCP servers: wrap, install, uninstall, list"),
    ("status", "monitor", "gateway, agents, decisions, pending approvals, kill switch"),
    ("logs", "monitor", "the traffic log (newest last); --follow for live"),
    ("approvals", "approvals_cmd", "list, show, approve and deny held requests"),
    ("actions", "actions_cmd",
     "list and settle SDK executions a server crash left unfinished"),
    ("budget", "budget_cmd", "caps on what agents spend (count, amount, tokens, cost)"),
    ("grants", "budget_cmd", "list and revoke grants (approvals of more than one request)"),
    ("kill-switch", "killswitch_cmd",
     "stop all traffic, or one connector's or one agent's, at once"),
    ("policy", "policy_cmd", "validate, test and explain policies; install packs"),
    ("audit", "audit_cmd", "export or verify the tamper-evident audit log"),
    ("vault", "vault_cmd", "the credential vault: keys, rotation"),
    ("backup", "backup_cmd", "copy the data directory and database while the server runs"),
    ("restore", "backup_cmd",
     "restore a backup into a data directory (verified before it switches)"),
    ("doctor", "doctor",
     "check the state, the CA, the server, the gateway and every local HTTP client"),
    ("demo", "demo_cmd",
     "a 60-second tour on a throwaway gateway (no account, key or network)"),
)  # fmt: skip
_MODULE_OF = {name: module for name, module, _ in COMMANDS}


def _register(
    module: str,
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    importlib.import_module(f"{__package__}.{module}").register(sub, common)


class _Commands(Mapping[str, argparse.ArgumentParser]):
    """`tf`'s subcommand parsers by name, as argparse's `_SubParsersAction` keeps them, but
    every name is known from `COMMANDS` and a module's parsers are built (and the module
    imported) the first time argparse, or anyone, asks for one of its commands."""

    def __init__(
        self,
        sub: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser,
    ) -> None:
        self._sub, self._common = sub, common
        self.built: dict[str, argparse.ArgumentParser] = {}

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        if name not in self.built:
            module = _MODULE_OF[name]  # KeyError: argparse's own "unknown parser"
            scratch = argparse._SubParsersAction(
                option_strings=[], prog=self._sub._prog_prefix, parser_class=self._sub._parser_class
            )
            _register(module, scratch, self._common)
            self.built.update(scratch._name_parser_map)
        return self.built[name]

    def __contains__(self, name: object) -> bool:  # argparse's "invalid choice" check
        return name in _MODULE_OF

    def __iter__(self) -> Iterator[str]:  # the choices an "invalid choice" error lists
        return iter(_MODULE_OF)

    def __len__(self) -> int:
        return len(_MODULE_OF)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("global options")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    group.add_argument(
        "--server",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="control plane to manage (default: this project's, or $TF_SERVER)",
    )
    return common


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """`tf`'s parser with every command's; `lazy`: only their names and lines of help, each
    command's own parser built when it is parsed (what `main` runs: `tf` imports the one
    command module it needs, and `tf --version` or `tf --help` none)."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="tf",
        description="TameFlare: the agent firewall. Names, decides, holds and records every "
        "API call your AI agents make.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version="tf (tameflare) 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if not lazy:
        for module in dict.fromkeys(_MODULE_OF.values()):
            _register(module, sub, common)
        return parser
    sub._name_parser_map = sub.choices = _Commands(sub, common)  # type: ignore[assignment]
    for name, _, line in COMMANDS:  # what `tf --help` lists
        sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), line))
    return parser


def _command_path(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str:
    """`tf connector add`: the (sub)commands named in `argv`, as the user typed them."""
    words, current = ["tf"], parser
    for token in argv:
        verbs = next((a.choices for a in current._actions
                      if isinstance(a, argparse._SubParsersAction)), {})  # fmt: skip
        if token in verbs:
            words.append(token)
            current = verbs[token]
    return " ".join(words)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The flags of a command to run, or the exit code of what argparse (help, usage errors,
    `--version`) or an unrecognized argument ended with, once said."""
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    if extra:  # argparse would show `tf`'s usage: name the command whose options these are not
        from agentfirewall_proxy.cli.output import Output

        Output().error(
            f"unrecognized arguments: {' '.join(extra)}",
            f"`{_command_path(parser, argv or sys.argv[1:])} --help` lists the options "
            "(a typo in a flag?)",
        )
        return EXIT_USAGE
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(build_parser(lazy=True), argv)
    if isinstance(args, int):
        return args
    # imported once a command runs (rich, yaml...): `tf --version` and `tf --help` need none
    from agentfirewall.errors import AgentFirewallError
    from agentfirewall_proxy.cli.context import Context
    from agentfirewall_proxy.cli.output import EXIT_ERROR, CliError, Output

    out = Output(json_mode=bool(getattr(args, "json", False)))
    ctx = Context(args=args, out=out, cwd=Path.cwd(), env=dict(os.environ))
    try:
        return int(args.handler(ctx))
    except CliError as exc:
        out.error(exc.message, exc.hint)
        return exc.code
    except AgentFirewallError as exc:
        out.error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return EXIT_ERROR
