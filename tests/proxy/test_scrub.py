"""The scrubber itself (no sockets): every form of an injected secret is replaced, at the
same length, wherever the chunk or frame boundaries fall. Through the real gateway:
``test_scrub_live.py``."""

from __future__ import annotations

import base64
import gzip
import re
import zlib
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.scrubbing import MARKER, Scrubber, filler, scrubber_for, secret_forms
from agentfirewall_proxy.scrub import ScrubError, body_decoder
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_proxy.wsframes import FrameScrubber, encode_frame
from tests.fuzzscale import examples
from tests.proxy.support import CREDENTIALS, connector, snapshot

TOKEN = "ghp_realGithubToken0000000000000000000/+x"
HEADERS = [b"token " + TOKEN.encode()]


def scrubber() -> Scrubber:
    found = scrubber_for(HEADERS)
    assert found is not None
    return found


def forms_of(token: str) -> list[bytes]:
    raw = token.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        quote(token, safe="").encode(),
        raw.replace(b"/", b"\\/"),
    ]


def test_forms_cover_the_common_encodings() -> None:
    forms = set(secret_forms(HEADERS))
    assert set(forms_of(TOKEN)) <= forms
    assert HEADERS[0] in forms


def test_basic_auth_forms_include_the_token_and_the_decoded_pair() -> None:
    pair = b"x-access-token:" + TOKEN.encode()
    forms = set(secret_forms([b"Basic " + base64.b64encode(pair)]))
    assert {base64.b64encode(pair), pair, TOKEN.encode()} <= forms


@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
def test_every_connector_with_a_credential_gets_a_scrubber(kind: str) -> None:
    config = compile_snapshot(snapshot(connectors=[connector(kind)]))
    entry = config.connectors[f"conn_{kind}_1"]
    assert entry.scrubber is not None
    body, count = entry.scrubber.scrub(b"echo: " + CREDENTIALS[kind].encode() + b".")
    assert count == 1
    assert CREDENTIALS[kind].encode() not in body


def test_a_connector_without_a_credential_scrubs_nothing() -> None:
    config = compile_snapshot(snapshot(connectors=[connector("generic", domains=["x.example"])]))
    assert config.connectors["conn_generic_1"].scrubber is None


def test_filler_keeps_the_length() -> None:
    assert filler(len(MARKER) + 5) == MARKER + b"*****"
    assert filler(4) == MARKER[:4]


@pytest.mark.parametrize("form", forms_of(TOKEN))
def test_a_secret_split_across_two_chunks_at_every_point(form: bytes) -> None:
    body = b'{"echo": "' + form + b'", "more": 1}'
    for cut in range(len(body) + 1):
        stream = scrubber().stream()
        out = stream.feed(body[:cut]) + stream.feed(body[cut:]) + stream.finish()
        assert len(out) == len(body)
        assert form not in out
        assert TOKEN.encode() not in out
        assert stream.count == 1


@settings(max_examples=examples(300), deadline=None)
@given(
    before=st.binary(max_size=60),
    after=st.binary(max_size=60),
    which=st.integers(min_value=0, max_value=4),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_any_chunking_scrubs_every_form(
    before: bytes, after: bytes, which: int, cuts: list[int]
) -> None:
    form = forms_of(TOKEN)[which]
    body = before + form + after + form
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    stream = scrubber().stream()
    out = b"".join(stream.feed(p) for p in pieces) + stream.finish()
    assert len(out) == len(body)
    assert all(f not in out for f in scrubber().forms)
    assert stream.count >= 2


def _json_unescaped(data: bytes) -> bytes:
    """What a JSON reader makes of the escapes a form may be written with."""
    return re.sub(rb"\\u00([0-7][0-9a-fA-F])|\\/",
                  lambda m: bytes([int(m.group(1), 16)]) if m.group(1) else b"/", data)  # fmt: skip


@settings(max_examples=examples(300), deadline=None)
@given(
    which=st.integers(min_value=0, max_value=4),
    escaped=st.lists(st.booleans(), min_size=80, max_size=80),
    upper=st.booleans(),
    before=st.binary(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
)
@example(which=0, escaped=[i in (3, 4) for i in range(80)], upper=False, before=b"", cuts=[12])
def test_a_form_with_json_escaped_characters_is_scrubbed_too(
    which: int, escaped: list[bool], upper: bool, before: bytes, cuts: list[int]
) -> None:
    """An upstream's JSON encoder may write any character as `\\u00XX` (or `/` as `\\/`):
    a JSON reader hands the agent the secret all the same. Any mix, split anywhere."""
    form = forms_of(TOKEN)[which].replace(b"\\/", b"/")
    written = b""
    for index, byte in enumerate(form):
        if escaped[index % len(escaped)]:
            code = b"\\/" if byte == ord("/") and index % 2 else b"\\u%04x" % byte
            written += code.upper().replace(b"\\U", b"\\u") if upper else code
        else:
            written += bytes([byte])
    body = before + b'{"echo": "' + written + b'"}'
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    stream = scrubber().stream()
    out = b"".join(stream.feed(p) for p in pieces) + stream.finish()
    assert len(out) == len(body)
    assert stream.count >= 1
    assert form not in _json_unescaped(out)
    assert TOKEN.encode() not in _json_unescaped(out)


def test_stream_holds_back_only_a_possible_secret_start() -> None:
    stream = scrubber().stream()
    assert stream.feed(b"data: {}\n\n") == b"data: {}\n\n"  # an SSE event is not delayed
    assert stream.feed(b"data: ghp_real") == b"data: "  # may be the start of the secret
    assert stream.feed(b"ly not\n\n") == b"ghp_really not\n\n"


def test_headers_are_scrubbed_and_a_header_named_by_a_secret_is_dropped() -> None:
    headers = [
        (b"X-Echo-Authorization", HEADERS[0]),
        (TOKEN.encode(), b"1"),
        (b"Location", b"/cb?t=" + quote(TOKEN, safe="").encode()),
    ]
    out, count = scrubber().headers(headers)
    assert count == 3
    assert [k for k, _ in out] == [b"X-Echo-Authorization", b"Location"]
    assert all(TOKEN.encode() not in v and b"ghp_" not in v for _, v in out)
    assert [len(v) for _, v in out] == [len(HEADERS[0]), len(headers[2][1])]


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress], ids=["gzip", "deflate"])
def test_a_compressed_body_is_decoded_then_scrubbed(compress: object) -> None:
    assert callable(compress)
    plain = b"x" * 5000 + TOKEN.encode() + b"y" * 5000
    packed = compress(plain)
    headers, decoder = body_decoder([(b"Content-Encoding", b"gzip"), (b"ETag", b"1")])
    assert decoder is not None
    assert headers == [(b"ETag", b"1")]
    stream = scrubber().stream()
    out = b"".join(stream.feed(p) for i in range(0, len(packed), 7)
                   for p in decoder.feed(packed[i : i + 7]))  # fmt: skip
    out += stream.feed(decoder.finish()) + stream.finish()
    assert len(out) == len(plain)
    assert TOKEN.encode() not in out


@pytest.mark.parametrize("coding", [b"br", b"zstd", b"gzip, br", b"compress"])
def test_an_undecodable_coding_fails_closed(coding: bytes) -> None:
    with pytest.raises(ScrubError, match="cannot be checked"):
        body_decoder([(b"Content-Encoding", coding)])


def test_a_broken_gzip_body_fails_closed() -> None:
    _, decoder = body_decoder([(b"Content-Encoding", b"gzip")])
    assert decoder is not None
    with pytest.raises(ScrubError):
        decoder.feed(b"\x1f\x8b\x08\x00not gzip at all")


# -- WebSocket frames -------------------------------------------------------------------


def decode_frames(data: bytes) -> list[tuple[bool, int, bytes]]:
    frames = []
    while data:
        fin, opcode, size = bool(data[0] & 0x80), data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if size == 126:
            size, offset = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, offset = int.from_bytes(data[2:10], "big"), 10
        frames.append((fin, opcode, data[offset : offset + size]))
        data = data[offset + size :]
    return frames


def messages(frames: list[tuple[bool, int, bytes]]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    current: tuple[int, bytes] | None = None
    for fin, opcode, payload in frames:
        if opcode >= 8:
            out.append((opcode, payload))
            continue
        current = (opcode, payload) if current is None else (current[0], current[1] + payload)
        if fin:
            out.append(current)
            current = None
    return out


@settings(max_examples=examples(200), deadline=None)
@given(
    split=st.integers(min_value=1, max_value=len(TOKEN) - 1),
    cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=10),
    big=st.booleans(),
)
def test_websocket_secret_split_across_frames_and_reads(
    split: int, cuts: list[int], big: bool
) -> None:
    token = TOKEN.encode()
    padding = b"p" * (70000 if big else 10)
    wire = (
        encode_frame(False, 0x1, padding + b"auth=" + token[:split])
        + encode_frame(True, 0x9, b"ping " + token[:20])  # control frame mid-message
        + encode_frame(True, 0x0, token[split:] + b" end")
        + encode_frame(True, 0x2, b"\x00" + base64.b64encode(token))
        + encode_frame(True, 0x8, b"\x03\xe8bye " + token)
    )
    frames = FrameScrubber(scrubber())
    out, at = b"", 0
    for cut in [*cuts, len(wire)]:
        out += frames.feed(wire[at : at + cut])
        at += cut
        if at >= len(wire):
            break
    out += frames.feed(wire[at:])
    got = messages(decode_frames(out))
    assert [op for op, _ in got] == [0x9, 0x1, 0x2, 0x8]
    text = got[1][1]
    assert text.startswith(padding + b"auth=")
    assert len(text) == len(padding) + 5 + len(token) + 4
    assert all(token not in p and base64.b64encode(token) not in p for _, p in got)
    assert frames.count == 3


@pytest.mark.parametrize(
    ("wire", "problem"),
    [
        (bytes((0x81, 0x80)) + b"mask", "masked"),
        (bytes((0xC1, 0x01)) + b"x", "reserved bits"),
        (bytes((0x09, 0x00)), "control frame"),
        (bytes((0x80, 0x01)) + b"x", "continuation"),
        (encode_frame(False, 1, b"a") + encode_frame(True, 1, b"b"), "unfinished message"),
    ],
)
def test_websocket_protocol_errors_fail_closed(wire: bytes, problem: str) -> None:
    with pytest.raises(ScrubError, match=problem):
        FrameScrubber(scrubber()).feed(wire)
