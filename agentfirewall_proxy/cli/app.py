"""`tf`: the parser, the dispatch and the mapping of failures to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agentfirewall.errors import AgentFirewallError
from agentfirewall_proxy.cli import (
    actions_cmd,
    agent_cmd,
    approvals_cmd,
    audit_cmd,
    backup_cmd,
    budget_cmd,
    connectors_cmd,
    demo_cmd,
    doctor,
    init_cmd,
    killswitch_cmd,
    mcp_cmd,
    monitor,
    permissions_cmd,
    policy_cmd,
    run_cmd,
    up_cmd,
    vault_cmd,
)
from agentfirewall_proxy.cli.context import Context
from agentfirewall_proxy.cli.output import EXIT_ERROR, EXIT_USAGE, CliError, Output

__all__ = ["build_parser", "main"]

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


def build_parser() -> argparse.ArgumentParser:
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
    for module in (
        init_cmd,
        up_cmd,
        connectors_cmd,
        agent_cmd,
        permissions_cmd,
        run_cmd,
        mcp_cmd,
        monitor,
        approvals_cmd,
        actions_cmd,
        budget_cmd,
        killswitch_cmd,
        policy_cmd,
        audit_cmd,
        vault_cmd,
        backup_cmd,
        doctor,
        demo_cmd,
    ):
        module.register(sub, common)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    if extra:  # argparse would show `tf`'s usage: name the command whose options these are not
        Output().error(
            f"unrecognized arguments: {' '.join(extra)}",
            f"`{_command_path(parser, argv or sys.argv[1:])} --help` lists the options "
            "(a typo in a flag?)",
        )
        return EXIT_USAGE
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    out = Output(json_mode=bool(getattr(args, "json", False)))
    ctx = Context(args=args, out=out, cwd=Path.cwd(), env=dict(os.environ))
    try:
        return int(handler(ctx))
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
