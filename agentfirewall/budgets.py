"""Budgets: what a budget is, which requests it covers, what each one spends, and whether
it still fits. Pure: no database, no clock (``now`` is passed in, unix seconds).

A budget is agents x connector x action glob x measure x window x limit x what happens
past it (``deny`` or ``require_approval``). The control plane keeps the usage in its store
(``agentfirewall_server.budgetstore`` reserves and settles, ``sdkspend`` decides an SDK
action); ``agentfirewall.testing.FirewallTransport`` keeps it in memory. Both read the
definitions, windows, names, reasons and refusals here, so they decide alike.

Measures:

- ``count``: each request spends 1;
- ``sum``: a numeric request parameter (``parameter``, default ``amount``); with
  ``currency`` set, only requests in that currency are covered (Stripe amounts are minor
  units per currency), and a covered request without a usable number is refused;
- ``tokens`` / ``cost``: an LLM response's ``usage`` (input + output tokens, or their price
  from the price table, ``agentfirewall_server.llmprices``), known only after the response:
  a request is refused once nothing remains, and settles to what its response reports.

Windows: rolling ``minute`` / ``hour`` / ``day``, or ``calendar_day`` / ``calendar_month``
in ``timezone`` (an IANA name).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentfirewall.actions import ActionSpec
from agentfirewall.budgetspend import LLM_MEASURES, Cover, spend_of
from agentfirewall.connectors import action_aliases, get_connector, performed_as
from agentfirewall.errors import AgentFirewallError
from agentfirewall.policy.globs import Glob, compile_glob

__all__ = [
    "LLM_MEASURES",
    "NAME_PATTERN",
    "BudgetBody",
    "BudgetDef",
    "CompiledBudget",
    "Cover",
    "Refused",
    "action_names",
    "compile_budget",
    "covering",
    "covering_all",
    "exceeded",
    "fits",
    "refusal",
    "window_end",
    "window_start",
]

Measure = Literal["count", "sum", "tokens", "cost"]
Window = Literal["minute", "hour", "day", "calendar_day", "calendar_month"]
LLM_CONNECTORS = frozenset({"openai", "anthropic"})
_ROLLING = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"
_PARAM = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"


class BudgetBody(BaseModel):
    """A budget as the API takes it (``PUT /api/v1/budgets/{name}``: the name is the path's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=100)
    connector: str = Field(min_length=1, max_length=80)
    action: str = Field(default="*", min_length=1, max_length=520)
    measure: Measure = "count"
    parameter: str | None = Field(default=None, pattern=_PARAM)
    currency: str | None = Field(default=None, pattern=r"^[a-z]{3}$")
    window: Window = "calendar_day"
    timezone: str = Field(default="UTC", max_length=64)
    limit: float = Field(gt=0, le=1e15)
    outcome: Literal["deny", "require_approval"] = "deny"
    description: str = Field(default="", max_length=500)

    @field_validator("agents")
    @classmethod
    def _agents(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or len(name) > 200:
                raise ValueError("an agent name holds 1 to 200 characters (`*` for any)")
        return value

    @field_validator("action")
    @classmethod
    def _action(cls, value: str) -> str:
        compile_glob(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value != "UTC" and value not in _zones():
            raise ValueError(f"unknown time zone `{value}`: use an IANA name like `Europe/Paris`")
        return value

    @field_validator("limit")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("the limit must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BudgetBody:
        if self.measure != "sum" and self.parameter is not None:
            raise ValueError("`parameter` applies to the `sum` measure only")
        if self.measure in LLM_MEASURES and self.connector not in LLM_CONNECTORS:
            raise ValueError(f"the `{self.measure}` measure needs an openai or anthropic connector")
        return self


class BudgetDef(BudgetBody):
    """A budget as stored: its body and its name."""

    name: str = Field(pattern=NAME_PATTERN)


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    return _ZONES


@dataclass(frozen=True, slots=True)
class CompiledBudget:
    id: str
    definition: BudgetDef
    glob: Glob

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def key(self) -> str:
        """This budget as defined now: a gateway's leased slice is spent from only while
        the key holds (a limit lowered, or the budget removed and set again, is another)."""
        digest = hashlib.sha256(self.definition.model_dump_json().encode()).hexdigest()
        return f"{self.id}/{digest[:16]}"

    def covers(self, agent: str, connector: str, action: str) -> bool:
        d = self.definition
        return (
            connector == d.connector
            and ("*" in d.agents or agent in d.agents)
            and self.glob.matches(action)
        )

    def spend(self, parameters: dict[str, Any]) -> Cover | None:
        """What a covered request spends before its response (None: not covered after all,
        a request in another currency than the budget's)."""
        d = self.definition
        return spend_of(d.name, d.measure, d.parameter, d.currency, parameters)


def compile_budget(ident: str, definition: BudgetDef) -> CompiledBudget:
    return CompiledBudget(ident, definition, compile_glob(definition.action))


def window_start(definition: BudgetDef, now: float) -> float:
    """The start (unix seconds) of the window that contains `now`."""
    rolling = _ROLLING.get(definition.window)
    if rolling is not None:
        return now - rolling
    zone = ZoneInfo(definition.timezone)
    local = datetime.fromtimestamp(now, tz=zone)
    # the day's first midnight (fold 0): where midnight comes twice (clocks set back an
    # hour at 01:00, America/Havana), its second hour is still the same day
    start = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if definition.window == "calendar_month":
        start = start.replace(day=1)
    return start.timestamp()


def window_end(definition: BudgetDef, now: float) -> float | None:
    """When the current calendar window resets (None for a rolling window)."""
    if definition.window in _ROLLING:
        return None
    zone = ZoneInfo(definition.timezone)
    local = datetime.fromtimestamp(now, tz=zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if definition.window == "calendar_day":
        nxt = day + timedelta(days=1)
    else:
        nxt = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return nxt.replace(tzinfo=zone).timestamp()


# -- whether a request fits ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refused:
    """The budget that refuses (``deny``) or holds (``require_approval``) a request."""

    budget: str
    outcome: str
    reason: str


def _unit(budget: CompiledBudget) -> str:
    d = budget.definition
    if d.measure == "sum":
        return f" {d.currency}" if d.currency else ""
    return {"count": " requests", "tokens": " tokens", "cost": " usd"}[d.measure]


def _usage(budget: CompiledBudget, used: float, amount: float) -> str:
    d = budget.definition
    window = d.window.replace("calendar_", "")
    unit = _unit(budget)
    return f"{used:g} of {d.limit:g}{unit} used this {window}, this request needs {amount:g}"


def exceeded(budget: CompiledBudget, used: float, amount: float) -> str:
    return f"budget `{budget.name}` exceeded: {_usage(budget, used, amount)}"


def fits(budget: CompiledBudget, used: float, amount: float) -> str:
    """A request within `budget`, said as :func:`exceeded` says one past it."""
    return f"budget `{budget.name}`: {_usage(budget, used, amount)}"


def refusal(
    covered: Iterable[tuple[CompiledBudget, float]], used: Mapping[str, float], *, force: bool
) -> Refused | None:
    """The budget a request spending `amount` from each covered budget goes past, given
    what each had `used` in its window, or None when it fits every one. Past several, a
    ``deny`` one wins over ``require_approval``; `force` (a human approved going past a
    ``require_approval`` budget) passes those, never a ``deny`` one. An LLM budget
    (``tokens``, ``cost``: its amount known after the response) refuses once nothing
    remains."""
    refused: Refused | None = None
    for budget, amount in covered:
        d = budget.definition
        spent = used[d.name]
        full = spent + amount > d.limit or (d.measure in LLM_MEASURES and spent >= d.limit)
        blocking = full and (not force or d.outcome == "deny")
        if blocking and (refused is None or (d.outcome == "deny" and refused.outcome != "deny")):
            refused = Refused(d.name, d.outcome, exceeded(budget, spent, amount))
    return refused


# -- which budgets cover a request ----------------------------------------------------


def covering(
    budgets: Iterable[CompiledBudget],
    agent: str,
    connector: str,
    actions: str | tuple[str, ...],
    parameters: dict[str, Any],
) -> list[tuple[CompiledBudget, float]] | Refused:
    """The budgets covering a request and what it spends from each (or a refusal when
    a covered request does not say how much it spends: fail closed).

    `actions` names the request: one name (the gateway's), or every name the action goes
    by (an SDK action and the action its connector performs, :func:`action_names`); a
    budget covers it when it covers one of them, or another spelling of one
    (``agentfirewall.connectors.action_aliases``: ``http.post`` is ``generic.post``)."""
    names = (actions,) if isinstance(actions, str) else actions
    names = tuple(dict.fromkeys([*names, *(a for n in names for a in action_aliases(n))]))
    covered: list[tuple[CompiledBudget, float]] = []
    for budget in budgets:
        if not any(budget.covers(agent, connector, name) for name in names):
            continue
        cover = budget.spend(parameters)
        if cover is None:
            continue
        if cover.problem is not None:
            return Refused(budget.name, "deny", cover.problem)
        covered.append((budget, cover.amount))
    return covered


def covering_all(
    budgets: Iterable[CompiledBudget],
    agent: str,
    connector: str,
    actions: Iterable[tuple[str, dict[str, Any]]],
) -> list[tuple[CompiledBudget, float]] | Refused:
    """:func:`covering` for a request of several actions (a JSON-RPC batch's members, a
    GraphQL document's mutations), each ``(name, parameters)``: what it spends from each
    budget is the sum of what each action alone spends; one that does not say how much
    refuses it whole."""
    budgets = list(budgets)
    totals: dict[str, tuple[CompiledBudget, float]] = {}
    for name, parameters in actions:
        found = covering(budgets, agent, connector, name, parameters)
        if isinstance(found, Refused):
            return found
        for budget, amount in found:
            totals[budget.id] = (budget, totals.get(budget.id, (budget, 0.0))[1] + amount)
    return list(totals.values())


def action_names(
    spec: ActionSpec, *, base_url: str | None = None, options: Mapping[str, Any] | None = None
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """What budgets see of an SDK action: every name it goes by, and its parameters.

    The names are the spec's own type and the action its connector performs: a build alias
    (``payment.transfer.initiate`` runs as ``stripe.transfer.create``, ``github.pr.comment``
    as ``github.issue.comment``) is resolved by building the request as ``execute`` builds
    it (the connector's `base_url`, and its `options` filling in what the spec leaves out)
    and naming it as the gateway names that request (the connector's own parser). The
    parameters are the spec's, renamed as the alias renames them, with what the built
    request sends taking precedence (the amount Stripe receives). A spec its connector
    cannot build is still named by its alias (an agent may perform it itself, Mode B); an
    SDK-only provider's names are its own.
    """
    parameters = dict(spec.parameters)
    try:
        connector = get_connector(spec.provider)
    except AgentFirewallError:
        return (spec.type,), parameters
    names = [spec.type]
    aliased = performed_as(spec)
    if aliased is not None:
        names.append(aliased.type)
        parameters = dict(aliased.parameters)
    built = spec
    missing = {k: v for k, v in (options or {}).items() if k not in spec.parameters}
    if missing:  # as `execute` fills them in
        built = spec.model_copy(update={"parameters": {**spec.parameters, **missing}})
    try:
        request = connector.build_request(built, base_url=base_url)
        parsed = connector.parse(request, base_url=base_url)
    except Exception:  # naming never fails a decision: the names above still apply
        return tuple(dict.fromkeys(names)), parameters
    names.append(parsed.spec.type)
    return tuple(dict.fromkeys(names)), {**parameters, **parsed.spec.parameters}
