"""Budgets: define them (admin), see their state (viewer), reserve and settle (gateway).

``PUT /api/v1/budgets/{name}`` creates or replaces a budget (``budgets.BudgetBody``);
``GET`` lists them or shows one with its window's usage, per-agent spend and burn-down;
``DELETE`` removes one with its usage. ``GET``/``PUT /api/v1/llm-prices`` read and edit
the price table of ``cost`` budgets. The gateway reserves before forwarding
(``POST /api/v1/gateway/budgets/reserve``) and settles after the response
(``.../settle``), and reads what remains for policy conditions (``GET .../budgets``).
A request of several actions (a JSON-RPC batch, a GraphQL document with several
mutations) comes with each of them (``members``): it spends what they spend together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import Field, JsonValue, ValidationError
from sqlalchemy import Connection, delete, select, update
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.budgets import BudgetBody, BudgetDef, CompiledBudget, covering_all
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_gateway, require_role, state_of
from agentfirewall_server.budgetleases import budget_attributes
from agentfirewall_server.budgetstore import (
    Refused,
    Reserved,
    budget_state,
    reserve,
    settle,
)
from agentfirewall_server.clock import new_id, now
from agentfirewall_server.llmprices import DEFAULT_PRICES, PriceTable
from agentfirewall_server.sdkspend import covered_by
from agentfirewall_server.snapshot import put_setting
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import budget_usage, budgets
from agentfirewall_server.web import (
    ApiError,
    Strict,
    check_query,
    json_ok,
    no_body,
    read_model,
    validation_error,
)

__all__ = ["Member", "covered_request", "prices_of", "routes"]

log = logging.getLogger("agentfirewall_server")


class Member(Strict):
    """One action of a request of several (``members`` of a reserve or lease body)."""

    action: str = Field(min_length=1, max_length=600)
    parameters: dict[str, JsonValue] = Field(default_factory=dict)


class ReserveBody(Strict):
    request_id: str | None = Field(default=None, max_length=100)
    agent: str = Field(min_length=1, max_length=200)
    connector: str = Field(min_length=1, max_length=80)
    action: str = Field(min_length=1, max_length=600)
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    #: Each action of a request of several: budgets read these, not `action`/`parameters`.
    members: list[Member] | None = Field(default=None, min_length=1, max_length=100)
    #: A human approved going past a ``require_approval`` budget (never past a ``deny`` one).
    force: bool = False


def covered_request(
    state: AppState,
    agent: str,
    connector: str,
    action: str,
    parameters: dict[str, Any],
    members: list[Member] | None,
) -> list[tuple[CompiledBudget, float]] | Refused:
    """The budgets covering a gateway's request and what it spends from each: its
    `members`' sum when it has several actions (``agentfirewall.budgets.covering_all``)."""
    if members is None:
        return covered_by(state, agent, connector, action, parameters)
    each = [(m.action, dict(m.parameters)) for m in members]
    return covering_all(state.snapshot.budgets.values(), agent, connector, each)


class SettleBody(Strict):
    reservation: str = Field(min_length=1, max_length=40)
    ok: bool
    model: str | None = Field(default=None, max_length=200)
    usage: dict[str, JsonValue] | None = None


class SettleBatch(Strict):
    settlements: list[SettleBody] = Field(max_length=1000)


def prices_of(state: AppState) -> dict[str, Any]:
    found = state.snapshot.settings.get("llm_prices")
    return found if isinstance(found, dict) else DEFAULT_PRICES


def _find(state: AppState, name: str) -> CompiledBudget:
    found = state.snapshot.budgets.get(name)
    if found is None:
        raise ApiError(404, f"no budget `{name}`")
    return found


def budget_json(budget: CompiledBudget, used: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": budget.id, **budget.definition.model_dump()}
    if used is not None:
        data["state"] = used
    return data


def _gauge(state: AppState, budget: CompiledBudget, used: float) -> None:
    state.metrics.budget_used.labels(budget.name).set(used)
    state.metrics.budget_limit.labels(budget.name).set(budget.definition.limit)


async def list_budgets(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    state = state_of(request)
    found = list(state.snapshot.budgets.values())
    stamp = now()
    states = await state.db.read(lambda c: [budget_state(c, b, stamp) for b in found])
    for budget, used in zip(found, states, strict=True):
        _gauge(state, budget, used["used"])
    return json_ok({"budgets": [budget_json(b, s) for b, s in zip(found, states, strict=True)]})


async def show_budget(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    state = state_of(request)
    budget = _find(state, request.path_params["name"])
    used = await state.db.read(lambda c: budget_state(c, budget, now()))
    _gauge(state, budget, used["used"])
    return json_ok(budget_json(budget, used))


_SPAN = {"minute": "the last minute", "hour": "the last hour", "day": "the last 24 hours"}


def _refuse_ignored(body: BudgetBody) -> None:
    """Fields a budget would take and then ignore: refused when a budget is set (a stored
    definition holding them still loads, as it did: it ignores them)."""
    if body.currency is not None and body.measure != "sum":
        raise ApiError(422, f"`currency` applies to the `sum` measure only: a "
                       f"`{body.measure}` budget would cover requests in every currency",
                       field="currency")  # fmt: skip
    span = _SPAN.get(body.window)
    if span is not None and body.timezone != "UTC":
        raise ApiError(422, f"`timezone` applies to calendar windows only: `{body.window}` "
                       f"is {span}; for days from midnight in `{body.timezone}` use "
                       "`calendar_day`", field="timezone")  # fmt: skip


async def put_budget(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    name = request.path_params["name"]
    body = await read_model(request, BudgetBody)
    _refuse_ignored(body)
    try:
        definition = BudgetDef(name=name, **body.model_dump())
    except ValidationError as exc:
        if exc.errors()[0]["loc"] == ("name",):
            raise ApiError(422, f"invalid budget name `{name}`: lowercase letters, digits, "
                           "`-` and `_`, at most 100", field="name") from None  # fmt: skip
        raise validation_error(exc) from None
    state = state_of(request)

    def job(conn: Connection) -> tuple[str, bool]:
        stamp = now()
        text = definition.model_dump_json()
        row = conn.execute(select(budgets.c.id).where(budgets.c.name == name)).first()
        if row is None:
            ident = new_id("bgt_")
            conn.execute(
                budgets.insert().values(
                    id=ident, name=name, definition=text, created_at=stamp, updated_at=stamp
                )
            )
        else:
            ident = row.id
            conn.execute(
                update(budgets)
                .where(budgets.c.id == ident)
                .values(definition=text, updated_at=stamp)
            )
        append_event(conn, "budget.set", actor=who.actor, now=stamp, subject=name,
                     data=definition.model_dump())  # fmt: skip
        return ident, row is None

    _, created = await state.change_config(job)
    budget = _find(state, name)
    return json_ok(budget_json(budget), status=201 if created else 200)


async def delete_budget(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    await no_body(request)
    name = request.path_params["name"]

    def job(conn: Connection) -> None:
        # by its stored row: one this version cannot read (it denies everything) goes too
        ident = conn.execute(select(budgets.c.id).where(budgets.c.name == name)).scalar()
        if ident is None:
            raise ApiError(404, f"no budget `{name}`")
        conn.execute(delete(budget_usage).where(budget_usage.c.budget_id == ident))
        conn.execute(delete(budgets).where(budgets.c.id == ident))
        append_event(conn, "budget.removed", actor=who.actor, now=now(), subject=name)

    await state_of(request).change_config(job)
    return json_ok({"removed": name})


async def get_prices(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    return json_ok({"prices": prices_of(state_of(request)), "unit": "usd per 1m tokens"})


async def put_prices(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    raw = await read_model(request, _PricesBody)
    table = {k: v.model_dump() for k, v in raw.prices.root.items()}

    def job(conn: Connection) -> None:
        put_setting(conn, "llm_prices", table)
        data = {"models": len(table)}
        append_event(conn, "llm_prices.set", actor=who.actor, now=now(), data=data)

    await state_of(request).change_config(job)
    return json_ok({"prices": table, "unit": "usd per 1m tokens"})


class _PricesBody(Strict):
    prices: PriceTable


async def gateway_reserve(request: Request) -> JSONResponse:
    await require_gateway(request)
    body = await read_model(request, ReserveBody)
    state = state_of(request)
    covered = covered_request(state, body.agent, body.connector, body.action, body.parameters,
                              body.members)  # fmt: skip
    if isinstance(covered, list) and not covered:
        return json_ok({"reservation": None, "refused": None, "remaining": {}})
    result = covered if isinstance(covered, Refused) else await state.db.write(_job(body, covered))
    if isinstance(result, Refused):
        state.metrics.budget_refusals.labels(result.budget, result.outcome).inc()
        refused = {"budget": result.budget, "outcome": result.outcome, "reason": result.reason}
        return json_ok({"reservation": None, "refused": refused, "remaining": {}})
    for budget in state.snapshot.budgets.values():
        if budget.name in result.remaining:
            _gauge(state, budget, budget.definition.limit - result.remaining[budget.name])
    return json_ok({"reservation": result.reservation, "refused": None,
                    "remaining": result.remaining})  # fmt: skip


def _job(
    body: ReserveBody, covered: list[tuple[CompiledBudget, float]]
) -> Callable[[Connection], Refused | Reserved]:
    stamp = now()

    def job(conn: Connection) -> Refused | Reserved:
        return reserve(
            conn, covered, agent=body.agent, request_id=body.request_id, force=body.force,
            now=stamp,
        )  # fmt: skip

    return job


async def gateway_settle(request: Request) -> JSONResponse:
    await require_gateway(request)
    body = await read_model(request, SettleBody)
    return json_ok({"settled": await _settle_all(state_of(request), [body])})


async def gateway_settle_batch(request: Request) -> JSONResponse:
    """Settlements of the same moment in one call and one transaction."""
    await require_gateway(request)
    body = await read_model(request, SettleBatch)
    return json_ok({"settled": await _settle_all(state_of(request), body.settlements)})


async def _settle_all(state: AppState, bodies: list[SettleBody]) -> int:
    """Each settlement in a savepoint of one transaction: one that fails (a bug) stays
    reserved, counted as it was, and never costs the others theirs."""
    by_id = {b.id: b for b in state.snapshot.budgets.values()}
    prices = prices_of(state)

    def job(conn: Connection) -> int:
        stamp, done = now(), 0
        for body in bodies:
            usage = dict(body.usage) if body.usage else None
            savepoint = conn.begin_nested()
            try:
                done += settle(conn, body.reservation, by_id, ok=body.ok, usage=usage,
                               model=body.model, prices=prices, now=stamp)  # fmt: skip
            except Exception as exc:
                savepoint.rollback()
                log.warning("budget reservation %s not settled (%s): it stays reserved",
                            body.reservation, type(exc).__name__)  # fmt: skip
                continue
            savepoint.commit()
        return done

    return await state.db.write(job)


async def gateway_state(request: Request) -> JSONResponse:
    """``budget.<name>.remaining`` / ``.used`` for the gateway's policy conditions."""
    check_query(request)
    await require_gateway(request)
    state = state_of(request)
    found = list(state.snapshot.budgets.values())
    stamp = now()

    return json_ok(
        {"attributes": await state.db.read(lambda c: budget_attributes(c, found, stamp))}
    )


def routes() -> list[BaseRoute]:
    p = "/api/v1/budgets"
    g = "/api/v1/gateway/budgets"
    return [
        Route(p, list_budgets, methods=["GET"]),
        Route(p + "/{name}", show_budget, methods=["GET"]),
        Route(p + "/{name}", put_budget, methods=["PUT"]),
        Route(p + "/{name}", delete_budget, methods=["DELETE"]),
        Route("/api/v1/llm-prices", get_prices, methods=["GET"]),
        Route("/api/v1/llm-prices", put_prices, methods=["PUT"]),
        Route(g, gateway_state, methods=["GET"]),
        Route(g + "/reserve", gateway_reserve, methods=["POST"]),
        Route(g + "/settle", gateway_settle, methods=["POST"]),
        Route(g + "/settle/batch", gateway_settle_batch, methods=["POST"]),
    ]
