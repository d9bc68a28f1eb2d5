"""Round 6 of the gateway's CPU work (issue 18): header names are lowercased once, when
parsed, and every lookup reads them; each shorter path equals its definition before."""

from __future__ import annotations

import gzip
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest
from agentfirewall_proxy.codings import decoded_body
from agentfirewall_proxy.entries import AgentEntry, ConnectorEntry
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.http1 import (
    _UNFRAMED,
    END,
    Head,
    RequestParser,
    ResponseHead,
    ResponseParser,
    _framing,
)
from agentfirewall_proxy.pipeline import (
    _DEFAULT_PORTS,
    _DROP_UP,
    Refusal,
    check_host_header,
    http_request,
    split_authority,
    upstream_headers,
)
from agentfirewall_proxy.scrub import Scrubber, body_decoder, scrubber_for
from tests.fuzzscale import examples

Headers = list[tuple[bytes, bytes]]

#: Names in mixed case, several spellings of each: duplicates are common.
_NAME = st.sampled_from([
    b"Host", b"HOST", b"host", b"Content-Length", b"content-length", b"Transfer-Encoding",
    b"TRANSFER-encoding", b"Expect", b"Upgrade", b"upgrade", b"Proxy-Authorization",
    b"Accept-Encoding", b"accept-encoding", b"Range", b"If-Range", b"Authorization",
    b"X-Api-Key", b"x-api-key", b"Content-Encoding", b"Connection", b"X-TameFlare-Agent",
    b"Sec-WebSocket-Extensions", b"X-Custom", b"Accept", b"\xc4X", b"a",
])  # fmt: skip
_VALUE = st.sampled_from([b"", b"0", b"12", b" 7 ", b"chunked", b" Chunked ", b"gzip",
                          b"x", b"127.0.0.1:80", b"Example.com", b"a b", b"-1"])  # fmt: skip
_HEADERS = st.lists(st.tuples(_NAME, _VALUE | st.binary(max_size=6)), max_size=8)
_LOOKUP = st.sampled_from([b"host", b"expect", b"upgrade", b"content-type", b"x-api-key",
                           b"Host", b"proxy-authorization", b"content-encoding", b""])  # fmt: skip


def lowered(headers: Headers) -> list[bytes]:
    return [k.lower() for k, _ in headers]


def outcome(function: Callable[..., object], *args: object) -> object:
    """What `function(*args)` returns, or the exception it raises (type and arguments)."""
    try:
        return function(*args)
    except Exception as exc:
        return (type(exc), exc.args)


# -- the definitions as they were before round 6 ---------------------------------------


def reference_get(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def reference_framing(headers: Headers) -> tuple[bool, int | None, str | None]:
    chunked, length, problem = False, None, None
    for key, value in headers:
        lowered_key = key.lower()
        if lowered_key == b"transfer-encoding":
            if value.strip().lower() != b"chunked" or chunked:
                problem = "unsupported transfer-encoding"
            chunked = True
        elif lowered_key == b"content-length":
            length = int(value)
    return chunked, length, problem


def reference_check_host_header(
    head: Head, host: str, port: int, scheme: str, authority: str | None = None
) -> None:
    values = [v for k, v in head.headers if k.lower() == b"host"]
    if len(values) > 1:
        raise Refusal(400, "bad_request", "more than one Host header")
    if not values or values[0].decode("latin-1") == authority:
        return
    try:
        got_host, got_port = split_authority(values[0].decode("latin-1"), _DEFAULT_PORTS[scheme])
    except Refusal:
        raise Refusal(421, "misdirected_request", "invalid Host header") from None
    if (got_host, got_port) != (host, port):
        raise Refusal(
            421,
            "misdirected_request",
            f"Host header `{values[0].decode('latin-1')}` does not match `{host}:{port}`",
        )


_UNSEARCHABLE = frozenset({b"accept-encoding", b"sec-websocket-extensions", b"range", b"if-range"})


def reference_upstream_headers(
    head: Head, flow: Flow, host_header: bytes, length: int | None, chunked: bool, search: bool
) -> Headers:
    """``upstream_headers`` and then ``exchange._forward``'s filter, as before round 6."""
    assert flow.connector is not None
    assert flow.agent is not None
    drop = flow.connector.auth_header_names
    headers = [(b"Host", host_header)]
    headers.extend(
        [(k, v) for k, v in head.headers if (low := k.lower()) not in _DROP_UP and low not in drop]
    )
    headers.extend(flow.connector.auth_headers)
    headers.append((b"X-TameFlare-Agent", flow.agent.name_header))
    headers.append((b"X-TameFlare-Request-Id", flow.request_id.encode("ascii")))
    if length is not None:
        headers.append((b"Content-Length", b"%d" % length))
    elif chunked:
        headers.append((b"Transfer-Encoding", b"chunked"))
    if search:
        headers = [(k, v) for k, v in headers if k.lower() not in _UNSEARCHABLE]
        headers.append((b"Accept-Encoding", b"identity"))
    return headers


def reference_scrubbed_headers(scrubber: Scrubber, headers: Headers) -> tuple[Headers, int]:
    if not scrubber.found(b"\n".join([b"%b\n%b" % pair for pair in headers])):
        return headers, 0
    out: Headers = []
    total = 0
    for name, value in headers:
        name_clean, found = scrubber.scrub(name)
        if found:
            total += found
            continue
        value, found = scrubber.scrub(value)
        total += found
        out.append((name_clean, value))
    return out, total


def reference_http_request(
    flow: Flow, head: Head, body: bytes, complete: bool, limit: int = 0
) -> HttpRequest:
    headers = tuple([(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers])
    values = [v for k, v in head.headers if k.lower() == b"content-encoding"]
    if values and body and limit:
        codings = [c.strip().lower() for v in values for c in v.split(b",")]
        codings = [c for c in codings if c and c != b"identity"]
        body, complete = decoded_body(codings, body, complete, limit)
        headers = tuple(h for h in headers if h[0].lower() != "content-encoding")
    return HttpRequest(method=flow.method, scheme=flow.scheme, host=flow.host, port=flow.port,
                       path=flow.path, query=flow.query, headers=headers, body=body,
                       body_complete=complete)  # fmt: skip


class RunningSizeParser(RequestParser):
    """The request parser with a second head size kept beside its own, by the definition
    (target, and each header's name and value plus 4), as each piece comes."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.running = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.running += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.running += len(name) + len(value) + 4

    def head_size(self) -> int:
        return self.running


class RunningSizeResponseParser(ResponseParser):
    """The response parser with its head size added up as each header comes (no reason)."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.running = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.running += len(name) + len(value) + 4

    def head_size(self) -> int:
        return self.running


# -- the properties ---------------------------------------------------------------------


def head_of(headers: Headers) -> Head:
    return Head("GET", b"/", headers, "1.1", True, False, None, lowered(headers))


@settings(max_examples=examples(400), deadline=None)
@given(_HEADERS, _LOOKUP)
def test_get_is_the_first_value_of_the_lowercase_name(headers: Headers, name: bytes) -> None:
    assert head_of(headers).get(name) == reference_get(headers, name)
    response = ResponseHead(200, b"", headers, "1.1", True, False, None, lowered(headers))
    assert response.get(name) == reference_get(headers, name)


@settings(max_examples=examples(400), deadline=None)
@given(_HEADERS)
def test_framing_from_the_lowered_names_equals_its_definition(headers: Headers) -> None:
    assert outcome(_framing, headers, lowered(headers)) == outcome(reference_framing, headers)
    names = lowered(headers)
    if b"content-length" not in names and b"transfer-encoding" not in names:
        assert reference_framing(headers) == _UNFRAMED  # (what a request parser skips to)


_HOST_VALUES = st.sampled_from([b"127.0.0.1:8080", b"127.0.0.1", b"Example.COM.", b"a:0",
                                b"[::1]:80", b"a b", b"", b"example.com:80"])  # fmt: skip


@settings(max_examples=examples(400), deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([b"Host", b"HOST", b"host", b"X-Host"]), _HOST_VALUES),
             max_size=3),
    st.sampled_from(["127.0.0.1:8080", "example.com", None]),
)  # fmt: skip
def test_the_host_header_check_equals_its_definition(
    headers: Headers, authority: str | None
) -> None:
    head = head_of(headers)
    for host, port in (("127.0.0.1", 8080), ("example.com", 80)):
        assert outcome(check_host_header, head, host, port, "http", authority) == outcome(
            reference_check_host_header, head, host, port, "http", authority
        )


def _flow(auth: Headers, extra_names: frozenset[bytes]) -> Flow:
    connector = ConnectorEntry(
        id="c1", type="generic", name="c1", domains=("example.com",), impl=None,  # type: ignore[arg-type]
        base_url=None, has_credential=bool(auth), auth_headers=tuple(auth),
        # as the snapshot compiles it: the injected headers' names are among those dropped
        auth_header_names=frozenset(lowered(auth)) | extra_names if auth else frozenset(),
        body_limit=0,
    )  # fmt: skip
    agent = AgentEntry(id="a1", name="Bot", status="active", level="enforce",
                       proxy_port=None, name_header=b"Bot")  # fmt: skip
    return Flow(request_id="req_1", method="GET", connector=connector, agent=agent)


@settings(max_examples=examples(500), deadline=None)
@given(
    _HEADERS,
    st.lists(st.tuples(_NAME, st.sampled_from([b"Bearer s3cret", b"k"])), max_size=2),
    st.frozensets(st.sampled_from([b"authorization", b"x-api-key", b"range", b"cookie"])),
    st.one_of(st.none(), st.integers(0, 99)),
    st.booleans(),
    st.booleans(),
)
def test_forwarded_headers_equal_their_definition(
    headers: Headers,
    auth: Headers,
    extra_names: frozenset[bytes],
    length: int | None,
    chunked: bool,
    searchable: bool,
) -> None:
    chunked = chunked and length is None
    flow, head = _flow(auth, extra_names), head_of(headers)
    got = upstream_headers(head, flow, b"example.com", length, chunked=chunked,
                           searchable=searchable)  # fmt: skip
    assert got == reference_upstream_headers(head, flow, b"example.com", length, chunked,
                                             searchable)  # fmt: skip


_TOKEN_NAME = st.sampled_from([b"Host", b"host", b"X-A", b"x-a", b"Accept", b"ACCEPT",
                               b"Content-Length", b"Expect", b"Upgrade-Me"])  # fmt: skip


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(st.tuples(_TOKEN_NAME, st.sampled_from([b"1", b"", b"abc", b"x" * 40])),
             max_size=6),
    st.integers(1, 400),
    st.lists(st.integers(1, 60), max_size=4),
    st.integers(0, 2),
)  # fmt: skip
def test_parsing_gives_the_same_events_and_the_same_431s(
    headers: Headers, max_head: int, cuts: list[int], pipelined: int
) -> None:
    """The parser's head size is the definition's, wherever the pieces are cut: the same
    events, 431s included, as a parser checking the independently kept count."""
    if sum(k.lower() == b"content-length" for k, _ in headers) > 1:
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    lines = b"".join(b"%b: %b\r\n" % (k, v if k.lower() != b"content-length" else b"0")
                     for k, v in headers)  # fmt: skip
    data = b"GET /path HTTP/1.1\r\n%b\r\n" % lines * (1 + pipelined)
    new, old = RequestParser(max_head), RunningSizeParser(max_head)
    start = 0
    for cut in [*cuts, len(data)]:
        piece, start = data[start : start + cut], start + cut
        new.feed(piece)
        old.feed(piece)
    assert list(new.events) == list(old.events)
    for event in new.events:
        if isinstance(event, Head):
            assert event.names == lowered(event.headers)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(_TOKEN_NAME, st.sampled_from([b"1", b"ok", b""])), max_size=6))
def test_a_parsed_response_has_its_names_in_lowercase(headers: Headers) -> None:
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    lines = b"".join(b"%b: %b\r\n" % pair for pair in headers)
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n%bContent-Length: 0\r\n\r\n" % lines)
    response = parser.events.popleft()
    assert isinstance(response, ResponseHead)
    assert response.names == lowered(response.headers)
    assert response.content_length == 0
    assert parser.events.popleft() is END


@settings(max_examples=examples(300), deadline=None)
@given(_HEADERS)
def test_body_decoder_changes_nothing_without_a_content_encoding(headers: Headers) -> None:
    """What ``respond`` relies on to skip it when no name is ``content-encoding``."""
    if b"content-encoding" not in lowered(headers):
        assert body_decoder(headers) == (headers, None)


_SECRET = b"token ghp_realGithubToken0000000000000000000/+x"


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(st.tuples(_NAME | st.just(b"X-" + _SECRET),
                       _VALUE | st.sampled_from([_SECRET, b"a" + _SECRET[:9]])),
             max_size=6),
)  # fmt: skip
def test_scrubbed_headers_equal_their_definition(headers: Headers) -> None:
    scrubber = scrubber_for([_SECRET])
    assert scrubber is not None
    assert scrubber.headers(headers) == reference_scrubbed_headers(scrubber, headers)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(st.tuples(_NAME | st.just(b"X-" + _SECRET),
                       _VALUE | st.sampled_from([_SECRET, b"a" + _SECRET[:9]])),
             max_size=6),
    st.sampled_from([b"", b"OK", _SECRET, b"Not " + _SECRET[:12], b"x" + _SECRET + _SECRET]),
)  # fmt: skip
def test_a_scrubbed_response_head_equals_its_headers_and_reason_scrubbed(
    headers: Headers, reason: bytes
) -> None:
    scrubber = scrubber_for([_SECRET])
    assert scrubber is not None
    scrubbed, found = reference_scrubbed_headers(scrubber, headers)
    clean_reason, more = scrubber.scrub(reason)
    assert scrubber.response_head(reason, headers) == (clean_reason, scrubbed, found + more)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(st.tuples(_TOKEN_NAME, st.sampled_from([b"1", b"ok", b"", b"y" * 30])),
             max_size=6),
    st.sampled_from([b"OK", b"", b"A Much Longer Reason Phrase" * 3]),
    st.integers(1, 300),
    st.lists(st.integers(1, 60), max_size=4),
)  # fmt: skip
def test_response_parsing_gives_the_same_events_and_the_same_502s(
    headers: Headers, reason: bytes, max_head: int, cuts: list[int]
) -> None:
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    lines = b"".join(b"%b: %b\r\n" % pair for pair in headers)
    data = b"HTTP/1.1 200 %b\r\n%bContent-Length: 2\r\n\r\nhi" % (reason, lines) * 2
    new, old = ResponseParser(max_head), RunningSizeResponseParser(max_head)
    start = 0
    for cut in [*cuts, len(data)]:
        piece, start = data[start : start + cut], start + cut
        new.feed(piece)
        old.feed(piece)
    assert list(new.events) == list(old.events)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([b"Content-Encoding", b"content-encoding", b"X-A"]),
                       st.sampled_from([b"gzip", b" GZIP ", b"br", b"identity", b""])),
             max_size=3),
    st.sampled_from([b"", b"plain", gzip.compress(b"hello" * 20)]),
    st.booleans(),
    st.sampled_from([0, 10, 1 << 20]),
)  # fmt: skip
def test_the_connectors_view_equals_its_definition(
    headers: Headers, body: bytes, complete: bool, limit: int
) -> None:
    flow, head = Flow(request_id="r", method="POST", host="example.com"), head_of(headers)
    assert outcome(http_request, flow, head, body, complete, limit) == outcome(
        reference_http_request, flow, head, body, complete, limit
    )
