"""`tf connector add|list|update|remove`: which APIs agents may reach, with which credential.

Options (`--option KEY=VALUE`) are a connector's non-secret settings, e.g. sendgrid's `from`:
the server validates them (unknown keys, bad values: 422) and fills them into actions that
leave the parameter out.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from agentfirewall_proxy.cli.client import AdminClient, path_id
from agentfirewall_proxy.cli.computed_cred import add_arguments, computed_credential
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError

__all__ = ["option_pair", "register"]

_DOMAIN_TYPES = {"generic", "webhook", "mcp"}
_OPTION_EXAMPLE = "--option from=alerts@example.com"


def option_pair(text: str) -> tuple[str, str]:
    """`KEY=VALUE` from the command line (argparse `type=`): a usage error otherwise."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE, got `{text}`: e.g. {_OPTION_EXAMPLE}"
        )
    if not value:
        raise argparse.ArgumentTypeError(
            f"`{key}=` has no value: give one (e.g. {_OPTION_EXAMPLE}), or remove the option "
            f"with `tf connector update CONNECTOR --unset-option {key}`"
        )
    return key, value


def _options(pairs: list[tuple[str, str]] | None) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in pairs or []:
        if key in options and options[key] != value:
            raise CliError(f"option `{key}` given twice", hint="give each option once")
        options[key] = value
    return options


def _shown(options: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((options or {}).items())) or "-"


def _sent(client: AdminClient, kind: str, send: Callable[[], Any]) -> Any:
    """`send()`, with the options a `kind` connector takes as the hint of an option error."""
    try:
        return send()
    except CliError as exc:
        if "(`options." not in exc.message:
            raise
        raise CliError(exc.message, hint=_options_hint(client, kind), code=exc.code) from None


def _options_hint(client: AdminClient, kind: str) -> str:
    try:
        entries = client.get("/v1/connectors/catalogue").get("connectors", [])
    except CliError:
        entries = []
    known = next((e.get("options") or {} for e in entries if e.get("type") == kind), {})
    if not known:
        return f"a `{kind}` connector takes no options"
    takes = "; ".join(f"`{k}` ({what})" for k, what in sorted(known.items()))
    return f"a `{kind}` connector takes {takes}"


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
    auth_type = args.auth_type
    computed = computed_credential(ctx, kind)
    if computed is not None:
        if token:
            raise CliError("--token and computed-credential flags are exclusive", code=EXIT_USAGE)
        auth_type, token, holders = computed
    options = _options(args.option)
    body: dict[str, Any] = {"type": kind}
    for key, value in (
        ("token", token),
        ("name", args.name),
        ("base_url", args.base_url),
        ("auth_type", auth_type),
        ("auth_header", args.auth_header),
    ):
        if value:
            body[key] = value
    if domains:
        body["domains"] = domains
    if options:
        body["options"] = options
    with ctx.client(offline=True) as client:
        replaced = _slot_holders(client, kind, domains, replace=bool(args.replace))
        created = _sent(client, kind, lambda: client.post("/v1/connectors", body))
        for old in replaced:  # only once the new one exists: a refused add changes nothing
            client.delete(f"/v1/connectors/{path_id(old)}")
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
        if created.get("options"):
            ctx.out.info(f"options: {_shown(created.get('options'))}")
        if holders:
            names = ", ".join(f"`{h}`" for h in holders)
            ctx.out.info(f"`tf run` removes {names} from your agents' environment")

    ctx.out.result(created, render)
    return EXIT_OK


def _slot_holders(
    client: AdminClient, kind: str, domains: list[str], *, replace: bool
) -> list[str]:
    """Connectors this one replaces: credential-less ones (e.g. from a platform template),
    and with `replace` those with a credential."""
    ids: list[str] = []
    for existing in client.get("/v1/connectors").get("connectors", []):
        if not _same_slot(existing, kind, domains):
            continue
        if existing.get("has_credential") and not replace:
            raise CliError(
                f"a `{kind}` connector already exists ({existing.get('id')})",
                hint=f"pass --replace to swap its credential, or `tf connector remove "
                f"{existing.get('id')}` first",
            )
        ids.append(str(existing["id"]))
    return ids


def connector_list(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        data = client.get("/v1/connectors")
    rows = [
        (
            c.get("id"),
            c.get("type"),
            c.get("name"),
            c.get("domains"),
            c.get("has_credential"),
            _shown(c.get("options")),
        )
        for c in data.get("connectors", [])
    ]
    ctx.out.result(
        data,
        lambda: ctx.out.table(
            ("id", "type", "name", "domains", "credential", "options"),
            rows,
            empty="no connectors yet: add one with `tf connector add github --token ghp_...`",
        ),
    )
    return EXIT_OK


def _find(client: AdminClient, wanted: str) -> dict[str, Any]:
    """The one connector whose id, type or name is `wanted`."""
    connectors = client.get("/v1/connectors").get("connectors", [])
    matches = [c for c in connectors if wanted in (c.get("id"), c.get("type"), c.get("name"))]
    if not matches:
        raise CliError(f"no connector `{wanted}`", hint="see `tf connector list`")
    if len(matches) > 1:
        ids = ", ".join(str(c.get("id")) for c in matches)
        raise CliError(f"`{wanted}` matches several connectors: {ids}", hint="give an id")
    found: dict[str, Any] = matches[0]
    return found


def connector_update(ctx: Context) -> int:
    args = ctx.args
    change: dict[str, str | None] = dict(_options(args.option))
    for key in args.unset_option or []:
        if key in change:
            raise CliError(f"option `{key}` is both set and unset", hint="give one of the two")
        change[key] = None
    if not change:
        raise CliError(
            "nothing to update",
            hint=f"e.g. tf connector update {args.connector} {_OPTION_EXAMPLE}",
            code=EXIT_USAGE,
        )
    with ctx.client(offline=True) as client:
        found = _find(client, str(args.connector))
        path = f"/v1/connectors/{path_id(str(found['id']))}"
        kind = str(found.get("type"))
        changed = _sent(client, kind, lambda: client.patch(path, {"options": change}))
    ctx.out.result(
        changed,
        lambda: ctx.out.success(
            f"connector {changed.get('id')} updated; options: {_shown(changed.get('options'))}"
        ),
    )
    return EXIT_OK


def connector_remove(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        found = _find(client, str(ctx.args.connector))
        client.delete(f"/v1/connectors/{path_id(str(found['id']))}")
    ctx.out.result(
        {"removed": found["id"]},
        lambda: ctx.out.success(f"connector {found['id']} removed"),
    )
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    _register_connector(sub, common)


def _register_connector(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "connector",
        help="add, list, update and remove connectors (which APIs agents may reach)",
        description="A connector names the actions of one API and holds its credential. "
        "Deny-all: a domain without a connector is blocked.",
        examples="  tf connector add github --token ghp_xxx\n"
        "  tf connector add generic --domains api.stripe.com --token-env STRIPE_KEY\n"
        "  tf connector add sendgrid --token-env SENDGRID_KEY --option from=alerts@acme.com\n"
        "  tf connector update sendgrid --option from=ops@acme.com\n"
        "  tf connector list\n  tf connector remove conn_github_1",
        common=common,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="add|list|update|remove")
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
        "  tf connector add generic --domains api.stripe.com --token-env STRIPE_KEY\n"
        "  tf connector add sendgrid --token-env SENDGRID_KEY --option from=alerts@acme.com\n"
        "  tf connector add aws --access-key-id AKIA... --secret-access-key-env AWS_SECRET\n"
        "  tf connector add github --app-id 123 --private-key app.pem --installation-id 456\n"
        "  tf connector add generic --domains api.example.com --oauth2-token-url "
        "https://auth.example.com/token --client-id ID --client-secret-env CLIENT_SECRET",
        common=common,
        handler=connector_add,
    )
    add.add_argument(
        "type", help="github, openai, anthropic, stripe, slack, mcp, webhook, generic, aws, ..."
    )
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--token", metavar="T", help="the API credential")
    secret.add_argument("--token-env", metavar="VAR", help="read the credential from $VAR")
    add.add_argument("--domains", metavar="A,B", help="domains (required for generic, webhook)")
    add.add_argument("--name", help="a display name")
    add.add_argument("--base-url", help="e.g. https://github.example.com/api/v3")
    add.add_argument(
        "--auth-type",
        choices=["bearer", "token", "header"],
        help="how the credential is sent: Authorization: Bearer T, Authorization: token T, or "
        "in --auth-header (default: the connector's own)",
    )
    add.add_argument("--auth-header", metavar="NAME", help="header for --auth-type header")
    add.add_argument("--replace", action="store_true", help="replace an existing one")
    _option_argument(add)
    add_arguments(add)
    add_command(
        verbs,
        "list",
        help="list connectors",
        description="List connectors (credentials are never shown).",
        examples="  tf connector list\n  tf connector list --json",
        common=common,
        handler=connector_list,
    )
    update = add_command(
        verbs,
        "update",
        help="change a connector's options",
        description="Set or remove a connector's options (non-secret settings the server "
        "fills into actions that leave them out, e.g. sendgrid's `from`). Other options of "
        "the connector are kept; its credential is untouched. The connector is named by id, "
        "or by type or name when only one has it.",
        examples="  tf connector update sendgrid --option from=ops@acme.com\n"
        "  tf connector update conn_sendgrid_1 --unset-option from",
        common=common,
        handler=connector_update,
    )
    update.add_argument(
        "connector", metavar="ID|TYPE|NAME", help="the connector (`tf connector list`)"
    )
    _option_argument(update)
    update.add_argument(
        "--unset-option", action="append", metavar="KEY", help="remove option KEY (repeatable)"
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
    remove.add_argument("connector", metavar="ID|TYPE", help="the connector (`tf connector list`)")


def _option_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--option",
        action="append",
        type=option_pair,
        metavar="KEY=VALUE",
        help="a connector option, e.g. from=alerts@acme.com for sendgrid (repeatable)",
    )
