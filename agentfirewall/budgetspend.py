"""What one request spends from a budget before its response (pure).

Shared by the control plane (``agentfirewall.budgets``; ``agentfirewall_server.budgetstore``
is authoritative) and the gateway (``agentfirewall_proxy.budgetlease``, which spends from a
leased slice without a call): the same rule on both sides, so a request debited locally
spends exactly what the control plane would have reserved.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["LLM_MEASURES", "Cover", "spend_of"]

LLM_MEASURES = frozenset({"tokens", "cost"})
#: The largest integer a float holds (a larger amount is refused, never an error).
_MAX_INT = int(sys.float_info.max)


@dataclass(frozen=True, slots=True)
class Cover:
    """What one request spends from one budget: `amount`, or `problem` (refuse)."""

    amount: float
    problem: str | None = None


def spend_of(
    name: str,
    measure: str,
    parameter: str | None,
    currency: str | None,
    parameters: dict[str, Any],
) -> Cover | None:
    """What a covered request spends before its response (None: not covered after all,
    a request in another currency than the budget's)."""
    if measure == "count":
        return Cover(1.0)
    if measure in LLM_MEASURES:
        return Cover(0.0)  # settled from the response's usage
    if currency is not None:
        named = parameters.get("currency")
        if not isinstance(named, str):
            return Cover(0.0, f"budget `{name}`: the request names no currency")
        if named.lower() != currency:
            return None
    parameter = parameter or "amount"
    value: Any = parameters
    for key in parameter.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Cover(0.0, f"budget `{name}`: parameter `{parameter}` is not a number")
    huge = isinstance(value, int) and abs(value) > _MAX_INT  # no float holds it: 10**400
    if value < 0 or (not huge and not math.isfinite(value)):
        return Cover(0.0, f"budget `{name}`: parameter `{parameter}` must be 0 or more")
    if huge:
        return Cover(0.0, f"budget `{name}`: parameter `{parameter}` is too large")
    return Cover(float(value))
