"""Approvals: durable, decided once, expiring, auto-denied by a kill switch.

Every function that changes an approval runs inside the store's writer transaction and
also moves the linked action request (SDK mode) to its final status, with audit events,
so a crash never leaves the two disagreeing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from agentfirewall_server.actionstore import finish_spend, redate_spend
from agentfirewall_server.audit import append_event
from agentfirewall_server.clock import new_id, rfc3339
from agentfirewall_server.roles import DEFAULT_ROLES, ROLES, may_approve
from agentfirewall_server.store.schema import action_requests, approvals
from agentfirewall_server.web import ApiError

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = [
    "DEFAULT_ROLES",
    "approval_json",
    "approval_row",
    "create_approval",
    "decide_approval",
    "deny_for_kill_switch",
    "expire_due",
    "expiry_loop",
    "get_approval",
]

log = logging.getLogger("agentfirewall_server")
_FINAL_ACTION = {"approved": "allowed", "denied": "denied", "expired": "expired"}


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
    conn.execute(
        update(approvals)
        .where(approvals.c.id == row["id"], approvals.c.status == "pending")
        .values(status=status, decided_at=now, decided_by=by, note=note)
    )
    if row["action_request_id"]:
        conn.execute(
            update(action_requests)
            .where(action_requests.c.id == row["action_request_id"])
            .values(status=_FINAL_ACTION[status], updated_at=now)
        )
        if status != "approved":  # what it reserved from budgets returns to them
            finish_spend(conn, row["action_request_id"], ok=False, now=now)
        else:  # it happens from now: a rolling window counts it from the approval
            redate_spend(conn, row["action_request_id"], now=now)
    append_event(
        conn,
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
    return {**row, "status": status, "decided_at": now, "decided_by": by, "note": note}


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
    """Approve or deny once; 404 unknown, 403 role, 409 already decided or expired."""
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
    status = "approved" if approve else "denied"
    return _finish(conn, row, status, by=by, note=note, now=now, event="approval.responded")


def expire_due(conn: Connection, now: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(approvals)
        .where(approvals.c.status == "pending", approvals.c.expires_at <= now)
        .limit(500)
    ).all()
    return [
        _finish(
            conn,
            dict(r._mapping),
            "expired",
            by=None,
            note="timed out",
            now=now,
            event="approval.expired",
        )
        for r in rows
    ]


def _matches(row: dict[str, Any], scope: str, target: str | None) -> bool:
    if scope == "all":
        return True
    if scope == "agent":
        return bool(row["agent"] == target)
    spec = json.loads(row["action_spec"])
    provider = (spec.get("resource") or {}).get("provider") or spec["type"].split(".")[0]
    return target in (row["connector"], provider)


def deny_for_kill_switch(
    conn: Connection,
    scope: str,
    target: str | None,
    *,
    by: str,
    now: float,
    note: str | None = None,
) -> list[dict[str, Any]]:
    """Deny every pending approval the kill switch covers (or that `note` explains)."""
    rows = conn.execute(select(approvals).where(approvals.c.status == "pending")).all()
    note = note or f"kill switch activated ({scope}{': ' + target if target else ''})"
    return [
        _finish(
            conn, dict(r._mapping), "denied", by=by, note=note, now=now, event="approval.responded"
        )
        for r in rows
        if _matches(dict(r._mapping), scope, target)
    ]


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
    """Expire pending approvals past their deadline about once a second; prune hourly."""
    from agentfirewall_server.clock import now
    from agentfirewall_server.replaystore import prune_inputs_job

    await refresh_pending_gauge(state)
    ticks = 0
    while True:
        await asyncio.sleep(interval)
        ticks += 1
        try:
            expired = await state.db.write(lambda c: expire_due(c, now()))
            await publish_decided(state, expired)
            if ticks % 3600 == 1:
                await state.db.write(lambda c: prune(c, now()))
                await state.db.write(prune_inputs_job(state.settings))
        except Exception:
            log.warning("approval expiry sweep failed", exc_info=True)
