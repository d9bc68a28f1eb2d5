"""`tf kill-switch --activate|--deactivate [--scope S]`: stop traffic at once.

A scope names all, a connector type or an agent. A scope that names nothing known is
refused with the closest names (a typo must not leave the real agent running); ``--force``
stops an agent that does not exist yet (sent as ``agent:NAME``).
"""

from __future__ import annotations

import argparse
from typing import Any

from agentfirewall_proxy.cli.agent_cmd import agent_names
from agentfirewall_proxy.cli.client import AdminClient
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.monitor import _switch_text, say_unreadable
from agentfirewall_proxy.cli.names import close_matches, connector_types, did_you_mean
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError

__all__ = ["check_scope", "register"]


def _connector_names(client: AdminClient) -> list[str]:
    configured = client.get("/v1/connectors").get("connectors", [])
    return sorted(set(connector_types()) | {str(c["type"]) for c in configured})


def check_scope(client: AdminClient, scope: str, *, force: bool = False) -> str:
    """The scope to send: refuse one that names no agent and no connector, with
    did-you-mean; `force`: such a name is an agent not registered yet (`agent:NAME`, the
    server refuses a bare name that names nothing)."""
    if scope == "all":
        return scope
    kind, _, name = scope.partition(":")
    if kind not in ("agent", "connector") or not name:
        kind, name = "", scope
    agents = agent_names(client) if kind != "connector" else []
    connectors = _connector_names(client) if kind != "agent" else []
    if not kind and name in agents and name in connectors:  # the server refuses it too
        raise CliError(
            f"kill-switch scope `{scope}` names an agent and a connector type",
            hint=f"say which: --scope agent:{scope} or --scope connector:{scope}",
            code=EXIT_USAGE,
        )
    known = [*agents, *connectors]
    if name in known:
        return scope
    if force:
        return scope if kind else f"agent:{scope}"
    what = {"agent": "agent", "connector": "connector"}.get(kind, "agent or connector")
    raise CliError(
        f"unknown kill-switch scope `{scope}`: no {what} of that name"
        + did_you_mean(close_matches(name, known if kind else [*known, "all"])),
        hint="to stop an agent that does not exist yet, add --force",
        code=EXIT_USAGE,
    )


def _check_active(scope: str, active: list[dict[str, Any]]) -> None:
    """Refuse to clear a scope no active switch has (the typo would leave it on)."""
    names = [str(s.get("target") or s.get("scope")) for s in active]
    bare = scope.partition(":")[2] if scope.startswith(("agent:", "connector:")) else scope
    if bare in names:
        return
    if not active:
        raise CliError(f"no active kill switch for `{scope}`: no kill switch is active",
                       hint="`tf kill-switch status` shows them", code=EXIT_USAGE)  # fmt: skip
    raise CliError(
        f"no active kill switch for `{scope}`" + did_you_mean(close_matches(bare, names)),
        hint=f"active: {', '.join(names)}; `tf kill-switch --deactivate` clears them all",
        code=EXIT_USAGE,
    )


def kill_switch(ctx: Context) -> int:
    args = ctx.args
    asked = {f for f in ("activate", "deactivate") if getattr(args, f)}
    if args.verb:
        asked.add(args.verb)
    if len(asked) > 1:  # `activate --deactivate` must not pick one of them silently
        raise CliError(
            " and ".join(sorted(asked)) + " contradict each other: give one",
            hint="e.g. tf kill-switch --activate, or tf kill-switch deactivate",
            code=EXIT_USAGE,
        )
    verb = next(iter(asked), None)
    with ctx.client() as client:
        if verb is None or verb == "status":
            data = client.get("/v1/kill-switch")
            active = data.get("active") or []

            def render() -> None:
                ctx.out.line(f"kill switch: {_switch_text(active)}")
                say_unreadable(ctx, active)

            ctx.out.result(data, render)
            return EXIT_OK
        body: dict[str, Any] = {"active": verb == "activate"}
        if args.scope and verb == "activate":
            body["scope"] = check_scope(client, args.scope, force=args.force)
        elif args.scope:
            if not args.force:
                _check_active(args.scope, client.get("/v1/kill-switch").get("active") or [])
            body["scope"] = args.scope
        elif verb == "activate":
            body["scope"] = "all"
        if args.reason:
            body["reason"] = args.reason
        data = client.post("/v1/kill-switch", body)
    scope = args.scope or "all"
    if verb == "activate":
        message = f"kill switch ACTIVE for {scope}: matching traffic gets 403"
    else:
        message = f"kill switch cleared for {scope}"

    def done() -> None:
        ctx.out.success(message)
        say_unreadable(ctx, data.get("active") or [])  # no switch of a person's: still on

    ctx.out.result(data, done)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    switch = add_command(
        sub,
        "kill-switch",
        help="stop all traffic, or one connector's or one agent's, at once",
        description="Activating blocks matching traffic at every enforcement level (403 with "
        "X-TameFlare-Kill-Switch: active) and denies matching pending approvals. Scope: all "
        "(default), a connector type, or an agent name (`agent:NAME` / `connector:TYPE` when "
        "one name is both). An unknown scope is refused. Needs the owner role.",
        examples='  tf kill-switch --activate --scope "Finance Bot" --reason "odd transfers"\n'
        "  tf kill-switch --activate\n  tf kill-switch --deactivate\n"
        "  tf kill-switch deactivate\n  tf kill-switch status",
        common=common,
        handler=kill_switch,
    )
    switch.add_argument(
        "verb",
        nargs="?",
        choices=["activate", "deactivate", "status"],
        help="what to do (default status); same as --activate / --deactivate",
    )
    switch.add_argument("--activate", action="store_true", help="block the scope's traffic now")
    switch.add_argument(
        "--deactivate", action="store_true", help="let the scope's traffic through again"
    )
    switch.add_argument("--scope", metavar="S", help="all, a connector type or an agent name")
    switch.add_argument("--reason", metavar="R", help="why (kept in the audit log)")
    switch.add_argument(
        "--force", action="store_true", help="accept a scope that names no known agent"
    )
