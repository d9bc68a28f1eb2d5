"""`tf budget set|list|show|remove` and `tf grants list|revoke` (docs/budgets.md)."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

from agentfirewall_proxy.cli.agent_cmd import check_new_agent
from agentfirewall_proxy.cli.client import AdminClient, path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.names import connector_type, listed_by, unknown_action
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError, short_time

__all__ = ["budget_limit", "parse_duration", "register"]

_DURATION = re.compile(r"^(\d{1,7})\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``1h``, ``2d`` -> seconds (CliError otherwise)."""
    found = _DURATION.match(text.strip().lower())
    if found is None or int(found.group(1)) == 0:
        raise CliError(f"invalid duration `{text}`: write e.g. `30m`, `1h` or `2d`",
                       code=EXIT_USAGE)  # fmt: skip
    return int(found.group(1)) * _UNITS[found.group(2)]


def budget_limit(text: str) -> float:
    """A `--limit` value: a finite number above 0 (else a usage error, exit 2: it used to
    reach the server as `nan` or `inf` and end in a traceback)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a number above 0 in the measure's unit, not `{text}`"
        )
    return value


def _amount(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


def _unit(budget: dict[str, Any]) -> str:
    measure = budget.get("measure")
    if measure == "sum":
        return str(budget.get("currency") or budget.get("parameter") or "amount")
    return {"count": "requests", "tokens": "tokens", "cost": "usd"}.get(str(measure), "")


def budget_list(ctx: Context) -> int:
    with ctx.client() as client:
        data = client.get("/v1/budgets")
    rows = []
    for b in data.get("budgets", []):
        state = b.get("state") or {}
        rows.append((
            b.get("name"), ",".join(b.get("agents") or []), b.get("connector"), b.get("action"),
            f"{_amount(state.get('used', 0))} / {_amount(b.get('limit', 0))} {_unit(b)}",
            b.get("window"), b.get("outcome"),
        ))  # fmt: skip
    ctx.out.result(data, lambda: ctx.out.table(
        ("name", "agents", "connector", "action", "used / limit", "window", "past limit"),
        rows, empty="no budgets: `tf budget set NAME --connector C --limit N`"))  # fmt: skip
    return EXIT_OK


def budget_show(ctx: Context) -> int:
    with ctx.client() as client, listed_by("tf budget list"):
        b = client.get(f"/v1/budgets/{path_id(ctx.args.name)}")
    state = b.get("state") or {}
    spent = ", ".join(f"{a} {_amount(v)}" for a, v in (state.get("by_agent") or {}).items())
    pairs = [
        ("name", b.get("name")),
        ("covers", f"{','.join(b.get('agents') or [])} x {b.get('connector')} x {b.get('action')}"),
        ("measure", b.get("measure") + (f" of {b['parameter']}" if b.get("parameter") else "")),
        ("window", f"{b.get('window')} ({b.get('timezone')})"),
        ("limit", f"{_amount(b.get('limit', 0))} {_unit(b)}"),
        ("used", _amount(state.get("used", 0))),
        ("leased", _amount(state.get("leased", 0))),  # gateways' slices, spent or not yet
        ("remaining", _amount(state.get("remaining", 0))),
        ("in flight", _amount(state.get("in_flight", 0))),
        ("per agent", spent or None),
        ("resets", short_time(state.get("resets_at")) if state.get("resets_at") else "rolling"),
        ("past the limit", b.get("outcome")),
    ]
    ctx.out.result(b, lambda: ctx.out.fields(pairs))
    return EXIT_OK


def budget_set(ctx: Context) -> int:
    a = ctx.args
    body: dict[str, Any] = {
        "agents": a.agent or ["*"], "connector": a.connector, "action": a.action,
        "measure": a.measure, "window": a.window, "timezone": a.timezone, "limit": a.limit,
        "outcome": a.outcome,
    }  # fmt: skip
    if a.parameter:
        body["parameter"] = a.parameter
    if a.currency:
        body["currency"] = a.currency.lower()
    with ctx.client() as client:
        if not a.force:
            _check_names(client, a)
        result = client.put(f"/v1/budgets/{path_id(a.name)}", body)
    text = f"budget {result.get('name')}: {_amount(result.get('limit', 0))} {_unit(result)}"
    ctx.out.result(result, lambda: ctx.out.success(f"{text} per {result.get('window')}"))
    return EXIT_OK


def _check_names(client: AdminClient, a: argparse.Namespace) -> None:
    """A budget on a mistyped agent, connector or action caps nothing: refuse those with
    the closest names, as `tf permissions set` does (--force keeps them as written)."""
    # (imported here: permissions_cmd imports this module through suggest_cmd)

    for name in a.agent or []:
        if name != "*":
            check_new_agent(client, name, flag="--force",
                            meant="to cap an agent of that name anyway")  # fmt: skip
    kind = connector_type(client, str(a.connector))
    problem = unknown_action(str(a.action), kind) if a.action != "*" else None
    if problem is not None:
        raise problem


def budget_remove(ctx: Context) -> int:
    with ctx.client() as client, listed_by("tf budget list"):
        result = client.delete(f"/v1/budgets/{path_id(ctx.args.name)}")
    ctx.out.result(result, lambda: ctx.out.success(f"budget {ctx.args.name} removed"))
    return EXIT_OK


def grants_list(ctx: Context) -> int:
    with ctx.client() as client:
        data = client.get("/v1/grants", status="all" if ctx.args.all else "active")
    rows = [
        (g.get("id"), g.get("agent"), g.get("action_type"),
         "; ".join(f"{c['field'].rpartition('.')[2]} {c['operator']} {c['value']}"
                   for c in g.get("constraints") or []) or "-",
         f"{g.get('uses')}/{g.get('max_uses') or '∞'}",
         short_time(g.get("expires_at")) if g.get("expires_at") else "-", g.get("status"))
        for g in data.get("grants", [])
    ]  # fmt: skip
    ctx.out.result(data, lambda: ctx.out.table(
        ("id", "agent", "action", "where", "uses", "expires", "status"), rows,
        empty="no grants" if ctx.args.all else "no active grants"))  # fmt: skip
    return EXIT_OK


def grants_revoke(ctx: Context) -> int:
    with ctx.client() as client, listed_by("tf grants list --all", "every grant"):
        result = client.post(f"/v1/grants/{path_id(ctx.args.id)}/revoke")
    ctx.out.result(result, lambda: ctx.out.success(f"{result.get('id')} revoked"))
    return EXIT_OK


def grant_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``grant`` of `tf approvals approve --for/--max-uses/--where` (None: just once)."""
    if args.for_ is None and args.max_uses is None and not args.where:
        return None
    if args.for_ is None and args.max_uses is None:
        raise CliError("--where needs --for and/or --max-uses (how long, or how many times)",
                       code=EXIT_USAGE)  # fmt: skip
    grant: dict[str, Any] = {"where": list(args.where or [])}
    if args.for_ is not None:
        grant["for_seconds"] = parse_duration(args.for_)
    if args.max_uses is not None:
        grant["max_uses"] = args.max_uses
    return grant


def _budget_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub, "budget", help="caps on what agents spend (count, amount, tokens, cost)",
        description="A budget caps the requests an agent may make, or what they spend, in a "
        "window; past it a request is refused or held for approval (docs/budgets.md).",
        examples="  tf budget set stripe-daily --agent 'Finance Bot' --connector stripe "
        "--action 'stripe.transfer.*' --measure sum --currency usd --limit 100000\n"
        "  tf budget list\n  tf budget show stripe-daily\n  tf budget remove stripe-daily",
        common=common,
    )  # fmt: skip
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="set|list|show|remove")
    add_command(verbs, "list", help="every budget and what it used", description="List "
                "budgets with their use in the current window.", examples="  tf budget list",
                common=common, handler=budget_list)  # fmt: skip
    show = add_command(verbs, "show", help="one budget, its use and spend per agent",
                       description="Show one budget: used, leased, remaining, per agent.",
                       examples="  tf budget show stripe-daily", common=common,
                       handler=budget_show)  # fmt: skip
    show.add_argument("name", help="the budget's name")
    remove = add_command(verbs, "remove", help="remove a budget (and its usage)",
                         description="Remove a budget and its usage records.",
                         examples="  tf budget remove stripe-daily", common=common,
                         handler=budget_remove)  # fmt: skip
    remove.add_argument("name", help="the budget's name")
    setter = add_command(
        verbs, "set", help="create or replace a budget",
        description="Create or replace a budget. Amounts are in the measure's unit: minor "
        "units for Stripe (cents), tokens, or US dollars for `cost`.",
        examples="  tf budget set llm-daily --connector openai --measure cost --limit 50\n"
        "  tf budget set gh-hourly --connector github --action 'github.pr.*' --limit 20 "
        "--window hour --outcome require_approval",
        common=common, handler=budget_set,
    )  # fmt: skip
    setter.add_argument("name", help="lowercase letters, digits, - and _")
    setter.add_argument("--agent", action="append", help="an agent name (repeat; default all)")
    setter.add_argument("--connector", required=True, help="connector type, e.g. stripe")
    setter.add_argument("--action", default="*", help="action glob (default *)")
    setter.add_argument("--measure", choices=["count", "sum", "tokens", "cost"], default="count",
                        help="count: 1 per request (default); sum: a parameter; tokens, "
                        "cost: from an LLM response (openai, anthropic)")  # fmt: skip
    setter.add_argument("--parameter", help="the parameter `sum` adds up (default amount)")
    setter.add_argument("--currency", help="with sum: only requests in this currency")
    setter.add_argument("--limit", type=budget_limit, required=True,
                        help="the cap in the measure's unit: requests (count), the "
                        "parameter's unit (sum: cents for a stripe usd amount), tokens, or "
                        "US dollars (cost)")  # fmt: skip
    windows = ["minute", "hour", "day", "calendar_day", "calendar_month"]
    setter.add_argument("--window", default="calendar_day", choices=windows,
                        help="rolling minute, hour or day (the last 24 hours), or "
                        "calendar_day / calendar_month from midnight in --timezone "
                        "(default calendar_day)")  # fmt: skip
    setter.add_argument("--timezone", default="UTC",
                        help="IANA name, for calendar windows only (default UTC)")  # fmt: skip
    setter.add_argument("--outcome", choices=["deny", "require_approval"], default="deny",
                        help="past the limit (default deny)")  # fmt: skip
    setter.add_argument("--force", action="store_true", help="keep an agent, connector or "
                        "action the server and the catalogue do not know")  # fmt: skip


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    _budget_commands(sub, common)
    parser = add_command(
        sub, "grants", help="list and revoke grants (approvals of more than one request)",
        description="A grant lets the same action through for the same agent, within its "
        "constraints, for a time and/or a number of uses (made by `tf approvals approve ID "
        "--for 1h --max-uses 5 --where 'amount<=10000'`).",
        examples="  tf grants list\n  tf grants list --all\n  tf grants revoke grt_0KX9",
        common=common,
    )  # fmt: skip
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="list|revoke")
    lister = add_command(verbs, "list", help="active grants (--all: every grant)",
                         description="List grants.", examples="  tf grants list --all",
                         common=common, handler=grants_list)  # fmt: skip
    lister.add_argument("--all", action="store_true",
                        help="every grant: used up, expired and revoked ones too")  # fmt: skip
    revoke = add_command(verbs, "revoke", help="revoke a grant at once",
                         description="Revoke a grant: the next request is held as usual.",
                         examples="  tf grants revoke grt_0KX9", common=common,
                         handler=grants_revoke)  # fmt: skip
    revoke.add_argument("id", help="the grant id (or a unique prefix of 8+ characters)")
