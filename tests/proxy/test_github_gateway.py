"""GitHub through the real gateway (httpx and requests, CONNECT + interception) against
the fake GitHub: GraphQL mutations are decided as the REST actions they perform, every
action of a document must be allowed, refused documents never reach the upstream; release
assets on uploads.github.com are named (issue 12, items 5 and 8)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests

from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.support import (
    CREDENTIALS,
    OTHER_KEY,
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
    rule("github.release_asset.upload", "require_approval", agent="Other"),
]
DOMAINS = ["api.github.com", "github.com", "uploads.github.com"]
MERGE = (
    "mutation M($id: ID!) { mergePullRequest(input: {pullRequestId: $id}) { clientMutationId } }"
)


@pytest.fixture(scope="module")
def gateway(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, StaticControl]]:
    snap = snapshot(RULES, connectors=[connector("github", domains=DOMAINS)], approval_timeout=30)
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


UPLOAD = "https://uploads.github.com/repos/acme/api/releases/5/assets?name=build.zip&label=Build"


def test_release_asset_upload_is_named_and_forwarded_with_the_credential(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams
) -> None:
    running, control = gateway
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    proxies = {"https": running.proxy_url(), "http": running.proxy_url()}
    data = b"PK\x03\x04" + bytes(range(256)) * 64
    answer = requests.post(
        UPLOAD, data=data, headers={"Content-Type": "application/zip"}, proxies=proxies,
        verify=str(bundle), timeout=20,
    )  # fmt: skip
    assert answer.status_code == 200
    seen = fakes["github"].last()
    assert (seen.host, seen.path, seen.body) == ("uploads.github.com", answer.json()["path"], data)
    assert seen.header("authorization") == f"token {CREDENTIALS['github']}"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        actions = {r["action"] for r in control.traffic}
        if "github.release_asset.upload" in actions:
            break
        time.sleep(0.05)
    assert "github.release_asset.upload" in {r["action"] for r in control.traffic}


def test_release_asset_upload_can_be_held(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams
) -> None:
    running, control = gateway
    before = len(fakes["github"].received("POST"))
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    context = ssl.create_default_context(cafile=str(bundle))
    out: list[httpx.Response] = []

    def upload() -> None:
        with httpx.Client(
            proxy=running.proxy_url(OTHER_KEY, "Other"), verify=context, trust_env=False,
            timeout=20,
        ) as http:  # fmt: skip
            out.append(http.post(UPLOAD, content=b"binary\x00\xff"))

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not control.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    held = control.pending()
    assert held, "the upload was not held"
    assert held[0]["action_spec"]["type"] == "github.release_asset.upload"
    assert held[0]["action_spec"]["parameters"]["name"] == "build.zip"
    control.deny(held[0]["id"])
    thread.join(15)
    assert out[0].status_code == 403
    assert len(fakes["github"].received("POST")) == before


def test_monitor_records_the_strictest_action_of_a_document(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """At the monitor level everything goes through; the record names the action a rule
    would have stopped, not the riskiest one that was allowed."""
    snap = snapshot(RULES, connectors=[connector("github", domains=DOMAINS)], level="monitor")
    running, control = start_gateway(tmp_path_factory.mktemp("gqlmon"), fakes, snap)
    try:
        query = (
            'mutation { updateRef(input: {refId: "r", oid: "a"}) { x }'
            ' closePullRequest(input: {pullRequestId: "p"}) { x } }'
        )
        assert send(running, doc(query)).status_code == 200
        deadline = time.monotonic() + 5
        while not control.traffic and time.monotonic() < deadline:
            time.sleep(0.05)
        (record,) = [r for r in control.traffic if r["path"] == "/graphql"]
        assert (record["action"], record["would_outcome"]) == ("github.pr.close", "would_deny")
    finally:
        running.stop()
