"""The route table reads a field where the upstream reads it: a ``name:body`` field from
the body only (the upstream ignores it in the query, so a query value names nothing),
any other field from the body, else the query."""

from __future__ import annotations

import json

import pytest

from agentfirewall.connectors import ConnectorError, HttpRequest
from agentfirewall.connectors.routes import Route
from agentfirewall.connectors.table import RouteConnector

URL = "https://api.example.com/items/1"
PARAMS = ("note", "branch:body", "count:int:body")
TABLE = RouteConnector(
    name="demo",
    description="a table with body-only fields",
    routes=(Route("PUT", "/items/{item}", "demo.item.update", "low", params=PARAMS),),
)

# query, JSON body -> the parameters read
READ: list[tuple[str, str, dict[str, object], dict[str, object]]] = [
    ("a body-only field in the query alone", "?branch=x&count=3", {}, {}),
    ("a body-only field in the body", "", {"branch": "x", "count": "3"},
     {"branch": "x", "count": 3}),
    ("the body's value, whatever the query says", "?branch=y&count=9",
     {"branch": "x", "count": 3}, {"branch": "x", "count": 3}),
    ("a body-only null names nothing", "?branch=y", {"branch": None}, {}),
    ("any other field from the query", "?note=n", {}, {"note": "n"}),
]  # fmt: skip


@pytest.mark.parametrize(("what", "query", "data", "params"), READ, ids=[r[0] for r in READ])
def test_a_body_only_field_is_never_read_from_the_query(
    what: str, query: str, data: dict[str, object], params: dict[str, object]
) -> None:
    req = HttpRequest.from_url("PUT", URL + query, body=json.dumps(data).encode())
    parsed = TABLE.parse(req)
    assert parsed.action_type == "demo.item.update"
    assert dict(parsed.spec.parameters) == {"item": "1", **params}


def test_any_other_field_still_refuses_a_query_and_body_that_disagree() -> None:
    req = HttpRequest.from_url("PUT", URL + "?note=a", body=b'{"note": "b"}')
    with pytest.raises(ConnectorError, match="conflicting `note`"):
        TABLE.parse(req)


def test_an_unknown_field_kind_is_refused_when_the_table_is_built() -> None:
    route = Route("PUT", "/items/{item}", "demo.item.update", "low", params=("branch:bdy",))
    with pytest.raises(ValueError, match="unknown field kind `bdy` in `branch:bdy`"):
        RouteConnector(name="demo", description="a typo", routes=(route,))
