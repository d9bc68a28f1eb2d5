"""An SDK action's decision input never keeps what only the shadow policies' detectors found.

The review's probe: with a content rule in shadow only, the action was scanned (for the shadow
policy) and `GET /actions/{id}` masked the key, yet the decision input was recorded as if no
detector had fired (its context holds the live policies' findings only): the key was stored
in `action_requests.decision_input` and shown by `GET /api/v1/traffic?shadow=diverged`.
"""

from __future__ import annotations

from sqlalchemy import select

from agentfirewall_server.store.schema import action_requests
from tests.server.conftest import Harness
from tests.server.sdkcontent import AWS_KEY, NO_SECRETS, content_policy, sdk_bot

SHADOW = content_policy("guardrails", NO_SECRETS)


def test_a_secret_only_a_shadow_policy_detects_is_withheld(harness: Harness) -> None:
    h = harness
    key = sdk_bot(h, SHADOW, shadow=True)
    spec = {"type": "github.issue.create", "resource": {"provider": "github", "target": "a/b"},
            "parameters": {"title": f"deploy key {AWS_KEY}", "labels": 2}}  # fmt: skip
    done = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert done.json()["status"] == "allowed"  # live: no content rule

    stored = h.state.db.read_sync(
        lambda c: c.execute(select(action_requests.c.decision_input)).scalar_one()
    )
    assert AWS_KEY not in stored
    listed = h.admin("GET", "/v1/traffic?shadow=diverged")
    (row,) = listed.json()["traffic"]
    assert row["shadow_decision"] == "deny"
    assert row["input"]["p"] == {"labels": 2}
    assert row["input"]["w"] == ["title"]  # withheld: a replay counts it partial
    assert AWS_KEY not in listed.text
