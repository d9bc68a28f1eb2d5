"""The evaluation context: who asks, how, and when.

The bottom of the policy layers: the field getters, the compiled conditions, the index and
the policy run all read it, and the engine builds on them, so it lives here, importing no
other part of the policy package.
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    """Who asks, how, and when. `now` must be timezone-aware."""

    agent: str
    mode: Mode
    now: datetime
    connector: str | None = None
    enforcement_level: EnforcementLevel = "full_enforce"
    sdk_default: Outcome = "allow"
    risk: Risk | None = None
    attributes: Mapping[str, object] = field(default_factory=_empty)

    def __post_init__(self) -> None:
        if self.mode not in ("proxy", "sdk"):
            raise ValueError(f"unknown mode `{self.mode}`: expected proxy or sdk")
        if self.now.tzinfo is None:
            raise ValueError("`now` must be timezone-aware (e.g. datetime.now(UTC))")
        if self.enforcement_level not in ENFORCEMENT_LEVELS:
            level = normalize_level(self.enforcement_level)
            object.__setattr__(self, "enforcement_level", level)
        if self.sdk_default not in ("allow", "deny"):
            raise ValueError(f"unknown sdk default `{self.sdk_default}`: expected allow or deny")
        if self.risk is not None and self.risk not in ROUTE_RISK:
            raise ValueError(f"unknown risk `{self.risk}`: expected low, medium or high")
