"""Approving a pending deployment is named, high risk, and held by github-safe-defaults.

A protected environment's required reviewers (or a custom deployment protection rule) are
the human gate of a deployment. GraphQL `approveDeployments` was named (medium risk) but the
pack let it through; the REST reviews (`POST .../actions/runs/N/pending_deployments`,
`.../deployment_protection_rule`) were unnamed writes. Anything but `state: rejected` is an
approval, in any spelling of the value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import HttpRequest, ParsedAction
from agentfirewall.connectors.github import CONNECTOR as GH
from agentfirewall.policy import AccessRule, Engine, load_pack

RUN = "https://api.github.com/repos/acme/api/actions/runs/42"
REVIEWS = [RUN + "/pending_deployments", RUN + "/deployment_protection_rule"]
APPROVALS = [
    b'{"environment_ids": [1], "state": "approved", "comment": "ship it"}',
    b'{"environment_ids": [1], "state": "APPROVED"}',
    b'{"environment_name": "production", "state": "Approved"}',
    b'{"environment_ids": [1]}',  # no state: GitHub refuses it; never named harmless
    b'{"environment_ids": [1], "state": "rejected ", "x": 1}',
    b'{"environment_ids": [1], "state": ["rejected"]}',
]
REJECTIONS = [b'{"environment_ids": [1], "state": "rejected"}', b'{"state": "Rejected"}']
GRAPHQL = "https://api.github.com/graphql"


def _parse(url: str, body: bytes) -> ParsedAction:
    headers = (("content-type", "application/json"),)
    return GH.parse(HttpRequest.from_url("POST", url, body=body, headers=headers))


def _spec(url: str, body: bytes) -> ActionSpec:
    return _parse(url, body).spec


def _mutation(name: str) -> bytes:
    query = f'mutation {{ {name}(input: {{workflowRunId: "R_1", environmentIds: ["E_1"], comment: "ok"}}) {{ deployments {{ id }} }} }}'  # noqa: E501
    return json.dumps({"query": query}).encode()


@pytest.mark.parametrize("url", REVIEWS)
@pytest.mark.parametrize("body", APPROVALS)
def test_a_review_that_is_not_a_rejection_is_an_approval(url: str, body: bytes) -> None:
    parsed = _parse(url, body)
    assert parsed.spec.type == "github.deployment.approve"
    assert parsed.risk == "high"


@pytest.mark.parametrize("url", REVIEWS)
@pytest.mark.parametrize("body", REJECTIONS)
def test_a_rejection_is_named_as_one(url: str, body: bytes) -> None:
    assert _spec(url, body).type == "github.deployment.reject"


def _engine() -> Engine:
    return Engine(
        access_rules=[AccessRule("Bot", "github", "github.*", "allow")],
        policies=[load_pack("github-safe-defaults")],
    )


def _outcome(spec: ActionSpec) -> str:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    decision = _engine().decide(spec, agent="Bot", mode="proxy", now=now, connector="github")
    return decision.outcome


@pytest.mark.parametrize("url", REVIEWS)
def test_the_pack_holds_every_approval_and_passes_rejections(url: str) -> None:
    for body in APPROVALS:
        assert _outcome(_spec(url, body)) == "require_approval", body
    for body in REJECTIONS:
        assert _outcome(_spec(url, body)) == "allow", body


def test_the_pack_holds_graphql_approvals_too() -> None:
    approve = _spec(GRAPHQL, _mutation("approveDeployments"))
    assert approve.type == "github.deployment.approve"
    assert _outcome(approve) == "require_approval"
    reject = _spec(GRAPHQL, _mutation("rejectDeployments"))
    assert reject.type == "github.deployment.reject"
    assert _outcome(reject) == "allow"
