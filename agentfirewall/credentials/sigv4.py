"""AWS Signature Version 4: the gateway re-signs each request with the real keys.

The agent's SDK signs with placeholder keys (the SDKs insist on signing); the gateway
drops that signature and signs the request it forwards, byte for byte, with the real
keys: method, path and query as forwarded, every forwarded header except the hop-by-hop
ones and those the gateway itself may change (listed in ``UNSIGNED_HEADERS``), and the
payload's SHA-256. S3 accepts ``UNSIGNED-PAYLOAD`` (a body streamed past the inspection
limit) and ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (aws-chunked uploads whose chunks carry
no signature); ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` (chunks signed with the agent's
placeholder key) keeps its literal: the chunks are re-signed in flight (``awschunked.py``).

Canonical forms follow the SigV4 specification and botocore: S3 paths (and those of the
services botocore signs as S3: ``S3_SIGNED``) are signed as sent, other services' paths
are URI-encoded once more; query parameters are decoded,
re-encoded (RFC 3986 unreserved set) and sorted. Tests verify every signature with
botocore's own signer. Pure: the time is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from agentfirewall.credentials.awschunked import SIGNED_FORMS
from agentfirewall.errors import CredentialError

__all__ = [
    "EMPTY_SHA256",
    "S3_PAYLOAD_LITERALS",
    "S3_SIGNED",
    "UNSIGNED_HEADERS",
    "UNSIGNED_PAYLOAD",
    "AwsKeys",
    "payload_hash",
    "sign",
    "signing_key",
]

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: The signing names botocore signs as S3 (``S3SigV4Auth``): the path as sent, an
#: ``X-Amz-Content-Sha256`` header, S3's payload literals. S3 Control is signed as ``s3``;
#: its directory-bucket operations as ``s3express``, its Outposts ones as ``s3-outposts``.
S3_SIGNED = frozenset({"s3", "s3express", "s3-outposts", "s3-object-lambda"})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Payload hashes S3 accepts instead of the body's SHA-256 (and the gateway keeps as sent).
S3_PAYLOAD_LITERALS = frozenset({UNSIGNED_PAYLOAD, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
#: Never signed: hop-by-hop, per-hop framing, and what the gateway sets after signing.
UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "content-length",
        "expect",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
        "accept-encoding",
        "x-tameflare-agent",
        "x-tameflare-request-id",
    }
)
_UNRESERVED = "-_.~"


@dataclass(frozen=True, slots=True)
class AwsKeys:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never the secret, in a traceback or a log
        return f"AwsKeys(access_key_id={self.access_key_id!r}, secret_access_key=<hidden>)"


def payload_hash(
    service: str, agent_value: str | None, body: bytes | None, *, hash_body: bool = True
) -> str:
    """The payload hash to sign: the body's SHA-256 (`body` None: streamed, not at hand).

    S3 keeps the agent's ``UNSIGNED-PAYLOAD`` / unsigned-trailer literal and its signed
    streaming literals, with or without a trailer (whose chunks the caller re-signs:
    ``awschunked.ChunkResigner``), and a streamed S3 body is ``UNSIGNED-PAYLOAD``; other
    services need the whole body, and SigV4a streaming is refused (CredentialError).
    """
    s3 = service in S3_SIGNED
    if s3 and agent_value in SIGNED_FORMS:
        return str(agent_value)
    if (agent_value or "").startswith("STREAMING-"):
        if s3 and agent_value in S3_PAYLOAD_LITERALS:
            return str(agent_value)
        raise CredentialError(
            f"`{agent_value}` uploads cannot be re-signed by the gateway: use unsigned "
            "chunks (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, the default of the AWS SDKs over "
            "https) or chunks signed with SigV4 (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, with "
            "or without `-TRAILER`), not SigV4a"
        )
    if s3 and agent_value in S3_PAYLOAD_LITERALS:
        return str(agent_value)
    if body is None or (s3 and not hash_body):
        if s3:
            return UNSIGNED_PAYLOAD
        raise CredentialError(
            f"the `{service}` request body is larger than the inspection limit: "
            "only S3 accepts an unsigned payload"
        )
    return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((_encode(key), _encode(value)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _encode(text: str) -> str:
    return quote(unquote(text), safe=_UNRESERVED)


def _canonical_path(path: str, service: str) -> str:
    if service in S3_SIGNED:
        return path or "/"
    # other services: consecutive slashes collapse (dot segments were resolved upstream of
    # here), a trailing slash stays, then the already-encoded path is encoded once more
    kept = [s for s in path.split("/") if s and s != "."]
    normal = "/" + "/".join(kept) + ("/" if path.endswith("/") and kept else "")
    return quote(normal, safe="/~")


@lru_cache(maxsize=64)
def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    *,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    payload: str,
    keys: AwsKeys,
    region: str,
    service: str,
    now: datetime,
) -> list[tuple[str, str]]:
    """The headers to add to the forwarded request: ``X-Amz-Date``, ``X-Amz-Content-Sha256``
    (S3), ``X-Amz-Security-Token`` (temporary keys) and ``Authorization``.

    `headers` are the forwarded ones, ``Host`` included, without any of those four.
    """
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    added = [("X-Amz-Date", stamp)]
    if service in S3_SIGNED:
        added.append(("X-Amz-Content-Sha256", payload))
    if keys.session_token:
        added.append(("X-Amz-Security-Token", keys.session_token))
    grouped: dict[str, list[str]] = {}
    for name, value in (*headers, *added):
        low = name.lower()
        if low not in UNSIGNED_HEADERS:
            grouped.setdefault(low, []).append(" ".join(value.split()))
    names = sorted(grouped)
    signed = ";".join(names)
    canonical = "\n".join(
        (
            method.upper(),
            _canonical_path(path, service),
            _canonical_query(query),
            "".join(f"{n}:{','.join(grouped[n])}\n" for n in names),
            signed,
            payload,
        )
    )
    day = stamp[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = signing_key(keys.secret_access_key, day, region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    added.append(
        (
            "Authorization",
            f"AWS4-HMAC-SHA256 Credential={keys.access_key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        )
    )
    return added
