"""Approvals in Slack against the local fake Slack API, with signed button callbacks."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from agentfirewall_server.notify.slack import sign
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness

SECRET = "slack-signing-secret"


#: Slack members and the TameFlare users they are linked to (``slack_approvers``).
APPROVERS = {"U0ALICE": "alice@example.com"}


def _configure(h: Harness, approvers: dict[str, str] = APPROVERS) -> None:
    for email in sorted(set(approvers.values())):
        made = h.admin("POST", "/v1/users",
                       {"email": email, "password": "password-1", "role": "member"})  # fmt: skip
        assert made.status_code == 201, made.text
    r = h.admin(
        "PATCH",
        "/v1/settings",
        json={
            "slack_bot_token": "xoxb-test-token",
            "slack_signing_secret": SECRET,
            "slack_channel": "C0FAKE",
            "slack_approvers": approvers,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["slack"] == {"channel": "C0FAKE", "configured": True, "approvers": approvers}
    assert "xoxb" not in r.text


def _hold(h: Harness) -> dict[str, Any]:
    key = h.create_agent("Bot")
    h.admin(
        "POST",
        "/v1/permissions",
        json={
            "agent": "Bot",
            "connector": "github",
            "action_pattern": "*",
            "decision": "require_approval",
        },
    )
    body: dict[str, Any] = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    return body


def _callback(
    h: Harness,
    approval_id: str,
    verb: str,
    *,
    secret: str = SECRET,
    stamp: int | None = None,
    member: str = "U0ALICE",
) -> Any:
    payload = {
        "type": "block_actions",
        "user": {"id": member, "username": "alice"},
        "actions": [{"action_id": verb, "value": approval_id}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(stamp if stamp is not None else int(time.time()))
    return h.call(
        "POST",
        "/v1/integrations/slack/interactivity",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(secret, ts, body),
        },
    )


def test_pending_approval_posts_buttons_and_a_signed_click_decides(
    harness_factory: Any, fakes: FakeUpstreams
) -> None:
    slack = fakes["slack"]
    slack.clear()
    h: Harness = harness_factory(slack_api_url=slack.http_url + "/api")
    _configure(h)
    body = _hold(h)
    apv = body["approval"]["id"]
    posted = slack.wait_for(1)[0]
    assert posted.path == "/api/chat.postMessage"
    assert posted.header("authorization") == "Bearer xoxb-test-token"
    message = posted.json()
    assert message["channel"] == "C0FAKE"
    buttons = message["blocks"][1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("approve", apv), ("approve_1h", apv), ("deny", apv)]  # fmt: skip
    assert [b["text"]["text"] for b in buttons] == ["Approve once", "Approve for 1 h", "Deny"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the message ts is stored after the post
        if h.state.db.read_sync(
            lambda c: c.exec_driver_sql("SELECT slack_ts FROM approvals").scalar()
        ):
            break
        time.sleep(0.05)
    r = _callback(h, apv, "approve")
    assert r.status_code == 200
    assert r.json()["status"] == "approved"
    row = h.admin("GET", f"/v1/approvals/{apv}").json()
    assert row["status"] == "approved"
    assert row["decided_by"] == "slack:alice@example.com"
    updated = slack.wait_for(2)[1]
    assert updated.path == "/api/chat.update"
    assert "Approved by slack:alice@example.com" in updated.json()["text"]
    second = _callback(h, apv, "deny")
    assert second.json()["ok"] is False
    assert h.admin("GET", f"/v1/approvals/{apv}").json()["status"] == "approved"


def test_approve_for_an_hour_makes_a_grant(harness: Harness) -> None:
    _configure(harness)
    apv = _hold(harness)["approval"]["id"]
    answer = _callback(harness, apv, "approve_1h")
    assert answer.json()["status"] == "approved"
    grants = harness.admin("GET", "/v1/grants").json()["grants"]
    assert [(g["approval_id"], g["max_uses"], g["created_by"]) for g in grants] == [
        (apv, None, "slack:alice@example.com")]  # fmt: skip
    granted = grants[0]
    assert granted["expires_at"] is not None
    assert granted["action_type"] == harness.admin("GET", f"/v1/approvals/{apv}").json()[
        "action_spec"]["type"]  # fmt: skip


def test_bad_signatures_and_stale_timestamps_are_refused(harness: Harness) -> None:
    _configure(harness)
    body = _hold(harness)
    apv = body["approval"]["id"]
    forged = _callback(harness, apv, "approve", secret="wrong")
    assert forged.status_code == 401
    stale = _callback(harness, apv, "approve", stamp=int(time.time()) - 600)
    assert stale.status_code == 401
    assert "5 minutes" in stale.json()["message"]
    assert harness.admin("GET", f"/v1/approvals/{apv}").json()["status"] == "pending"


def test_interactivity_is_404_when_slack_is_not_configured(harness: Harness) -> None:
    r = _callback(harness, "apv_x", "approve")
    assert r.status_code == 404


def test_what_the_agent_chose_is_plain_text_in_slack(
    harness_factory: Any, fakes: FakeUpstreams
) -> None:
    """A target written to ping the channel, fake a link or end a code span is shown as
    sent, in a plain text field; escape sequences and bidi controls as their escapes."""
    slack = fakes["slack"]
    slack.clear()
    h: Harness = harness_factory(slack_api_url=slack.http_url + "/api")
    _configure(h)
    key = h.create_agent("<!here> & Bot")
    h.admin("POST", "/v1/permissions", json={"agent": "<!here> & Bot", "connector": "github",
                                             "action_pattern": "*",
                                             "decision": "require_approval"})  # fmt: skip
    target = "acme/api` <!channel> <https://evil.example|Approve: safe> *ok* \x1b[2J acme/\u202eipa"
    spec = {**SPEC, "resource": {**SPEC["resource"], "target": target}}
    held = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert held["status"] == "pending_approval"
    message = slack.wait_for(1)[0].json()
    section = message["blocks"][0]
    assert section["text"] == {
        "type": "mrkdwn",
        "text": "*&lt;!here&gt; &amp; Bot* asks for approval",
    }
    assert message["text"].startswith("Approval needed: &lt;!here&gt; &amp; Bot (apv_")
    shown = {f["text"].split(": ", 1)[0]: f["text"].split(": ", 1)[1] for f in section["fields"]}
    assert all(f["type"] == "plain_text" for f in section["fields"])
    assert shown["Target"] == target.replace("\x1b", "\\x1b").replace("\u202e", "\\u202e")
    assert shown["Action"] == "github.pr.merge"
    mrkdwn = json.dumps(message["blocks"][1:]) + section["text"]["text"] + message["text"]
    assert "<!" not in mrkdwn
    assert "evil.example" not in mrkdwn
