"""`tf permissions suggest`: access rules learnt from an agent's recorded traffic.

``GET /api/v1/permissions/suggest`` proposes them (``agentfirewall.policy.suggest``); they
are shown for review and written (``POST /api/v1/permissions``, one upsert per rule) only
with ``--apply``.
"""

from __future__ import annotations

import argparse
from typing import Any

from agentfirewall_proxy.cli.agent_cmd import add_agent_option, find_agent
from agentfirewall_proxy.cli.budget_cmd import parse_duration
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_OK

__all__ = ["add_suggest"]

_KEYS = ("agent", "connector", "action_pattern", "decision")


def suggest(ctx: Context) -> int:
    args = ctx.args
    since = parse_duration(args.since)
    with ctx.client(offline=True) as client:
        found: dict[str, Any] = client.get(
            "/v1/permissions/suggest", agent=args.gateway, since_seconds=since
        )
        rules = found["rules"]
        if not found["observed"]:  # a typo has no traffic: say so, never write its rules
            find_agent(client, str(args.gateway))
        if args.apply:
            for rule in rules:
                client.post("/v1/permissions", {k: rule[k] for k in _KEYS})
    found["applied"] = bool(args.apply)

    def render() -> None:
        ctx.out.line(f"{found['observed']:,} recorded calls of {args.gateway} since {args.since}")
        if found.get("skipped"):  # an SDK provider no rule can name (`*`, a hidden character)
            ctx.out.note(f"{found['skipped']:,} calls on a connector no rule can name get no "
                         "rule (the closing deny covers them)")  # fmt: skip
        ctx.out.table(
            ("connector", "action", "decision", "calls", "observed actions"),
            ((r["connector"], r["action_pattern"], r["decision"], r["calls"],
              ", ".join(r["actions"][:4]) + (" …" if len(r["actions"]) > 4 else ""))
             for r in rules),
        )  # fmt: skip
        if args.apply:
            ctx.out.success(f"{len(rules)} rules applied")
        else:
            ctx.out.note("nothing changed: review, then run again with --apply")

    ctx.out.result(found, render)
    return EXIT_OK


def add_suggest(verbs: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        verbs,
        "suggest",
        help="propose rules from an agent's recorded traffic (--apply to write them)",
        description="The smallest set of access rules that would have let the agent's "
        "observed calls through: allow what was seen (require_approval for high-risk "
        "actions), a prefix glob only where the connector knows no unseen action under it, "
        "and deny everything else.",
        examples='  tf permissions suggest --agent "Bot" --since 7d\n'
        '  tf permissions suggest --agent "Bot" --since 7d --apply',
        common=common,
        handler=suggest,
    )
    add_agent_option(parser)
    parser.add_argument("--since", default="7d", metavar="DURATION", help="default 7d")
    parser.add_argument("--apply", action="store_true", help="write the suggested rules")
