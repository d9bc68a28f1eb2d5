"""Budgets: what a budget is, which requests it covers, how much each one spends.

A budget is agents x connector x action glob x measure x window x limit x what happens
past it (``deny`` or ``require_approval``). Pure: no database here (``budgetstore.py``
reserves and settles; ``routes/budgets.py`` serves them).

Measures:

- ``count``: each request spends 1;
- ``sum``: a numeric request parameter (``parameter``, default ``amount``); with
  ``currency`` set, only requests in that currency are covered (Stripe amounts are minor
  units per currency), and a covered request without a usable number is refused;
- ``tokens`` / ``cost``: an LLM response's ``usage`` (input + output tokens, or their price
  from the price table, ``llmprices.py``), known only after the response: a request is
  refused once nothing remains, and settles to what its response reports.

Windows: rolling ``minute`` / ``hour`` / ``day``, or ``calendar_day`` / ``calendar_month``
in ``timezone`` (an IANA name).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import Field, field_validator, model_validator

from agentfirewall.budgetspend import LLM_MEASURES, Cover, spend_of
from agentfirewall.policy.globs import Glob, compile_glob
from agentfirewall_server.web import Strict

__all__ = [
    "LLM_MEASURES",
    "NAME_PATTERN",
    "BudgetBody",
    "BudgetDef",
    "CompiledBudget",
    "Cover",
    "compile_budget",
    "window_end",
    "window_start",
]

Measure = Literal["count", "sum", "tokens", "cost"]
Window = Literal["minute", "hour", "day", "calendar_day", "calendar_month"]
LLM_CONNECTORS = frozenset({"openai", "anthropic"})
_ROLLING = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"
_PARAM = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"


class BudgetBody(Strict):
    """A budget as the API takes it (``PUT /api/v1/budgets/{name}``: the name is the path's)."""

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
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
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
