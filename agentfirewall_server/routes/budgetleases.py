"""Budget leases for the gateway (``budgetleases.py``): take a slice, report spending.

``POST /api/v1/gateway/budgets/lease`` checks a request against the budgets covering it
and, when it fits, leases each one's amount plus an extra slice the gateway spends from
without asking again; ``POST /api/v1/gateway/budgets/leases/report`` takes cumulative
spend per lease (safe to send twice) and closes the leases a gateway is done with.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, JsonValue, field_validator
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.budgets import NAME_PATTERN
from agentfirewall_server.auth import require_gateway, state_of
from agentfirewall_server.budgetleases import Granted, LeaseReport, could_fit, grant, report
from agentfirewall_server.budgetstore import Refused
from agentfirewall_server.clock import now
from agentfirewall_server.routes.budgets import Member, covered_request
from agentfirewall_server.web import Strict, json_ok, read_model

__all__ = ["routes"]

_Amount = Annotated[float, Field(ge=0, le=1e15)]
_Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _finite(values: dict[str, float]) -> dict[str, float]:
    if not all(math.isfinite(v) for v in values.values()):
        raise ValueError("amounts must be finite numbers")
    return values


class ReportItem(Strict):
    lease: str = Field(min_length=1, max_length=40)
    spent: dict[Annotated[str, Field(max_length=200)], _Amount] = Field(max_length=1000)
    freed: _Amount = 0.0
    done: bool = False

    _spent = field_validator("spent")(classmethod(lambda cls, v: _finite(v)))


class LeaseBody(Strict):
    agent: str = Field(min_length=1, max_length=200)
    connector: str = Field(min_length=1, max_length=80)
    action: str = Field(min_length=1, max_length=600)
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    #: Each action of a request of several (as for a reservation, ``routes/budgets.py``).
    members: list[Member] | None = Field(default=None, min_length=1, max_length=100)
    #: How much more than this request the gateway would like to spend from, per budget.
    want: dict[_Name, _Amount] = Field(default_factory=dict, max_length=100)
    #: The gateway's old slices of these budgets, handed back before the new lease.
    handback: list[ReportItem] = Field(default_factory=list, max_length=100)

    _want = field_validator("want")(classmethod(lambda cls, v: _finite(v)))


class ReportBody(Strict):
    reports: list[ReportItem] = Field(max_length=1000)


def _reports(raw: list[ReportItem]) -> list[LeaseReport]:
    return [LeaseReport(r.lease, dict(r.spent), r.freed, r.done) for r in raw]


def _refusal(result: Refused, retry: bool) -> JSONResponse:
    refused = {"budget": result.budget, "outcome": result.outcome, "reason": result.reason,
               "retry": retry}  # fmt: skip
    return json_ok({"leases": {}, "refused": refused, "remaining": {}})


async def gateway_lease(request: Request) -> JSONResponse:
    await require_gateway(request)
    body = await read_model(request, LeaseBody)
    state = state_of(request)
    covered = covered_request(state, body.agent, body.connector, body.action, body.parameters,
                              body.members)  # fmt: skip
    if isinstance(covered, Refused):
        state.metrics.budget_refusals.labels(covered.budget, covered.outcome).inc()
        return _refusal(covered, False)
    if not covered:
        return json_ok({"leases": {}, "refused": None, "remaining": {}})
    stamp, agent, want = now(), body.agent, dict(body.want)
    amounts = {b.name: amount for b, amount in covered}
    handback = _reports(body.handback)

    def job(conn: Connection) -> tuple[Refused | Granted, bool]:
        report(conn, handback, stamp)
        result = grant(conn, covered, agent=agent, want=want, now=stamp)
        if isinstance(result, Refused):
            budget = next(b for b, _ in covered if b.name == result.budget)
            return result, could_fit(conn, budget, amounts[budget.name], stamp)
        return result, False

    result, retry = await state.db.write(job)
    if isinstance(result, Refused):
        if not retry:
            state.metrics.budget_refusals.labels(result.budget, result.outcome).inc()
        return _refusal(result, retry)
    for budget, _ in covered:
        used = budget.definition.limit - result.remaining[budget.name]
        state.metrics.budget_used.labels(budget.name).set(used)
        state.metrics.budget_limit.labels(budget.name).set(budget.definition.limit)
    ids = {b.name: b.key for b, _ in covered}
    leases = {name: {"lease": ident, "budget": ids[name], "amount": amount,
                     "seconds": seconds, "request": amounts[name]}
              for name, (ident, amount, seconds) in result.leases.items()}  # fmt: skip
    return json_ok({"leases": leases, "refused": None, "remaining": result.remaining})


async def gateway_report(request: Request) -> JSONResponse:
    await require_gateway(request)
    body = await read_model(request, ReportBody)
    items = _reports(body.reports)
    stamp = now()
    changed = await state_of(request).db.write(lambda c: report(c, items, stamp))
    return json_ok({"changed": changed})


def routes() -> list[BaseRoute]:
    g = "/api/v1/gateway/budgets"
    return [
        Route(g + "/lease", gateway_lease, methods=["POST"]),
        Route(g + "/leases/report", gateway_report, methods=["POST"]),
    ]
