"""An unknown field in a request body is refused (422) and told the closest known one of
its own model, at the top level and in nested objects; a name close to none gets no guess."""

from __future__ import annotations

from typing import Any

import pytest

from agentfirewall.actions import parse_action_spec
from tests.server.conftest import SPEC, Harness


def _approval(request: dict[str, Any]) -> dict[str, Any]:
    spec = parse_action_spec(SPEC)
    return {"agent": "Bot", "connector": "github", "action_spec": spec.to_dict(),
            "action_hash": spec.action_hash, "reason": "held", "request": request}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/v1/agents", {"name": "Bot", "enviroment": "test"}, "enviroment",
         "unknown field `enviroment`: did you mean `environment`?"),
        ("/v1/permissions", {"agnet": "Bot", "connector": "github", "action_pattern": "*",
                             "decision": "allow"}, "agnet",
         "unknown field `agnet`: did you mean `agent`?"),
        ("/v1/agents", {"name": "Bot", "colour": "red"}, "colour", "unknown field `colour`"),
    ],
)  # fmt: skip
def test_admin_bodies(harness: Harness, path: str, body: dict[str, Any], field: str,
                      message: str) -> None:  # fmt: skip
    answer = harness.admin("POST", path, json=body)
    assert answer.status_code == 422
    assert (answer.json()["field"], answer.json()["message"]) == (field, message)


def test_a_nested_object(harness: Harness) -> None:
    request = {"method": "PUT", "host": "api.github.com", "path": "/x", "digst": "d" * 64}
    answer = harness.gateway("POST", "/v1/gateway/approvals", json=_approval(request))
    assert answer.status_code == 422
    assert answer.json()["field"] == "request.digst"
    assert answer.json()["message"] == "unknown field `request.digst`: did you mean `digest`?"
