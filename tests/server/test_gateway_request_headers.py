"""The headers a held request's approval binds (``pipeline.bind_request``) are stored and
shown to its approver, the value of one whose name says credential masked whatever the
gateway sent (masking what is masked changes nothing); more than a gateway may bind is
refused. Single and batch alike, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from agentfirewall_server.store.schema import approvals
from tests.server.conftest import Harness
from tests.server.test_gateway_api import _approval_body

M = "[REDACTED:generic_secret]"
SENT = [["mcp-session-id", "7f3c0a9e-session"], ["x-amz-acl", "public-read"],
        ["x-amz-server-side-encryption-customer-key", "c2VjcmV0LWtleQ=="]]  # fmt: skip
SHOWN = [["mcp-session-id", M], ["x-amz-acl", "public-read"],
         ["x-amz-server-side-encryption-customer-key", M]]  # fmt: skip


def _held(headers: Any, harness: Harness, *, batch: bool = False) -> Any:
    body = _approval_body()
    body["request"]["headers"] = headers
    if not batch:
        return harness.gateway("POST", "/v1/gateway/approvals", json=body)
    return harness.gateway("POST", "/v1/gateway/approvals/batch", json={"approvals": [body]})


def test_bound_headers_are_stored_and_shown_with_credentials_masked(harness: Harness) -> None:
    single = _held(SENT, harness).json()
    batch = _held(SENT, harness, batch=True).json()["approvals"][0]
    for made in (single, batch):
        shown = harness.admin("GET", f"/v1/approvals/{made['id']}").json()["request"]
        assert shown["headers"] == SHOWN
    stored = harness.state.db.read_sync(lambda c: c.execute(select(approvals.c.request)).all())
    assert [json.loads(row.request)["headers"] for row in stored] == [SHOWN, SHOWN]
    assert "7f3c0a9e" not in harness.admin("GET", "/v1/approvals").text
    again = _held(SHOWN, harness).json()  # what a gateway masked is stored as it is
    assert harness.admin("GET", f"/v1/approvals/{again['id']}").json()["request"]["headers"] == (
        SHOWN
    )


def test_headers_past_what_a_gateway_binds_are_refused(harness: Harness) -> None:
    for bad in ([["x-h", "v"]] * 101, [["", "v"]], [["x-h", "v" * 513]], [["x-h"]]):
        assert _held(bad, harness).status_code == 422
