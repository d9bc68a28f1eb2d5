"""A request body is decided on as its upstream reads it, or refused (415).

When the gateway reads a body (a content rule scans it, or the connector names the action
from it), a ``Content-Encoding`` it cannot decode completely and one way only is refused:
``415 unsupported_encoding``, saying to send it uncompressed or as one gzip member. Before,
such a body was scanned still compressed and a secret inside went through (two gzip
members, zero padding, raw deflate, ``gzip, gzip``: each read by common servers).

:data:`CASES` is the table of encodings, each with what an upstream reads from it (Python's
``gzip`` reads several members and skips zero padding, as Go and Node do; .NET reads raw
deflate): the gateway's view is that, or a refusal. Extend it with any new trick.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.flow import Flow, Refusal
from agentfirewall_proxy.http1 import Head
from agentfirewall_proxy.pipeline import http_request
from tests.fuzzscale import examples
from tests.proxy.rawupstream import (
    RawUpstream,
    ask,
    json_body,
    start_raw_gateway,
    status_of,
)
from tests.proxy.support import RunningGateway, connector, rule

AWS_KEY = "AKIA" + "Q3V7WZ2MXK4PLRTY"
SECRET = json.dumps({"text": f"the key is {AWS_KEY}"}).encode()
LIMIT = 16 * 1024 * 1024


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()


def _zlib_and_raw_deflate() -> bytes:
    """A zlib stream that is a whole raw deflate stream too, each reading other bytes.

    zlib header ``78 01``; as raw deflate, ``78`` opens a stored block whose length (257)
    and its complement are the zlib stream's own stored-block header, and the block after
    it (inside the zlib block's data) runs to the very end, Adler-32 included."""
    size = 0xFEFE  # the zlib stored block's length: its bytes are the raw block's complement
    raw_end_at = 262  # where the raw stream's second block begins (5 + 257)
    content = bytearray(b"a" * size)
    tail = 7 + size + 4 - (raw_end_at + 5)  # the raw final block runs to the end
    content[raw_end_at - 7 : raw_end_at - 2] = bytes([1]) + tail.to_bytes(2, "little") + (
        tail ^ 0xFFFF).to_bytes(2, "little")  # fmt: skip
    stored = bytes([1]) + size.to_bytes(2, "little") + (size ^ 0xFFFF).to_bytes(2, "little")
    body = b"\x78\x01" + stored + bytes(content) + zlib.adler32(content).to_bytes(4, "big")
    assert zlib.decompress(body) == bytes(content)
    assert zlib.decompress(body, -15) != bytes(content)  # read otherwise: ambiguous
    return body


@dataclass(frozen=True)
class Case:
    """A body under `encoding` headers; what its upstream reads (None: the gateway refuses)."""

    name: str
    encodings: tuple[str, ...]  # one Content-Encoding header each
    body: bytes
    upstream_reads: bytes | None


CASES = [
    Case("gzip", ("gzip",), gzip.compress(SECRET), SECRET),
    Case("x-gzip", ("x-gzip",), gzip.compress(SECRET), SECRET),
    Case("gzip in capitals", (" GZIP ",), gzip.compress(SECRET), SECRET),
    Case("deflate (zlib)", ("deflate",), zlib.compress(SECRET), SECRET),
    Case("identity", ("identity",), SECRET, SECRET),
    Case("identity, then gzip", ("identity, gzip",), gzip.compress(SECRET), SECRET),
    Case("identity and gzip headers", ("identity", "gzip"), gzip.compress(SECRET), SECRET),
    # read by common servers, not one way only: refused
    Case("two gzip members", ("gzip",), gzip.compress(b'{"a":"x",') + gzip.compress(SECRET[1:]),
         None),
    Case("gzip and zero padding", ("gzip",), gzip.compress(SECRET) + b"\0" * 8, None),
    Case("gzip and trailing bytes", ("gzip",), gzip.compress(SECRET) + SECRET, None),
    Case("gzip cut short", ("gzip",), gzip.compress(SECRET)[:-6], None),
    Case("gzip with a bad checksum", ("gzip",), gzip.compress(SECRET)[:-8] + b"\0" * 8, None),
    Case("raw deflate", ("deflate",), _raw_deflate(SECRET), None),
    Case("zlib that reads as raw deflate too", ("deflate",), _zlib_and_raw_deflate(), None),
    Case("gzip labelled deflate", ("deflate",), gzip.compress(SECRET), None),
    Case("zlib labelled gzip", ("gzip",), zlib.compress(SECRET), None),
    Case("gzip, gzip", ("gzip, gzip",), gzip.compress(gzip.compress(SECRET)), None),
    Case("two gzip headers", ("gzip", "gzip"), gzip.compress(gzip.compress(SECRET)), None),
    Case("deflate, gzip", ("deflate, gzip",), gzip.compress(zlib.compress(SECRET)), None),
    Case("br", ("br",), SECRET, None),
    Case("zstd", ("zstd",), SECRET, None),
    Case("compress", ("compress",), SECRET, None),
]  # fmt: skip
READABLE = [case for case in CASES if case.upstream_reads is not None]
REFUSED = [case for case in CASES if case.upstream_reads is None]


def _head(encodings: tuple[str, ...], content_type: str = "application/json") -> Head:
    headers = [(b"Content-Type", content_type.encode())]
    headers += [(b"Content-Encoding", e.encode()) for e in encodings]
    return Head("POST", b"/x", headers, "1.1", True, False, None, [k.lower() for k, _ in headers])


def _view(encodings: tuple[str, ...], body: bytes, complete: bool = True) -> object:
    flow = Flow(request_id="r", method="POST", host="example.org", path="/x")
    try:
        return http_request(flow, _head(encodings), body, complete, LIMIT)
    except Refusal as exc:
        return exc


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_body_is_read_as_its_upstream_reads_it_or_refused(case: Case) -> None:
    """The connector and the content guard read the same bytes: the upstream's."""
    view = _view(case.encodings, case.body)
    if case.upstream_reads is None:
        assert isinstance(view, Refusal)
        assert (view.status, view.error) == (415, "unsupported_encoding")
        assert "send it uncompressed" in view.message
        return
    assert not isinstance(view, Refusal), view
    assert view.body == case.upstream_reads  # type: ignore[attr-defined]
    assert view.body_complete  # type: ignore[attr-defined]
    assert not any(k.lower() == "content-encoding" for k, _ in view.headers)  # type: ignore[attr-defined]


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=4),
       st.binary(max_size=8))  # fmt: skip
def test_gzip_is_read_only_as_one_member_and_nothing_after(
    members: list[bytes], after: bytes
) -> None:
    """Any split into members, any bytes after: one member alone is read, all else refused."""
    body = b"".join(gzip.compress(m) for m in members) + after
    view = _view(("gzip",), body)
    if len(members) == 1 and not after:
        assert not isinstance(view, Refusal)
        assert view.body == members[0]  # type: ignore[attr-defined]
    else:
        assert isinstance(view, Refusal)
        assert view.status == 415


def test_a_compression_bomb_is_decoded_only_to_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    flow = Flow(request_id="r", method="POST", host="example.org", path="/x")
    view = http_request(flow, _head(("gzip",)), bomb, True, 1024 * 1024)
    assert len(view.body) == 1024 * 1024
    assert not view.body_complete  # the strictest outcome a rule could give follows


def test_a_prefix_of_a_larger_body_is_read_as_far_as_it_goes() -> None:
    """Past the inspection limit the gateway holds a prefix: decoded, not whole."""
    body = gzip.compress(SECRET)
    view = _view(("gzip",), body[:20], complete=False)
    assert not isinstance(view, Refusal)
    assert not view.body_complete  # type: ignore[attr-defined]
    members = gzip.compress(SECRET) + gzip.compress(SECRET)
    assert isinstance(_view(("gzip",), members[: len(body) + 5], complete=False), Refusal)


# -- through the gateway ----------------------------------------------------------------

POLICY = {
    "name": "guard",
    "rules": [
        {"name": "no-secrets", "decision": "deny",
         "conditions": [{"field": "content.secrets", "operator": "exists"},
                        {"field": "action_spec.resource.target", "operator": "equals",
                         "value": "deny.example.org"}]},
        {"name": "redact-secrets", "decision": "redact",
         "conditions": [{"field": "content.secrets", "operator": "exists"},
                        {"field": "action_spec.resource.target", "operator": "equals",
                         "value": "redact.example.org"}]},
    ],
}  # fmt: skip
HOSTS = ("deny.example.org", "redact.example.org")


class World:
    def __init__(self, running: RunningGateway, upstream: RawUpstream) -> None:
        self.running, self.upstream = running, upstream


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    upstream = RawUpstream()
    connectors = [connector("generic", id=f"c_{h[:4]}", name=h[:4], domains=[h], credential=None)
                  for h in HOSTS]  # fmt: skip
    connectors.append(connector("mcp", id="c_mcp", domains=["mcp.example.org"], credential=None))
    running, _ = start_raw_gateway(tmp_path_factory.mktemp("enc"), upstream, connectors,
                                   [rule("http.*", "allow"), rule("mcp.*", "allow")],
                                   POLICY)  # fmt: skip
    yield World(running, upstream)
    running.stop()
    upstream.stop()


def _post(world: World, host: str, case: Case, path: str, body: bytes | None = None) -> bytes:
    headers = ("Content-Type: application/json",
               *[f"Content-Encoding: {e}" for e in case.encodings])  # fmt: skip
    return ask(world.running, host, path, "POST", headers,
               case.body if body is None else body)  # fmt: skip


@pytest.mark.parametrize("case", REFUSED, ids=[case.name for case in REFUSED])
def test_a_body_the_gateway_cannot_read_never_reaches_the_upstream(
    world: World, case: Case
) -> None:
    path = f"/refused/{case.name.replace(' ', '-')}"
    answer = _post(world, "deny.example.org", case, path)
    assert status_of(answer) == 415
    assert json_body(answer)["error"] == "unsupported_encoding"
    assert "send it uncompressed" in json_body(answer)["reason"]
    assert path not in world.upstream.paths()


@pytest.mark.parametrize("case", READABLE, ids=[case.name for case in READABLE])
def test_a_readable_body_is_scanned_decoded_and_forwarded_as_sent(world: World, case: Case) -> None:
    path = f"/read/{case.name.replace(' ', '-')}"
    assert status_of(_post(world, "deny.example.org", case, path)) == 403  # the key is seen
    plain = json.dumps({"text": "nothing secret"}).encode()
    encoded: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress}
    coding = next((c for c in ("gzip", "deflate") if c in " ".join(case.encodings).lower()), "")
    body = encoded[coding](plain) if coding else plain
    answer = _post(world, "deny.example.org", case, path + "/clean", body)
    assert status_of(answer) == 200
    (received,) = [b for h, b in world.upstream.received if h.split(b" ")[1] == (
        path + "/clean").encode()]  # fmt: skip
    assert received == body  # forwarded as sent


def test_a_connector_that_reads_bodies_refuses_the_same_way(world: World) -> None:
    """The mcp connector names the tool from the body: it sees the upstream's bytes too."""
    params = {"name": "search", "arguments": {"q": "hi"}}
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    call = json.dumps(message).encode()
    one = Case("one member", ("gzip",), gzip.compress(call), call)
    two = Case("two members", ("gzip",), gzip.compress(call[:20]) + gzip.compress(call[20:]), None)
    assert status_of(_post(world, "mcp.example.org", one, "/mcp")) == 200
    answer = _post(world, "mcp.example.org", two, "/mcp")
    assert status_of(answer) == 415
    assert json_body(answer)["error"] == "unsupported_encoding"
    assert [p for p in world.upstream.paths() if p == "/mcp"] == ["/mcp"]


def test_a_redact_rule_never_forwards_a_compressed_body(world: World) -> None:
    """`Content-Encoding: identity` first and `gzip` after: the body is read decoded, and
    a body that is compressed cannot be rewritten (415), whichever header comes first."""
    for encodings in (("identity", "gzip"), ("gzip",), ("identity, gzip",)):
        case = Case("redact", encodings, gzip.compress(SECRET), SECRET)
        path = f"/redact/{len(encodings)}/{encodings[0].replace(', ', '-')}"
        answer = _post(world, "redact.example.org", case, path)
        assert status_of(answer) == 415, encodings
        assert path not in world.upstream.paths()
    plain = Case("plain", (), SECRET, SECRET)
    assert status_of(_post(world, "redact.example.org", plain, "/redact/plain")) == 200
    (received,) = [b for h, b in world.upstream.received if b" /redact/plain " in h]
    assert AWS_KEY.encode() not in received
    assert b"[REDACTED:aws_access_key]" in received
