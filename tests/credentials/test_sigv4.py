"""SigV4 re-signing checked against botocore's own signer (a second implementation), over
generated requests: every path, query, header set and body signs to botocore's signature."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.credentials.sigv4 import (
    EMPTY_SHA256,
    S3_SIGNED,
    UNSIGNED_PAYLOAD,
    AwsKeys,
    payload_hash,
    sign,
)
from agentfirewall.errors import CredentialError
from tests.fuzzscale import examples

KEYS = AwsKeys("AKIAREALKEY000000000", "real/secret+key=abcdefghijklmnopqrstu", None)
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def botocore_signature(
    method: str, url: str, headers: dict[str, str], body: bytes, service: str, keys: AwsKeys,
    stamp: str,
) -> str:  # fmt: skip
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    request.context["timestamp"] = stamp
    signer = (S3SigV4Auth if service in S3_SIGNED else SigV4Auth)(
        Credentials(keys.access_key_id, keys.secret_access_key, keys.session_token),
        service,
        "us-west-2",
    )
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


@settings(max_examples=examples(60), deadline=None)
@given(
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]),
    # (S3 Control is signed as s3, its directory-bucket and Outposts calls as these two)
    service=st.sampled_from(["s3", "sqs", "lambda", "dynamodb", "s3express", "s3-outposts"]),
    segments=st.lists(_TEXT.filter(lambda s: s not in (".", "..")), min_size=0, max_size=4),
    query=st.lists(st.tuples(_TEXT.filter(bool), _TEXT), max_size=4),
    extra=st.dictionaries(
        st.sampled_from(["content-type", "x-amz-meta-note", "x-amz-target", "range"]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20).map(
            lambda v: f" {v}  {v} "
        ),
        max_size=3,
    ),
    body=st.binary(max_size=200),
    token=st.sampled_from([None, "session-token/abc=="]),
)
def test_signature_equals_botocore(
    method: str,
    service: str,
    segments: list[str],
    query: list[tuple[str, str]],
    extra: dict[str, str],
    body: bytes,
    token: str | None,
) -> None:
    keys = AwsKeys(KEYS.access_key_id, KEYS.secret_access_key, token)
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    raw_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    host = "h.example.amazonaws.com"
    headers = [("Host", host), ("User-Agent", "agent"), *extra.items()]
    payload = payload_hash(service, None, body)
    added = sign(method=method, path=path, query=raw_query, headers=headers, payload=payload,
                 keys=keys, region="us-west-2", service=service, now=now)  # fmt: skip
    auth = dict(added)["Authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "user-agent" not in signed
    everything = {k.lower(): v for k, v in [*headers, *added]}
    url = f"https://{host}{path}" + (f"?{raw_query}" if raw_query else "")
    expected = botocore_signature(  # botocore hashes the body itself for other services
        method, url, {k: everything[k] for k in signed}, body, service, keys,
        now.strftime("%Y%m%dT%H%M%SZ"),
    )  # fmt: skip
    assert auth.endswith(f"Signature={expected}")
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={keys.access_key_id}/20260304/")


def test_payload_hash_rules() -> None:
    assert payload_hash("sqs", None, b"") == EMPTY_SHA256
    assert payload_hash("s3", None, b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert payload_hash("s3", None, None) == UNSIGNED_PAYLOAD  # streamed past the limit
    assert payload_hash("s3", UNSIGNED_PAYLOAD, b"abc") == UNSIGNED_PAYLOAD
    trailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert payload_hash("s3", trailer, b"abc") == trailer
    assert payload_hash("s3", None, b"abc", hash_body=False) == UNSIGNED_PAYLOAD
    # only S3 takes an unsigned payload; another service's literal is recomputed
    assert payload_hash("sqs", UNSIGNED_PAYLOAD, b"x") == hashlib.sha256(b"x").hexdigest()
    with pytest.raises(CredentialError, match="only S3"):
        payload_hash("dynamodb", None, None)
    # chunk-signed streaming keeps its literal (the chunks are re-signed: test_awschunked.py)
    signed = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert payload_hash("s3", signed, b"x") == signed


def test_keys_repr_hides_the_secret() -> None:
    assert KEYS.secret_access_key not in repr(KEYS)
