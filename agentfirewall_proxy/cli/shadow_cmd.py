"""`tf policy shadow …`: policies and a permission set evaluated beside the live ones, never
enforced (``/api/v1/shadow``); divergences show in `tf logs` and the metrics (gateway
traffic and SDK actions alike: `tf logs --diverged`); `promote` makes them live.

Files are read as `tf policy replay` reads them (``replay_cmd``): a policy file or a
directory of ``*.yaml``/``*.yml``/``*.json``; a permissions file is a list of ``{agent,
connector, action_pattern, decision}`` (or ``tf permissions list --json``'s output).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from agentfirewall import policy  # its names load on first use
from agentfirewall_proxy.cli.client import path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError
from agentfirewall_proxy.cli.replay_cmd import read_permissions, read_policies

__all__ = ["add_shadow"]


def shadow_add(ctx: Context) -> int:
    args = ctx.args
    if not args.path and not args.permissions:
        raise CliError("give policy files (FILE|DIR) and/or --permissions FILE", code=EXIT_USAGE)
    texts = read_policies(args.path) if args.path else []
    for index, text in enumerate(texts):  # all or nothing: every file checked before any POST
        errors = policy.validate_policy_text(text)
        if errors:
            where = f"policy file {index + 1} of {len(texts)}" if len(texts) > 1 else args.path
            raise CliError(f"{where}: {errors[0]}", code=EXIT_USAGE)
    rules = read_permissions(args.permissions) if args.permissions else None
    added: dict[str, Any] = {"policies": [], "permissions": None}
    with ctx.client(offline=True) as client:
        for text in texts:
            added["policies"].append(client.post("/v1/shadow/policies", {"document": text}))
        if rules is not None:
            added["permissions"] = client.put("/v1/shadow/permissions", {"permissions": rules})

    def render() -> None:
        for p in added["policies"]:
            beside = " (beside the live one of that name)" if p["replaces"] else ""
            ctx.out.success(f"shadow policy {p['name']} installed{beside}")
        if added["permissions"] is not None:
            count = len(added["permissions"]["permissions"])
            ctx.out.success(f"shadow permission set installed ({count} rules)")
        ctx.out.note("evaluated beside the live configuration, never enforced: "
                     "`tf logs` and `tf policy shadow list` show divergences")  # fmt: skip

    ctx.out.result(added, render)
    return EXIT_OK


def shadow_list(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        data = client.get("/v1/shadow")
        diverged = client.get("/v1/traffic", shadow="diverged", limit=1000)["traffic"]
    by_source = {s: sum(1 for t in diverged if t.get("source") == s) for s in ("proxy", "sdk")}
    data["diverged_recent"] = len(diverged)
    data["diverged_recent_by_source"] = by_source

    def render() -> None:
        ctx.out.table(
            ("id", "name", "enabled", "priority", "replaces"),
            [(p["id"], p["name"], p["enabled"], p["priority"], p["replaces"] or "-")
             for p in data["policies"]],
            empty="no shadow policies",
        )  # fmt: skip
        perms = data["permissions"]
        if perms:
            ctx.out.table(
                ("agent", "connector", "action", "decision"),
                [(r["agent"], r["connector"], r["action_pattern"], r["decision"]) for r in perms],
            )
        else:
            ctx.out.line("no shadow permission set (the live access rules apply in the shadow)")
        ctx.out.line(f"{by_source['proxy']:,} of the last traffic records diverged (proxy)")
        ctx.out.line(f"{by_source['sdk']:,} of the last SDK action requests diverged (sdk)")
        if len(diverged) >= 1000:
            ctx.out.line("(the newest 1,000 divergences counted)")

    ctx.out.result(data, render)
    return EXIT_OK


def shadow_remove(ctx: Context) -> int:
    args = ctx.args
    if bool(args.name) == bool(args.permissions):
        raise CliError("give a shadow policy NAME or --permissions", code=EXIT_USAGE)
    with ctx.client(offline=True) as client:
        if args.permissions:
            client.delete("/v1/shadow/permissions")
        else:
            client.delete(f"/v1/shadow/policies/{path_id(args.name)}")
    what = "shadow permission set" if args.permissions else f"shadow policy {args.name}"
    ctx.out.result({"removed": what}, lambda: ctx.out.success(f"{what} removed"))
    return EXIT_OK


def shadow_promote(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        done = client.post("/v1/shadow/promote")

    def render() -> None:
        for p in done["promoted"]["policies"]:
            ctx.out.success(f"policy {p['name']} live (version {p['version']})")
        if done["promoted"]["permissions"] is not None:
            ctx.out.success(f"access rules replaced ({done['promoted']['permissions']} rules)")

    ctx.out.result(done, render)
    return EXIT_OK


def add_shadow(
    cmd: Callable[..., argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = cmd(
        "shadow",
        "run candidate policies/permissions beside the live ones, never enforced; promote",
        "  tf policy shadow add policies/\n  tf policy shadow add --permissions perms.yaml\n"
        "  tf policy shadow list\n  tf logs   # 'shadow: deny' where it would decide otherwise\n"
        "  tf policy shadow promote",
        None,
    )
    verbs = parser.add_subparsers(dest="shadow_verb", required=True, metavar="VERB")

    def verb(name: str, text: str, examples: str, handler: Any) -> argparse.ArgumentParser:
        return add_command(verbs, name, help=text, description=text, examples=examples,
                           common=common, handler=handler)  # fmt: skip

    a = verb(
        "add",
        "install shadow policies (one replaces the live policy of its name) and/or a "
        "shadow permission set (replaces every live access rule in the shadow)",
        "  tf policy shadow add no-big-transfers.yaml\n"
        "  tf policy shadow add --permissions perms.yaml",
        shadow_add,
    )
    a.add_argument(
        "path", nargs="?", metavar="FILE|DIR", help="a policy file, or a directory of them"
    )
    a.add_argument("--permissions", metavar="FILE", help="the shadow permission set")
    verb("list", "the shadow configuration and recent divergences", "  tf policy shadow list",
         shadow_list)  # fmt: skip
    r = verb(
        "remove",
        "remove a shadow policy (by name or id) or the shadow permission set",
        "  tf policy shadow remove no-big-transfers\n  tf policy shadow remove --permissions",
        shadow_remove,
    )
    r.add_argument("name", nargs="?", metavar="NAME", help="the shadow policy's name or id")
    r.add_argument("--permissions", action="store_true", help="the shadow permission set")
    verb(
        "promote",
        "make the shadow configuration live, at once (audited)",
        "  tf policy shadow promote",
        shadow_promote,
    )
