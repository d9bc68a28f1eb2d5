"""A held request's path, query and body preview are stored and shown with every credential
masked, whatever the gateway sent: an older gateway sent them as they were. What a gateway
masked is stored as it is (masking again changes nothing), and the digest the approval
binds is the request's own. Single and batch alike, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from agentfirewall_server.store.schema import approvals
from tests.server.conftest import Harness
from tests.server.test_gateway_api import _approval_body

TOKEN = "ghp_" + "R8kq2ZbX7pLmW4nV9cT3yJ6hF1dS5gA0eU2i"  # a github_token
M = "[REDACTED:generic_secret]"
#: (what an older gateway sent, what is stored and shown)
SENT = {"method": "POST", "host": "api.github.com", "path": f"/repos/acme/api/keys/{TOKEN}",
        "query": f"access_token={TOKEN}&per_page=5",
        "body_preview": '{"title": "ci", "config": {"password": "Sup3rS3cret!"}}',
        "digest": "d" * 64}  # fmt: skip
SHOWN = {**SENT, "path": "/repos/acme/api/keys/[REDACTED:github_token]",
         "query": f"access_token={M}&per_page=5",
         "body_preview": f'{{"title": "ci", "config": {{"password": "{M}"}}}}'}  # fmt: skip


def _held(request: dict[str, Any], batch: bool, harness: Harness) -> dict[str, Any]:
    body = {**_approval_body(), "request": request}
    if not batch:
        made: dict[str, Any] = harness.gateway("POST", "/v1/gateway/approvals", json=body).json()
        return made
    answer = harness.gateway("POST", "/v1/gateway/approvals/batch", json={"approvals": [body]})
    first: dict[str, Any] = answer.json()["approvals"][0]
    return first


def test_a_request_sent_as_it_was_is_stored_and_shown_masked(harness: Harness) -> None:
    made = [_held(SENT, batch, harness) for batch in (False, True)]
    for answer in made:
        assert answer["status"] == "pending", answer
        shown = harness.admin("GET", f"/v1/approvals/{answer['id']}")
        assert shown.json()["request"] == SHOWN
    stored = harness.state.db.read_sync(lambda c: c.execute(select(approvals.c.request)).all())
    assert [json.loads(row.request) for row in stored] == [SHOWN, SHOWN]
    for secret in (TOKEN, "Sup3rS3cret!"):
        assert secret not in harness.admin("GET", "/v1/approvals").text


def test_what_a_gateway_masked_is_stored_as_it_is(harness: Harness) -> None:
    made = _held(SHOWN, False, harness)
    assert harness.admin("GET", f"/v1/approvals/{made['id']}").json()["request"] == SHOWN
    harness.admin("POST", f"/v1/approvals/{made['id']}/approve")
    again = _held(SENT, False, harness)  # the same request (digest): its approval is used
    assert (again["id"], again["reused"]) == (made["id"], True)
