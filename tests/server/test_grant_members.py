"""A grant binds the actions of the request it was made on (DESIGN.md section 7, guarantee 3:
one approval, one request; a grant widens it to the same actions only).

A grant made on a held JSON-RPC batch was a grant on ``mcp.rpc.batch``, whatever its members:
"approve for an hour" on a batch of two ``transfer`` calls let through, with no person
asked, a batch of two ``delete_repo`` calls; and a grant on one GraphQL mutation passed a
document with other mutations too. Now every action a request performs must be of the
grant's types and meet its constraints, on the Gateway API and the SDK path alike.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import update

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall_server.store.schema import grants
from tests.batchhold import transfer
from tests.server.conftest import Harness


def _post(body: object, url: str = "https://mcp.example.com/mcp") -> HttpRequest:
    return HttpRequest.from_url("POST", url, headers=(("Content-Type", "application/json"),),
                                body=json.dumps(body).encode())  # fmt: skip


def _call(tool: str, ident: int = 1, **arguments: Any) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": params}


def mcp(body: object) -> dict[str, Any]:
    """The spec the gateway holds an MCP request as (the connector's own naming)."""
    return get_connector("mcp").parse(_post(body)).spec.to_dict()


def graphql(*mutations: str) -> dict[str, Any]:
    """The spec the gateway holds a GitHub GraphQL document as (its riskiest mutation)."""
    query = "mutation { " + " ".join(mutations) + " }"
    request = _post({"query": query}, url="https://api.github.com/graphql")
    return get_connector("github").parse(request).spec.to_dict()


def _held(h: Harness, spec: dict[str, Any], connector: str = "mcp") -> dict[str, Any]:
    body = {"agent": "Payer", "connector": connector, "action_spec": spec, "reason": "held",
            "action_hash": parse_action_spec(spec).action_hash}  # fmt: skip
    answer = h.gateway("POST", "/v1/gateway/approvals", json=body)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _grant(h: Harness, spec: dict[str, Any], connector: str = "mcp", **grant: Any) -> Any:
    held = _held(h, spec, connector)
    assert held["status"] == "pending"
    answer = h.admin("POST", f"/v1/approvals/{held['id']}/approve",
                     json={"grant": {"for_seconds": 3600, **grant}})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["grant"]


@pytest.fixture
def h(harness: Harness) -> Harness:
    harness.create_agent("Payer")
    return harness


def test_a_grant_on_a_batch_covers_batches_of_its_members_only(h: Harness) -> None:
    made = _grant(h, mcp([transfer(1, amount=5), transfer(2, amount=6)]), where=["amount<=10"])
    assert made["action_type"] == "mcp.rpc.batch"
    assert made["constraints"][-1] == {"field": "action_spec.type", "operator": "in",
                                       "value": ["mcp.tools.transfer"]}  # fmt: skip
    covered = _held(h, mcp([transfer(i, amount=i) for i in (3, 7, 1)]))
    assert (covered["status"], covered["grant_id"]) == ("approved", made["id"])
    for body in (
        [_call("delete_repo", 3, repo="acme/prod"), _call("delete_repo", 4, repo="acme/b")],
        [transfer(5, amount=3), _call("delete_repo", 6, repo="acme/prod")],  # one rides along
        [transfer(7, amount=3), transfer(8, amount=50)],  # one past the constraint
        transfer(9, amount=3),  # one call: not a batch
        # one message of a method named `batch`, with members it does not perform
        {"jsonrpc": "2.0", "id": 10, "method": "batch",
         "params": mcp([transfer(1, amount=1), transfer(2, amount=2)])["parameters"]},
    ):  # fmt: skip
        assert _held(h, mcp(body))["status"] == "pending", body
    assert h.admin("GET", f"/v1/grants/{made['id']}").json()["uses"] == 1


@pytest.mark.parametrize("method", ["batch", " Batch", "response"])
def test_a_method_cannot_pass_for_a_batch_or_a_response(method: str) -> None:
    """A message's method is named `mcp.rpc.<method>`: `batch` was the batch's own name."""
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}
    assert mcp(message)["type"] == f"mcp.rpc.{method.strip().lower()}_method"


def test_a_grant_made_on_a_batch_before_this_covers_no_batch(h: Harness) -> None:
    """Such a grant recorded only `mcp.rpc.batch`: it cannot say which members it was for."""
    made = _grant(h, mcp([transfer(1, amount=5), transfer(2, amount=6)]))
    with h.state.db.reader_engine.begin() as conn:
        conn.execute(update(grants).where(grants.c.id == made["id"]).values(constraints="[]"))
    assert _held(h, mcp([transfer(3, amount=5), transfer(4, amount=6)]))["status"] == "pending"


ISSUE = 'a: createIssue(input: {repositoryId: "r", title: "t"}) { clientMutationId }'
COMMENT = 'addComment(input: {subjectId: "s", body: "hi"}) { clientMutationId }'
DELETE = 'deleteRef(input: {refId: "r"}) { clientMutationId }'


def test_a_grant_covers_a_graphql_document_only_when_it_covers_every_mutation(
    h: Harness,
) -> None:
    one = _grant(h, graphql(ISSUE), "github")
    assert _held(h, graphql(ISSUE), "github")["grant_id"] == one["id"]
    assert _held(h, graphql(ISSUE, COMMENT), "github")["status"] == "pending"
    h.admin("POST", f"/v1/grants/{one['id']}/revoke").raise_for_status()

    both = _grant(h, graphql(ISSUE, COMMENT), "github")
    assert _held(h, graphql(ISSUE, COMMENT), "github")["grant_id"] == both["id"]
    assert _held(h, graphql(ISSUE, DELETE), "github")["status"] == "pending"
    h.admin("POST", f"/v1/grants/{both['id']}/revoke").raise_for_status()

    # the other mutations' parameters are not known: a constraint cannot be checked on them
    _grant(h, graphql(ISSUE, COMMENT), "github", where=["title equals t"])
    assert _held(h, graphql(ISSUE, COMMENT), "github")["status"] == "pending"


BATCHES = """
name: batches
scope: {action_types: ["mcp.rpc.batch"]}
rules:
  - name: ask
    decision: requires_approval
"""


def _members(*tools: str) -> dict[str, Any]:
    spec = mcp([_call(tool, i, amount=1) for i, tool in enumerate(tools)])
    spec["resource"] = {"provider": "mcp"}
    return spec


def test_an_sdk_grant_on_a_batch_binds_its_members_too(h: Harness) -> None:
    assert h.admin("POST", "/v1/policies", json={"document": BATCHES}).status_code == 201
    key = h.create_agent("Sdk-Bot")

    def act(spec: dict[str, Any]) -> Any:
        return h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()

    first = act(_members("transfer", "transfer"))
    assert first["status"] == "pending_approval"
    granted = h.admin("POST", f"/v1/approvals/{first['approval']['id']}/approve",
                      json={"grant": {"for_seconds": 3600}})  # fmt: skip
    assert granted.status_code == 200, granted.text
    assert act(_members("transfer", "transfer", "transfer"))["status"] == "allowed"
    assert act(_members("delete_repo", "delete_repo"))["status"] == "pending_approval"


def test_a_grant_takes_its_action_types_from_the_approval(h: Harness) -> None:
    held = _held(h, mcp(transfer(1, amount=5)))
    where = ["action_spec.type in [mcp.tools.transfer, mcp.tools.delete_repo]"]
    answer = h.admin("POST", f"/v1/approvals/{held['id']}/approve",
                     json={"grant": {"max_uses": 1, "where": where}})  # fmt: skip
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "grant.where"
