"""GitHub GraphQL through the real gateway (httpx, CONNECT + interception) against the
fake GitHub: mutations are decided as the REST actions they perform, every action of a
document must be allowed, and refused documents never reach the upstream."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.support import (
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

URL = "https://api.github.com/graphql"
RULES = [
    rule("github.*", "allow"),
    rule("github.pr.merge", "require_approval"),
    rule("github.branch.delete", "deny"),
    rule("github.pr.close", "deny"),
]
MERGE = (
    "mutation M($id: ID!) { mergePullRequest(input: {pullRequestId: $id}) { clientMutationId } }"
)


@pytest.fixture(scope="module")
def gateway(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, StaticControl]]:
    snap = snapshot(RULES, connectors=[connector("github")], approval_timeout=30)
    running, control = start_gateway(tmp_path_factory.mktemp("gql"), fakes, snap)
    yield running, control
    running.stop()


def client(running: RunningGateway) -> httpx.Client:
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    return httpx.Client(
        proxy=running.proxy_url(), verify=ssl.create_default_context(cafile=str(bundle)),
        trust_env=False, timeout=20,
    )  # fmt: skip


def forwarded(fakes: FakeUpstreams) -> list[bytes]:
    return [r.body for r in fakes["github"].received("POST", "/graphql")]


def send(running: RunningGateway, content: bytes) -> httpx.Response:
    with client(running) as http:
        return http.post(URL, content=content, headers={"Content-Type": "application/json"})


def doc(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}}).encode()


def test_merge_through_graphql_is_held_like_the_rest_merge(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams
) -> None:
    running, control = gateway
    before = len(forwarded(fakes))
    out: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: out.append(send(running, doc(MERGE, {"id": "PR_1"}))), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not control.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    pending = control.pending()
    assert pending, "the merge was not held"
    spec = pending[0]["action_spec"]
    assert spec["type"] == "github.pr.merge"
    assert spec["parameters"]["pull_request_id"] == "PR_1"
    control.deny(pending[0]["id"])
    thread.join(15)
    assert out[0].status_code == 403
    assert len(forwarded(fakes)) == before


@pytest.mark.parametrize(
    ("query", "action"),
    [
        # the riskiest action leads and is denied
        ('query { viewer { login } } mutation { deleteRef(input: {refId: "r"}) { x } }',
         "github.branch.delete"),
        # the riskiest (github.ref.update, medium) is allowed, the other (low) is denied
        ('mutation { updateRef(input: {refId: "r", oid: "a"}) { x }'
         ' closePullRequest(input: {pullRequestId: "p"}) { x } }', "github.pr.close"),
        # hidden behind a fragment and an alias
        ('mutation { ...F } fragment F on Mutation { c: closePullRequest(input: {}) { x } }',
         "github.pr.close"),
    ],
)  # fmt: skip
def test_every_action_of_a_document_must_be_allowed(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams, query: str, action: str
) -> None:
    running, _ = gateway
    before = len(forwarded(fakes))
    answer = send(running, doc(query))
    assert answer.status_code == 403
    assert answer.json()["action"] == action
    assert len(forwarded(fakes)) == before


@pytest.mark.parametrize(
    "query",
    [
        "query { viewer { login } }",
        'mutation { addComment(input: {subjectId: "s", body: "hi"}) { x }'
        ' updateRef(input: {refId: "r", oid: "a"}) { x } }',
        'mutation { addStar(input: {starrableId: "s"}) { x } }',  # github.graphql.mutate
    ],
)
def test_allowed_documents_are_forwarded_unchanged(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams, query: str
) -> None:
    running, _ = gateway
    body = doc(query)
    answer = send(running, body)
    assert answer.status_code == 200
    assert forwarded(fakes)[-1] == body


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"query": "query { a }", "query": "' + MERGE.encode() + b'"}', "duplicate key"),
        (b'[{"query": "query { a }"}]', "batch"),
        (b'{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab12"}}}',
         "without a document"),
        (b'{"query": "MUTATION { deleteRef { x } }"}', "does not parse"),
    ],
)  # fmt: skip
def test_refused_documents_never_reach_github(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams, body: bytes, why: str
) -> None:
    running, _ = gateway
    before = len(forwarded(fakes))
    answer = send(running, body)
    assert answer.status_code == 403
    assert why in answer.json()["reason"]
    assert len(forwarded(fakes)) == before


def test_enterprise_style_spelling_of_the_endpoint_is_parsed_too(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams
) -> None:
    running, _ = gateway
    before = len(fakes["github"].received("POST"))
    with client(running) as http:
        answer = http.post(
            "https://api.github.com/GraphQL/",
            content=doc("mutation { deleteRef(input: {}) { x } }"),
        )
    assert answer.status_code == 403
    assert answer.json()["action"] == "github.branch.delete"
    assert len(fakes["github"].received("POST")) == before
