"""Connectors with computed credentials (issue 22): the API checks the credential document
(422 naming the field, never echoing a secret) and vaults it whole."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.server.conftest import Harness

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS = {"kind": "aws_sigv4", "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": SECRET}


def _add(h: Harness, **body: object) -> Any:
    return h.admin("POST", "/v1/connectors", json=body)


def test_aws_connector_with_sigv4_keys_is_vaulted(harness: Harness) -> None:
    created = _add(harness, type="aws", auth_type="aws_sigv4", token=json.dumps(AWS))
    assert created.status_code == 201, created.text
    data = created.json()
    assert (data["type"], data["auth_type"], data["has_credential"]) == (
        "aws", "aws_sigv4", True,
    )  # fmt: skip
    assert data["domains"] == ["*.amazonaws.com"]
    assert SECRET not in created.text


def test_bad_documents_are_422_naming_the_field(harness: Harness) -> None:
    cases = [
        ({"type": "aws", "auth_type": "aws_sigv4",
          "token": json.dumps({**AWS, "secret_access_key": "short"})},
         "token.secret_access_key"),
        ({"type": "aws", "token": SECRET}, "auth_type"),
        ({"type": "github", "auth_type": "aws_sigv4", "token": json.dumps(AWS)}, "auth_type"),
        ({"type": "aws", "auth_type": "aws_sigv4"}, "token"),
        ({"type": "generic", "domains": ["api.example.com"], "auth_type": "oauth2",
          "token": json.dumps({"kind": "oauth2", "token_url": "http://auth.example.com/t",
                               "client_id": "c", "client_secret": SECRET})}, "token.token_url"),
        ({"type": "github", "auth_type": "github_app",
          "token": json.dumps({"kind": "github_app", "app_id": "1", "installation_id": "2",
                               "private_key": SECRET * 4})}, "token.private_key"),
    ]  # fmt: skip
    for body, field in cases:
        answer = _add(harness, **body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["field"] == field, answer.text
        assert SECRET not in answer.text


# -- a rotated OAuth2 refresh token, stored by the gateway ---------------------------------

OAUTH = {"kind": "oauth2", "token_url": "https://auth.example.com/token", "client_id": "cid",
         "client_secret": SECRET, "grant": "refresh_token",
         "refresh_token": "rt0-" + SECRET}  # fmt: skip


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _served(h: Harness, cid: str) -> dict[str, Any]:
    config = h.gateway("GET", "/v1/gateway/config").json()
    (found,) = [c for c in config["connectors"] if c["id"] == cid]
    credential: dict[str, Any] = json.loads(found["credential"])
    return credential


def test_the_gateway_stores_a_rotated_refresh_token_compared_first(harness: Harness) -> None:
    created = _add(harness, type="generic", domains=["api.example.com"], auth_type="oauth2",
                   token=json.dumps(OAUTH))  # fmt: skip
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    path = f"/v1/gateway/connectors/{cid}/refresh-token"
    rotated = {"previous_sha256": _sha(OAUTH["refresh_token"]), "refresh_token": "rt1-rotated"}
    before = harness.gateway("GET", "/v1/gateway/config").json()["version"]

    assert harness.admin("POST", path, json=rotated).status_code == 403  # the gateway's alone
    stored = harness.gateway("POST", path, json=rotated)
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"connector": cid, "stored": True}
    assert _served(harness, cid) == {**OAUTH, "refresh_token": "rt1-rotated"}
    assert harness.gateway("GET", "/v1/gateway/config").json()["version"] > before
    again = harness.gateway("POST", path, json=rotated)  # sent twice: nothing changes
    assert again.json() == {"connector": cid, "stored": False}

    stale = harness.gateway("POST", path, json={**rotated, "refresh_token": "rt2-late"})
    assert stale.status_code == 409  # the vault holds rt1 now, not the token it replaces
    assert stale.json()["field"] == "refresh_token"
    assert _served(harness, cid)["refresh_token"] == "rt1-rotated"
    for answer in (stored, again, stale):
        assert "rt1-rotated" not in answer.text
        assert SECRET not in answer.text

    events = harness.admin("GET", "/v1/audit?event_type=connector.credential_rotated").json()
    (event,) = events["events"]
    assert (event["subject"], event["data"]) == (cid, {"field": "refresh_token"})
    assert "rt1-rotated" not in json.dumps(events)


def test_only_a_refresh_token_credential_takes_a_rotation(harness: Harness) -> None:
    static = _add(harness, type="generic", domains=["api.example.com"], token=SECRET)
    computed = _add(harness, type="aws", auth_type="aws_sigv4", token=json.dumps(AWS))
    body = {"previous_sha256": _sha(SECRET), "refresh_token": "rt1"}
    for created in (static, computed):
        cid = created.json()["id"]
        answer = harness.gateway("POST", f"/v1/gateway/connectors/{cid}/refresh-token", json=body)
        assert answer.status_code == 409, answer.text
        assert SECRET not in answer.text
    missing = harness.gateway("POST", "/v1/gateway/connectors/nope/refresh-token", json=body)
    assert missing.status_code == 404
    bad = harness.gateway("POST", f"/v1/gateway/connectors/{cid}/refresh-token",
                          json={**body, "previous_sha256": "rt0"})  # fmt: skip
    assert bad.status_code == 422
