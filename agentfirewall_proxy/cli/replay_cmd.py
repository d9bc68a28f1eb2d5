"""`tf policy replay`: what a candidate configuration would have decided on recorded traffic.

The candidate policies (a file or a directory of ``*.yaml``/``*.yml``/``*.json``) and/or
permissions (a YAML/JSON list of ``{agent, connector, action_pattern, decision}``, or
``{"permissions": [...]}`` as ``tf permissions list --json`` prints) go to
``POST /api/v1/policies/replay``; the server replays the recorded decision inputs under the
live and the candidate configuration and answers the verdict changes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from agentfirewall_proxy.cli.agent_cmd import find_agent
from agentfirewall_proxy.cli.budget_cmd import parse_duration
from agentfirewall_proxy.cli.context import Context
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError

__all__ = ["add_replay", "read_permissions", "summary"]

_SUFFIXES = (".yaml", ".yml", ".json")
_PERMISSION_KEYS = ("agent", "connector", "action_pattern", "decision")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read `{path}`: {exc.strerror}", code=EXIT_USAGE) from None


def read_policies(where: str) -> list[str]:
    path = Path(where)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
        if not files:
            raise CliError(f"no policy files (*.yaml, *.yml, *.json) in `{where}`",
                           code=EXIT_USAGE)  # fmt: skip
        return [_text(p) for p in files]
    return [_text(path)]


def read_permissions(where: str) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(_text(Path(where)))
    except yaml.YAMLError as exc:
        raise CliError(f"`{where}` is not YAML or JSON: {exc}", code=EXIT_USAGE) from None
    if isinstance(data, dict):
        data = data.get("permissions")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise CliError(f"`{where}`: expected a list of permissions (agent, connector, "
                       "action_pattern, decision)", code=EXIT_USAGE)  # fmt: skip
    return [{k: r.get(k) for k in _PERMISSION_KEYS} for r in data]


def summary(report: dict[str, Any]) -> str:
    changes: dict[str, int] = report.get("changes", {})
    denied = sum(n for k, n in changes.items() if k.endswith("->deny"))
    held = sum(n for k, n in changes.items() if k.endswith("->require_approval"))
    allowed = sum(n for k, n in changes.items() if k.endswith("->allow"))
    total = report.get("total", 0)
    return (f"this change would have denied {denied:,}, held {held:,} and allowed "
            f"{allowed:,} more of the last {total:,} calls")  # fmt: skip


def replay(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {"since_seconds": parse_duration(args.since), "examples": args.examples}
    if args.policies:
        body["policies"] = read_policies(args.policies)
    if args.permissions:
        body["permissions"] = read_permissions(args.permissions)
    if args.agent:
        body["agents"] = args.agent
    with ctx.client(offline=True) as client:
        report = client.post("/v1/policies/replay", body)
        if not report.get("total"):  # no record: a typo in --agent would look like "no change"
            for name in args.agent:
                find_agent(client, str(name))

    def render() -> None:
        if not (args.policies or args.permissions):
            ctx.out.note("no candidate (--policies, --permissions): the live configuration "
                         "was replayed against itself")  # fmt: skip
        ctx.out.line(summary(report), style="bold")
        if report.get("partial"):
            ctx.out.note(f"{report['partial']:,} records had parameter values withheld "
                         "(content); rules reading them see the field absent")  # fmt: skip
        if report.get("drifted"):
            ctx.out.note(f"{report['drifted']:,} records replay differently from their live "
                         "verdict under today's configuration (changed since)")  # fmt: skip
        rules = report.get("rules", {})
        rows = [(k, n, ", ".join(list(rules.get(k, {}))[:3])) for k, n in report["changes"].items()]
        if rows:
            ctx.out.table(("change", "count", "rules responsible"), rows)
        examples = [e for shown in report.get("examples", {}).values() for e in shown]
        if examples:
            ctx.out.table(
                ("time", "agent", "action", "change", "reason"),
                ((e["time"][:19], e["agent"], e["action"], f"{e['before']}->{e['after']}",
                  e["reason"][:60]) for e in examples),
            )  # fmt: skip

    ctx.out.result(report, render)
    return EXIT_OK


def add_replay(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    r = cmd(
        "replay",
        "what a candidate policy/permission set would have decided on recorded traffic",
        "  tf policy replay --policies policies/ --since 7d\n"
        "  tf policy replay --permissions perms.yaml --agent Bot --json",
        replay,
    )
    r.add_argument("--policies", metavar="DIR|FILE", help="candidate policies (default: live)")
    r.add_argument("--permissions", metavar="FILE", help="candidate permissions (default: live)")
    r.add_argument("--since", default="7d", metavar="DURATION", help="e.g. 1h, 7d (default 7d)")
    r.add_argument(
        "--agent", action="append", default=[], metavar="NAME", help="only this agent (repeatable)"
    )
    r.add_argument("--examples", type=int, default=5, metavar="N", help="examples per change")
