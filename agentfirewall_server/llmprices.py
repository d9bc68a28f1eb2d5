"""The LLM price table for ``cost`` budgets: US dollars per million tokens, by model.

Stored as the ``llm_prices`` setting (``GET``/``PUT /api/v1/llm-prices``). A model is
priced by its exact name, else by the longest matching ``prefix*`` entry, else by ``*``.
The defaults are list prices at the time of writing; edit them to your contract. A
model the table cannot price costs as much as the most expensive entry (fail closed: a
spend cap never under-counts). So does a ``usage`` count that is not one: negative, not a
number, or past :data:`MAX_TOKENS` (``10**309`` from a broken or hostile upstream), it is
read as :data:`MAX_TOKENS`, and the settlement says which field in the log.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, RootModel, field_validator

from agentfirewall_server.web import Strict

__all__ = ["DEFAULT_PRICES", "MAX_TOKENS", "Price", "PriceTable", "cost_of", "tokens_of"]

#: The most tokens one ``usage`` count is read as (the highest limit a budget may have): a
#: count past it, or no count at all (negative, not finite, not a number), is read as this
#: (charging more, never nothing).
MAX_TOKENS = 10**15


class Price(Strict):
    input: float = Field(ge=0, le=1e6)
    output: float = Field(ge=0, le=1e6)


class PriceTable(RootModel[dict[str, Price]]):
    @field_validator("root")
    @classmethod
    def _names(cls, value: dict[str, Price]) -> dict[str, Price]:
        if len(value) > 1000:
            raise ValueError("at most 1000 models")
        for name in value:
            if not name or len(name) > 200 or "*" in name[:-1]:
                raise ValueError(f"invalid model `{name}`: a name, `prefix*` or `*`")
        return value


DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o-mini*": {"input": 0.15, "output": 0.60},
    "gpt-4o*": {"input": 2.50, "output": 10.00},
    "gpt-4.1-mini*": {"input": 0.40, "output": 1.60},
    "gpt-4.1*": {"input": 2.00, "output": 8.00},
    "o3*": {"input": 2.00, "output": 8.00},
    "claude-3-5-haiku*": {"input": 0.80, "output": 4.00},
    "claude-sonnet-4*": {"input": 3.00, "output": 15.00},
    "claude-3-7-sonnet*": {"input": 3.00, "output": 15.00},
    "claude-opus-4*": {"input": 15.00, "output": 75.00},
}


def _price(table: dict[str, Any], model: str) -> tuple[float, float]:
    found = table.get(model)
    if found is None:
        best = -1
        for name, price in table.items():
            if name.endswith("*") and model.startswith(name[:-1]) and len(name) > best:
                best, found = len(name), price
    if found is None:
        found = table.get("*")
    if found is None:  # unpriced: the dearest entry
        dearest = max(table.values(), key=lambda p: p["input"] + p["output"], default=None)
        found = dearest or {"input": 0.0, "output": 0.0}
    return float(found["input"]), float(found["output"])


def _count(usage: dict[str, Any], key: str, odd: list[str]) -> int:
    """`usage[key]` as a token count (absent or null: 0); `key` goes in `odd` when its
    value is no count up to :data:`MAX_TOKENS` (then read as :data:`MAX_TOKENS`)."""
    value = usage.get(key)
    if value is None:
        return 0
    if not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= MAX_TOKENS:
        return int(value)  # (NaN compares false: odd too)
    odd.append(key)
    return MAX_TOKENS


def tokens_of(usage: dict[str, Any], odd: list[str] | None = None) -> tuple[int, int]:
    """(input, output) tokens of an OpenAI or Anthropic ``usage`` object; the fields whose
    value is no count go in `odd` (each read as :data:`MAX_TOKENS`)."""
    odd = [] if odd is None else odd
    given = _count(usage, "input_tokens" if "input_tokens" in usage else "prompt_tokens", odd)
    given += _count(usage, "cache_creation_input_tokens", odd)
    given += _count(usage, "cache_read_input_tokens", odd)
    out = _count(usage, "output_tokens" if "output_tokens" in usage else "completion_tokens", odd)
    return given, out


def cost_of(
    table: dict[str, Any], model: str, usage: dict[str, Any], odd: list[str] | None = None
) -> float:
    """US dollars the `usage` of `model` costs by `table` (`odd` as for :func:`tokens_of`)."""
    given, out = tokens_of(usage, odd)
    price_in, price_out = _price(table, model)
    cost = (given * price_in + out * price_out) / 1_000_000
    return cost if math.isfinite(cost) else float(MAX_TOKENS)  # (a stored price out of range)
