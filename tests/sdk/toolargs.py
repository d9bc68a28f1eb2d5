"""What the tool-argument tests of both frameworks share: an argument schema whose
validator is not idempotent, and a policy capping the amount."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator

__all__ = ["CAP", "Dollars"]

CAP = """
name: cap
rules:
  - name: big
    conditions: {field: action_spec.parameters.amount, operator: gt, value: 5000}
    decision: deny
    reason: too big
"""


class Dollars(BaseModel):
    """The model writes dollars, the tool takes cents: validated twice, $40 is 400,000."""

    amount: int
    to: str

    @field_validator("amount", mode="before")
    @classmethod
    def to_cents(cls, value: Any) -> int:
        return int(float(value) * 100)
