"""Grants: an approval widened to the same action for the same agent, bounded.

An approver may grant, with one approval, the same action type for the same agent (and
connector) for a duration and/or a number of uses, under parameter constraints
(``amount lte 10000``, ``currency in [usd]``). A grant is consulted only where a request
would be held for approval, so it never overrides a deny rule or the kill switch (both
decide before); it is used atomically (``uses < max_uses`` re-checked in the UPDATE, so
replicas sharing PostgreSQL cannot overuse it) and every use is audited with its id.

Constraints are policy condition leaves (``agentfirewall.policy``); a short field
(``amount``) means ``action_spec.parameters.amount``. ``parse_where`` reads the CLI's
``amount<=10000`` / ``currency in [usd,eur]`` / ``channel equals C123`` forms.

A request may perform several actions (:func:`_members`): a JSON-RPC batch
(``mcp.rpc.batch``) its members, a GitHub GraphQL document each mutation. A grant covers
a request only when every action it performs is of the grant's type and meets every
constraint. A grant made on several actions records their types as one more constraint,
``action_spec.type in [...]`` (which an approver cannot write: a grant covers the types
of the request approved), so a grant on a batch of two transfers covers batches of
transfers within its constraints, never a batch of other tools; a grant on one action
covers no request that performs another too. A GraphQL document's other mutations are
known by type only: a grant with parameter constraints covers none of them.

A grant stands for its maker (:func:`lapsed`): it records who made it (their user id, from
the authenticated caller, never from an actor's name) and with which credential (signed in;
the exact API token's row; the Slack member whose click made it), and covers a request only
while that person still holds the role it was made with, through that same credential: a
demotion below that role, a removal, that token's revocation (not another's of the same
name) or that Slack link's removal ends it. The routes that end or lower someone's authority
revoke the grants that lapse in the same transaction (:func:`revoke_lapsed`,
:func:`revoke_made_with`, :func:`revoke_unlinked`; ``grants_revoked`` in their audit event),
and :func:`use_grant` checks again in the transaction that would use one, so no request
passes after the change commits, on any replica; a grant whose maker cannot be told covers
nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, JsonValue, ValidationError, field_validator, model_validator
from sqlalchemy import ColumnElement, Connection, or_, select, update

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy.conditions import compile_condition
from agentfirewall.policy.engine import EvaluationContext
from agentfirewall.policy.models import FieldCondition
from agentfirewall_server.audit import append_event
from agentfirewall_server.bootstrap import BOOTSTRAP_TOKEN_NAMES
from agentfirewall_server.clock import new_id, rfc3339
from agentfirewall_server.roles import ROLES, may_approve
from agentfirewall_server.store.schema import grants, settings_table, tokens, users
from agentfirewall_server.web import ApiError, Strict

__all__ = [
    "UNREGISTERED_BOOTSTRAP",
    "GrantBody",
    "GrantMaker",
    "constraint",
    "create_grant",
    "grant_json",
    "lapsed",
    "parse_where",
    "revoke_lapsed",
    "revoke_made_with",
    "revoke_row",
    "revoke_unlinked",
    "slack_links",
    "use_grant",
]

_MAX_SECONDS = 30 * 86400
#: The type a JSON-RPC batch of two or more messages is named (``connectors/mcp.py``): it
#: names its members (``parameters.members``) and performs nothing itself.
_BATCH = "mcp.rpc.batch"
_TYPE = "action_spec.type"
_SYMBOLS = {"<=": "lte", ">=": "gte", "<": "lt", ">": "gt", "==": "equals", "=": "equals",
            "!=": "not_equals"}  # fmt: skip
_SYMBOL_RE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=|==|!=|<|>|=)\s*(.+?)\s*$")
_WORD_RE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s+([a-z_]+)\s+(.+?)\s*$")
#: How a grant's maker made it (``grants.made_via``): signed in, with an API token, or by
#: a click in Slack. The grant lasts while that way is still theirs (:func:`lapsed`).
_SESSION, _TOKEN, _SLACK = "session", "token", "slack"
#: ``grants.maker_token_id`` of a grant an earlier version made with the bootstrap admin
#: token in a database that had no bootstrap admin token yet (migration 0022): it stands for
#: the one bootstrap admin token registered since, while it is the only one and live.
UNREGISTERED_BOOTSTRAP = "unregistered bootstrap admin token"


@dataclass(frozen=True, slots=True)
class GrantMaker:
    """Who makes a grant, as the caller authenticated: the audit log's `actor`, the user
    (None: a token of no user), how (``session``, ``token``, ``slack``) and the exact
    credential (the API token's ``tokens.token_hash``, the Slack member id; None signed in).
    Build one with :meth:`signed_in`, :meth:`with_token` or :meth:`in_slack`."""

    actor: str
    user_id: str | None
    via: str
    credential: str | None = None

    @classmethod
    def signed_in(cls, actor: str, user_id: str) -> GrantMaker:
        return cls(actor, user_id, _SESSION)

    @classmethod
    def with_token(cls, actor: str, user_id: str | None, token_id: str | None) -> GrantMaker:
        return cls(actor, user_id, _TOKEN, token_id)

    @classmethod
    def in_slack(cls, actor: str, user_id: str, member: str) -> GrantMaker:
        return cls(actor, user_id, _SLACK, member)


def _value(text: str) -> JsonValue:
    """A number, a ``[a, b]`` list, a quoted or bare string."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [_value(p) for p in text[1:-1].split(",") if p.strip()]
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _field(name: str) -> str:
    if name.startswith(("action_spec.", "context.")):
        return name
    return f"action_spec.parameters.{name}"


def constraint(field: str, operator: str, value: JsonValue) -> dict[str, JsonValue]:
    """One validated constraint leaf (ValueError naming the problem)."""
    try:
        leaf = FieldCondition(field=_field(field), operator=operator, value=value)
    except ValidationError as exc:
        first = exc.errors()[0]
        detail = (first.get("ctx") or {}).get("error") or first["msg"]
        raise ValueError(f"constraint on `{field}`: {detail}") from None
    return leaf.model_dump()


def parse_where(text: str) -> dict[str, JsonValue]:
    """``amount<=10000``, ``amount lte 10000``, ``currency in [usd]`` -> a constraint."""
    found = _SYMBOL_RE.match(text)
    if found is not None:
        name, symbol, raw = found.groups()
        return constraint(name, _SYMBOLS[symbol], _value(raw))
    found = _WORD_RE.match(text)
    if found is None:
        raise ValueError(f"cannot read constraint `{text}`: write `amount<=10000` or "
                         "`currency in [usd]`")  # fmt: skip
    name, operator, raw = found.groups()
    return constraint(name, operator, _value(raw))


class GrantBody(Strict):
    """``grant`` in ``POST /api/v1/approvals/{id}/approve``: at least one bound."""

    for_seconds: int | None = Field(default=None, ge=1, le=_MAX_SECONDS)
    max_uses: int | None = Field(default=None, ge=1, le=1_000_000)
    #: Constraints: ``"amount<=10000"`` strings or ``{field, operator, value}`` leaves.
    where: list[str | dict[str, JsonValue]] = Field(default_factory=list, max_length=20)

    @field_validator("where")
    @classmethod
    def _constraints(cls, value: list[str | dict[str, JsonValue]]) -> list[str | dict[str, Any]]:
        out: list[str | dict[str, Any]] = []
        for item in value:
            if isinstance(item, str):
                out.append(parse_where(item))
            else:
                extra = set(item) - {"field", "operator", "value"}
                if extra:
                    raise ValueError(f"unknown key `{sorted(extra)[0]}` in a constraint")
                out.append(
                    constraint(str(item.get("field")), str(item.get("operator")), item.get("value"))
                )
        if any(leaf["field"] == _TYPE for leaf in out if isinstance(leaf, dict)):
            raise ValueError(f"a constraint on `{_TYPE}`: a grant covers the action types of "
                             "the request approved, no others")  # fmt: skip
        return out

    @model_validator(mode="after")
    def _bounded(self) -> GrantBody:
        if self.for_seconds is None and self.max_uses is None:
            raise ValueError("a grant needs `for_seconds` and/or `max_uses`")
        return self


def grant_json(row: Any, now: float | None = None) -> dict[str, Any]:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    status = "active"
    if m["revoked_at"] is not None:
        status = "revoked"
    elif m["max_uses"] is not None and m["uses"] >= m["max_uses"]:
        status = "used_up"
    elif m["expires_at"] is not None and now is not None and m["expires_at"] <= now:
        status = "expired"
    return {
        "id": m["id"],
        "status": status,
        "approval_id": m["approval_id"],
        "agent": m["agent"],
        "connector": m["connector"],
        "action_type": m["action_type"],
        "constraints": json.loads(m["constraints"]),
        "expires_at": rfc3339(m["expires_at"]),
        "max_uses": m["max_uses"],
        "uses": m["uses"],
        "created_by": m["created_by"],
        "created_at": rfc3339(m["created_at"]),
        "revoked_at": rfc3339(m["revoked_at"]),
        "revoked_by": m["revoked_by"],
        "approver_role": m.get("approver_role"),
        "host": m.get("host"),
    }


def create_grant(
    conn: Connection,
    approval: dict[str, Any],
    body: GrantBody,
    *,
    maker: GrantMaker,
    role: str | None,
    now: float,
) -> dict[str, Any]:
    """A grant from an approved `approval` (same transaction as the approval), made by
    `maker` with `role`: it covers only held requests that role could approve, while its
    maker holds that role through the same credential (:func:`lapsed`). 403 when it would
    not stand even now (the credential revoked, the role lowered meanwhile: another
    replica's change): the approval is undone with it."""
    spec = json.loads(approval["action_spec"])
    where = list(body.where)
    types: list[JsonValue] = sorted({member["type"] for member, _ in _members(spec) or []})
    if types and types != [spec["type"]]:  # several actions: these types, no other
        where.append(constraint(_TYPE, "in", types))
    row = {
        "id": new_id("grt_"),
        "approval_id": approval["id"],
        "agent": approval["agent"],
        "connector": approval["connector"],
        "action_type": spec["type"],
        "constraints": json.dumps(where),
        "expires_at": now + body.for_seconds if body.for_seconds else None,
        "max_uses": body.max_uses,
        "uses": 0,
        "created_by": maker.actor,
        "created_at": now,
        "revoked_at": None,
        "revoked_by": None,
        "approver_role": role,
        "host": _host_of(approval),
        "maker_user_id": maker.user_id,
        "made_via": maker.via,
        "maker_token_id": maker.credential if maker.via == _TOKEN else None,
        "maker_slack_member": maker.credential if maker.via == _SLACK else None,
    }
    conn.execute(grants.insert().values(**row))
    _stands_now(conn, row["id"], maker.actor)
    append_event(conn, "grant.created", actor=maker.actor, now=now, agent=row["agent"],
                 subject=row["id"], data=grant_json(row))  # fmt: skip
    return row


def _stands_now(conn: Connection, grant_id: str, actor: str) -> None:
    """403 when the grant just written would not stand for its maker (:func:`lapsed`)."""
    why = lapsed(conn, conn.execute(select(grants).where(grants.c.id == grant_id)).one())
    if why is not None:
        raise ApiError(403, f"no grant made: it would not stand for `{actor}` ({why}); "
                       "approve again signed in or with a live token")  # fmt: skip


def lapsed(conn: Connection, row: Any) -> str | None:
    """Why grant `row` no longer stands for its maker, or None while it does (read in the
    caller's transaction): its maker was removed, now holds a lower role than the one it
    was made with (a grant made before roles were recorded: a member's), or lost the
    credential it was made with (that API token revoked or gone, that Slack member's link
    removed or pointed elsewhere). A grant that names no maker (an earlier version's, whose
    maker the upgrade could not tell) stands for no one.
    """
    via, uid = row.made_via, row.maker_user_id
    if via not in (_SESSION, _TOKEN, _SLACK) or (uid is None and via != _TOKEN):
        return "its maker is unknown"
    made_as = row.approver_role or "member"
    email = None
    if uid is not None:
        user = conn.execute(select(users.c.email, users.c.role).where(users.c.id == uid)).first()
        if user is None:
            return "its maker was removed"
        if ROLES.get(user.role, 0) < ROLES.get(made_as, len(ROLES) + 1):
            return f"its maker's role is now {user.role}"
        email = user.email
    if via == _TOKEN and not _token_stands(conn, row.maker_token_id, uid, made_as):
        return "the token that made it was revoked"
    if via == _SLACK and slack_links(conn).get(row.maker_slack_member or "") != email:
        return "its maker's Slack link was removed"
    return None


def _token_stands(
    conn: Connection, token_id: str | None, user_id: str | None, made_as: str
) -> bool:
    """Whether the API token `token_id` (its row) is live, still `user_id`'s (None: of no
    user), with at least the role `made_as`."""
    found = _token_row(conn, token_id)
    if found is None or found.kind != "admin" or found.user_id != user_id:
        return False
    return ROLES.get(found.role or "", 0) >= ROLES.get(made_as, len(ROLES) + 1)


def _token_row(conn: Connection, token_id: str | None) -> Any:
    """The ``tokens`` row `token_id` names (:data:`UNREGISTERED_BOOTSTRAP`: the bootstrap
    admin token, when there is exactly one), or None."""
    if token_id is None:
        return None
    picked = select(tokens.c.kind, tokens.c.user_id, tokens.c.role)
    if token_id != UNREGISTERED_BOOTSTRAP:
        return conn.execute(picked.where(tokens.c.token_hash == token_id)).first()
    bootstrap = picked.where(
        tokens.c.name == BOOTSTRAP_TOKEN_NAMES["admin"], tokens.c.user_id.is_(None)
    )
    found = conn.execute(bootstrap.limit(2)).all()
    return found[0] if len(found) == 1 else None


def slack_links(conn: Connection) -> dict[str, str]:
    """The ``slack_approvers`` setting as stored now: Slack member id -> the email of the
    user it acts as (empty when unset or unreadable)."""
    text = conn.execute(
        select(settings_table.c.value).where(settings_table.c.key == "slack_approvers")
    ).scalar()
    try:
        linked = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(linked, dict):
        return {}
    return {k: v for k, v in linked.items() if isinstance(k, str) and isinstance(v, str)}


def revoke_lapsed(conn: Connection, *, user_id: str, actor: str, now: float) -> list[str]:
    """Revoke, in the caller's transaction, the live grants of `user_id` that no longer
    stand (:func:`lapsed`), each audited with why; their ids, for the audit event of the
    change that ended them (``grants_revoked``). Called after a user's role change or
    removal is written."""
    return _revoke_where(conn, grants.c.maker_user_id == user_id, actor=actor, now=now)


def revoke_made_with(conn: Connection, token_id: str, *, actor: str, now: float) -> list[str]:
    """:func:`revoke_lapsed` for the grants made with the API token `token_id` (its row),
    called after its revocation is written: exactly its grants, not those of another token
    of the same name or user."""
    made_with = grants.c.maker_token_id.in_((token_id, UNREGISTERED_BOOTSTRAP))
    return _revoke_where(conn, (grants.c.made_via == _TOKEN) & made_with, actor=actor, now=now)


def revoke_unlinked(conn: Connection, *, actor: str, now: float) -> list[str]:
    """:func:`revoke_lapsed` for the grants made in Slack, called after the Slack links
    (``slack_approvers``) are written: those of a link removed or pointed elsewhere."""
    return _revoke_where(conn, grants.c.made_via == _SLACK, actor=actor, now=now)


def _revoke_where(
    conn: Connection, chosen: ColumnElement[bool], *, actor: str, now: float
) -> list[str]:
    ended: list[str] = []
    for row in conn.execute(
        select(grants).where(chosen, *_live(now)).order_by(grants.c.created_at)
    ):
        why = lapsed(conn, row)
        if why is not None:
            revoke_row(conn, dict(row._mapping), actor=actor, now=now, reason=why)
            ended.append(str(row.id))
    return ended


def _live(now: float) -> tuple[ColumnElement[bool], ...]:
    """Not revoked, not expired, not used up."""
    return (
        grants.c.revoked_at.is_(None),
        or_(grants.c.expires_at.is_(None), grants.c.expires_at > now),
        or_(grants.c.max_uses.is_(None), grants.c.uses < grants.c.max_uses),
    )


def _host_of(approval: dict[str, Any]) -> str | None:
    """The host of the request an approval was made on (a proxy or `tf mcp wrap` request:
    the upstream, or the MCP server's name), lower-cased; None for an SDK approval."""
    request = json.loads(approval["request"]) if approval.get("request") else None
    host = request.get("host") if isinstance(request, dict) else None
    return _host_key(host) if isinstance(host, str) and host else None


def _host_key(host: str) -> str:
    """A host as grants compare it: lower-cased, without a trailing dot."""
    return host.lower().rstrip(".")[:300]


def _members(spec: dict[str, Any]) -> list[tuple[dict[str, Any], bool]] | None:
    """The actions a request (its `spec`) performs, each as a spec with whether its
    parameters are known: a JSON-RPC batch's members; the held action and, by type only,
    the other mutations of its GraphQL document (``risk_hints.graphql_also``); else the
    action itself. None when a batch's members cannot be read (no grant covers it)."""
    parameters = spec.get("parameters")
    hints = spec.get("risk_hints")
    if spec.get("type") == _BATCH:
        found = parameters.get("members") if isinstance(parameters, dict) else None
        if not isinstance(found, list) or not found:
            return None
        out = []
        for item in found:
            action = item.get("action") if isinstance(item, dict) else None
            given = item.get("parameters") if isinstance(item, dict) else None
            if not isinstance(action, str) or not isinstance(given, dict):
                return None
            out.append(({**spec, "type": action, "parameters": given, "risk_hints": {}}, True))
        return out
    others = hints.get("graphql_also", []) if isinstance(hints, dict) else []
    if not isinstance(others, list) or not all(isinstance(t, str) for t in others):
        return None
    unknown = [({**spec, "type": t, "parameters": {}, "risk_hints": {}}, False) for t in others]
    return [(spec, True), *unknown]


def _satisfied(row: Any, spec: dict[str, Any], agent: str, now: float) -> bool:
    """Whether every action the request performs is of the grant's type (or, for a grant
    made on several, one of their types) and meets every constraint."""
    found = _members(spec)
    if found is None:
        return False
    try:
        leaves = [FieldCondition(**leaf) for leaf in json.loads(row.constraints)]
        typed = any(leaf.field == _TYPE for leaf in leaves)
        on_parameters = any(leaf.field != _TYPE for leaf in leaves)
        checks = [compile_condition(leaf) for leaf in leaves]
        ctx = EvaluationContext(agent=agent, mode="proxy", now=datetime.fromtimestamp(now, UTC))
        for member, known in found:
            if not typed and member["type"] != row.action_type:
                return False
            if not known and on_parameters:  # its parameters are not known: not checked
                return False
            parsed = parse_action_spec(member)
            if not all(check(parsed, ctx) for check in checks):
                return False
        return True
    except Exception:  # a constraint that cannot be evaluated does not grant (fail closed)
        return False


def use_grant(
    conn: Connection,
    *,
    agent: str,
    connector: str | None,
    spec: dict[str, Any],
    approver_roles: Sequence[str],
    host: str | None = None,
    actor: str,
    now: float,
    record: bool = True,
) -> dict[str, Any] | None:
    """Use one active grant covering this request (audited), or None. A grant covers it
    only when its maker's role could approve it (`approver_roles`: the roles the rule
    holding it asks for; a grant without a recorded role is a member's), while it still
    stands for its maker (:func:`lapsed`: checked here, in the transaction that uses it; a
    lapsed grant is revoked on the way), and, when it was made on a request to a host,
    only a request to that `host`. `record` False (a dry run): the grant that would be
    used, unused and unaudited (a lapsed one skipped, not revoked)."""
    rows = conn.execute(
        select(grants)
        .where(
            grants.c.agent == agent,
            grants.c.action_type == spec.get("type"),
            *_live(now),
        )
        .order_by(grants.c.created_at)
        .limit(50)
    ).all()
    for row in rows:
        if row.connector is not None and connector is not None and row.connector != connector:
            continue
        if not may_approve(row.approver_role or "member", approver_roles):
            continue
        if row.host is not None and row.host != _host_key(host or ""):
            continue
        if not _satisfied(row, spec, agent, now):
            continue
        why = lapsed(conn, row)
        if why is not None:
            if record:
                revoke_row(conn, dict(row._mapping), actor="server", now=now, reason=why)
            continue
        if not record:
            return dict(row._mapping)
        done = conn.execute(
            update(grants)
            .where(
                grants.c.id == row.id,
                grants.c.revoked_at.is_(None),
                or_(grants.c.max_uses.is_(None), grants.c.uses < grants.c.max_uses),
            )
            .values(uses=grants.c.uses + 1)
        )
        if done.rowcount != 1:
            continue  # revoked or used up meanwhile (another replica)
        used = {**dict(row._mapping), "uses": row.uses + 1}
        append_event(conn, "grant.used", actor=actor, now=now, agent=agent, subject=row.id,
                     data={"grant_id": row.id, "action_type": spec.get("type"),
                           "uses": used["uses"], "max_uses": row.max_uses})  # fmt: skip
        return used
    return None


def revoke_row(
    conn: Connection, grant: dict[str, Any], *, actor: str, now: float, reason: str = ""
) -> None:
    """Revoke `grant` (its row as a mapping), audited ``grant.revoked`` with its uses and,
    when given, why."""
    revoked = {"revoked_at": now, "revoked_by": actor}
    conn.execute(update(grants).where(grants.c.id == grant["id"]).values(**revoked))
    data: dict[str, Any] = {"uses": grant["uses"], **({"reason": reason} if reason else {})}
    append_event(conn, "grant.revoked", actor=actor, now=now, agent=grant["agent"],
                 subject=grant["id"], data=data)  # fmt: skip
