"""Body and query readers, and every connector under arbitrary input."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import ConnectorError, HttpRequest, connector_types, get_connector
from agentfirewall.connectors.bodies import parse_form, parse_json, parse_json_prefix
from tests.fuzzscale import examples

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
OBJECTS = st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6)


@given(OBJECTS, st.data())
def test_a_prefix_yields_only_members_of_the_whole(
    obj: dict[str, object], data: st.DataObject
) -> None:
    raw = json.dumps(obj, ensure_ascii=data.draw(st.booleans())).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    members = parse_json_prefix(raw[:cut])
    for key, value in members.items():
        assert key in obj
        assert value == obj[key]


@given(OBJECTS)
def test_a_whole_object_read_as_a_prefix_keeps_all_but_maybe_the_last(
    obj: dict[str, object],
) -> None:
    raw = json.dumps(obj).encode()
    members = parse_json_prefix(raw)
    assert len(members) >= len(obj) - 1


@given(st.binary(max_size=200))
def test_readers_never_crash(raw: bytes) -> None:
    for reader in (parse_json, parse_json_prefix):
        with contextlib.suppress(ConnectorError):
            reader(raw)
    for complete in (True, False):
        with contextlib.suppress(ConnectorError):
            parse_form(raw, complete=complete)


def test_prefix_drops_a_number_that_may_go_on() -> None:
    assert parse_json_prefix(b'{"a": 1, "amount": 12') == {"a": 1}
    assert parse_json_prefix(b'{"a": 1, "amount": 12,') == {"a": 1, "amount": 12}
    assert parse_json_prefix(b'{"a": "caf\xc3') == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2", "not an object"),
        (b'{"a": 1 "b"', "unexpected character"),
        (b"\xfe{", "not UTF-8"),
    ],
)
def test_prefix_refuses_what_is_already_broken(raw: bytes, message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        parse_json_prefix(raw)


def test_form_reader() -> None:
    assert parse_form(b"a=1&b=x+y&a=2&&c") == {"a": ("1", "2"), "b": ("x y",), "c": ("",)}
    assert parse_form(b"a=1&b=2", complete=False) == {"a": ("1",)}
    assert parse_form("k%5Bx%5D=%E2%9C%93") == {"k[x]": ("✓",)}


def test_huge_complete_body_is_read_without_trouble() -> None:
    body = json.dumps({"title": "t", "body": "x" * 5_000_000, "state": "closed"}).encode()
    parsed = get_connector("github").parse(
        HttpRequest.from_url("PATCH", "https://api.github.com/repos/a/b/pulls/1", body=body)
    )
    assert parsed.action_type == "github.pr.close"


HEADERS = st.lists(
    st.tuples(
        st.sampled_from(["Content-Type", "content-encoding", "X-A", "Stripe-Account"]),
        st.sampled_from(
            [
                "application/json",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "identity",
                "",
                "acct_1",
            ]
        ),
    ),
    max_size=3,
)


@settings(max_examples=examples(300))
@given(
    st.sampled_from(connector_types()),
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "BREW"]),
    st.sampled_from(
        [
            "/repos/a/b/pulls/1",
            "/v1/charges",
            "/api/chat.postMessage",
            "/mcp",
            "/v1/chat/completions",
            "/v3/mail/send",
            "/x/../y",
            "/%2e",
            "/",
        ]
    ),
    st.text(max_size=30),
    HEADERS,
    st.binary(max_size=80) | OBJECTS.map(lambda o: json.dumps(o).encode()),
    st.booleans(),
)
def test_every_connector_answers_an_action_or_a_connector_error(
    name: str,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    complete: bool,
) -> None:
    request = HttpRequest(
        method, "https", "h.example", None, path, query, tuple(headers), body, complete
    )
    try:
        parsed = get_connector(name).parse(request)
    except ConnectorError:
        return
    assert parsed.connector == name
    assert parsed.risk in ("low", "medium", "high")
    assert parsed.spec.resource.provider == name
    # a spec built without the model's checks is one the model accepts, equal
    assert ActionSpec.model_validate(parsed.spec.to_dict()) == parsed.spec
    assert parsed.spec.action_hash


NUL_NAMES = [
    ("slack", "POST", "https://slack.com/api/chat.postMessage", {"channel": "C1\u0000X"}),
    ("github", "POST", "https://api.github.com/graphql",
     {"query": 'mutation { mergePullRequest(input: {pullRequestId: "P\u0000"}) { x } }'}),
    ("stripe", "POST", "https://api.stripe.com/v1/refunds", {"charge": "ch_\u0000"}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "url", "body"), NUL_NAMES)
def test_a_nul_in_a_resource_name_is_a_connector_error(
    name: str, method: str, url: str, body: dict[str, str]
) -> None:
    """No store holds a NUL in text: a resource name with one is refused at the gateway."""
    request = HttpRequest.from_url(method, url, headers=(("content-type", "application/json"),),
                                   body=json.dumps(body).encode())  # fmt: skip
    try:
        parsed = get_connector(name).parse(request)
    except ConnectorError:
        return
    resource = parsed.spec.resource
    assert "\x00" not in f"{resource.account}{resource.target}", parsed.spec


@pytest.mark.parametrize("complete", [True, False])
def test_lone_surrogates_are_refused_but_pairs_are_fine(complete: bool) -> None:
    reader = parse_json if complete else parse_json_prefix
    with pytest.raises(ConnectorError, match="lone surrogate"):
        reader(b'{"title": "\\ud800", "x": 1}')
    assert reader(b'{"title": "\\ud83d\\ude00", "x": 1}') == {"title": "\U0001f600", "x": 1}


def test_a_lone_surrogate_cannot_reach_an_action_hash() -> None:
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "\\udfff"}}'
    with pytest.raises(ConnectorError, match="lone surrogate"):
        get_connector("mcp").parse(HttpRequest.from_url("POST", "https://m.test/mcp", body=body))


@pytest.mark.parametrize(
    "prefix", [b'{"a":1,"b":1.', b'{"a":1,"b":1e', b'{"a":1,"b":1E+', b'{"a":1,"b":1.5e-']
)
def test_a_number_cut_by_the_prefix_is_dropped_not_refused(prefix: bytes) -> None:
    assert parse_json_prefix(prefix) == {"a": 1}


_CHARSET_BODIES = {
    "mcp": ("https://mcp.example.com/mcp", "application/json",
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}'),
    "slack": ("https://slack.com/api/chat.postMessage", "application/json", b'{"channel":"C1"}'),
    "stripe": ("https://api.stripe.com/v1/refunds", "application/x-www-form-urlencoded",
               b"charge=ch_1&amount=5"),
    "github": ("https://api.github.com/repos/acme/api/pulls/1/merge", "application/json", b"{}"),
    "openai": ("https://api.openai.com/v1/chat/completions", "application/json",
               b'{"model":"gpt-4o","messages":[]}'),
    "aws": ("https://dynamodb.us-east-1.amazonaws.com/", "application/x-amz-json-1.0", b"{}"),
}  # fmt: skip


@pytest.mark.parametrize("connector", sorted(_CHARSET_BODIES))
@pytest.mark.parametrize(
    "charset", ["utf-7", "UTF-16", '"utf-7"', "iso-8859-1", "utf-8; charset=utf-7"]
)
def test_a_body_in_another_charset_is_refused_by_every_connector(
    connector: str, charset: str
) -> None:
    """The connectors read bodies as UTF-8. A `charset=utf-7` body was named as UTF-8 and
    forwarded with its header: the MCP TypeScript SDK decodes any `utf-*` charset, and read
    another tool name (`delete_everything`, the last of two `name` keys) from the bytes the
    gateway had named `mcp.tools.echo`."""
    url, media, body = _CHARSET_BODIES[connector]
    headers = (
        ("Content-Type", f"{media}; charset={charset}"),
        ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
    )
    with pytest.raises(ConnectorError, match="charset"):
        get_connector(connector).parse(
            HttpRequest.from_url("POST", url, headers=headers, body=body)
        )
    for fine in ("utf-8", "UTF8", '"utf-8"', "us-ascii"):
        plain = (("Content-Type", f"{media}; charset={fine}"), headers[1])
        get_connector(connector).parse(HttpRequest.from_url("POST", url, headers=plain, body=body))
