"""The control plane measures a request of several actions by each of them (``members`` of
a reserve or lease body, ``routes/budgets.py``), on SQLite and PostgreSQL.

Its reserve and lease routes took one action and one set of parameters: a gateway could
only name a JSON-RPC batch as ``mcp.rpc.batch``, which no budget on ``mcp.tools.transfer``
covers. A body with ``members`` spends what they spend together (one past a cap refuses
the whole request); a body without keeps working as it did.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.conftest import Harness

COUNT = {"connector": "mcp", "action": "mcp.tools.transfer", "limit": 5}
SUM = {"connector": "mcp", "action": "mcp.tools.transfer", "measure": "sum", "limit": 100}


def _body(*amounts: int, **extra: Any) -> dict[str, Any]:
    members = [{"action": "mcp.tools.transfer", "parameters": {"amount": a, "tool": "transfer"}}
               for a in amounts] + [{"action": "mcp.tools.list"}]  # fmt: skip
    return {"agent": "Payer", "connector": "mcp", "action": "mcp.rpc.batch",
            "members": members, **extra}  # fmt: skip


def _used(h: Harness, name: str) -> float:
    state = h.admin("GET", f"/v1/budgets/{name}").json()["state"]
    return float(state["used"] + state["leased"])


@pytest.fixture
def h(harness: Harness) -> Harness:
    for name, body in (("transfers-count", COUNT), ("transfers-sum", SUM)):
        assert harness.admin("PUT", f"/v1/budgets/{name}", json=body).status_code == 201
    return harness


def test_a_reservation_spends_what_its_members_spend_together(h: Harness) -> None:
    answer = h.gateway("POST", "/v1/gateway/budgets/reserve", json=_body(10, 20, 30))
    assert answer.json()["refused"] is None, answer.text
    assert (_used(h, "transfers-count"), _used(h, "transfers-sum")) == (3, 60)
    past = h.gateway("POST", "/v1/gateway/budgets/reserve", json=_body(1, 50)).json()
    assert past["refused"]["budget"] == "transfers-sum"  # one member past the cap: all refused
    assert "60 of 100 used this day, this request needs 51" in past["refused"]["reason"]
    assert (_used(h, "transfers-count"), _used(h, "transfers-sum")) == (3, 60)
    single = {"agent": "Payer", "connector": "mcp", "action": "mcp.tools.transfer",
              "parameters": {"amount": 5}}  # fmt: skip
    assert h.gateway("POST", "/v1/gateway/budgets/reserve", json=single).json()["refused"] is None
    assert (_used(h, "transfers-count"), _used(h, "transfers-sum")) == (4, 65)


def test_a_lease_measures_its_members_and_refuses_them_whole(h: Harness) -> None:
    answer = h.gateway("POST", "/v1/gateway/budgets/lease", json=_body(10, 20)).json()
    assert {n: lease["request"] for n, lease in answer["leases"].items()} == {
        "transfers-count": 2, "transfers-sum": 30}  # fmt: skip
    refused = h.gateway("POST", "/v1/gateway/budgets/lease", json=_body(*[1] * 4)).json()
    assert refused["refused"]["budget"] == "transfers-count"
    unnumbered = _body(10) | {"members": [{"action": "mcp.tools.transfer"}]}
    refused = h.gateway("POST", "/v1/gateway/budgets/lease", json=unnumbered).json()
    assert "parameter `amount` is not a number" in refused["refused"]["reason"]


BAD = [[], [{"action": "mcp.tools.transfer"}] * 101, [{"action": ""}], [{"parameters": {}}]]


def test_bad_members_are_422(h: Harness) -> None:
    for members in BAD:  # none, too many, an unnamed action, no action
        for route in ("reserve", "lease"):
            answer = h.gateway("POST", f"/v1/gateway/budgets/{route}",
                               json=_body() | {"members": members})  # fmt: skip
            assert answer.status_code == 422, answer.text
            assert answer.json()["field"].startswith("members")
