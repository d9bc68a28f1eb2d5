"""`tf permissions set|list|remove` and `tf enforcement set`: what each agent may do."""

from __future__ import annotations

import argparse
from typing import Any

from agentfirewall.decisions import ENFORCEMENT_LEVELS, OUTCOMES, normalize_level
from agentfirewall_proxy.cli.agent_cmd import (
    add_agent_option,
    agent_names,
    check_new_agent,
    find_agent,
)
from agentfirewall_proxy.cli.client import AdminClient, path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.names import (
    connector_type,
    resolve_prefix,
    short_ids,
    unknown_action,
)
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError, short_time
from agentfirewall_proxy.cli.suggest_cmd import add_suggest

__all__ = ["ensure_agent", "register"]

PRESETS = ("allow-all", "read-only", "require-approval")
_CREATE_HELP = "a new agent even when its name is close to an existing agent's"


def ensure_agent(client: AdminClient, name: str, **extra: object) -> None:
    """Register `name` if the server does not know it yet (its key is not needed here)."""
    try:
        client.get(f"/v1/agents/{path_id(name)}")
    except CliError:
        client.post("/v1/agents", {"name": name, **extra})


def _check_rule(ctx: Context, client: AdminClient) -> None:
    """Refuse typos in the agent, connector and action (`--create`, `--force` say they are
    meant); an agent no known name is close to is registered, and said so."""
    args = ctx.args
    name = str(args.gateway)
    if name != "*" and not args.create and not check_new_agent(client, name, flag="--create"):
        ensure_agent(client, name)
        ctx.out.note(f'new agent `{name}` registered (`tf run --name "{name}"` uses it)')
    if args.force:
        return
    kind = connector_type(client, str(args.connector))
    if args.action:
        problem = unknown_action(str(args.action), kind)
        if problem is not None:
            raise problem


def check_known_agent(client: AdminClient, name: str) -> None:
    """An agent no rule names must at least exist (else: unknown, did you mean …?)."""
    if name != "*":
        find_agent(client, name)


def permissions_set(ctx: Context) -> int:
    args = ctx.args
    if bool(args.preset) == bool(args.action or args.decision):
        raise CliError(
            "give either --action PATTERN --decision D, or --preset P",
            hint='e.g. tf permissions set --gateway "Bot" --connector github '
            '--action "github.pr.*" --decision allow',
            code=2,
        )
    if not args.preset and not (args.action and args.decision):
        missing = "--decision allow|deny|require_approval" if args.action else "--action PATTERN"
        raise CliError(
            f"--action and --decision go together: give {missing} too",
            hint=f'e.g. tf permissions set --gateway "{args.gateway}" --connector '
            f'{args.connector} --action "{args.action or "github.pr.*"}" '
            f"--decision {args.decision or 'allow'}",
            code=EXIT_USAGE,
        )
    with ctx.client(offline=True) as client:
        _check_rule(ctx, client)
        if args.preset:
            body = {"agent": args.gateway, "connector": args.connector, "preset": args.preset}
            result = client.post("/v1/permissions/preset", body)
            rules = result.get("permissions", [])
        else:
            body = {
                "agent": args.gateway,
                "connector": args.connector,
                "action_pattern": args.action,
                "decision": args.decision,
            }
            result = client.post("/v1/permissions", body)
            rules = [result]

    def render() -> None:
        for rule in rules:
            ctx.out.success(
                f"{rule.get('agent')}: {rule.get('connector')} {rule.get('action_pattern')} → "
                f"{rule.get('decision')} ({rule.get('id')})"
            )

    ctx.out.result(result, render)
    return EXIT_OK


def permissions_list(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        data = client.get("/v1/permissions", agent=ctx.args.gateway)
        if ctx.args.gateway and not data.get("permissions"):
            check_known_agent(client, str(ctx.args.gateway))
    rules = data.get("permissions", [])
    rows = [
        (
            short,
            p.get("agent"),
            p.get("connector"),
            p.get("action_pattern"),
            p.get("decision"),
            short_time(p.get("created_at")),
        )
        for short, p in zip(short_ids([str(p.get("id")) for p in rules]), rules, strict=True)
    ]
    ctx.out.result(
        data,
        lambda: ctx.out.table(
            ("id", "agent", "connector", "action", "decision", "created"),
            rows,
            empty="no permissions: everything is denied (deny-all default)",
        ),
    )
    return EXIT_OK


def permissions_remove(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        rules = client.get("/v1/permissions").get("permissions", [])
        ids = [str(p.get("id")) for p in rules]
        rule_id = resolve_prefix("permission", str(ctx.args.id), ids)
        client.delete(f"/v1/permissions/{path_id(rule_id)}")
    ctx.out.result({"removed": rule_id}, lambda: ctx.out.success(f"permission {rule_id} removed"))
    return EXIT_OK


def enforcement_set(ctx: Context) -> int:
    try:
        level = normalize_level(str(ctx.args.level))
    except ValueError as exc:
        raise CliError(str(exc), code=2) from None
    name = str(ctx.args.gateway)
    with ctx.client(offline=True) as client:
        if ctx.args.create:
            known = name in agent_names(client)
        else:
            known = check_new_agent(client, name, flag="--create")
        ensure_agent(client, name, enforcement_level=level)
        agent = client.patch(f"/v1/agents/{path_id(name)}", {"enforcement_level": level})
    if not known:  # said as `permissions set` says it
        ctx.out.note(f'new agent `{name}` registered (`tf run --name "{name}"` uses it)')
    ctx.out.result(agent, lambda: ctx.out.success(f"{name}: enforcement {level}"))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    _register_permissions(sub, common)
    enforcement = add_command(
        sub,
        "enforcement",
        help="set an agent's enforcement level (monitor, soft_enforce, full_enforce)",
        description="monitor (L0): nothing blocked, decisions logged as would_*; soft_enforce "
        "(L1): denies forwarded and logged as would_deny, approvals still hold; full_enforce "
        "(L2): everything enforced. The kill switch applies at every level.",
        examples='  tf enforcement set --gateway "Bot" monitor\n'
        '  tf enforcement set --gateway "Bot" full_enforce',
        common=common,
    )
    verbs = enforcement.add_subparsers(dest="verb", required=True, metavar="set")
    setter = add_command(
        verbs,
        "set",
        help="set the level",
        description="Set one agent's enforcement level.",
        examples='  tf enforcement set --gateway "Bot" soft_enforce',
        common=common,
        handler=enforcement_set,
    )
    add_agent_option(setter)
    setter.add_argument("level", metavar="LEVEL", help=", ".join(ENFORCEMENT_LEVELS) + " or L0-L2")
    setter.add_argument("--create", action="store_true", help=_CREATE_HELP)


def _register_permissions(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "permissions",
        help="set, list and remove access rules (agent x connector x action)",
        description="Access rules decide per agent, connector and action pattern: allow, deny "
        "or require_approval. The most specific pattern wins; no rule means deny.",
        examples='  tf permissions set --gateway "Bot" --connector github --action "github.pr.*" '
        "--decision allow\n"
        '  tf permissions set --gateway "Bot" --connector github --preset read-only\n'
        '  tf permissions list --gateway "Bot"\n  tf permissions remove perm_123',
        common=common,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="set|list|remove|suggest")
    setter = add_command(
        verbs,
        "set",
        help="add or update one rule (or apply a preset)",
        description="Upsert the rule for (agent, connector, action pattern). Presets: "
        "allow-all, read-only (reads only), require-approval (every action held). A name "
        "close to a known agent, an unknown connector or a pattern matching no action in the "
        "catalogue is refused with the closest names (--create, --force to keep it).",
        examples='  tf permissions set --gateway "Bot" --connector github \\\n'
        '      --action "github.pr.merge" --decision require_approval\n'
        '  tf permissions set --gateway "Bot" --connector github \\\n'
        '      --action "github.repo.delete" --decision deny\n'
        '  tf permissions set --gateway "Finance Bot" --connector generic --preset read-only',
        common=common,
        handler=permissions_set,
    )
    add_agent_option(setter)
    setter.add_argument(
        "--connector",
        required=True,
        metavar="TYPE",
        help="github, stripe, slack, ... (`tf connector list`)",
    )
    setter.add_argument("--action", metavar="PATTERN", help='e.g. "github.pr.*"')
    setter.add_argument(
        "--decision", choices=OUTCOMES, help="what the rule decides (with --action)"
    )
    setter.add_argument(
        "--preset", choices=PRESETS, help="a set of rules for the connector (above)"
    )
    setter.add_argument("--create", action="store_true", help=_CREATE_HELP)
    setter.add_argument(
        "--force",
        action="store_true",
        help="keep a connector or action pattern the catalogue does not know",
    )
    lister = add_command(
        verbs,
        "list",
        help="list rules",
        description="List access rules, optionally for one agent.",
        examples='  tf permissions list\n  tf permissions list --gateway "Bot" --json',
        common=common,
        handler=permissions_list,
    )
    add_agent_option(lister, required=False, help="only this agent's rules")
    remove = add_command(
        verbs,
        "remove",
        help="remove one rule by id",
        description="Remove an access rule (ids are in `tf permissions list`).",
        examples="  tf permissions remove perm_123",
        common=common,
        handler=permissions_remove,
    )
    remove.add_argument("id", help="the rule's id (`tf permissions list`)")
    add_suggest(verbs, common)
