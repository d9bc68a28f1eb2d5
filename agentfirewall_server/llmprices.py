"""The LLM price table for ``cost`` budgets: US dollars per million tokens, by model.

Stored as the ``llm_prices`` setting (``GET``/``PUT /api/v1/llm-prices``). A model is
priced by its exact name, else by the longest matching ``prefix*`` entry, else by ``*``.
The defaults are list prices at the time of writing; edit them to your contract. A
model the table cannot price costs as much as the most expensive entry (fail closed: a
spend cap never under-counts).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, RootModel, field_validator

from agentfirewall_server.web import Strict

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable", "cost_of", "tokens_of"]


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


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(int(value), 0)


def tokens_of(usage: dict[str, Any]) -> tuple[int, int]:
    """(input, output) tokens of an OpenAI or Anthropic ``usage`` object."""
    given = _count(usage.get("input_tokens", usage.get("prompt_tokens")))
    given += _count(usage.get("cache_creation_input_tokens"))
    given += _count(usage.get("cache_read_input_tokens"))
    out = _count(usage.get("output_tokens", usage.get("completion_tokens")))
    return given, out


def cost_of(table: dict[str, Any], model: str, usage: dict[str, Any]) -> float:
    """US dollars the `usage` of `model` costs by `table`."""
    given, out = tokens_of(usage)
    price_in, price_out = _price(table, model)
    return (given * price_in + out * price_out) / 1_000_000
