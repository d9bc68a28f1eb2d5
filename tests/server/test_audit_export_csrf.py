"""The audit export records an event and signs a checkpoint: a signed-in browser runs it only
with its session's CSRF token (the dashboard's Export buttons send it), never because a link
on another site was followed (SameSite=Lax sends the cookie on a top-level GET). A token's
export (`tf audit export`, curl) is unchanged."""

from __future__ import annotations

from typing import Any

from tests.server.conftest import Harness
from tests.server.test_sessions import SignedIn

EXPORT = "/v1/audit/export?format=jsonl"


def _exports(h: Harness) -> list[Any]:
    events: list[Any] = h.admin("GET", "/v1/audit?event_type=config.exported").json()["events"]
    return events


def _checkpoints(h: Harness) -> int:
    return len(h.admin("GET", "/v1/audit/checkpoints").json()["checkpoints"])


def test_a_sessions_export_without_its_csrf_token_does_nothing(harness: Harness) -> None:
    owner = SignedIn(harness, "owner@example.com")
    other = SignedIn(harness, "other@example.com")
    checkpoints = _checkpoints(harness)
    cookie = {"Cookie": f"tf_session={owner.cookie}"}
    for sent in (None, "", "wrong", other.csrf):
        headers = cookie if sent is None else {**cookie, "X-CSRF-Token": sent}
        answer = harness.call("GET", EXPORT, headers=headers)
        assert answer.status_code == 403, (sent, answer.text)
        assert answer.json()["error"] == "csrf_failed"
        assert "`X-CSRF-Token`" in answer.json()["message"]
        assert "records what it does" in answer.json()["message"]
    assert _exports(harness) == []
    assert _checkpoints(harness) == checkpoints
    assert harness.call("GET", "/v1/audit", headers=cookie).status_code == 200  # reads need none


def test_a_sessions_export_with_its_csrf_token_and_a_tokens_export_run(harness: Harness) -> None:
    owner = SignedIn(harness, "owner@example.com")
    answer = owner.call("GET", EXPORT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == 'attachment; filename="audit.jsonl"'
    assert harness.call("GET", EXPORT, token=owner.token).status_code == 200
    assert harness.admin("GET", EXPORT).status_code == 200
    actors = [event["actor"] for event in _exports(harness)]
    assert actors == ["admin-token", "token:cli", "owner@example.com"]
