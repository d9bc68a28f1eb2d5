"""Chunk-signed aws-chunked bodies re-signed in flight (agentfirewall.credentials.awschunked).

The vectors are the worked example of the S3 API reference ("Signature Calculations for the
Authorization Header: Transferring Payload in Multiple Chunks", Example: PUT Object): a
66,560-byte object of ``a`` in a 65,536-byte and a 1,024-byte chunk, signed with the
documentation's example key. The body is re-signed from placeholder signatures, fed in one
piece and in every way Hypothesis splits it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.credentials.awschunked import MAX_CHUNK, ChunkResigner, seed_signature
from agentfirewall.credentials.sigv4 import payload_hash, signing_key
from agentfirewall.errors import CredentialError
from tests.fuzzscale import examples

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
STAMP = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
EXPECTED = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
CHUNKS = [b"a" * 65536, b"a" * 1024, b""]


def _body(signatures: list[str], chunks: list[bytes] = CHUNKS) -> bytes:
    return b"".join(
        b"%x;chunk-signature=%s\r\n%s\r\n" % (len(data), sig.encode(), data)
        for data, sig in zip(chunks, signatures, strict=True)
    )


def _resigner() -> ChunkResigner:
    key = signing_key(SECRET, "20130524", "us-east-1", "s3")
    return ChunkResigner(key, STAMP, SCOPE, SEED)


def _resign(body: bytes) -> bytes:
    signer = _resigner()
    out = signer.feed(body)
    signer.finish()
    return out


AGENT_BODY = _body(["0" * 64, "1" * 64, "2" * 64])  # the placeholder key's, as far as we care
DOCUMENTED = _body(EXPECTED)


def test_the_documented_example_is_reproduced() -> None:
    out = _resign(AGENT_BODY)
    assert out == DOCUMENTED
    assert len(out) == len(AGENT_BODY) == 66824  # the example's Content-Length


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(AGENT_BODY)), max_size=12))
def test_any_split_of_the_body_gives_the_same_bytes(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(AGENT_BODY)]
    signer = _resigner()
    out = b"".join(signer.feed(AGENT_BODY[a:b]) for a, b in itertools.pairwise(points))
    signer.finish()
    assert out == DOCUMENTED


def test_the_seed_is_the_heads_signature() -> None:
    header = (f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/{SCOPE}, SignedHeaders="
              f"content-encoding;content-length;host, Signature={SEED}")  # fmt: skip
    assert seed_signature(header) == SEED
    with pytest.raises(CredentialError):
        seed_signature("AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host")


BAD = {
    "a chunk extension besides the signature": b"5;chunk-signature="
    + b"0" * 64
    + b";x=1\r\nhello\r\n",
    "no signature": b"5\r\nhello\r\n0\r\n\r\n",
    "a short signature": b"5;chunk-signature=" + b"0" * 63 + b"\r\nhello\r\n",
    "a size that is not hex": b"g;chunk-signature=" + b"0" * 64 + b"\r\nhello\r\n",
    "data longer than its size": b"4;chunk-signature=" + b"0" * 64 + b"\r\nhello\r\n",
    "a trailer after the final chunk": _body(["0" * 64], [b""])[:-2]
    + b"x-amz-checksum-crc32:AAAA\r\n\r\n",
    "data after the final chunk": _body(["0" * 64], [b""]) + b"more",
    "a header line that never ends": b"5" * 200,
}


@pytest.mark.parametrize("body", BAD.values(), ids=BAD.keys())
def test_anything_but_the_exact_framing_is_refused(body: bytes) -> None:
    with pytest.raises(CredentialError):
        _resign(body)


def test_a_body_cut_short_is_refused_and_a_huge_chunk_is_not_held() -> None:
    signer = _resigner()
    assert signer.feed(AGENT_BODY[:-10]) != b""  # the first chunk went out
    with pytest.raises(CredentialError, match="before its final chunk"):
        signer.finish()
    with pytest.raises(CredentialError, match="larger than"):
        _resigner().feed(b"%x;chunk-signature=%s\r\n" % (MAX_CHUNK + 1, b"0" * 64))


def test_payload_hashes_of_the_streaming_forms() -> None:
    signed = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert payload_hash("s3", signed, None) == signed
    assert payload_hash("s3", signed, b"x") == signed
    kept = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert payload_hash("s3", kept, b"x") == kept
    trailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    assert payload_hash("s3", trailer, None) == trailer
    for refused in (
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    ):
        with pytest.raises(CredentialError, match="cannot be re-signed"):
            payload_hash("s3", refused, b"x")
    with pytest.raises(CredentialError):
        payload_hash("sqs", signed, b"x")
    assert payload_hash("sqs", None, b"") == hashlib.sha256(b"").hexdigest()


# -- the -TRAILER form: trailing headers after the final chunk, with their own signature ---


def _trailer_body(chunks: list[bytes], key: bytes | None, trailers: list[bytes]) -> bytes:
    """A ``-TRAILER`` body as the S3 reference frames it, signed along its chain with `key`
    (None: placeholder signatures, as an agent holding a fake key sends)."""
    previous, out = SEED, bytearray()

    def link(text: str) -> str:
        nonlocal previous
        if key is None:
            return "ab" * 32
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        return previous

    empty = hashlib.sha256(b"").hexdigest()
    for data in [*chunks, b""]:
        digest = hashlib.sha256(data).hexdigest()
        signature = link(
            f"AWS4-HMAC-SHA256-PAYLOAD\n{STAMP}\n{SCOPE}\n{previous}\n{empty}\n{digest}"
        )
        out += b"%x;chunk-signature=%s\r\n" % (len(data), signature.encode())
        if data:
            out += data + b"\r\n"
    canonical = b"".join(
        t.split(b":", 1)[0].strip().lower() + b":" + t.split(b":", 1)[1].strip() + b"\n"
        for t in trailers
    )
    text = (f"AWS4-HMAC-SHA256-TRAILER\n{STAMP}\n{SCOPE}\n{previous}\n"
            f"{hashlib.sha256(canonical).hexdigest()}")  # fmt: skip
    signature = (
        "ab" * 32 if key is None else hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    )
    out += b"".join(t + b"\r\n" for t in trailers)
    out += b"x-amz-trailer-signature:" + signature.encode() + b"\r\n\r\n"
    return bytes(out)


KEY = signing_key(SECRET, "20130524", "us-east-1", "s3")
CRC = b"x-amz-checksum-crc32:" + base64.b64encode(zlib.crc32(b"a" * 66560).to_bytes(4, "big"))
TRAILED_AGENT = _trailer_body(CHUNKS[:2], None, [CRC])
TRAILED = _trailer_body(CHUNKS[:2], KEY, [CRC])


def _trailer_resigner() -> ChunkResigner:
    return ChunkResigner(KEY, STAMP, SCOPE, SEED, trailer=True)


def test_a_trailer_body_gets_the_chain_and_the_trailer_signature_of_the_real_key() -> None:
    signer = _trailer_resigner()
    out = signer.feed(TRAILED_AGENT)
    signer.finish()
    assert out == TRAILED
    assert len(out) == len(TRAILED_AGENT)  # only the 64 hex digits changed
    # the chunk chain is the documented one; only the trailer differs from the plain form
    assert out.startswith(DOCUMENTED[: DOCUMENTED.index(b"0;chunk-signature=")])


@settings(max_examples=examples(60), deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(TRAILED_AGENT)), max_size=12),
    trailers=st.lists(
        st.sampled_from([CRC, b"X-Amz-Checksum-SHA256:  abc=  ", b"x-amz-meta-n:1 2"]),
        min_size=1, max_size=3, unique=True,
    ),
)  # fmt: skip
def test_any_split_and_any_trailers_give_the_same_bytes(
    cuts: list[int], trailers: list[bytes]
) -> None:
    agent = _trailer_body([b"a" * 300, b"b" * 7], None, trailers)
    points = [0, *sorted(min(c, len(agent)) for c in cuts), len(agent)]
    signer = _trailer_resigner()
    out = b"".join(signer.feed(agent[a:b]) for a, b in itertools.pairwise(points))
    signer.finish()
    assert out == _trailer_body([b"a" * 300, b"b" * 7], KEY, trailers)


_FINAL = b"0;chunk-signature=" + b"0" * 64 + b"\r\n"
_SIG = b"x-amz-trailer-signature:" + b"0" * 64 + b"\r\n"
BAD_TRAILERS = {
    "no trailing header": _FINAL + _SIG + b"\r\n",
    "the plain form's empty line": _FINAL + b"\r\n" + CRC + b"\r\n" + _SIG + b"\r\n",
    "no signature": _FINAL + CRC + b"\r\n\r\n",
    "the signature not last": _FINAL + _SIG + CRC + b"\r\n\r\n",
    "two signatures": _FINAL + CRC + b"\r\n" + _SIG + _SIG + b"\r\n",
    "a short signature": _FINAL + CRC + b"\r\nx-amz-trailer-signature:" + b"0" * 63 + b"\r\n\r\n",
    "a space before the colon": _FINAL + b"x-amz-meta-n :1\r\n" + _SIG + b"\r\n",
    "a line without a colon": _FINAL + b"x-amz-checksum-crc32\r\n" + _SIG + b"\r\n",
    "a control byte in a value": _FINAL + b"x-amz-meta-n:a\x00b\r\n" + _SIG + b"\r\n",
    "data after the trailer": _FINAL + CRC + b"\r\n" + _SIG + b"\r\nmore",
    "a trailer that never ends": _FINAL + b"x-amz-meta-n:" + b"a" * 9000,
}


@pytest.mark.parametrize("body", BAD_TRAILERS.values(), ids=BAD_TRAILERS.keys())
def test_anything_but_the_exact_trailer_is_refused(body: bytes) -> None:
    def resign() -> None:
        signer = _trailer_resigner()
        signer.feed(body)
        signer.finish()

    with pytest.raises(CredentialError):
        resign()


def test_a_trailer_body_cut_short_is_refused() -> None:
    for cut in (1, 4, 30, len(TRAILED_AGENT) - 100):
        signer = _trailer_resigner()
        signer.feed(TRAILED_AGENT[:-cut])
        with pytest.raises(CredentialError, match="before its final chunk"):
            signer.finish()
