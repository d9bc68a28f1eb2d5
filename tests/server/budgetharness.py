"""A budget on the in-process app, and its state: what the budget tests of the API share
(``test_budget_leases.py``, ``test_budget_settle_bounds.py``)."""

from __future__ import annotations

from typing import Any

from tests.server.conftest import Harness

__all__ = ["budget_state", "with_budget"]


def with_budget(harness: Harness, name: str, body: dict[str, Any]) -> Harness:
    """`harness`, with budget `name` created as `body` says (``PUT /v1/budgets/{name}``)."""
    assert harness.admin("PUT", f"/v1/budgets/{name}", json=body).status_code == 201
    return harness


def budget_state(harness: Harness, name: str) -> dict[str, Any]:
    """What budget `name` counts now (``state`` of ``GET /v1/budgets/{name}``)."""
    state: dict[str, Any] = harness.admin("GET", f"/v1/budgets/{name}").json()["state"]
    return state
