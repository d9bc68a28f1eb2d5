"""The evaluation context: who asks, how, and when.

The bottom of the policy layers: the field getters, the compiled conditions, the index and
the policy run all read it, and the engine builds on them, so it lives here, importing no
other part of the policy package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from agentfirewall.actions import Risk
from agentfirewall.decisions import (
    ENFORCEMENT_LEVELS,
    EnforcementLevel,
    Outcome,
    normalize_level,
)

__all__ = ["ROUTE_RISK", "EvaluationContext", "Mode"]

Mode = Literal["proxy", "sdk"]
ROUTE_RISK: dict[str, float] = {"low": 10.0, "medium": 50.0, "high": 80.0}
_EMPTY: Mapping[str, object] = MappingProxyType({})


def _empty() -> Mapping[str, object]:
    return _EMPTY


@dataclass(frozen=True, slots=True, init=False)
class EvaluationContext:
    """Who asks, how, and when. `now` must be timezone-aware.

    Built once per decision, so ``__init__`` is written out: it checks the values first
    (the same checks, in the same order, as a ``__post_init__`` would) and then stores
    them through the slots' own setters, about half the cost of the generated one.
    """

    agent: str
    mode: Mode
    now: datetime
    connector: str | None = None
    enforcement_level: EnforcementLevel = "full_enforce"
    sdk_default: Outcome = "allow"
    risk: Risk | None = None
    attributes: Mapping[str, object] = field(default_factory=_empty)

    def __init__(
        self,
        agent: str,
        mode: Mode,
        now: datetime,
        connector: str | None = None,
        enforcement_level: EnforcementLevel = "full_enforce",
        sdk_default: Outcome = "allow",
        risk: Risk | None = None,
        attributes: Mapping[str, object] = _EMPTY,
    ) -> None:
        if mode not in ("proxy", "sdk"):
            raise ValueError(f"unknown mode `{mode}`: expected proxy or sdk")
        if now.tzinfo is None:
            raise ValueError("`now` must be timezone-aware (e.g. datetime.now(UTC))")
        if enforcement_level not in ENFORCEMENT_LEVELS:
            enforcement_level = normalize_level(enforcement_level)
        if sdk_default not in ("allow", "deny"):
            raise ValueError(f"unknown sdk default `{sdk_default}`: expected allow or deny")
        if risk is not None and risk not in ROUTE_RISK:
            raise ValueError(f"unknown risk `{risk}`: expected low, medium or high")
        _SET_AGENT(self, agent)
        _SET_MODE(self, mode)
        _SET_NOW(self, now)
        _SET_CONNECTOR(self, connector)
        _SET_LEVEL(self, enforcement_level)
        _SET_SDK_DEFAULT(self, sdk_default)
        _SET_RISK(self, risk)
        _SET_ATTRIBUTES(self, attributes)


def _setter(name: str) -> Callable[[EvaluationContext, object], None]:
    """The slot's own setter (a frozen dataclass refuses ``self.x = ...``)."""
    setter: Callable[[EvaluationContext, object], None] = vars(EvaluationContext)[name].__set__
    return setter


_SET_AGENT = _setter("agent")
_SET_MODE = _setter("mode")
_SET_NOW = _setter("now")
_SET_CONNECTOR = _setter("connector")
_SET_LEVEL = _setter("enforcement_level")
_SET_SDK_DEFAULT = _setter("sdk_default")
_SET_RISK = _setter("risk")
_SET_ATTRIBUTES = _setter("attributes")
