"""Fixtures for the core tests: a fixed clock and an EvaluationContext factory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from agentfirewall.policy import EvaluationContext

MakeContext = Callable[..., EvaluationContext]


@pytest.fixture
def now() -> datetime:
    """Monday 5 January 2026, noon UTC."""
    return datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_ctx(now: datetime) -> MakeContext:
    """Build a context; defaults: agent `Bot`, SDK mode, the fixed clock."""

    def make(**overrides: Any) -> EvaluationContext:
        fields: dict[str, Any] = {"agent": "Bot", "mode": "sdk", "now": now}
        fields.update(overrides)
        return EvaluationContext(**fields)

    return make
