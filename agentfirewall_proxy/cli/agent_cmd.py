"""`tf agent add|list|show|rotate-key|remove`: agents and their SDK keys.

An SDK key (``aaf_live_…`` / ``aaf_test_…``) is shown once, when it is made (``add``,
``rotate-key``): the server keeps only its hash. ``remove`` revokes the agent and every key
it holds; its records stay in the audit log. `tf run` needs none of this: it gets a proxy
credential of its own for each run.
"""

from __future__ import annotations

import argparse
from typing import Any

from agentfirewall.decisions import ENFORCEMENT_LEVELS, normalize_level
from agentfirewall_proxy.cli.client import AdminClient, path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.names import (
    close_matches,
    did_you_mean,
    resolve_prefix,
    short_ids,
)
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError, short_time

__all__ = ["agent_names", "check_new_agent", "find_agent", "register"]


def _agents(client: AdminClient) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = client.get("/v1/agents").get("agents", [])
    return agents


def agent_names(client: AdminClient) -> list[str]:
    return [str(a["name"]) for a in _agents(client)]


def find_agent(client: AdminClient, name: str) -> dict[str, Any]:
    """The agent named `name` (or with that id, or a unique id prefix); else did-you-mean.

    A name answers with the agent not revoked, else the newest revoked one (a removed
    agent's name may belong to a new agent), as the server resolves it.
    """
    agents = _agents(client)
    named = [a for a in agents if name in (a["name"], a["id"])]
    if named:
        return max(reversed(named), key=lambda a: (a["id"] == name, a.get("status") != "revoked"))
    ids = [str(a["id"]) for a in agents]
    if name.startswith("agt_") and any(i.startswith(name) for i in ids):
        found = resolve_prefix("agent", name, ids)  # unique and long enough, or an error
        return next(a for a in agents if a["id"] == found)
    names = [str(a["name"]) for a in agents]
    raise CliError(
        f"unknown agent `{name}`" + did_you_mean(close_matches(name, names)),
        hint="list agents with `tf agent list`",
    )


def check_new_agent(
    client: AdminClient, name: str, *, flag: str, meant: str = "to make a new agent of that name"
) -> bool:
    """True when `name` is a known agent. An unknown name close to a known one is refused
    as a likely typo (the caller's `flag` says it is meant); else False: a new agent."""
    agents = _agents(client)
    if name in (str(a["name"]) for a in agents):
        return True
    live = [str(a["name"]) for a in agents if a.get("status") != "revoked"]
    near = close_matches(name, live, cutoff=0.8)  # (a removed agent's name is free)
    if near:
        raise CliError(
            f"unknown agent `{name}`" + did_you_mean(near),
            hint=f"{meant}, add {flag}",
            code=EXIT_USAGE,
        )
    return False


def _show_key(ctx: Context, agent: dict[str, Any], key: str, verb: str) -> None:
    ctx.out.success(f"agent {agent['name']} {verb} ({agent['id']})")
    ctx.out.line(f"AAF_API_KEY={key}")
    ctx.out.line(f"AAF_BASE_URL={ctx.target().server_url.rstrip('/')}/api")
    ctx.out.info(
        "this key is shown once: store it now (the server keeps only its hash); "
        f'`tf agent rotate-key "{agent["name"]}"` makes a new one'
    )


def agent_add(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {"name": args.name, "environment": args.environment}
    if args.enforcement:
        try:
            body["enforcement_level"] = normalize_level(str(args.enforcement))
        except ValueError as exc:
            raise CliError(str(exc), code=EXIT_USAGE) from None
    if args.sdk_default:
        body["sdk_default"] = args.sdk_default
    if args.description:
        body["description"] = args.description
    if args.isolate is not None and ctx.project is None:
        raise CliError("--isolate is a project default: run `tf init` first", code=EXIT_USAGE)
    with ctx.client(offline=True) as client:
        if not args.force:
            check_new_agent(client, str(args.name), flag="--force")
        result = client.post("/v1/agents", body)
    if args.isolate is not None:
        _set_isolate(ctx, str(args.name), bool(args.isolate))
    ctx.out.result(result, lambda: _show_key(ctx, result["agent"], result["api_key"], "added"))
    return EXIT_OK


def _set_isolate(ctx: Context, name: str, on: bool) -> None:
    """The agent's `tf run --isolate` default, in this project's config."""
    project = ctx.project
    assert project is not None  # checked before the agent was added
    project.save(project.config.with_isolated_agent(name, on))


def agent_isolate(ctx: Context) -> int:
    """`tf agent isolate NAME [--off]`: the agent's `tf run --isolate` default."""
    if ctx.project is None:
        raise CliError("--isolate is a project default: run `tf init` first", code=EXIT_USAGE)
    name, on = str(ctx.args.name), not ctx.args.off
    _set_isolate(ctx, name, on)
    text = "isolated by default" if on else "not isolated by default"
    ctx.out.result({"agent": name, "isolate": on}, lambda: ctx.out.success(f"{name}: {text}"))
    return EXIT_OK


def agent_list(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        agents = _agents(client)
    ids = short_ids([str(a["id"]) for a in agents])
    rows = [
        (short, a.get("name"), a.get("status"), a.get("enforcement_level"), a.get("key_prefix"),
         short_time(a.get("created_at")))
        for short, a in zip(ids, agents, strict=True)
    ]  # fmt: skip
    ctx.out.result(
        {"agents": agents},
        lambda: ctx.out.table(
            ("id", "name", "status", "enforcement", "key", "created"),
            rows,
            empty="no agents yet: `tf agent add NAME` (SDK) or `tf run --name NAME` (proxy)",
        ),
    )
    return EXIT_OK


def agent_show(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        agent = find_agent(client, str(ctx.args.name))
    keys = ("id", "name", "status", "environment", "enforcement_level", "sdk_default",
            "rate_limit_per_minute", "key_prefix", "proxy_port", "description",
            "created_at")  # fmt: skip
    ctx.out.result(agent, lambda: ctx.out.fields((k, agent.get(k)) for k in keys))
    return EXIT_OK


def agent_rotate(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        agent = find_agent(client, str(ctx.args.name))
        result = client.post(f"/v1/agents/{path_id(agent['id'])}/rotate")
    ctx.out.result(
        result, lambda: _show_key(ctx, result["agent"], result["api_key"], "has a new key")
    )
    return EXIT_OK


def agent_remove(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        agent = find_agent(client, str(ctx.args.name))
        result = client.post(f"/v1/agents/{path_id(agent['id'])}/revoke")
    ctx.out.result(
        result,
        lambda: ctx.out.success(
            f"agent {agent['name']} removed: its keys no longer work (its records stay)"
        ),
    )
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "agent",
        help="add, list, show, remove and isolate agents; make and rotate SDK keys",
        description="Agents are who calls: each has an enforcement level and SDK keys "
        "(AAF_API_KEY). A key is shown once, when made; the server keeps only its hash.",
        examples='  tf agent add "Bot"\n  tf agent list\n  tf agent show "Bot" --json\n'
        '  tf agent rotate-key "Bot"\n  tf agent remove "Old Bot"',
        common=common,
    )
    verbs = parser.add_subparsers(
        dest="verb", required=True, metavar="add|list|show|rotate-key|remove|isolate"
    )

    def verb(name: str, text: str, examples: str, handler: Any) -> argparse.ArgumentParser:
        return add_command(verbs, name, help=text, description=text[0].upper() + text[1:] + ".",
                           examples=examples, common=common, handler=handler)  # fmt: skip

    add = verb("add", "register an agent and print its SDK key (once)",
               '  tf agent add "Bot"\n  tf agent add "Bot" --environment test --json',
               agent_add)  # fmt: skip
    add.add_argument("name", metavar="NAME", help="the agent's name (what `tf run --name` uses)")
    add.add_argument("--environment", choices=["live", "test"], default="live",
                     help="key prefix aaf_live_ or aaf_test_ (default live)")  # fmt: skip
    add.add_argument("--enforcement", metavar="LEVEL",
                     help=", ".join(ENFORCEMENT_LEVELS) + " (or L0-L2)")  # fmt: skip
    add.add_argument("--sdk-default", choices=["allow", "deny"],
                     help="SDK actions no rule matches (default allow)")  # fmt: skip
    add.add_argument(
        "--description", metavar="TEXT", help="what the agent does (shown in the dashboard)"
    )
    add.add_argument("--force", action="store_true",
                     help="add it even when its name is close to an existing agent's")  # fmt: skip
    add.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                     help="`tf run` isolates it by default (Linux; .tf/config.yaml)")  # fmt: skip
    verb("list", "list agents", "  tf agent list\n  tf agent list --json", agent_list)
    iso = verb("isolate", "make `tf run --isolate` this agent's default (--off: undo)",
               '  tf agent isolate "Bot"\n  tf agent isolate "Bot" --off',
               agent_isolate)  # fmt: skip
    iso.add_argument("name", metavar="NAME", help="the agent's name")
    iso.add_argument("--off", action="store_true", help="back to plain `tf run`")
    for name, text, handler in (
        ("show", "show one agent (by name or id)", agent_show),
        ("rotate-key", "revoke the agent's keys and print a new SDK key (once)", agent_rotate),
        (
            "remove",
            "revoke the agent for good, its keys, rules and grants (records stay)",
            agent_remove,
        ),
    ):
        one = verb(name, text, f'  tf agent {name} "Bot"', handler)
        one.add_argument("name", metavar="NAME", help="the agent's name or id")


def add_agent_option(
    parser: argparse.ArgumentParser,
    *,
    required: bool = True,
    help: str = "the agent, by the name given to `tf agent add` / `tf run --name`",
) -> None:
    """The `--gateway NAME` option (also spelt `--agent`) of the commands about one agent."""
    parser.add_argument(
        "--gateway", "--agent", dest="gateway", required=required, metavar="NAME", help=help
    )
