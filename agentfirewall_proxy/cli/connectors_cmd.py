"""`tf connector add|list|remove`: which APIs agents may reach, and with which credential."""

from __future__ import annotations

import argparse
from typing import Any

from agentfirewall_proxy.cli.client import AdminClient, path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_OK, CliError

__all__ = ["register"]

_DOMAIN_TYPES = {"generic", "webhook", "mcp"}


def _domains(value: str | None) -> list[str]:
    return [d.strip().lower() for d in (value or "").split(",") if d.strip()]


def _same_slot(existing: dict[str, Any], kind: str, domains: list[str]) -> bool:
    if existing.get("type") != kind:
        return False
    if kind in _DOMAIN_TYPES:
        return bool(set(existing.get("domains") or []) & set(domains))
    return True


def _token(ctx: Context) -> tuple[str | None, list[str]]:
    """The secret to vault and the names of environment variables that hold it."""
    args = ctx.args
    if args.token_env:
        value = ctx.env.get(args.token_env)
        if not value:
            raise CliError(
                f"environment variable `{args.token_env}` is not set",
                hint=f"export {args.token_env}=... first, or pass --token",
            )
        return value, [args.token_env]
    if args.token:
        holders = sorted(k for k, v in ctx.env.items() if v == args.token)
        return str(args.token), holders
    return None, []


def connector_add(ctx: Context) -> int:
    args = ctx.args
    kind = str(args.type).lower()
    domains = _domains(args.domains)
    if kind in {"generic", "webhook"} and not domains:
        raise CliError(
            f"a `{kind}` connector needs --domains",
            hint=f"e.g. tf connector add {kind} --domains api.example.com --token-env API_KEY",
        )
    token, holders = _token(ctx)
    body: dict[str, Any] = {"type": kind}
    for key, value in (
        ("token", token),
        ("name", args.name),
        ("base_url", args.base_url),
        ("auth_type", args.auth_type),
        ("auth_header", args.auth_header),
    ):
        if value:
            body[key] = value
    if domains:
        body["domains"] = domains
    with ctx.client(offline=True) as client:
        _free_slot(client, kind, domains, replace=bool(args.replace))
        created = client.post("/v1/connectors", body)
    project = ctx.project
    if project is not None and holders:
        config = project.config
        for name in holders:
            config = config.with_secret_env(name)
        project.save(config)

    def render() -> None:
        where = ", ".join(created.get("domains") or []) or "-"
        vaulted = "credential vaulted" if created.get("has_credential") else "no credential"
        ctx.out.success(f"connector {created.get('id')} ({kind}: {where}) added; {vaulted}")
        if holders:
            names = ", ".join(f"`{h}`" for h in holders)
            ctx.out.info(f"`tf run` removes {names} from your agents' environment")

    ctx.out.result(created, render)
    return EXIT_OK


def _free_slot(client: AdminClient, kind: str, domains: list[str], *, replace: bool) -> None:
    """Remove a credential-less connector (e.g. from a platform template) this one replaces."""
    for existing in client.get("/v1/connectors").get("connectors", []):
        if not _same_slot(existing, kind, domains):
            continue
        if existing.get("has_credential") and not replace:
            raise CliError(
                f"a `{kind}` connector already exists ({existing.get('id')})",
                hint=f"pass --replace to swap its credential, or `tf connector remove "
                f"{existing.get('id')}` first",
            )
        client.delete(f"/v1/connectors/{path_id(str(existing['id']))}")


def connector_list(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        data = client.get("/v1/connectors")
    rows = [
        (c.get("id"), c.get("type"), c.get("name"), c.get("domains"), c.get("has_credential"))
        for c in data.get("connectors", [])
    ]
    ctx.out.result(
        data,
        lambda: ctx.out.table(
            ("id", "type", "name", "domains", "credential"),
            rows,
            empty="no connectors yet: add one with `tf connector add github --token ghp_...`",
        ),
    )
    return EXIT_OK


def connector_remove(ctx: Context) -> int:
    wanted = str(ctx.args.connector)
    with ctx.client(offline=True) as client:
        connectors = client.get("/v1/connectors").get("connectors", [])
        matches = [c for c in connectors if wanted in (c.get("id"), c.get("type"), c.get("name"))]
        if not matches:
            raise CliError(f"no connector `{wanted}`", hint="see `tf connector list`")
        if len(matches) > 1:
            ids = ", ".join(str(c.get("id")) for c in matches)
            raise CliError(f"`{wanted}` matches several connectors: {ids}", hint="give an id")
        client.delete(f"/v1/connectors/{path_id(str(matches[0]['id']))}")
    ctx.out.result(
        {"removed": matches[0]["id"]},
        lambda: ctx.out.success(f"connector {matches[0]['id']} removed"),
    )
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    _register_connector(sub, common)


def _register_connector(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "connector",
        help="add, list and remove connectors (which APIs agents may reach)",
        description="A connector names the actions of one API and holds its credential. "
        "Deny-all: a domain without a connector is blocked.",
        examples="  tf connector add github --token ghp_xxx\n"
        "  tf connector add generic --domains api.stripe.com --token-env STRIPE_KEY\n"
        "  tf connector list\n  tf connector remove conn_github_1",
        common=common,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="add|list|remove")
    add = add_command(
        verbs,
        "add",
        help="add a connector and vault its credential",
        description="Add a connector. The credential is sent to the server's vault and "
        "injected by the gateway; agents run by `tf run` never see it. With --token-env the "
        "variable is read now and removed from the environment of every `tf run` agent.",
        examples="  tf connector add github --token ghp_xxx\n"
        "  tf connector add openai --token sk-xxx\n"
        "  tf connector add github --token-env GITHUB_TOKEN\n"
        "  tf connector add generic --domains api.stripe.com --token-env STRIPE_KEY",
        common=common,
        handler=connector_add,
    )
    add.add_argument("type", help="github, openai, anthropic, stripe, slack, mcp, webhook, generic")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--token", metavar="T", help="the API credential")
    secret.add_argument("--token-env", metavar="VAR", help="read the credential from $VAR")
    add.add_argument("--domains", metavar="A,B", help="domains (required for generic, webhook)")
    add.add_argument("--name", help="a display name")
    add.add_argument("--base-url", help="e.g. https://github.example.com/api/v3")
    add.add_argument("--auth-type", choices=["bearer", "token", "header"])
    add.add_argument("--auth-header", metavar="NAME", help="header for --auth-type header")
    add.add_argument("--replace", action="store_true", help="replace an existing one")
    add_command(
        verbs,
        "list",
        help="list connectors",
        description="List connectors (credentials are never shown).",
        examples="  tf connector list\n  tf connector list --json",
        common=common,
        handler=connector_list,
    )
    remove = add_command(
        verbs,
        "remove",
        help="remove a connector",
        description="Remove a connector by id (or by type when only one has it).",
        examples="  tf connector remove conn_github_1\n  tf connector remove openai",
        common=common,
        handler=connector_remove,
    )
    remove.add_argument("connector", metavar="ID|TYPE")
