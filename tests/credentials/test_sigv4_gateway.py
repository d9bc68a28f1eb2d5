"""SigV4 payload cases through the in-process gateway against the verifying fake AWS: a body
streamed past the inspection limit is signed UNSIGNED-PAYLOAD (S3 only), the aws-chunked
unsigned-trailer form is kept, chunk-signed streaming (with or without a signed trailer) is
re-signed chunk by chunk (whole, streamed, re-chunked: the fake verifies every chunk's
signature, the trailer's and its crc32 checksum), and what cannot be
re-signed is refused (400 unsignable_request) before it reaches the upstream."""

from __future__ import annotations

import base64
import json
import ssl
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.aws import REGION, aws, boto3_through
from tests.fakes.base import FakeUpstream, FakeUpstreams
from tests.proxy.support import KEY, ca_bundle, connector, rule, snapshot, start_gateway

KEY_ID = "AKIAGATEWAYTEST00000"
SECRET = "gateway/test/secret/0123456789abcdef"
URL = "https://demo-bucket.s3.us-west-2.amazonaws.com"
PLACEHOLDER = ("AWS4-HMAC-SHA256 Credential=AKIATAMEFLAREPLACEHOLDER/20260101/us-west-2/s3/"
               "aws4_request, SignedHeaders=host, Signature=00")  # fmt: skip


@dataclass
class Setup:
    fake: FakeUpstream
    client: httpx.Client
    proxy: str  # the gateway, as the agent's proxy
    bundle: Path  # the CA bundle that trusts the gateway


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    fakes = FakeUpstreams([aws()]).start()
    fakes["aws"].settings["keys"][KEY_ID] = (SECRET, None)
    credential = json.dumps({"kind": "aws_sigv4", "access_key_id": KEY_ID,
                             "secret_access_key": SECRET})  # fmt: skip
    snap = snapshot(
        [rule("*", "allow")],
        connectors=[connector("aws", domains=[], auth_type="aws_sigv4", credential=credential)],
    )
    tmp = tmp_path_factory.mktemp("sigv4gw")
    gateway, _ = start_gateway(tmp, fakes, snap, body_inspect_limit=4096)
    bundle = ca_bundle(gateway.ca_path, tmp / "bundle.pem")
    context = ssl.create_default_context(cafile=str(bundle))
    client = httpx.Client(proxy=gateway.proxy_url(KEY), verify=context, timeout=60)
    try:
        yield Setup(fakes["aws"], client, gateway.proxy_url(KEY), bundle)
    finally:
        client.close()
        gateway.stop()
        fakes.stop()


def _put(setup: Setup, key: str, body: bytes, **headers: str) -> httpx.Response:
    sent = {"Authorization": PLACEHOLDER, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", **headers}
    return setup.client.put(f"{URL}/{key}", content=body, headers=sent)


def test_a_body_past_the_inspection_limit_is_signed_unsigned_payload(setup: Setup) -> None:
    setup.fake.settings["rejected"].clear()
    body = b"z" * (1 << 20)  # far past the 4096-byte limit: streamed, not hashed
    answer = _put(setup, "streamed.bin", body, **{"x-amz-content-sha256": "0" * 64})
    assert answer.status_code == 200, answer.text
    assert setup.fake.settings["rejected"] == []
    assert setup.fake.settings["objects"][("demo-bucket", "streamed.bin")] == body
    received = setup.fake.last()
    assert received.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    auth = received.header("authorization") or ""
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")


def test_a_small_body_is_hashed_and_an_aws_chunked_trailer_is_kept(setup: Setup) -> None:
    setup.fake.settings["rejected"].clear()
    assert (
        _put(setup, "small.txt", b"hello", **{"x-amz-content-sha256": "0" * 64}).status_code == 200
    )
    assert setup.fake.last().header("x-amz-content-sha256") == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )
    chunked = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    answer = _put(
        setup, "chunked.txt", chunked, **{
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "content-encoding": "aws-chunked", "x-amz-decoded-content-length": "5",
            "x-amz-trailer": "x-amz-checksum-crc32",
        },
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert setup.fake.settings["rejected"] == []
    assert setup.fake.settings["objects"][("demo-bucket", "chunked.txt")] == b"hello"


def _signed_chunks(chunks: list[bytes], *, trailer: bool = False) -> bytes:
    """An aws-chunked body as an SDK signs it, here with the placeholder key's (bogus)
    signatures: the gateway re-signs every chunk with the real key (`trailer`: the
    ``-TRAILER`` form, a crc32 checksum and its signature after the final chunk)."""
    if not trailer:
        return b"".join(
            b"%x;chunk-signature=%s\r\n%s\r\n" % (len(data), b"ab" * 32, data)
            for data in [*chunks, b""]
        )
    crc = base64.b64encode(zlib.crc32(b"".join(chunks)).to_bytes(4, "big"))
    return b"".join(
        b"%x;chunk-signature=%s\r\n%s\r\n" % (len(data), b"ab" * 32, data) for data in chunks
    ) + (b"0;chunk-signature=%s\r\nx-amz-checksum-crc32:%s\r\n"
         b"x-amz-trailer-signature:%s\r\n\r\n" % (b"ab" * 32, crc, b"ab" * 32))  # fmt: skip


SIGNED = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
          "content-encoding": "aws-chunked"}  # fmt: skip
TRAILER = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
           "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32"}  # fmt: skip


@pytest.mark.parametrize("trailer", [False, True], ids=["plain", "trailer"])
@pytest.mark.parametrize(
    ("chunks", "streamed"),
    [
        ([b"hello, ", b"world"], False),  # under the 4,096-byte limit: read whole
        ([b"x" * 8192, b"y" * 8192, b"z" * 100], False),  # past it: streamed
        ([b"x" * 8192, b"y" * 8192, b"z" * 100], True),  # and re-chunked by the client
    ],
    ids=["whole", "content-length", "transfer-encoding"],
)
def test_chunk_signed_uploads_are_re_signed_chunk_by_chunk(
    setup: Setup, chunks: list[bytes], streamed: bool, trailer: bool
) -> None:
    setup.fake.settings["rejected"].clear()
    body = _signed_chunks(chunks, trailer=trailer)
    payload = b"".join(chunks)
    form = TRAILER if trailer else SIGNED
    headers = {**form, "x-amz-decoded-content-length": str(len(payload))}
    content: bytes | Iterator[bytes] = (
        iter([body[:5000], body[5000:9000], body[9000:]]) if streamed else body
    )
    answer = _put(setup, "signed.bin", content, **headers)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    assert setup.fake.settings["rejected"] == []  # the head and every chunk verified
    assert setup.fake.settings["objects"][("demo-bucket", "signed.bin")] == payload
    received = setup.fake.last()
    assert received.header("x-amz-content-sha256") == form["x-amz-content-sha256"]
    assert b"ab" * 32 not in received.body  # no placeholder signature went upstream
    assert len(received.body) == len(body)  # re-signed in place: the same length


def test_a_chunk_signed_upload_the_gateway_cannot_re_sign_is_refused(setup: Setup) -> None:
    before = len(setup.fake.received())
    broken = _signed_chunks([b"hello"]).replace(b"5;", b"6;", 1)  # a size that lies
    answer = _put(setup, "broken.txt", broken, **SIGNED)
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsignable_request"
    unsigned_trailer = _signed_chunks([b"hi"], trailer=True).replace(  # no trailer signature
        b"x-amz-trailer-signature:" + b"ab" * 32 + b"\r\n", b""
    )
    answer = _put(setup, "trailer.txt", unsigned_trailer, **TRAILER)
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsignable_request"
    sigv4a = {**SIGNED, "x-amz-content-sha256": "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"}
    answer = _put(setup, "sigv4a.txt", _signed_chunks([b"hi"]), **sigv4a)
    assert answer.status_code == 400
    assert "cannot be re-signed" in answer.text, answer.text
    assert len(setup.fake.received()) == before  # none reached the upstream


def test_plain_http_is_upgraded_to_tls_and_signed(setup: Setup) -> None:
    """A credential never travels in cleartext: plain http:// to an AWS host reaches it over
    TLS, re-signed (tests/proxy/test_cleartext.py covers the static-credential types)."""
    setup.fake.settings["rejected"].clear()
    plain = "http://demo-bucket.s3.us-west-2.amazonaws.com/plain.txt"
    answer = setup.client.put(plain, content=b"p", headers={"Authorization": PLACEHOLDER})
    assert answer.status_code == 200, answer.text
    assert setup.fake.last().scheme == "https"
    assert setup.fake.settings["rejected"] == []
    assert setup.fake.settings["objects"][("demo-bucket", "plain.txt")] == b"p"


def _bedrock_runtime(setup: Setup) -> Any:
    return boto3_through("bedrock-runtime", setup.proxy, setup.bundle)


def test_a_service_signed_for_another_name_is_signed_for_that_name(setup: Setup) -> None:
    """Bedrock's runtime host is ``bedrock-runtime`` but AWS checks a signature scoped to
    ``bedrock`` (botocore's ``signingName``): the gateway signs for that name, and the real
    boto3 client, through the gateway, gets its answer."""
    client = _bedrock_runtime(setup)
    before = len(setup.fake.settings["rejected"])
    answer = client.converse(
        modelId="anthropic.claude-v2", messages=[{"role": "user", "content": [{"text": "hi"}]}]
    )
    assert answer["output"]["message"]["content"] == [{"text": "hello"}]
    assert setup.fake.settings["rejected"][before:] == []


def test_a_model_arn_in_the_path_is_named_signed_and_sent_as_boto3_sent_it(
    setup: Setup,
) -> None:
    """An inference profile's ARN as ``modelId``: boto3 sends its ``/`` as ``%2F`` in the
    path, which AWS routes as one label (0.1.0 refused it by the path rules). The gateway
    names it ``aws.bedrock-runtime.converse``, signs it, and forwards the path unchanged."""
    client = _bedrock_runtime(setup)
    arn = f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/us.anthropic.claude"
    before = len(setup.fake.settings["rejected"])
    answer = client.converse(modelId=arn, messages=[{"role": "user", "content": [{"text": "a"}]}])
    assert answer["output"]["message"]["content"] == [{"text": "hello"}]
    assert setup.fake.settings["rejected"][before:] == []
    assert setup.fake.last().path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Ainference-profile%2F"
        "us.anthropic.claude/converse"
    )
