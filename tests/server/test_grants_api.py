"""Grants on both engines: an approval widened to the same action, constrained and bounded.

Through the Gateway API a held request is approved at once by a grant that covers it
(constraints, uses, expiry, revocation, agent and connector), every use audited with the
grant's id; the API refuses malformed grants with 422 naming the field.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from agentfirewall.actions import parse_action_spec
from agentfirewall_server.clock import now
from agentfirewall_server.grants import parse_where
from agentfirewall_server.store.schema import grants
from tests.server.conftest import Harness


def _spec(amount: int = 5000, currency: str = "usd") -> dict[str, Any]:
    return {
        "type": "stripe.transfer.create",
        "resource": {"provider": "stripe", "target": "transfers"},
        "parameters": {"amount": amount, "currency": currency, "destination": "acct_1"},
    }


def _held(h: Harness, agent: str = "Finance-Bot", **kw: Any) -> dict[str, Any]:
    spec = _spec(**kw)
    body = {"agent": agent, "connector": "stripe", "action_spec": spec, "reason": "held",
            "action_hash": parse_action_spec(spec).action_hash}  # fmt: skip
    answer = h.gateway("POST", "/v1/gateway/approvals", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _grant(h: Harness, **grant: Any) -> dict[str, Any]:
    held = _held(h)
    assert held["status"] == "pending"
    answer = h.admin("POST", f"/v1/approvals/{held['id']}/approve", json={"grant": grant})
    assert answer.status_code == 200, answer.text
    made: dict[str, Any] = answer.json()["grant"]
    return made


@pytest.fixture
def h(harness: Harness) -> Harness:
    harness.create_agent("Finance-Bot")
    harness.create_agent("Other-Bot")
    return harness


def test_constraints_and_use_count(h: Harness) -> None:
    grant = _grant(h, for_seconds=3600, max_uses=2, where=["amount<=10000", "currency in [usd]"])
    assert grant["status"] == "active"
    assert grant["constraints"][0] == {
        "field": "action_spec.parameters.amount", "operator": "lte", "value": 10000}  # fmt: skip
    assert _held(h, amount=20000)["status"] == "pending"  # past the constraint
    assert _held(h, currency="eur")["status"] == "pending"
    assert _held(h, agent="Other-Bot")["status"] == "pending"  # another agent
    first = _held(h, amount=8000)
    assert first == {"id": None, "status": "approved", "grant_id": grant["id"], "reused": False}
    assert _held(h, amount=10000)["grant_id"] == grant["id"]
    assert _held(h, amount=100)["status"] == "pending"  # two uses, used up
    shown = h.admin("GET", f"/v1/grants/{grant['id']}").json()
    assert (shown["uses"], shown["status"]) == (2, "used_up")
    events = h.admin("GET", "/v1/audit?limit=1000").json()["events"]
    used = [e for e in events if e["event_type"] == "grant.used"]
    assert [e["subject"] for e in used] == [grant["id"], grant["id"]]
    assert {e["data"]["grant_id"] for e in used} == {grant["id"]}


def test_revocation_mid_use_and_expiry(h: Harness) -> None:
    grant = _grant(h, max_uses=10)
    assert _held(h)["grant_id"] == grant["id"]
    revoked = h.admin("POST", f"/v1/grants/{grant['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert _held(h)["status"] == "pending"
    again = h.admin("POST", f"/v1/grants/{grant['id']}/revoke")
    assert again.status_code == 409
    active = h.admin("GET", "/v1/grants").json()["grants"]
    assert active == []
    everything = h.admin("GET", "/v1/grants", params={"status": "all"}).json()["grants"]
    assert [g["uses"] for g in everything] == [1]
    grant = _grant(h, for_seconds=600)
    assert _held(h)["grant_id"] == grant["id"]
    # ten minutes later (moved in the store: no sleeping test)
    with h.state.db.reader_engine.begin() as conn:
        conn.execute(update(grants).values(expires_at=now() - 1))
    assert _held(h)["status"] == "pending"
    shown = h.admin("GET", f"/v1/grants/{grant['id']}").json()
    assert shown["status"] == "expired"


BAD = [
    ({"grant": {}}, "grant"),
    ({"grant": {"max_uses": 0}}, "grant.max_uses"),
    ({"grant": {"for_seconds": 10**9}}, "grant.for_seconds"),
    ({"grant": {"max_uses": 1, "where": ["amount ~ 3"]}}, "grant.where"),
    ({"grant": {"max_uses": 1, "where": ["amount bogus 3"]}}, "grant.where"),
    (
        {
            "grant": {
                "max_uses": 1,
                "where": [{"field": "amount", "operator": "lte", "value": 1, "x": 1}],
            }
        },
        "grant.where",
    ),
    ({"grant": {"max_uses": 1, "extra": 1}}, "grant.extra"),
    ({"grant": {"max_uses": "many"}}, "grant.max_uses"),
]


def test_bad_grants_are_422(h: Harness) -> None:
    held = _held(h)
    for body, field in BAD:
        answer = h.admin("POST", f"/v1/approvals/{held['id']}/approve", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["field"] == field, body
    assert h.admin("GET", f"/v1/approvals/{held['id']}").json()["status"] == "pending"
    assert h.admin("GET", "/v1/grants/grt_nothing_here").status_code == 404
    assert h.admin("GET", "/v1/grants", params={"status": "odd"}).status_code == 400
    answer = h.admin("POST", f"/v1/approvals/{held['id']}/deny", json={"grant": {"max_uses": 1}})
    assert answer.status_code == 422
    assert answer.json()["field"] == "grant"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount<=10000", ("action_spec.parameters.amount", "lte", 10000)),
        ("amount lte 10000", ("action_spec.parameters.amount", "lte", 10000)),
        ("amount > 2.5", ("action_spec.parameters.amount", "gt", 2.5)),
        ("currency in [usd, eur]", ("action_spec.parameters.currency", "in", ["usd", "eur"])),
        ("channel equals C123", ("action_spec.parameters.channel", "equals", "C123")),
        ("channel != 'C 1'", ("action_spec.parameters.channel", "not_equals", "C 1")),
        ("action_spec.resource.target=acme", ("action_spec.resource.target", "equals", "acme")),
    ],
)
def test_parse_where(text: str, expected: tuple[str, str, object]) -> None:
    leaf = parse_where(text)
    assert (leaf["field"], leaf["operator"], leaf["value"]) == expected
