"""Budget leases: a gateway spends from a slice of a budget without a call per request.

A gateway asks for a lease when a request its slices cannot cover arrives: in one
transaction (the budgets' rows locked, as for a reservation: ``budgetstore.reserve``)
the control plane checks the request fits, then sets aside the request's amount plus an
extra slice (what the gateway asked for, at most a quarter of what would remain: slices
shrink as the budget nears its limit, down to the request alone). The lease is a
``budget_usage`` row in state ``leased``: it counts against the budget in full until the
gateway reports what it spent.

The gateway reports cumulative totals per lease (spent per agent, freed), so a report
sent twice changes nothing: each report moves the new spend into ``settled`` rows (per
agent) and the new freed amount into a ``released`` row, and shrinks the lease row by
both; ``done`` closes the lease (what is left returns to the budget).

Windows: a lease row is dated at its expiry (the latest moment the gateway may spend
from it, capped inside a calendar window), and spend rows at the report's time (capped at
the expiry), never earlier than the spend itself: a rolling window counts the spend at
least as long as it should. A gateway that dies keeps its lease counted until the window
moves past it: its unreported spend cannot be told from its unspent slice (never
overspend).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from agentfirewall.budgets import CompiledBudget, refusal, window_end, window_start
from agentfirewall_server.budgetstore import Refused, lock_budgets, used_in_window
from agentfirewall_server.clock import new_id
from agentfirewall_server.store.schema import budget_usage

__all__ = [
    "Granted",
    "LeaseReport",
    "budget_attributes",
    "could_fit",
    "grant",
    "report",
    "split_usage",
]

#: A slice is at most this share of what would remain after the request.
SHARE = 0.25
#: A lease lives this long (seconds); the gateway asks again after.
TTL = 10.0


@dataclass(frozen=True, slots=True)
class Granted:
    """Per budget name: (lease id, amount set aside, seconds it may be spent from)."""

    leases: dict[str, tuple[str, float, float]]
    remaining: dict[str, float]


@dataclass(frozen=True, slots=True)
class LeaseReport:
    lease: str
    #: Cumulative spend per agent since the lease was granted.
    spent: dict[str, float]
    #: Cumulative amount handed back (unspent, or released by a failed upstream call).
    freed: float
    done: bool


def grant(
    conn: Connection,
    covered: list[tuple[CompiledBudget, float]],
    *,
    agent: str,
    want: dict[str, float],
    now: float,
) -> Refused | Granted:
    """Lease each covered budget's `amount` plus up to ``want[name]`` more, or refuse.

    Refused by the core's rule, as a reservation is (``agentfirewall.budgets.refusal``):
    past several budgets a ``deny`` one wins; an LLM budget refuses once nothing remains."""
    ordered = lock_budgets(conn, covered)
    used = {budget.name: used_in_window(conn, budget, now) for budget, _ in ordered}
    refused = refusal(ordered, used, force=False)
    if refused is not None:
        return refused
    leases: dict[str, tuple[str, float, float]] = {}
    remaining: dict[str, float] = {}
    rows = []
    for budget, amount in ordered:
        d = budget.definition
        free = d.limit - used[d.name] - amount
        extra = max(0.0, min(want.get(d.name, 0.0), free * SHARE))
        if amount > 0:  # whole requests of this size (a third of a request serves none)
            extra = math.floor(extra / amount) * amount
        expires = now + TTL
        end = window_end(d, now)
        if end is not None:
            expires = max(min(expires, end - 0.001), now)  # spent inside this window
        ident = new_id("lse_")
        rows.append({"budget_id": budget.id, "reservation": ident, "agent": agent,
                     "amount": amount + extra, "state": "leased", "request_id": None,
                     "created_at": expires, "settled_at": None})  # fmt: skip
        leases[d.name] = (ident, amount + extra, expires - now)
        remaining[d.name] = free - extra
    conn.execute(budget_usage.insert(), rows)
    return Granted(leases, remaining)


def could_fit(conn: Connection, budget: CompiledBudget, amount: float, now: float) -> bool:
    """Whether `amount` would fit once the live leases of `budget` come back (a refusal
    then says ``retry``: the gateways hand idle slices back within a second)."""
    held = conn.execute(
        select(func.coalesce(func.sum(budget_usage.c.amount), 0.0)).where(
            budget_usage.c.budget_id == budget.id,
            budget_usage.c.state == "leased",
            budget_usage.c.created_at >= now,  # not expired (a dead gateway's: no waiting)
        )
    ).scalar_one()
    used = used_in_window(conn, budget, now)
    return bool(held) and used - float(held) + amount <= budget.definition.limit


def report(conn: Connection, items: list[LeaseReport], now: float) -> int:
    """Apply cumulative lease reports; the number of leases that changed."""
    changed = 0
    for item in items:
        lease = conn.execute(
            select(budget_usage.c.id, budget_usage.c.budget_id, budget_usage.c.amount,
                   budget_usage.c.created_at)
            .where(budget_usage.c.reservation == item.lease, budget_usage.c.state == "leased")
            .with_for_update()
        ).first()  # fmt: skip
        if lease is None:
            continue  # unknown, closed already (a report sent twice) or its budget removed
        before = dict(
            conn.execute(
                select(budget_usage.c.agent, func.sum(budget_usage.c.amount))
                .where(budget_usage.c.reservation == item.lease, budget_usage.c.state == "settled")
                .group_by(budget_usage.c.agent)
            ).all()
        )
        freed_before = conn.execute(
            select(func.coalesce(func.sum(budget_usage.c.amount), 0.0)).where(
                budget_usage.c.reservation == item.lease,
                budget_usage.c.state == "released",
                budget_usage.c.id != lease.id,
            )
        ).scalar_one()
        stamp = min(now, lease.created_at)
        rows: list[dict[str, Any]] = []
        for agent, total in item.spent.items():
            delta = total - float(before.get(agent) or 0.0)
            if delta > 0:
                rows.append(_row(lease.budget_id, item.lease, agent, delta, "settled", stamp, now))
        freed = item.freed - float(freed_before)
        if freed > 0:
            rows.append(_row(lease.budget_id, item.lease, "", freed, "released", stamp, now))
        if rows:
            conn.execute(budget_usage.insert(), rows)
        left = max(0.0, lease.amount - sum(r["amount"] for r in rows))
        values: dict[str, Any] = {"amount": left}
        if item.done:
            values.update(state="released", settled_at=now)
        if rows or item.done:
            conn.execute(update(budget_usage).where(budget_usage.c.id == lease.id).values(**values))
            changed += 1
    return changed


def _row(
    budget_id: str, lease: str, agent: str, amount: float, state: str, at: float, now: float
) -> dict[str, Any]:
    return {"budget_id": budget_id, "reservation": lease, "agent": agent, "amount": amount,
            "state": state, "request_id": None, "created_at": at, "settled_at": now}  # fmt: skip


def budget_attributes(
    conn: Connection, budgets: Iterable[CompiledBudget], now: float
) -> dict[str, float]:
    """``budget.<name>.used`` and ``.remaining`` of each budget, for policy conditions
    (what the leased slices hold counts as gone)."""
    values: dict[str, float] = {}
    for budget in budgets:
        used, leased = split_usage(conn, budget, now)
        values[f"budget.{budget.name}.used"] = used
        values[f"budget.{budget.name}.remaining"] = budget.definition.limit - used - leased
    return values


def split_usage(conn: Connection, budget: CompiledBudget, now: float) -> tuple[float, float]:
    """(spent, leased) in the current window: what requests spent (reservations in flight
    included), and what the gateways' slices hold unspent or unreported."""
    total = used_in_window(conn, budget, now)
    leased = conn.execute(
        select(func.coalesce(func.sum(budget_usage.c.amount), 0.0)).where(
            budget_usage.c.budget_id == budget.id,
            budget_usage.c.created_at >= window_start(budget.definition, now),
            budget_usage.c.state == "leased",
        )
    ).scalar_one()
    return total - float(leased), float(leased)
