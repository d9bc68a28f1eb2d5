"""An execute whose upstream TLS handshake fails says so, with the fix.

It answered 502 `upstream_unreachable` "`127.0.0.1` could not be reached: ConnectError":
the cause (a certificate the control plane does not trust) was hidden. Now the message
names it as the gateway does (`TLS to `host:port` failed: CERTIFICATE_VERIFY_FAILED`) and
how to trust the CA (`AGENTFIREWALL_UPSTREAM_CA`, `tf up --upstream-ca`). Nothing was sent:
the action stays decided and `retryable` true (the same token executes it once trusted).
"""

from __future__ import annotations

import ssl

import httpx
import pytest

from agentfirewall_server.executor import Planned, _unreachable
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no store here


@sqlite_only
def test_an_untrusted_upstream_certificate_is_named_with_the_fix(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    h, github = harness, fakes["github"]
    github.clear()
    body = {"type": "github", "token": "ghp_tls_secret", "base_url": github.url}  # untrusted CA
    assert h.admin("POST", "/v1/connectors", json=body).status_code == 201
    key = h.create_agent("Bot")
    decided = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    action_id, token = decided["action_request_id"], decided["decision_token"]
    path = f"/v1/actions/{action_id}/execute"
    answer = h.agent(key, "POST", path, json={"decision_token": token})
    assert answer.status_code == 502, answer.text
    error = answer.json()
    assert (error["error"], error["retryable"]) == ("upstream_unreachable", True)
    message = error["message"]
    assert message.startswith(f"TLS to `127.0.0.1:{github.tls_port}` failed: CERTIFICATE_VERIFY")
    assert "trust its CA with AGENTFIREWALL_UPSTREAM_CA (tf up --upstream-ca)" in message
    assert "no byte of the request was sent" in message
    assert "ghp_tls_secret" not in answer.text
    assert github.received() == []
    state = h.agent(key, "GET", f"/v1/actions/{action_id}").json()
    assert (state["status"], state["execution_state"]) == ("allowed", None)


def _planned() -> Planned:
    return Planned("github", "GET", "https://api.example.com:8443/x", [], b"", "api.example.com")


def _failed(exc: ssl.SSLError) -> httpx.ConnectError:
    """As httpx raises it: its error from httpcore's, from ssl's."""
    try:
        try:
            raise exc
        except ssl.SSLError as inner:
            raise httpx.ConnectError("handshake") from inner
    except httpx.ConnectError as outer:
        return outer


def test_a_certificate_for_another_host_is_named_without_the_ca_fix() -> None:
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.reason, mismatch.verify_code = "CERTIFICATE_VERIFY_FAILED", 62
    mismatch.verify_message = "Hostname mismatch, certificate is not valid for 'api.example.com'."
    assert _unreachable(_planned(), _failed(mismatch)) == (
        "TLS to `api.example.com:8443` failed: CERTIFICATE_VERIFY_FAILED (Hostname mismatch, "
        "certificate is not valid for 'api.example.com'.)"
    )
    protocol = ssl.SSLError(1, "wrong version number")
    protocol.reason = "WRONG_VERSION_NUMBER"  # an https URL for a plain-HTTP port
    assert _unreachable(_planned(), _failed(protocol)) == (
        "TLS to `api.example.com:8443` failed: WRONG_VERSION_NUMBER"
    )
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    assert _unreachable(_planned(), refused) == (
        "`api.example.com` could not be reached: ConnectError"
    )
