"""Connectors with computed credentials (issue 22): the API checks the credential document
(422 naming the field, never echoing a secret) and vaults it whole."""

from __future__ import annotations

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
