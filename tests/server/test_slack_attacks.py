"""Someone in (or outside) the Slack channel attacking the Approve / Deny buttons: members
nobody linked, viewers, replays, stale and forged signatures, odd signed payloads."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from agentfirewall_server.notify.slack import sign
from tests.server.conftest import SPEC, Harness
from tests.server.test_approvals_api import POLICY
from tests.server.test_slack import SECRET, _callback, _configure, _hold

PEOPLE = {"U0ALICE": "alice@example.com", "U0VIVIAN": "vivian@example.com",
          "U0ADA": "ada@example.com"}  # fmt: skip
ROLES = {"alice@example.com": "member", "vivian@example.com": "viewer", "ada@example.com": "admin"}


def _people(h: Harness) -> None:
    _configure(h, PEOPLE)  # every one made a member
    for email in PEOPLE.values():
        if ROLES[email] != "member":
            uid = next(u["id"] for u in h.admin("GET", "/v1/users").json()["users"]
                       if u["email"] == email)  # fmt: skip
            assert h.admin("PATCH", f"/v1/users/{uid}", {"role": ROLES[email]}).status_code == 200


def _status(h: Harness, approval_id: str) -> str:
    status: str = h.admin("GET", f"/v1/approvals/{approval_id}").json()["status"]
    return status


def _responded(h: Harness) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = h.admin("GET", "/v1/audit?event_type=approval.responded").json()[
        "events"
    ]
    return events


def test_a_member_nobody_linked_changes_nothing(harness: Harness) -> None:
    """A guest in the channel, a Slack Connect partner, anyone whose Slack id is not in
    `slack_approvers`: answered privately (200, as Slack wants), the approval stays."""
    _people(harness)
    apv = _hold(harness)["approval"]["id"]
    for member in ("U0MALLORY", "", "u0alice", "U0ALICE "):
        for verb in ("approve", "approve_1h", "deny"):
            answer = _callback(harness, apv, verb, member=member)
            assert answer.status_code == 200
            assert answer.json()["ok"] is False
            assert answer.json()["response_type"] == "ephemeral"
            assert "not linked to a TameFlare user" in answer.json()["text"]
    assert _status(harness, apv) == "pending"
    assert _responded(harness) == []
    assert harness.admin("GET", "/v1/grants").json()["grants"] == []


def test_before_an_owner_links_anyone_no_click_counts(harness: Harness) -> None:
    _configure(harness, {})
    apv = _hold(harness)["approval"]["id"]
    assert _callback(harness, apv, "approve").json()["ok"] is False
    assert _status(harness, apv) == "pending"


def test_a_click_acts_with_the_linked_users_current_role(harness: Harness) -> None:
    """A viewer approves nothing; an approval that needs an admin needs a linked admin."""
    _people(harness)
    assert harness.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    key = harness.create_agent("Bot")
    held = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    apv = held["approval"]["id"]
    assert held["approval"]["required_approver_roles"] == ["admin", "owner"]
    viewer = _callback(harness, apv, "approve", member="U0VIVIAN")
    assert viewer.json()["ok"] is False
    assert "you are viewer" in viewer.json()["text"]
    member = _callback(harness, apv, "approve_1h", member="U0ALICE")
    assert member.json()["ok"] is False
    assert "you are member" in member.json()["text"]
    assert _status(harness, apv) == "pending"
    admin = _callback(harness, apv, "approve", member="U0ADA")
    assert admin.json() == {"ok": True, "status": "approved"}
    row = harness.admin("GET", f"/v1/approvals/{apv}").json()
    assert row["decided_by"] == "slack:ada@example.com"


def test_a_removed_or_demoted_user_clicks_no_more(harness: Harness) -> None:
    _people(harness)
    users = {u["email"]: u["id"] for u in harness.admin("GET", "/v1/users").json()["users"]}
    apv = _hold(harness)["approval"]["id"]
    assert harness.admin("DELETE", f"/v1/users/{users['alice@example.com']}").status_code == 204
    gone = _callback(harness, apv, "approve", member="U0ALICE")
    assert gone.json()["ok"] is False
    assert "no longer exists" in gone.json()["text"]
    demoted = harness.admin("PATCH", f"/v1/users/{users['ada@example.com']}", {"role": "viewer"})
    assert demoted.status_code == 200
    assert _callback(harness, apv, "approve", member="U0ADA").json()["ok"] is False
    assert _status(harness, apv) == "pending"


def _signed(body: bytes, stamp: str, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(secret, stamp, body)}  # fmt: skip


def _click_body(approval_id: str, verb: str, member: str = "U0ALICE") -> bytes:
    payload = {"type": "block_actions", "user": {"id": member},
               "actions": [{"action_id": verb, "value": approval_id}]}  # fmt: skip
    return urlencode({"payload": json.dumps(payload)}).encode()


_SLACK = "/v1/integrations/slack/interactivity"


def test_a_replayed_click_decides_nothing_twice(harness: Harness) -> None:
    """The very same signed request, sent again inside the 5 minutes: one decision, one
    grant, one audit event."""
    _configure(harness)
    apv = _hold(harness)["approval"]["id"]
    body = _click_body(apv, "approve_1h")
    headers = _signed(body, str(int(time.time())))
    first = harness.call("POST", _SLACK, content=body, headers=headers)
    assert first.json() == {"ok": True, "status": "approved"}
    for _ in range(3):
        again = harness.call("POST", _SLACK, content=body, headers=headers)
        assert again.json()["ok"] is False
    assert len(harness.admin("GET", "/v1/grants").json()["grants"]) == 1
    assert len(_responded(harness)) == 1


def _variants(apv: str) -> list[tuple[str, bytes, dict[str, str]]]:
    body = _click_body(apv, "approve")
    now = int(time.time())
    ok = _signed(body, str(now))
    good = ok["X-Slack-Signature"]
    other = _click_body(apv, "approve", member="U0OTHER")
    return [
        # past the 300 s window by 30 s: the calls before a variant take time (and `now` is
        # truncated), so `now + 301` was inside the window by the time it was sent
        ("stale", body, _signed(body, str(now - 330))),
        ("from the future", body, _signed(body, str(now + 330))),
        ("no timestamp", body, {**ok, "X-Slack-Request-Timestamp": ""}),
        ("timestamp not a number", body, _signed(body, "yesterday")),
        ("huge timestamp", body, _signed(body, "9" * 5000)),
        ("timestamp moved", body, {**ok, "X-Slack-Request-Timestamp": str(now - 1)}),
        ("body changed after signing", other, ok),
        ("another secret", body, _signed(body, str(now), secret="guess")),
        ("no signature", body, {**ok, "X-Slack-Signature": ""}),
        ("v1", body, {**ok, "X-Slack-Signature": "v1=" + good[3:]}),
        ("upper-case hex", body, {**ok, "X-Slack-Signature": "v0=" + good[3:].upper()}),
        ("bare hex", body, {**ok, "X-Slack-Signature": good[3:]}),
        ("truncated", body, {**ok, "X-Slack-Signature": good[:-2]}),
        ("signature of the empty body", body, _signed(b"", str(now))),
    ]  # fmt: skip


def test_forged_stale_and_respelled_signatures_are_refused(harness: Harness) -> None:
    _configure(harness)
    apv = _hold(harness)["approval"]["id"]
    for name, body, headers in _variants(apv):
        answer = harness.call("POST", _SLACK, content=body, headers=headers)
        assert answer.status_code == 401, (name, answer.text)
    assert _status(harness, apv) == "pending"


def test_a_body_over_the_limit_is_refused_before_it_is_verified(harness_factory: Any) -> None:
    h: Harness = harness_factory(max_body_bytes=4096)
    _configure(h)
    apv = _hold(h)["approval"]["id"]
    payload = {"type": "block_actions", "user": {"id": "U0ALICE"}, "pad": "x" * 8192,
               "actions": [{"action_id": "approve", "value": apv}]}  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)}).encode()
    answer = h.call("POST", _SLACK, content=body, headers=_signed(body, str(int(time.time()))))
    assert answer.status_code == 413
    assert _status(h, apv) == "pending"


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": ["approve"]},
        {"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": "approve"},
        {"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": {"action_id": "approve"}},
        {"type": "block_actions", "user": "U0ALICE", "actions": [{"action_id": "approve"}]},
        {"type": "block_actions", "user": None, "actions": [{"action_id": "approve"}]},
        {"type": "block_actions", "user": {"id": ["U0ALICE"]}, "actions": [{"action_id": "deny"}]},
        {"type": "block_actions", "user": {"id": "U0ALICE"},
         "actions": [{"action_id": "approve", "value": {"id": 1}}]},
        {"type": "block_actions", "user": {"id": "U0ALICE"},
         "actions": [{"action_id": ["approve"], "value": "x"}]},
        {"type": "view_submission", "user": {"id": "U0ALICE"}},
        [],
        "approve",
        None,
    ],
    ids=repr,
)  # fmt: skip
def test_odd_signed_payloads_are_answered_not_crashed(harness: Harness, payload: Any) -> None:
    """Signed, so from Slack (or whoever holds the secret), but shaped unlike a click:
    4xx or an ignored/refused 200, never a 500, never a decision."""
    _configure(harness)
    apv = _hold(harness)["approval"]["id"]
    for body in (urlencode({"payload": json.dumps(payload)}).encode(), b"payload=" + b"[" * 5000,
                 b"\xff\xfe", b"payload=%FF", b""):  # fmt: skip
        answer = harness.call("POST", _SLACK, content=body,
                              headers=_signed(body, str(int(time.time()))))  # fmt: skip
        assert answer.status_code in (200, 400), (body[:60], answer.text)
        if answer.status_code == 200:
            assert answer.json().get("ok") is not True or answer.json().get("ignored")
    assert _status(harness, apv) == "pending"


def test_approvers_name_users_and_slack_ids(harness: Harness) -> None:
    bad_id = harness.admin("PATCH", "/v1/settings", {"slack_approvers": {"alice": "a@x.io"}})
    assert bad_id.status_code == 422
    assert bad_id.json()["field"].startswith("slack_approvers")
    nobody = harness.admin("PATCH", "/v1/settings",
                           {"slack_approvers": {"U0NOBODY": "nobody@example.com"}})  # fmt: skip
    assert nobody.status_code == 422
    assert nobody.json()["field"] == "slack_approvers.U0NOBODY"
    assert harness.admin("GET", "/v1/settings").json()["slack"]["approvers"] == {}
