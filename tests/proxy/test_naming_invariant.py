"""Named truly: the action the gateway names is the action the upstream would perform.

Hypothesis generates requests per connector (github, stripe, slack, openai, anthropic):
a route of the connector's table with its segments mangled (percent-encodings of
unreserved and reserved characters, double encoding, case, trailing dots, slashes and
format suffixes, encoded slashes), any method, queries (decisive fields, ``_method``)
and bodies whose decisive field sits anywhere (first, last, duplicated). Each request
goes through the real gateway in a TLS tunnel to the fake upstream. A multi-segment
variable (a slashed branch name, ``{branch+}/protection``) takes one to three segments,
sometimes the route's own literals (branch ``a/protection/b``). The reference is
independent of the gateway's parser: the request *as the upstream received it* is
decoded the way the API does (percent-escapes decoded once, one trailing slash dropped,
literals compared exactly, the last duplicate of a JSON or form field wins, body over
query) and matched against the route table's rows; where an exact reading of literals
names an action, the gateway (which reads them case-insensitively) may name the one a
case-insensitive reading names instead (``/branches/a/PROTECTION``).

The invariant: the request was refused; or it was named in the ``<connector>.unknown.*``
family (which no allow wildcard grants); or the upstream performs no action (the
reference finds no route); or the gateway's name equals the reference's. GraphQL is
proven in test_github_gateway.py and git smart-HTTP (github.com) is left out.

MCP gets its own generator: JSON-RPC messages whose ``method`` and tool ``name`` sit
anywhere, duplicated, or spelled as case variants of the protocol's keys, alone or in
batches; the reference reads them as Go's encoding/json does (keys matched
case-insensitively, the last one wins), the most permissive reading a server may have.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall.connectors.registry import get_connector
from agentfirewall.connectors.routes import Route
from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.fuzzscale import examples
from tests.proxy.rawclient import read_response, status_of, tunnel
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway

HOSTS = {
    "github": "api.github.com",
    "stripe": "api.stripe.com",
    "slack": "slack.com",
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
#: Field values that change the action (github's variants), and harmless ones.
DECISIVE = {
    "state": ["closed", "open", "CLOSED"],
    "visibility": ["public", "private"],
    "private": [False, True, "false"],
    "archived": [True, False],
    "sha": ["a" * 40],
    "ref": ["refs/tags/v1", "refs/heads/x"],
    "amount": [100, 60000, "70000"],
    "channel": ["C1", "C2"],
}
SUFFIXES = [""] * 6 + ["/", ".", ".json", "%20", "%3Fx", "%23", "%2F", "%2e", "%2525", "%00"]


def _routes(name: str) -> list[Route]:
    table = get_connector(name).table  # type: ignore[attr-defined]
    return [
        r for r in table.routes if "graphql" not in r.path and not r.path.startswith("/{owner}")
    ]


@st.composite
def _segment_value(draw: st.DrawFn, kind: str) -> str:
    if kind == "int" and draw(st.booleans()):
        return str(draw(st.integers(1, 10**6)))
    text = draw(st.text("abcXYZ019-_~", min_size=1, max_size=6))
    return text


@st.composite
def _encoded(draw: st.DrawFn, segment: str) -> str:
    """`segment` spelled another way an upstream may or may not read as the same."""
    how = draw(st.sampled_from(["plain"] * 6 + ["escape", "escape_lower", "upper", "double"]))
    if how == "plain" or not segment:
        return segment
    index = draw(st.integers(0, len(segment) - 1))
    char = segment[index]
    if how == "upper":
        return segment.upper()
    code = f"{ord(char):02X}"
    if how == "escape_lower":
        code = code.lower()
    escape = f"%25{code}" if how == "double" else f"%{code}"
    return segment[:index] + escape + segment[index + 1 :]


@st.composite
def _path(draw: st.DrawFn, route: Route) -> str:
    mangle = draw(st.booleans())  # half the paths are spelled plainly
    parts = []
    tokens = route.path.strip("/").split("/")
    literals = [t for t in tokens if not t.startswith("{")]
    for token in tokens:
        if token.startswith("{"):
            name, _, suffix = token[1:].partition("}")
            if name.endswith("+"):  # a slashed name, sometimes holding the route's literals
                word = _segment_value("str")
                if literals:
                    word = st.one_of(word, st.sampled_from(literals))
                count = draw(st.integers(1, 3))
                parts.extend(draw(word) for _ in range(count))
                continue
            value = draw(_segment_value("int" if name.endswith(":int") else "str")) + suffix
            parts.append(quote(value, safe="-_.~"))
        else:
            parts.append(draw(_encoded(token)) if mangle else token)
    return "/" + "/".join(parts) + (draw(st.sampled_from(SUFFIXES)) if mangle else "")


@st.composite
def _fields(draw: st.DrawFn, route: Route) -> list[tuple[str, Any]]:
    """Body fields in order; the decisive ones anywhere, sometimes twice."""
    names = [v.field for v in route.variants] + [p.partition(":")[0] for p in route.params]
    fields: list[tuple[str, Any]] = [(f"filler{i}", "x" * draw(st.integers(0, 300)))
                                     for i in range(draw(st.integers(0, 4)))]  # fmt: skip
    for name in names:
        if name in DECISIVE and draw(st.booleans()):
            for _ in range(draw(st.sampled_from([1, 1, 2]))):
                at = draw(st.integers(0, len(fields)))
                fields.insert(at, (name, draw(st.sampled_from(DECISIVE[name]))))
    return fields


def _encode_body(fields: list[tuple[str, Any]], form: bool) -> tuple[bytes, str]:
    if form:
        text = "&".join(f"{quote(k)}={quote(str(v).lower() if isinstance(v, bool) else str(v))}"
                        for k, v in fields)  # fmt: skip
        return text.encode(), "application/x-www-form-urlencoded"
    inner = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in fields)
    return ("{" + inner + "}").encode(), "application/json"


@st.composite
def requests_for(
    draw: st.DrawFn, name: str, decisive: bool = False
) -> tuple[str, str, str, bytes, str]:
    routes = _routes(name)
    if decisive:  # only routes where a body or query field decides the action
        routes = [r for r in routes if r.variants and r.method != "GET"]
    route = draw(st.sampled_from(routes))
    method = route.method if decisive or draw(st.integers(0, 4)) else draw(st.sampled_from(METHODS))
    path = draw(_path(route))
    query_fields = draw(st.lists(st.sampled_from(
        ["page=2"] * 4 + ["state=closed", "_method=DELETE", "amount=90000", "visibility=public"]
    ), max_size=2))  # fmt: skip
    query = "&".join(query_fields)
    body, ctype = b"", ""
    if method not in ("GET", "HEAD"):
        form = get_connector(name).body_format == "form" or (  # type: ignore[attr-defined]
            name == "slack" and draw(st.booleans())
        )
        body, ctype = _encode_body(draw(_fields(route)), form)
    return method, path, query, body, ctype


# -- the independent reference ----------------------------------------------------------


def _match(template: str, segments: list[str], fold: bool) -> tuple[int, ...] | None:
    """Segment kinds (0 literal ... 3 greedy, then minus the number of literals after it)
    when `segments` fit `template`, else None. A greedy variable takes one segment or more
    and the literals after it are the last segments; the longest such tail is preferred.
    `fold`: literals compared case-insensitively."""
    tokens = template.strip("/").split("/")
    if fold:
        tokens = [t if t.startswith("{") else t.lower() for t in tokens]
        segments = [s.lower() for s in segments]
    kinds: list[int] = []
    for index, token in enumerate(tokens):
        if index >= len(segments):
            return None
        segment = segments[index]
        if not token.startswith("{"):
            if segment != token:
                return None
            kinds.append(0)
            continue
        name, _, suffix = token[1:].partition("}")
        if name.endswith("+"):
            tail = tokens[index + 1 :]
            if len(segments) - index <= len(tail) or segments[len(segments) - len(tail) :] != tail:
                return None
            return (*kinds, 3, -len(tail))
        if suffix and not (segment.endswith(suffix) and len(segment) > len(suffix)):
            return None
        if name.endswith(":int") and not segment.isdigit():
            return None
        kinds.append(1 if suffix else 2)
    return tuple(kinds) if len(tokens) == len(segments) else None


def _body_fields(body: bytes, ctype: str) -> dict[str, Any]:
    if not body:
        return {}
    if ctype == "application/json":
        data = json.loads(body)  # the last duplicate wins, as in Rails and Go
        return data if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def _variant_holds(variant: Any, value: Any) -> bool:
    if value is None:
        return False
    if variant.values:
        text = ("true" if value else "false") if isinstance(value, bool) else value
        return isinstance(text, str) and text.lower() in variant.values
    if variant.prefix:
        return isinstance(value, str) and value.startswith(variant.prefix)
    return True


def reference(
    name: str, method: str, raw_path: str, query: str, body: bytes, ctype: str, fold: bool = False
) -> str | None:
    """The action the upstream performs for the request it received, or None (`fold`:
    reading literals case-insensitively)."""
    segments = raw_path.split("/")[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]
    try:
        decoded = [unquote(s, errors="strict") for s in segments]
    except UnicodeDecodeError:
        return None
    if any(s in ("", ".", "..") or "/" in s for s in decoded):
        return None
    verb = "GET" if method == "HEAD" else method
    found: tuple[tuple[int, ...], Route] | None = None
    for route in _routes(name):
        if route.method == verb:
            kinds = _match(route.path, decoded, fold)
            if kinds is not None and (found is None or kinds < found[0]):
                found = (kinds, route)
    if found is None:
        return None
    route = found[1]
    fields = {**dict(parse_qsl(query, keep_blank_values=True)), **_body_fields(body, ctype)}
    for variant in route.variants:
        if _variant_holds(variant, fields.get(variant.field)):
            return variant.action
    return route.action


# -- through the gateway ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, StaticControl]]:
    kinds = [*HOSTS, "mcp"]
    snap = snapshot([rule("*", "allow")], connectors=[connector(k) for k in kinds])
    running, control = start_gateway(tmp_path_factory.mktemp("names"), fakes, snap)
    yield running, control
    running.stop()


def _named(control: StaticControl, request_id: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for record in list(control.traffic):
            if record["request_id"] == request_id:
                return str(record["action"])
        time.sleep(0.02)
    raise AssertionError(f"no traffic record for {request_id}")


@pytest.mark.parametrize("name", sorted(HOSTS))
@settings(max_examples=examples(40), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])  # fmt: skip
@given(data=st.data())
def test_the_named_action_is_the_action_the_upstream_performs(
    gateway: tuple[RunningGateway, StaticControl],
    fakes: FakeUpstreams,
    name: str,
    data: st.DataObject,
) -> None:
    _check(gateway, fakes, name, data.draw(requests_for(name)))


@settings(max_examples=examples(60), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])  # fmt: skip
@given(data=st.data())
def test_the_decisive_field_is_found_wherever_it_is(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams, data: st.DataObject
) -> None:
    _check(gateway, fakes, "github", data.draw(requests_for("github", decisive=True)))


def _check(
    gateway: tuple[RunningGateway, StaticControl],
    fakes: FakeUpstreams,
    name: str,
    request: tuple[str, str, str, bytes, str],
) -> None:
    running, control = gateway
    method, path, query, body, ctype = request
    host = HOSTS.get(name, "mcp.example.com")
    fake = fakes[name]
    before = len(fake.received())
    target = path + (f"?{query}" if query else "")
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    if body or method in ("POST", "PUT", "PATCH"):
        head += f"Content-Length: {len(body)}\r\n"
    with tunnel(running.port, host, running.ca_path) as tls:
        tls.sendall(head.encode() + b"\r\n" + body)
        answer = read_response(tls, timeout=10)
    arrived = fake.received()[before:]
    if not arrived:  # refused (or answered by the gateway): nothing was performed
        assert status_of(answer) >= 400, answer[:300]
        return
    (seen,) = arrived
    named = _named(control, str(seen.header("x-tameflare-request-id")))
    assert ".unknown." not in named  # `*` never grants the unknown family
    if name == "mcp":
        expected = mcp_reference(seen.body)
    else:
        expected = reference(name, seen.method, seen.path, seen.query, seen.body, ctype)
        if expected is not None and named != expected:
            expected = reference(name, seen.method, seen.path, seen.query, seen.body, ctype, True)
    assert expected is None or named == expected, (method, target, body[:300], named, expected)


# -- MCP ----------------------------------------------------------------------------------

TOOLS = ["delete_repo", "read_file", "list", "Deploy-Prod", "run shell", "tools/list"]
METHODS_RPC = ["tools/call", "tools/list", "Tools/Call", " tools/call ", "resources/read"]


@st.composite
def _pairs(draw: st.DrawFn, base: list[tuple[str, Any]], decisive: str, values: list[Any]) -> str:
    """A JSON object text from `base` pairs plus the decisive key once or more, anywhere,
    sometimes as a case variant."""
    pairs = list(base)
    for _ in range(draw(st.sampled_from([1, 1, 2]))):
        key = draw(st.sampled_from([decisive] * 8 + [decisive.upper(), decisive.title()]))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(st.sampled_from(values))))
    parts = [f"{json.dumps(k)}: {v if k == 'params' else json.dumps(v)}" for k, v in pairs]
    return "{" + ", ".join(parts) + "}"


@st.composite
def _rpc_message(draw: st.DrawFn, number: int) -> str:
    arguments = {f"arg{i}": "x" * i for i in range(draw(st.integers(0, 3)))}
    params = draw(_pairs([("arguments", arguments)], "name", TOOLS))
    base: list[tuple[str, Any]] = [("jsonrpc", "2.0"), ("id", number), ("params", params)]
    return str(draw(_pairs(base, "method", METHODS_RPC)))


@st.composite
def mcp_requests(draw: st.DrawFn) -> tuple[str, str, str, bytes, str]:
    count = draw(st.sampled_from([0, 0, 0, 1, 2]))  # 0: one message, else a batch
    if count == 0:
        text = draw(_rpc_message(1))
    else:
        text = "[" + ", ".join(draw(_rpc_message(i)) for i in range(count)) + "]"
    return "POST", "/mcp", "", text.encode(), "application/json"


def _folded(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Go's encoding/json into a struct: keys matched case-insensitively, last wins."""
    known = {"jsonrpc", "id", "method", "params", "result", "error", "name", "arguments"}
    out: dict[str, Any] = {}
    for key, value in pairs:
        out[key.casefold() if key.casefold() in known else key] = value
    return out


def _tool(name: str) -> str:
    segment = "".join(c if c in "abcdefghijklmnopqrstuvwxyz0123456789_-" else "_"
                      for c in name.strip().lower())  # fmt: skip
    return "mcp.tools." + ("list_tool" if segment == "list" else segment)


def _rpc_action(message: Any) -> str | None:
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return None
    method = message["method"].strip().lower()
    params = message.get("params") or {}
    if method == "tools/call":
        name = params.get("name") if isinstance(params, dict) else None
        return _tool(name) if isinstance(name, str) else None
    if method == "tools/list":
        return "mcp.tools.list"
    return "mcp.rpc." + method.replace("/", "_")


def mcp_reference(body: bytes) -> str | None:
    data = json.loads(body, object_pairs_hook=_folded)
    if isinstance(data, list):
        if len(data) == 1:
            return _rpc_action(data[0])
        return "mcp.rpc.batch" if all(_rpc_action(m) for m in data) else None
    return _rpc_action(data)


@settings(max_examples=examples(40), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])  # fmt: skip
@given(data=st.data())
def test_mcp_names_the_method_and_tool_the_server_runs(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams, data: st.DataObject
) -> None:
    _check(gateway, fakes, "mcp", data.draw(mcp_requests()))
