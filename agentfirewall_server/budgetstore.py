"""Budget usage in the store: reserve before forwarding, settle after the response.

Every function runs inside the writer's transaction (``Database.write``). A reservation
locks the rows of the budgets it covers (``SELECT ... FOR UPDATE`` on PostgreSQL, so
replicas sharing one database queue up; SQLite's ``BEGIN IMMEDIATE`` serialises writers
already), sums the window's usage, and inserts its own usage rows only when every budget
has room: concurrent requests never overspend. Settling marks the rows ``settled`` (with
the measured amount for LLM budgets) or ``released`` (the upstream failed or refused:
the amount returns to the budget). A reservation never settled (its gateway died while
forwarding) keeps counting: the request may have happened.

Windows: a row counts in a window by its ``created_at``. A reservation is dated when it is
made, and dated again when it is settled (``settle``) or its action approved (``redate``):
usage is counted from the moment it is known spent, never before, so a 78-second stream,
or an action a human approved an hour after it asked, still counts in a rolling window
as long as it should.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, update

from agentfirewall.budgets import (
    LLM_MEASURES,
    CompiledBudget,
    Refused,
    exceeded,
    fits,
    refusal,
    window_end,
    window_start,
)
from agentfirewall_server.clock import new_id, rfc3339
from agentfirewall_server.llmprices import MAX_TOKENS, cost_of, tokens_of
from agentfirewall_server.store.schema import budget_usage, budgets

__all__ = [
    "Refused",
    "Reserved",
    "budget_state",
    "exceeded",
    "fits",
    "lock_budgets",
    "redate",
    "reserve",
    "settle",
    "used_in_window",
]

log = logging.getLogger("agentfirewall_server")


@dataclass(frozen=True, slots=True)
class Reserved:
    """`reservation` is None when no budget covers the request, or nothing was recorded
    (a dry run: ``reserve(record=False)``)."""

    reservation: str | None
    remaining: dict[str, float]
    #: what each budget had used in its window before this request
    used: dict[str, float] = field(default_factory=dict)


def used_in_window(conn: Connection, budget: CompiledBudget, now: float) -> float:
    start = window_start(budget.definition, now)
    total = conn.execute(
        select(func.coalesce(func.sum(budget_usage.c.amount), 0.0)).where(
            budget_usage.c.budget_id == budget.id,
            budget_usage.c.created_at >= start,
            budget_usage.c.state != "released",
        )
    ).scalar_one()
    return float(total)


def lock_budgets(
    conn: Connection, covered: list[tuple[CompiledBudget, float]], *, lock: bool = True
) -> list[tuple[CompiledBudget, float]]:
    """Lock the covered budgets' rows (FOR UPDATE on PostgreSQL; SQLite's writer is one) in
    one order, so two writers never deadlock; the covered pairs in that order (`lock`
    False: the order only, for a read that reserves nothing)."""
    ordered = sorted(covered, key=lambda item: item[0].id)
    if lock:
        ids = [b.id for b, _ in ordered]
        conn.execute(select(budgets.c.id).where(budgets.c.id.in_(ids)).with_for_update())
    return ordered


def reserve(
    conn: Connection,
    covered: list[tuple[CompiledBudget, float]],
    *,
    agent: str,
    request_id: str | None,
    force: bool,
    now: float,
    record: bool = True,
) -> Refused | Reserved:
    """Reserve `amount` from each covered budget, or refuse naming the budget.

    Past several budgets, a ``deny`` one wins over ``require_approval``. `force` (a human
    approved going past a ``require_approval`` budget) records the spend regardless.
    `record` False (a dry run) answers the same without locking or writing anything.
    """
    if not covered:
        return Reserved(None, {})
    ordered = lock_budgets(conn, covered, lock=record)
    usage = {budget.name: used_in_window(conn, budget, now) for budget, _ in ordered}
    refused = refusal(ordered, usage, force=force)  # the core's rule (agentfirewall.budgets)
    if refused is not None:
        return refused
    remaining = {b.name: b.definition.limit - usage[b.name] - amount for b, amount in ordered}
    if not record:
        return Reserved(None, remaining, usage)
    reservation = new_id("rsv_")
    conn.execute(
        budget_usage.insert(),
        [
            {
                "budget_id": budget.id,
                "reservation": reservation,
                "agent": agent,
                "amount": amount,
                "state": "reserved",
                "request_id": request_id,
                "created_at": now,
                "settled_at": None,
            }
            for budget, amount in ordered
        ],
    )
    return Reserved(reservation, remaining, usage)


def settle(
    conn: Connection,
    reservation: str,
    by_id: dict[str, CompiledBudget],
    *,
    ok: bool,
    usage: dict[str, Any] | None,
    model: str | None,
    prices: dict[str, Any],
    now: float,
) -> int:
    """Settle (`ok`) or release a reservation; the rows changed (0: unknown or done).

    Settled usage is dated when it settles (if that is later than the reservation): the
    usage of a long request is known only now, and a rolling window must count it from
    here, not from when the request began (it could fall out of the window at once)."""
    rows = conn.execute(
        select(budget_usage.c.id, budget_usage.c.budget_id, budget_usage.c.created_at).where(
            budget_usage.c.reservation == reservation, budget_usage.c.state == "reserved"
        )
    ).all()
    for row in rows:
        values: dict[str, Any] = {"state": "settled" if ok else "released", "settled_at": now}
        if ok and now > row.created_at:
            values["created_at"] = now
        budget = by_id.get(row.budget_id)
        if ok and budget is not None and budget.definition.measure in LLM_MEASURES:
            values["amount"] = _measured(budget, reservation, usage, model, prices)
        conn.execute(update(budget_usage).where(budget_usage.c.id == row.id).values(**values))
    return len(rows)


def redate(conn: Connection, reservation: str, now: float) -> int:
    """Count a reservation still in flight from `now` on (an action a human approved: it
    happens from now, however long it waited); the rows changed."""
    done = conn.execute(
        update(budget_usage)
        .where(
            budget_usage.c.reservation == reservation,
            budget_usage.c.state == "reserved",
            budget_usage.c.created_at < now,
        )
        .values(created_at=now)
    )
    return int(done.rowcount or 0)


def _measured(
    budget: CompiledBudget,
    reservation: str,
    usage: dict[str, Any] | None,
    model: str | None,
    prices: dict[str, Any],
) -> float:
    if not usage:
        return 0.0
    odd: list[str] = []
    if budget.definition.measure == "tokens":
        given, out = tokens_of(usage, odd)
        amount = float(given + out)
    else:
        amount = cost_of(prices, model or "", usage, odd)
    if odd:  # (the field names only: the values are the upstream's, whatever they hold)
        log.warning("budget `%s`: reservation %s: usage %s not a token count: read as %d",
                    budget.name, reservation, ", ".join(odd), MAX_TOKENS)  # fmt: skip
    return amount


def budget_state(conn: Connection, budget: CompiledBudget, now: float) -> dict[str, Any]:
    """Used, remaining, in flight, spend per agent and a burn-down of the current window.

    `used` is what requests spent (reservations in flight included); `leased` what the
    gateways' slices set aside and have not reported spent yet (``budgetleases.py``);
    `remaining` is what is left after both."""
    d = budget.definition
    start = window_start(d, now)
    rows = conn.execute(
        select(
            budget_usage.c.agent,
            budget_usage.c.amount,
            budget_usage.c.state,
            budget_usage.c.created_at,
        )
        .where(
            budget_usage.c.budget_id == budget.id,
            budget_usage.c.created_at >= start,
            budget_usage.c.state != "released",
        )
        .order_by(budget_usage.c.created_at)
    ).all()
    by_agent: dict[str, float] = {}
    used = in_flight = leased = 0.0
    points: list[dict[str, Any]] = []
    step = max(len(rows) // 200, 1)  # at most about 200 points
    for index, row in enumerate(rows):
        if row.state == "leased":  # a gateway's slice: set aside, not spent yet
            leased += row.amount
        else:
            used += row.amount
            by_agent[row.agent] = by_agent.get(row.agent, 0.0) + row.amount
        if row.state in ("reserved", "leased"):
            in_flight += row.amount
        if index % step == 0 or index == len(rows) - 1:
            points.append({"at": rfc3339(row.created_at), "remaining": d.limit - used - leased})
    return {
        "used": used,
        "leased": leased,
        "remaining": d.limit - used - leased,
        "in_flight": in_flight,
        "requests": sum(1 for row in rows if row.state != "leased"),
        "window_start": rfc3339(start),
        "resets_at": rfc3339(window_end(d, now)),
        "by_agent": dict(sorted(by_agent.items(), key=lambda kv: -kv[1])),
        "burn_down": points,
    }
