"""`tf status`, `tf logs`: watching (approvals_cmd and killswitch_cmd steer)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from agentfirewall.display import visible
from agentfirewall_proxy.cli.client import AdminClient
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.doctor import DOCTOR_AGENT
from agentfirewall_proxy.cli.output import EXIT_OK, CliError, short_time

__all__ = ["decision_text", "register"]

_TRAFFIC_COLUMNS = ("time", "agent", "action", "method", "host", "path", "decision", "status", "ms")


def _switch_text(switches: list[dict[str, Any]]) -> str:
    if not switches:
        return "off"
    scopes = ", ".join(
        "all, unreadable configuration"
        if s.get("unreadable")
        else str(s.get("target") or s.get("scope"))
        if s.get("scope") != "all"
        else "all"
        for s in switches
    )
    return f"ACTIVE (scope: {scopes})"


def say_unreadable(ctx: Context, switches: list[dict[str, Any]]) -> None:
    """Stored configuration the server cannot read denies everything: say what and how."""
    for s in switches:
        if s.get("unreadable"):
            ctx.out.error(
                str(s.get("reason")),
                "replace it (`tf policy add FILE --replace`), remove it (`tf policy remove "
                "NAME`, `tf budget remove NAME`), or run the TameFlare version that wrote it",
            )


def status(ctx: Context) -> int:
    with ctx.client() as client:
        data = client.get("/v1/status")
        listed = client.get("/v1/agents").get("agents", [])
    # `tf doctor`'s own probe agent is plumbing, not one of the user's agents
    mine = [a for a in listed if a.get("name") != DOCTOR_AGENT]
    data["agents"] = {
        "total": len(mine),
        "active": sum(1 for a in mine if a.get("status") == "active"),
        "without_rules": sorted(
            str(a.get("name"))
            for a in mine
            if a.get("status") == "active" and (a.get("rules") or {}).get("none")
        ),
    }
    gateway = data.get("gateway") or {}
    decisions = data.get("decisions") or {}
    agents = data["agents"]

    def render() -> None:
        online = "online" if gateway.get("online") else "offline"
        ctx.out.fields(
            [
                ("server", ctx.target().server_url),
                ("gateway", f"{online} (last heartbeat {gateway.get('last_heartbeat') or '-'})"),
                ("agents", f"{agents.get('total', 0)} ({agents.get('active', 0)} active)"),
                (
                    "decisions",
                    ", ".join(f"{k} {v}" for k, v in decisions.items()) or "none yet",
                ),
                ("approvals pending", data.get("approvals_pending", 0)),
                ("kill switch", _switch_text(data.get("kill_switches") or [])),
            ]
        )
        say_unreadable(ctx, data.get("kill_switches") or [])
        if not gateway.get("online"):
            ctx.out.info("no gateway heartbeat: start one with `tf up`")
        if agents.get("without_rules"):
            ctx.out.warn(
                "agents with no rules at all: "
                + ", ".join(agents["without_rules"])
                + " (in SDK mode they may do anything not denied)"
            )
            ctx.out.info(
                "install the safe-default policy packs with `tf init --safe-defaults`, "
                "or add rules with `tf permissions set`"
            )
        for bad in (data.get("vault") or {}).get("unreadable") or []:
            ctx.out.error(
                f"connector {bad['connector']} is down: its credential does not decrypt "
                f"(key id {bad['key_id']})",
                bad.get("fix"),
            )

    ctx.out.result(data, render)
    return EXIT_OK


_HOLD_ENDS = (
    ("approved", "approved"),
    ("the approval was denied", "denied"),
    ("no decision before the approval timed out", "timed out"),
    ("kill_switch", "killed"),
    ("the client left", "client left"),
)


def decision_text(t: dict[str, Any]) -> str:
    """The decision as a person reads it: how a hold ended, a kill-switch refusal named."""
    decision = str(t.get("decision") or "-")
    reason = str(t.get("reason") or "")
    if decision == "require_approval":
        ending = next((label for start, label in _HOLD_ENDS if reason.startswith(start)), None)
        if ending is None and t.get("status_code") == 503:
            ending = "unrecorded"
        decision = f"held → {ending}" if ending else "held"
    elif decision == "killed" or reason.startswith("kill_switch"):
        decision = "kill switch"
    if t.get("would_outcome"):
        decision = f"{decision} ({t['would_outcome']})"
    return decision


def _traffic_row(t: dict[str, Any]) -> tuple[object, ...]:
    decision = decision_text(t)
    if t.get("shadow_diverged"):  # the shadow configuration would decide otherwise
        decision = f"{decision} [shadow: {t.get('shadow_decision')}]"
    return (
        short_time(t.get("created_at")),
        t.get("agent"),
        t.get("action"),
        "sdk" if t.get("source") == "sdk" else t.get("method"),  # an SDK action (--diverged)
        t.get("host"),
        t.get("path"),
        decision,
        t.get("status_code"),
        _ms(t.get("latency_ms")),
    )


def _ms(value: object) -> object:
    return round(value, 1) if isinstance(value, float) else value


def logs(ctx: Context) -> int:
    args = ctx.args
    with ctx.client() as client:
        shadow = "diverged" if args.diverged else None
        data = client.get("/v1/traffic", agent=args.agent, limit=args.last, shadow=shadow)
        records = list(reversed(data.get("traffic", [])))
        if args.agent and not records:
            _known_agent(client, str(args.agent))
        if not args.follow:
            empty = (
                "no diverged calls: no recent call would be decided otherwise by a shadow "
                "configuration (`tf policy shadow list` shows it)"
                if args.diverged
                else "no traffic yet: run an agent with `tf run --name NAME COMMAND`"
            )
            ctx.out.result(
                data,
                lambda: ctx.out.table(_TRAFFIC_COLUMNS, map(_traffic_row, records), empty=empty),
            )
            return EXIT_OK
        return _follow(ctx, client, records)


def _known_agent(client: AdminClient, name: str) -> None:
    """Refuse an agent name the server has never seen (`--agent Nobody`), with close matches."""
    names = [str(a.get("name")) for a in client.get("/v1/agents").get("agents", [])]
    if name in names:
        return
    folded = {n.casefold(): n for n in names}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=3, cutoff=0.6)
    hint = "did you mean " + " or ".join(f"`{folded[c]}`" for c in close) + "?" if close else None
    raise CliError(
        f"unknown agent `{name}`",
        hint=hint or ("known agents: " + ", ".join(names) if names else "no agents yet"),
    )


_FOLLOW_WINDOW = 200  # records fetched per poll: the newest, so older ones never come back


def _key(record: dict[str, Any]) -> tuple[str, str]:
    return str(record.get("source")), str(record.get("id"))  # SDK and proxy ids differ in kind


def _follow(ctx: Context, client: AdminClient, records: list[dict[str, Any]]) -> int:
    """The `--last` records, then every record newer than what was there when it started:
    the first poll's window is all seen, so a record older than `--last` is never shown
    as new."""
    shadow = "diverged" if ctx.args.diverged else None

    def window() -> list[dict[str, Any]]:
        found = client.get("/v1/traffic", agent=ctx.args.agent, limit=_FOLLOW_WINDOW, shadow=shadow)
        return list(found.get("traffic", []))

    seen = {_key(t) for t in [*records, *window()]}
    for record in records:
        _print_record(ctx, record)
    ctx.out.info("following new traffic (Ctrl-C to stop)")
    with _until_interrupted() as stopped:
        while not stopped.wait(float(ctx.args.interval)):
            for record in reversed(window()):
                if _key(record) not in seen:
                    seen.add(_key(record))
                    _print_record(ctx, record)
    return EXIT_OK


@contextlib.contextmanager
def _until_interrupted() -> Iterator[threading.Event]:
    """An event Ctrl-C (SIGINT) sets, instead of raising KeyboardInterrupt wherever the
    loop is: one raised inside the HTTP client's connection pool could leave its lock
    held, and closing the client then waited forever."""
    stopped = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: stopped.set())
    try:
        yield stopped
    finally:
        signal.signal(signal.SIGINT, previous)


def _print_record(ctx: Context, record: dict[str, Any]) -> None:
    if ctx.out.json_mode:  # a stream: JSON Lines, one record a line
        ctx.out.json_line(record)
        return
    cells = [visible(str(c if c is not None else "-")) for c in _traffic_row(record)]
    style = {"deny": "red", "require_approval": "yellow"}.get(str(record.get("decision")))
    ctx.out.line("  ".join(cells), style=style)


def _count(text: str) -> int:
    """`--last N`: a whole number of records, at least 1 (argparse turns the error into
    a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of records, not `{text}`") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more records, not `{text}`")
    return value


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add_command(
        sub,
        "status",
        help="gateway, agents, decisions, pending approvals, kill switch",
        description="One screen: is the gateway online, how many agents, decisions so far, "
        "pending approvals and the kill-switch state.",
        examples="  tf status\n  tf status --json",
        common=common,
        handler=status,
    )
    log = add_command(
        sub,
        "logs",
        help="the traffic log (newest last); --follow for live",
        description="Traffic through the gateway: agent, action, decision, status, latency. "
        "Headers with secrets and bodies are never recorded.",
        examples='  tf logs\n  tf logs --last 50 --agent "Bot"\n  tf logs --follow',
        common=common,
        handler=logs,
    )
    log.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new traffic (with --json: JSON Lines, one record a line)",
    )
    log.add_argument(
        "--diverged",
        action="store_true",
        help="only what the shadow configuration would change (SDK actions too: method `sdk`)",
    )
    log.add_argument("--last", "-n", type=_count, default=20, metavar="N", help="default 20")
    log.add_argument("--agent", metavar="NAME", help="only this agent's traffic")
    log.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
