"""POST /api/v1/gateway/approvals/batch: many approvals, one writer job, same answers."""

from __future__ import annotations

from agentfirewall.actions import parse_action_spec
from agentfirewall_server.audit import verify_chain
from tests.server.conftest import Harness
from tests.server.test_gateway_api import _approval_body


def test_a_batch_answers_each_item_as_the_single_route_would(harness: Harness) -> None:
    before = harness.audit_count()
    items = [_approval_body(f"{i:064x}") for i in range(5)]
    r = harness.gateway("POST", "/v1/gateway/approvals/batch", json={"approvals": items})
    assert r.status_code == 200, r.text
    answers = r.json()["approvals"]
    assert len(answers) == 5
    assert len({a["id"] for a in answers}) == 5
    for answer, item in zip(answers, items, strict=True):
        assert answer["status"] == "pending"
        assert answer["reused"] is False
        assert answer["source"] == "proxy"
        assert answer["request"]["digest"] == item["request"]["digest"]
        shown = harness.admin("GET", f"/v1/approvals/{answer['id']}").json()
        assert shown["status"] == "pending"
    assert harness.audit_count() == before + 5
    assert harness.state.db.read_sync(verify_chain).ok


def test_a_batch_reuses_an_approved_request_once_like_one_by_one(harness: Harness) -> None:
    first = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    harness.admin("POST", f"/v1/approvals/{first['id']}/approve")
    twice = {"approvals": [_approval_body(), _approval_body()]}
    answers = harness.gateway("POST", "/v1/gateway/approvals/batch", json=twice).json()
    assert answers["approvals"][0]["id"] == first["id"]
    assert answers["approvals"][0]["reused"] is True
    assert answers["approvals"][1]["reused"] is False  # spent by the item before it
    assert answers["approvals"][1]["status"] == "pending"


def test_a_bad_item_is_refused_alone_and_bad_batches_are_422(harness: Harness) -> None:
    mismatch = {**_approval_body("a" * 64), "action_hash": "0" * 64}
    bad_spec = {**_approval_body("b" * 64), "action_spec": {"type": "NOT A TYPE"}}
    body = {"approvals": [_approval_body("c" * 64), mismatch, bad_spec]}
    answers = harness.gateway("POST", "/v1/gateway/approvals/batch", json=body).json()["approvals"]
    assert answers[0]["status"] == "pending"
    assert answers[1] == {
        "error": {
            "status": 422,
            "message": "`action_hash` does not match `action_spec`",
            "field": "action_hash",
        }
    }
    assert answers[2]["error"]["status"] == 422
    assert answers[2]["error"]["field"].startswith("action_spec")
    for bad in ({"approvals": []}, {"approvals": [{"agent": "x"}]}, {"other": 1}):
        r = harness.gateway("POST", "/v1/gateway/approvals/batch", json=bad)
        assert r.status_code == 422
        assert r.json()["error"]
    assert harness.call("POST", "/v1/gateway/approvals/batch", json=body).status_code == 401


def test_a_grant_answers_batched_items_as_one_by_one(harness: Harness) -> None:
    """A gateway batches the holds of one loop iteration: a grant covers them there too."""
    harness.create_agent("Finance-Bot")
    harness.create_agent("Other-Bot")
    held = _grants_held(harness)
    grant = harness.admin(
        "POST", f"/v1/approvals/{held['id']}/approve", json={"grant": {"max_uses": 2}}
    ).json()["grant"]
    items = [_grant_item("Finance-Bot"), _grant_item("Other-Bot"), _grant_item("Finance-Bot"),
             _grant_item("Finance-Bot")]  # fmt: skip
    answers = harness.gateway(
        "POST", "/v1/gateway/approvals/batch", json={"approvals": items}
    ).json()["approvals"]
    approved = {"id": None, "status": "approved", "grant_id": grant["id"], "reused": False}
    assert answers[0] == approved
    assert answers[1]["status"] == "pending"  # another agent: no grant covers it
    assert answers[2] == approved
    assert answers[3]["status"] == "pending"  # two uses, used up by the items before it
    events = harness.admin("GET", "/v1/audit?limit=1000").json()["events"]
    assert [e["subject"] for e in events if e["event_type"] == "grant.used"] == [grant["id"]] * 2


def _grant_item(agent: str) -> dict[str, object]:
    spec = {
        "type": "stripe.transfer.create",
        "resource": {"provider": "stripe", "target": "transfers"},
        "parameters": {"amount": 5000, "currency": "usd", "destination": "acct_1"},
    }
    return {"agent": agent, "connector": "stripe", "action_spec": spec, "reason": "held",
            "action_hash": parse_action_spec(spec).action_hash}  # fmt: skip


def _grants_held(harness: Harness) -> dict[str, object]:
    answer = harness.gateway("POST", "/v1/gateway/approvals", json=_grant_item("Finance-Bot"))
    assert answer.status_code == 200, answer.text
    data: dict[str, object] = answer.json()
    assert data["status"] == "pending"
    return data
