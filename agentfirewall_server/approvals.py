"""Approvals: durable, decided once, expiring, auto-denied by a kill switch.

Every function that changes an approval runs inside the store's writer transaction and
also moves the linked action request (SDK mode) to its final status, with audit events,
so a crash never leaves the two disagreeing.

What a kill switch covers, or what belongs to an agent that is not active, can no longer
be approved (`decide_approval` checks the stored switches and agent, not a snapshot), and
the sweep (`deny_covered`) denies it, a page of at most `CHUNK` per writer job: after a
switch is activated (the switch is in force before the first page), and about once a second
(`expiry_loop`), so what a restart interrupted is denied all the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Row, or_, select, true, update

from agentfirewall_server.actionstore import finish_spend, redate_spend
from agentfirewall_server.audit import append_events, prepare_event
from agentfirewall_server.clock import new_id, rfc3339
from agentfirewall_server.roles import DEFAULT_ROLES, ROLES, may_approve
from agentfirewall_server.store.schema import (
    action_requests,
    agents,
    approvals,
    connectors,
    kill_switches,
)
from agentfirewall_server.web import ApiError

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = [
    "CHUNK",
    "DEFAULT_ROLES",
    "approval_json",
    "approval_row",
    "create_approval",
    "decide_approval",
    "deny_covered",
    "deny_of_agent",
    "expire_due",
    "expiry_loop",
    "get_approval",
    "stored_switch",
    "sweep_covered",
]

log = logging.getLogger("agentfirewall_server")
_FINAL_ACTION = {"approved": "allowed", "denied": "denied", "expired": "expired"}
#: The most approvals one writer job decides (expiry, the sweep) or one statement names: a
#: backlog of any size never holds the writer long, nor exceeds a driver's parameter limit.
CHUNK = 500
#: How long the expiry loop's sweep leaves a new kill switch's approvals to the request
#: that activated it (which counts them): after that, it denies what a restart left.
_BACKSTOP_SECONDS = 10.0


def approval_json(row: Any) -> dict[str, Any]:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return {
        "id": m["id"],
        "status": m["status"],
        "agent": m["agent"],
        "connector": m["connector"],
        "action_request_id": m["action_request_id"],
        "source": m["source"],
        "action_spec": json.loads(m["action_spec"]),
        "action_hash": m["action_hash"],
        "risk_score": m["risk_score"],
        "reason": m["reason"],
        "request": json.loads(m["request"]) if m["request"] else None,
        "required_approver_roles": json.loads(m["required_approver_roles"]),
        "created_at": rfc3339(m["created_at"]),
        "expires_at": rfc3339(m["expires_at"]),
        "decided_at": rfc3339(m["decided_at"]),
        "decided_by": m["decided_by"],
        "note": m["note"],
        "used": bool(m["used"]),
    }


def create_approval(
    conn: Connection,
    *,
    agent: str,
    connector: str | None,
    action_request_id: str | None,
    source: str,
    spec: dict[str, Any],
    action_hash: str,
    risk_score: float,
    reason: str,
    request: dict[str, Any] | None,
    roles: tuple[str, ...] | list[str],
    timeout_seconds: int,
    now: float,
) -> dict[str, Any]:
    row = approval_row(
        agent=agent,
        connector=connector,
        action_request_id=action_request_id,
        source=source,
        spec=spec,
        action_hash=action_hash,
        risk_score=risk_score,
        reason=reason,
        request=request,
        roles=roles,
        timeout_seconds=timeout_seconds,
        now=now,
    )
    conn.execute(approvals.insert().values(**row))
    return row


def approval_row(
    *,
    agent: str,
    connector: str | None,
    action_request_id: str | None,
    source: str,
    spec: dict[str, Any],
    action_hash: str,
    risk_score: float,
    reason: str,
    request: dict[str, Any] | None,
    roles: tuple[str, ...] | list[str],
    timeout_seconds: int,
    now: float,
) -> dict[str, Any]:
    """A new pending approval's row (not inserted: `create_approval` inserts one)."""
    return {
        "id": new_id("apv_"),
        "status": "pending",
        "agent": agent,
        "connector": connector,
        "action_request_id": action_request_id,
        "source": source,
        "action_spec": json.dumps(spec, sort_keys=True),
        "action_hash": action_hash,
        "risk_score": risk_score,
        "reason": reason,
        "request": json.dumps(request) if request else None,
        "required_approver_roles": json.dumps(list(roles) or list(DEFAULT_ROLES)),
        "created_at": now,
        "expires_at": now + timeout_seconds,
        "decided_at": None,
        "decided_by": None,
        "note": None,
        "used": False,
        "slack_channel": None,
        "slack_ts": None,
    }


def get_approval(conn: Connection, approval_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(approvals).where(approvals.c.id == approval_id)).first()
    return dict(row._mapping) if row else None


def get_approvals(conn: Connection, approval_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The approvals among `approval_ids` that exist, by id (one query)."""
    rows = conn.execute(select(approvals).where(approvals.c.id.in_(approval_ids)))
    return {row.id: dict(row._mapping) for row in rows}


def _finish(
    conn: Connection,
    row: dict[str, Any],
    status: str,
    *,
    by: str | None,
    note: str | None,
    now: float,
    event: str,
) -> dict[str, Any]:
    return _finish_all(conn, [row], status, by=by, note=note, now=now, event=event)[0]


def _finish_all(
    conn: Connection,
    rows: list[dict[str, Any]],
    status: str,
    *,
    by: str | None,
    note: str | None,
    now: float,
    event: str,
) -> list[dict[str, Any]]:
    """Decide pending `rows` alike: an UPDATE per table and `CHUNK` rows, one audit insert
    (an event per approval); their action requests (SDK) move to their final status."""
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK]
        conn.execute(
            update(approvals)
            .where(approvals.c.id.in_([r["id"] for r in part]), approvals.c.status == "pending")
            .values(status=status, decided_at=now, decided_by=by, note=note)
        )
        linked = [r["action_request_id"] for r in part if r["action_request_id"]]
        if linked:
            conn.execute(
                update(action_requests)
                .where(action_requests.c.id.in_(linked))
                .values(status=_FINAL_ACTION[status], updated_at=now)
            )
        for action_id in linked:
            if status != "approved":  # what it reserved from budgets returns to them
                finish_spend(conn, action_id, ok=False, now=now)
            else:  # it happens from now: a rolling window counts it from the approval
                redate_spend(conn, action_id, now=now)
    append_events(conn, [_event(row, status, event, by=by, note=note, now=now) for row in rows])
    decided = {"status": status, "decided_at": now, "decided_by": by, "note": note}
    return [{**row, **decided} for row in rows]


def _event(
    row: dict[str, Any], status: str, event: str, *, by: str | None, note: str | None, now: float
) -> dict[str, Any]:
    return prepare_event(
        event,
        actor=by or "system",
        now=now,
        agent=row["agent"],
        subject=row["id"],
        data={
            "status": status,
            "note": note,
            "action_request_id": row["action_request_id"],
            "action_type": json.loads(row["action_spec"])["type"],
        },
    )


def _check_role(row: dict[str, Any], role: str | None) -> None:
    roles: list[str] = json.loads(row["required_approver_roles"])
    mine = role or "viewer"
    if may_approve(mine, roles):
        return
    needed = min(roles, key=lambda r: ROLES.get(r, 99)) if roles else "member"
    raise ApiError(
        403,
        f"approving this needs one of the roles {', '.join(roles)}; you are {mine}",
        required_role=needed,
        your_role=mine,
    )


def decide_approval(
    conn: Connection,
    approval_id: str,
    *,
    approve: bool,
    by: str,
    role: str | None,
    note: str | None,
    now: float,
) -> dict[str, Any]:
    """Approve or deny once; 404 unknown, 403 role, 409 already decided or expired, and
    409 to approve what a kill switch covers or what a suspended or revoked agent asked."""
    row = get_approval(conn, approval_id)
    if row is None:
        raise ApiError(404, f"no approval `{approval_id}`")
    if row["status"] == "pending" and row["expires_at"] <= now:
        _finish(conn, row, "expired", by=None, note="timed out", now=now, event="approval.expired")
        raise ApiError(409, f"approval `{approval_id}` has expired", approval_status="expired")
    if row["status"] != "pending":
        raise ApiError(
            409,
            f"approval `{approval_id}` was already {row['status']}",
            approval_status=row["status"],
        )
    _check_role(row, role)
    if approve:
        _check_approvable(conn, row)
    status = "approved" if approve else "denied"
    return _finish(conn, row, status, by=by, note=note, now=now, event="approval.responded")


def _check_approvable(conn: Connection, row: dict[str, Any]) -> None:
    """409 when approving `row` would let stopped traffic through: a stored kill switch
    covers it (the sweep is denying it), or its agent is suspended or revoked. Read in the
    writer's transaction, so no snapshot, however outdated, decides it."""
    label = stored_switch(conn, row)
    if label is not None:
        raise ApiError(
            409,
            f"approval `{row['id']}` cannot be approved while the kill switch `{label}` "
            "covers it: it is denied",
            kill_switch=label,
        )
    status = _inactive(conn, [row["agent"]]).get(row["agent"])
    if status is not None:
        raise ApiError(
            409,
            f"approval `{row['id']}` cannot be approved: agent `{row['agent']}` is {status} "
            "(its pending approvals are denied; once it is active, it asks again)",
            agent_status=status,
        )


def stored_switch(conn: Connection, row: Mapping[str, Any]) -> str | None:
    """The label (``all``, ``agent:NAME``, ``connector:NAME``) of a stored kill switch that
    covers `row` (an approval, or an SDK action with ``connector`` None: its ``agent`` and
    its ``action_spec``'s provider, see `_matches`), read in the caller's transaction: no
    replica's snapshot, however outdated, decides it."""
    switches = _switches(conn)
    through = _executed_by(conn, switches)
    switch = next((k for k in switches if _matches(row, k.scope, k.target, through)), None)
    if switch is None:
        return None
    return "all" if switch.scope == "all" else f"{switch.scope}:{switch.target}"


def expire_due(conn: Connection, now: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(approvals)
        .where(approvals.c.status == "pending", approvals.c.expires_at <= now)
        .limit(CHUNK)
    ).all()
    found = [dict(r._mapping) for r in rows]
    return _finish_all(
        conn, found, "expired", by=None, note="timed out", now=now, event="approval.expired"
    )


def _switches(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(select(kill_switches).order_by(kill_switches.c.activated_at)))


def _executed_by(conn: Connection, switches: list[Row[Any]]) -> dict[str, set[str]]:
    """Connector type -> the ids and names of its stored connectors, through which the
    control plane executes an SDK action on that provider (executor.py); read only when a
    connector's kill switch is stored."""
    found: dict[str, set[str]] = {}
    if any(k.scope == "connector" for k in switches):
        query = select(connectors.c.type, connectors.c.id, connectors.c.name)
        for ctype, ident, name in conn.execute(query):
            found.setdefault(ctype, set()).update((ident, name))
    return found


def _matches(
    row: Mapping[str, Any], scope: str, target: str | None, through: dict[str, set[str]]
) -> bool:
    """Whether a switch covers `row`. A connector's switch names its type, or a configured
    connector by id or name: an SDK action (an action row, or an approval of ``source``
    ``sdk``) runs through the connectors of its provider's type (`through`), so a switch on
    any of them covers it, as the gateway's covers the traffic through that connector."""
    if scope == "all":
        return True
    if scope == "agent":
        return bool(row["agent"] == target)
    spec = json.loads(row["action_spec"])
    provider = (spec.get("resource") or {}).get("provider") or spec["type"].split(".")[0]
    if target in (row["connector"], provider):
        return True
    return row.get("source", "sdk") == "sdk" and target in through.get(provider, ())


def _inactive(conn: Connection, names: list[str]) -> dict[str, str]:
    """Of `names`, those with agents none of which is active: name -> `suspended` or
    `revoked` (a name a revoked agent had may belong to a new one)."""
    found: dict[str, set[str]] = {}
    for part in range(0, len(names), CHUNK):
        query = select(agents.c.name, agents.c.status).where(
            agents.c.name.in_(names[part : part + CHUNK])
        )
        for name, status in conn.execute(query):
            found.setdefault(name, set()).add(status)
    return {
        name: "suspended" if "suspended" in statuses else "revoked"
        for name, statuses in found.items()
        if "active" not in statuses
    }


def _switch_note(scope: str, target: str | None) -> str:
    return f"kill switch activated ({scope}{': ' + target if target else ''})"


def _candidates(switches: list[Row[Any]]) -> ColumnElement[bool]:
    """SQL for (at least) the approvals `switches` or an agent not active may cover;
    `_matches` and `_inactive` decide. A connector's name may be the action's provider,
    read from its JSON: any approval that mentions it is a candidate; so is one on the type
    of a stored connector the switch names by id or name."""
    if any(k.scope == "all" for k in switches):
        return true()
    active = select(agents.c.name).where(agents.c.status == "active")
    inactive = select(agents.c.name).where(agents.c.status != "active")
    clauses: list[ColumnElement[bool]] = [
        approvals.c.agent.in_(inactive) & approvals.c.agent.not_in(active)
    ]
    for k in switches:
        if k.scope == "agent":
            clauses.append(approvals.c.agent == k.target)
        else:
            clauses.append(approvals.c.connector == k.target)
            clauses.append(approvals.c.action_spec.contains(k.target, autoescape=True))
            named = (connectors.c.id == k.target) | (connectors.c.name == k.target)
            clauses.append(approvals.c.connector.in_(select(connectors.c.type).where(named)))
    return or_(*clauses)


_Page = tuple[list[dict[str, Any]], str | None]


def deny_covered(
    conn: Connection,
    now: float,
    *,
    after: str = "",
    limit: int = CHUNK,
    switched_before: float = math.inf,
) -> _Page:
    """A page of the sweep: deny the pending approvals a stored kill switch activated
    before `switched_before` covers (by whoever activated it) or whose agent is not active,
    among the next `limit` candidates by id after `after`. Returns the rows denied and
    where the next page starts (None: at the end)."""
    switches = [k for k in _switches(conn) if k.activated_at < switched_before]
    through = _executed_by(conn, switches)
    rows = [
        dict(r._mapping)
        for r in conn.execute(
            select(approvals)
            .where(approvals.c.status == "pending", approvals.c.id > after, _candidates(switches))
            .order_by(approvals.c.id)
            .limit(limit)
        )
    ]
    inactive = _inactive(conn, sorted({r["agent"] for r in rows}))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        switch = next((k for k in switches if _matches(row, k.scope, k.target, through)), None)
        if switch is not None:
            key = (switch.activated_by, _switch_note(switch.scope, switch.target))
        elif row["agent"] in inactive:
            key = ("system", f"agent `{row['agent']}` {inactive[row['agent']]}")
        else:
            continue
        groups.setdefault(key, []).append(row)
    denied = [
        decided
        for (by, note), group in groups.items()
        for decided in _finish_all(
            conn, group, "denied", by=by, note=note, now=now, event="approval.responded"
        )
    ]
    return denied, (rows[-1]["id"] if len(rows) == limit else None)


def _sweep_page(after: str, *, backstop: bool = False) -> Callable[[Connection], _Page]:
    """A page of the sweep as a writer job; the `backstop` (the expiry loop) leaves a
    switch's approvals to the request activating it for `_BACKSTOP_SECONDS`."""
    from agentfirewall_server.clock import now

    def job(conn: Connection) -> _Page:
        stamp = now()
        before = stamp - _BACKSTOP_SECONDS if backstop else math.inf
        return deny_covered(conn, stamp, after=after, switched_before=before)

    return job


def _any_pending(conn: Connection) -> bool:
    query = select(approvals.c.id).where(approvals.c.status == "pending").limit(1)
    return conn.execute(query).first() is not None


def _expiry_tick(
    after: str,
) -> Callable[[Connection], tuple[list[dict[str, Any]], _Page]]:
    """The expiry loop's writer job: expire what is due, then a backstop page of the
    sweep, in one transaction."""
    from agentfirewall_server.clock import now

    sweep = _sweep_page(after, backstop=True)

    def job(conn: Connection) -> tuple[list[dict[str, Any]], _Page]:
        return expire_due(conn, now()), sweep(conn)

    return job


async def sweep_covered(state: Services) -> int:
    """`deny_covered`, page after page (a writer job each) to the end, each page published;
    how many were denied."""
    count, after = 0, ""
    while True:
        denied, cursor = await state.db.write(_sweep_page(after))
        await publish_decided(state, denied)
        count += len(denied)
        if cursor is None:
            return count
        after = cursor


def deny_of_agent(
    conn: Connection, agent: str, *, by: str, note: str, now: float
) -> list[dict[str, Any]]:
    """Deny every pending approval of `agent` (suspended or removed)."""
    rows = conn.execute(
        select(approvals).where(approvals.c.status == "pending", approvals.c.agent == agent)
    ).all()
    found = [dict(r._mapping) for r in rows]
    return _finish_all(conn, found, "denied", by=by, note=note, now=now, event="approval.responded")


async def publish_decided(state: Services, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        data = approval_json(row)
        state.hub.publish("approval.decided", data)
        if data["status"] == "approved":
            m = state.metrics
            m.approved.labels(row["agent"], m.connector_label(row["connector"] or "")).inc()
        await state.slack.on_decided(row)
    if rows:
        await refresh_pending_gauge(state)


async def refresh_pending_gauge(state: Services) -> None:
    from sqlalchemy import func

    count = await state.db.read(
        lambda c: c.execute(
            select(func.count()).select_from(approvals).where(approvals.c.status == "pending")
        ).scalar_one()
    )
    state.metrics.approvals_pending.set(count)


def prune(conn: Connection, now: float) -> None:
    """Forget used token nonces and sessions that have expired (a token past `exp` is refused
    by its signature check anyway, so its nonce is no longer needed)."""
    from sqlalchemy import delete

    from agentfirewall_server.store.schema import sessions, used_nonces

    conn.execute(delete(used_nonces).where(used_nonces.c.expires_at < now - 3600))
    conn.execute(delete(sessions).where(sessions.c.expires_at < now))


async def expiry_loop(state: Services, interval: float = 1.0) -> None:
    """About once a second, when any approval is pending: one writer job that expires
    those past their deadline and denies a page of those the sweep covers (`deny_covered`;
    the next page on the next tick, from the first again after the last). An idle store
    costs a read a second, no write. Prunes hourly."""
    from agentfirewall_server.clock import now
    from agentfirewall_server.replaystore import prune_inputs_job

    await refresh_pending_gauge(state)
    ticks, after = 0, ""
    while True:
        await asyncio.sleep(interval)
        ticks += 1
        try:
            if await state.db.read(_any_pending):
                expired, (denied, cursor) = await state.db.write(_expiry_tick(after))
                await publish_decided(state, expired + denied)
                after = cursor or ""
            else:
                after = ""
            if ticks % 3600 == 1:
                await state.db.write(lambda c: prune(c, now()))
                await state.db.write(prune_inputs_job(state.settings))
        except Exception:
            log.warning("approval expiry sweep failed", exc_info=True)
