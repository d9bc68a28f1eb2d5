"""`tf approvals list|show|approve|deny`: the requests held for a human.

Ids may be abbreviated to any unique prefix (like git's); the list shows each id's short
form, which is unique and is never wrapped, so it can be copied from any terminal.
"""

from __future__ import annotations

import argparse
from typing import Any

from agentfirewall_proxy.cli.budget_cmd import grant_body
from agentfirewall_proxy.cli.client import path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.names import listed_by, short_ids
from agentfirewall_proxy.cli.output import EXIT_OK, short_time

__all__ = ["register", "request_text"]


def request_text(request: Any) -> str | None:
    if not isinstance(request, dict):
        return None
    query = f"?{request['query']}" if request.get("query") else ""
    return f"{request.get('method')} {request.get('host')}{request.get('path')}{query}"


def resource_text(spec: Any) -> str | None:
    """An SDK action's resource: ``acme/api (github, account acme, production)``."""
    resource = spec.get("resource") if isinstance(spec, dict) else None
    if not isinstance(resource, dict):
        return None
    where = [str(resource[k]) for k in ("provider",) if resource.get(k)]
    if resource.get("account"):
        where.append(f"account {resource['account']}")
    if resource.get("environment"):
        where.append(str(resource["environment"]))
    target = str(resource.get("target") or "-")
    return f"{target} ({', '.join(where)})" if where else target


def bound_fields(request: Any) -> list[tuple[str, object]]:
    """What the approval binds beyond the request line: the headers that change what the
    upstream does (a credential's value masked), the body (type, size, preview, SHA-256)
    and the digest of the whole request."""
    if not isinstance(request, dict) or "digest" not in request:
        return []
    size = request.get("body_size")
    headers = request.get("headers") or []
    return [
        ("headers", "\n".join(f"{name}: {value}" for name, value in headers) or None),
        ("content type", request.get("content_type") or None),
        ("encoding", request.get("content_encoding") or None),
        ("body", f"{size} bytes" if size is not None else None),
        ("body preview", request.get("body_preview") or None),
        ("body sha256", request.get("body_sha256")),
        ("bound digest", request.get("digest")),
    ]


def approvals_list(ctx: Context) -> int:
    with ctx.client() as client:
        data = client.get("/v1/approvals", status=ctx.args.status)
    approvals = data.get("approvals", [])
    ids = short_ids([str(a.get("id")) for a in approvals])
    recent = ctx.args.status == "recent"  # pending ones need no status column
    columns = ("id", "agent", "action", "request", *(("status",) if recent else ()), "reason",
               "expires")  # fmt: skip
    rows = [
        (
            short,
            a.get("agent"),
            (a.get("action_spec") or {}).get("type"),
            request_text(a.get("request")) or resource_text(a.get("action_spec")),
            *((a.get("status"),) if recent else ()),
            a.get("reason"),
            short_time(a.get("expires_at")),
        )
        for short, a in zip(ids, approvals, strict=True)
    ]
    ctx.out.result(data, lambda: ctx.out.table(columns, rows, empty="no pending approvals"))
    return EXIT_OK


def approvals_show(ctx: Context) -> int:
    recent = "tf approvals list --status recent"
    with ctx.client() as client, listed_by(recent, "the latest ones, decided too"):
        approval = client.get(f"/v1/approvals/{path_id(str(ctx.args.id))}")
    spec = approval.get("action_spec") or {}
    pairs = [
        ("id", approval.get("id")),
        ("status", approval.get("status")),
        ("agent", approval.get("agent")),
        ("action", spec.get("type")),
        ("request", request_text(approval.get("request"))),
        ("resource", resource_text(spec)),
        *bound_fields(approval.get("request")),
        ("parameters", spec.get("parameters") or None),
        ("reason", approval.get("reason")),
        ("risk", approval.get("risk_score")),
        ("created", short_time(approval.get("created_at"))),
        ("expires", short_time(approval.get("expires_at"))),
        ("decided by", approval.get("decided_by")),
        ("note", approval.get("note")),
    ]
    ctx.out.result(approval, lambda: ctx.out.fields(pairs))
    return EXIT_OK


def approvals_decide(ctx: Context) -> int:
    verb = "approve" if ctx.args.verb == "approve" else "deny"
    body: dict[str, Any] = {"note": ctx.args.note} if ctx.args.note else {}
    grant = grant_body(ctx.args) if verb == "approve" else None
    if grant is not None:
        body["grant"] = grant
    with ctx.client() as client, listed_by("tf approvals list", "the pending ones"):
        result = client.post(f"/v1/approvals/{path_id(str(ctx.args.id))}/{verb}", body)
    done = "approved" if verb == "approve" else "denied"
    action = (result.get("action_spec") or {}).get("type") or "-"
    text = f"{result.get('id')} {done} ({action})"
    made = result.get("grant")
    if made:
        text += f"; grant {made['id']}: uses {made.get('max_uses') or 'unlimited'}"
        text += f", until {made['expires_at']}" if made.get("expires_at") else ""
    ctx.out.result(result, lambda: ctx.out.success(text))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "approvals",
        help="list, show, approve and deny held requests",
        description="Requests that need a human are held by the gateway until approved or "
        "denied here, in the dashboard or in Slack, or until the approval expires (then 408): "
        "after the policy rule's own approval.timeout_seconds (1 hour in the safe-default "
        "packs), else the approval_timeout_seconds setting (5 minutes unless changed); the "
        "list shows when each one expires. Ids may be abbreviated to any unique prefix.",
        examples="  tf approvals list\n  tf approvals approve apv_123 --note 'looks fine'\n"
        "  tf approvals deny apv_123",
        common=common,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="list|show|approve|deny")
    lister = add_command(
        verbs,
        "list",
        help="pending approvals (or --status recent)",
        description="List approvals (ids in their short, unique form).",
        examples="  tf approvals list\n  tf approvals list --status recent --json",
        common=common,
        handler=approvals_list,
    )
    lister.add_argument(
        "--status",
        choices=["pending", "recent"],
        default="pending",
        help="pending (default), or recent: the latest ones, decided and expired too",
    )
    show = add_command(
        verbs,
        "show",
        help="one approval in full",
        description="Show one approval: the request held (query, body preview, size and "
        "the digest the approval binds: only that exact request may pass on it), why, who "
        "decided.",
        examples="  tf approvals show apv_0KX3",
        common=common,
        handler=approvals_show,
    )
    show.add_argument("id", help="the id or any unique prefix of it")
    for verb, text in (("approve", "release a held request"), ("deny", "refuse it (403)")):
        cmd = add_command(
            verbs,
            verb,
            help=text,
            description=f"{verb.capitalize()} one approval by id or unique id prefix "
            "(see `tf approvals list`).",
            examples=f"  tf approvals {verb} apv_123\n  tf approvals {verb} apv_123 --note 'ok'"
            + (
                "\n  tf approvals approve apv_123 --for 1h --max-uses 5 --where 'amount<=10000'"
                if verb == "approve"
                else ""
            ),
            common=common,
            handler=approvals_decide,
        )
        cmd.add_argument("id", help="the id or any unique prefix of it")
        cmd.add_argument("--note", help="why, recorded with the decision (audit log)")
        if verb == "approve":  # a grant: the same action again, bounded (docs/budgets.md)
            cmd.add_argument(
                "--for",
                dest="for_",
                metavar="DURATION",
                help="also grant the same action for this long (30m, 1h, 2d)",
            )
            cmd.add_argument(
                "--max-uses",
                type=int,
                metavar="N",
                help="also grant the same action this many more times",
            )
            cmd.add_argument(
                "--where",
                action="append",
                metavar="CONSTRAINT",
                help="grant constraint: 'amount<=10000', 'currency in [usd]'",
            )
