"""Fake AWS (S3, SQS, DynamoDB, STS) that verifies every SigV4 signature with botocore.

Each request's ``Authorization`` is checked the way AWS checks it: the access key must be
known (``fake.settings["keys"]``: key id -> (secret, session token or None)), the
signature is recomputed with botocore's own signer (``SigV4Auth`` / ``S3SigV4Auth``) over
the request as received and the headers it names, every ``x-amz-*`` header must be
signed, a hex payload hash must be the body's SHA-256, a chunk-signed aws-chunked body
(``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``) must carry the chain of chunk signatures the key
gives (computed here from the S3 API reference), and a temporary key needs its session
token. A failure is answered 403 ``SignatureDoesNotMatch`` and counted in
``fake.settings["rejected"]``. Enough of each API for boto3: S3 objects and multipart
uploads (virtual-host and path style, aws-chunked bodies), SQS ``SendMessage`` (JSON
protocol), DynamoDB ``PutItem``, STS ``AssumeRole`` (temporary keys it then accepts), EKS,
Bedrock's ``converse``, and S3 Control's public access block (on ``ACCOUNT.s3-control``)
and a directory bucket's access point scope (on ``s3express-control``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeUpstream

REGION = "us-west-2"
BUCKET = "demo-bucket"
ACCOUNT = "123456789012"
#: host -> (service, region)
HOSTS = {
    f"s3.{REGION}.amazonaws.com": ("s3", REGION),
    f"{BUCKET}.s3.{REGION}.amazonaws.com": ("s3", REGION),
    f"sqs.{REGION}.amazonaws.com": ("sqs", REGION),
    f"dynamodb.{REGION}.amazonaws.com": ("dynamodb", REGION),
    f"bedrock-runtime.{REGION}.amazonaws.com": ("bedrock", REGION),  # its signing name
    f"eks.{REGION}.amazonaws.com": ("eks", REGION),  # a REST service (named by its path)
    "sts.us-east-1.amazonaws.com": ("sts", "us-east-1"),
    # S3 Control: signed as s3, and its directory-bucket operations as s3express
    f"{ACCOUNT}.s3-control.{REGION}.amazonaws.com": ("s3", REGION),
    f"s3express-control.{REGION}.amazonaws.com": ("s3express", REGION),
}
_METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"]
SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
_ids = itertools.count(1)


def verify_sigv4(fake: FakeUpstream, request: Request, body: bytes) -> str | None:
    """None when the request is signed with a known key; otherwise why not."""
    auth = request.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no sigv4 authorization"
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    key_id, day, region, service, _ = fields["Credential"].split("/")
    host = request.headers.get("host", "").split(":")[0]
    if HOSTS.get(host) != (service, region):
        return f"scope {service}/{region} does not match host {host}"
    known: dict[str, tuple[str, str | None]] = fake.settings["keys"]
    if key_id not in known:
        return f"unknown access key {key_id}"
    secret, session = known[key_id]
    if session is not None and request.headers.get("x-amz-security-token") != session:
        return "temporary key without its session token"
    signed = fields["SignedHeaders"].split(";")
    unsigned = [h for h in request.headers if h.startswith("x-amz-") and h not in signed]
    if unsigned or "host" not in signed:
        return f"headers not signed: {unsigned or ['host']}"
    stamp = request.headers.get("x-amz-date", "")
    when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if abs(datetime.now(UTC) - when) > timedelta(minutes=15) or stamp[:8] != day:
        return "request time too skewed"
    claimed = request.headers.get("x-amz-content-sha256")
    if claimed and len(claimed) == 64 and claimed != hashlib.sha256(body).hexdigest():
        return "payload hash does not match the body"
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = f"https://{request.headers['host']}{raw_path.decode('latin-1')}"
    aws = AWSRequest(
        method=request.method,
        url=url + (f"?{query}" if query else ""),
        headers={h: request.headers.get(h, "") for h in signed},
        data=body,
    )
    aws.context["timestamp"] = stamp
    signer = (S3SigV4Auth if service in ("s3", "s3express") else SigV4Auth)(
        Credentials(key_id, secret, session), service, region
    )
    canonical = signer.canonical_request(aws)
    expected = signer.signature(signer.string_to_sign(aws, canonical), aws)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return "SignatureDoesNotMatch"
    return None


def verify_chunks(
    secret: str, authorization: str, stamp: str, body: bytes, *, trailer: bool = False
) -> str | None:
    """None when every chunk of a chunk-signed aws-chunked `body` carries its signature
    (`trailer`: and the trailing headers theirs, a crc32 checksum the payload's)."""
    fields = dict(p.strip().split("=", 1) for p in authorization.split(" ", 1)[1].split(","))
    _, day, region, service, _ = fields["Credential"].split("/")
    scope = f"{day}/{region}/{service}/aws4_request"
    key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    previous, rest, payload = fields["Signature"], body, b""
    empty = hashlib.sha256(b"").hexdigest()
    while True:
        line, crlf, rest = rest.partition(b"\r\n")
        size_text, _, signature = line.decode("latin-1").partition(";chunk-signature=")
        if not crlf or not signature:
            return "a chunk without its signature"
        size = int(size_text, 16)
        data = rest[:size]
        payload += data
        text = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, previous, empty,
                          hashlib.sha256(data).hexdigest()))  # fmt: skip
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(previous, signature):
            return "SignatureDoesNotMatch (chunk)"
        if size == 0 and trailer:
            return _verify_trailer(key, stamp, scope, previous, rest, payload)
        end, rest = rest[size : size + 2], rest[size + 2 :]
        if end != b"\r\n":
            return "a chunk longer than its size"
        if size == 0:
            return None if not rest else "data after the final chunk"


def _verify_trailer(
    key: bytes, stamp: str, scope: str, previous: str, rest: bytes, payload: bytes
) -> str | None:
    """The trailing headers after the final chunk: `name:value` lines, then the signature
    of the final chunk's signature and their SHA-256, then an empty line."""
    if not rest.endswith(b"\r\n\r\n"):
        return "a trailer without its end"
    *lines, signature_line = rest[:-4].decode("latin-1").split("\r\n")
    name, _, signature = signature_line.partition(":")
    if name != "x-amz-trailer-signature" or not lines:
        return "a trailer without its signature"
    values = dict(line.split(":", 1) for line in lines)
    canonical = "".join(f"{k.strip().lower()}:{v.strip()}\n" for k, v in values.items())
    text = "\n".join(("AWS4-HMAC-SHA256-TRAILER", stamp, scope, previous,
                      hashlib.sha256(canonical.encode()).hexdigest()))  # fmt: skip
    expected = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "SignatureDoesNotMatch (trailer)"
    crc = values.get("x-amz-checksum-crc32")
    if (
        crc is not None
        and crc.strip() != base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    ):
        return "BadDigest (crc32)"
    return None


def _aws_chunked(body: bytes) -> bytes:
    """The payload of an aws-chunked body (unsigned chunks, optional trailer)."""
    out, rest = b"", body
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def _etag(body: bytes) -> str:
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


def _xml(status: int, code: str, message: str) -> Response:
    text = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return Response(text, status_code=status, media_type="application/xml")


def aws() -> FakeUpstream:
    fake = FakeUpstream(name="aws", hostnames=tuple(HOSTS), app=None)  # type: ignore[arg-type]
    fake.settings.update(keys={}, rejected=[], objects={}, uploads={}, messages=[], items=[])

    async def handle(request: Request) -> Response:
        body = await request.body()
        problem = verify_sigv4(fake, request, body)
        form = request.headers.get("x-amz-content-sha256")
        if problem is None and form in (SIGNED_CHUNKS, SIGNED_CHUNKS + "-TRAILER"):
            key_id = request.headers["authorization"].split("Credential=")[1].split("/")[0]
            secret = fake.settings["keys"][key_id][0]
            stamp = request.headers["x-amz-date"]
            problem = verify_chunks(secret, request.headers["authorization"], stamp, body,
                                    trailer=form != SIGNED_CHUNKS)  # fmt: skip
        if problem is not None:
            fake.settings["rejected"].append(problem)
            if request.headers.get("host", "").startswith(("s3", BUCKET)):
                return _xml(403, "SignatureDoesNotMatch", problem)
            return JSONResponse({"__type": "InvalidSignatureException", "message": problem}, 400)
        host = request.headers["host"].split(":")[0]
        service = HOSTS[host][0]
        if "-control." in host:
            return _s3control(fake, request)
        if service == "s3":
            return _s3(fake, request, body)
        if service == "sts":
            return _sts(fake, body)
        if service == "eks":
            return _eks(fake, request)
        if service == "bedrock" and request.url.path.endswith("/converse"):
            fake.settings["messages"].append(json.loads(body))
            reply = {"role": "assistant", "content": [{"text": "hello"}]}
            usage = {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}
            return JSONResponse({"output": {"message": reply}, "stopReason": "end_turn",
                                 "usage": usage, "metrics": {"latencyMs": 1}})  # fmt: skip
        target = request.headers.get("x-amz-target", "")
        data = json.loads(body or b"{}")
        if target == "AmazonSQS.SendMessage":
            fake.settings["messages"].append(data)
            md5 = hashlib.md5(data["MessageBody"].encode(), usedforsecurity=False).hexdigest()
            return JSONResponse({"MessageId": f"m-{next(_ids)}", "MD5OfMessageBody": md5})
        if target == "DynamoDB_20120810.PutItem":
            fake.settings["items"].append(data)
            return Response("{}", media_type="application/x-amz-json-1.0")
        return JSONResponse({"__type": "UnknownOperationException"}, 400)

    fake.app = Starlette(routes=[Route("/{path:path}", handle, methods=_METHODS)])
    return fake


def _eks(fake: FakeUpstream, request: Request) -> Response:
    """``GET`` / ``DELETE /clusters/{name}`` (the clusters it deleted in ``deleted``)."""
    parts = request.url.path.strip("/").split("/")
    if len(parts) != 2 or parts[0] != "clusters" or request.method not in ("GET", "DELETE"):
        return JSONResponse({"message": "not found"}, 404)
    status = "ACTIVE"
    if request.method == "DELETE":
        fake.settings.setdefault("deleted", []).append(parts[1])
        status = "DELETING"
    return JSONResponse({"cluster": {"name": parts[1], "status": status}})


def _s3control(fake: FakeUpstream, request: Request) -> Response:
    """S3 Control's ``GET`` / ``DELETE /v20180820/configuration/publicAccessBlock`` (the
    accounts whose block it deleted in ``deleted``) and ``GET .../accesspoint/NAME/scope``;
    the account is the host's, and ``x-amz-account-id`` must agree."""
    host = request.headers["host"].split(":")[0]
    account = request.headers.get("x-amz-account-id")
    if account != ACCOUNT or not host.startswith((ACCOUNT, "s3express-control")):
        return _xml(400, "InvalidRequest", "the account is missing or another")
    path, method = request.url.path, request.method
    if path == "/v20180820/configuration/publicAccessBlock" and method in ("GET", "DELETE"):
        if method == "DELETE":
            fake.settings.setdefault("deleted", []).append(f"public access block {account}")
            return Response(status_code=204)
        names = (
            "BlockPublicAcls",
            "IgnorePublicAcls",
            "BlockPublicPolicy",
            "RestrictPublicBuckets",
        )
        block = "".join(f"<{n}>true</{n}>" for n in names)
        xml = f"<PublicAccessBlockConfiguration>{block}</PublicAccessBlockConfiguration>"
        return Response(xml, media_type="application/xml")
    if path.startswith("/v20180820/accesspoint/") and path.endswith("/scope") and method == "GET":
        xml = "<GetAccessPointScopeResult><Scope><Prefixes/></Scope></GetAccessPointScopeResult>"
        return Response(xml, media_type="application/xml")
    return _xml(400, "NotImplemented", "not in the fake")


def _s3(fake: FakeUpstream, request: Request, body: bytes) -> Response:
    host = request.headers["host"].split(":")[0]
    path = unquote(request.url.path)
    if host.startswith(BUCKET + "."):
        bucket, key = BUCKET, path[1:]
    else:
        bucket, _, key = path[1:].partition("/")
    if request.headers.get("content-encoding", "").startswith("aws-chunked"):
        body = _aws_chunked(body)
    query = dict(parse_qsl(request.url.query, keep_blank_values=True))
    objects: dict[tuple[str, str], bytes] = fake.settings["objects"]
    uploads: dict[str, dict[int, bytes]] = fake.settings["uploads"]
    method = request.method
    if method == "POST" and "uploads" in query:
        upload = secrets.token_hex(8)
        uploads[upload] = {}
        xml = (f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
               f"<UploadId>{upload}</UploadId></InitiateMultipartUploadResult>")  # fmt: skip
        return Response(xml, media_type="application/xml")
    if method == "PUT" and "uploadId" in query:
        uploads[query["uploadId"]][int(query["partNumber"])] = body
        return Response(headers={"ETag": _etag(body)})
    if method == "POST" and "uploadId" in query:
        parts = uploads.pop(query["uploadId"])
        objects[(bucket, key)] = b"".join(parts[n] for n in sorted(parts))
        xml = (f"<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
               '<ETag>"x-2"</ETag></CompleteMultipartUploadResult>')  # fmt: skip
        return Response(xml, media_type="application/xml")
    if method == "PUT":
        objects[(bucket, key)] = body
        return Response(headers={"ETag": _etag(body)})
    if method in ("GET", "HEAD"):
        found = objects.get((bucket, key))
        if found is None:
            return _xml(404, "NoSuchKey", "no such key")
        return Response(found, media_type="application/octet-stream")
    if method == "DELETE":
        objects.pop((bucket, key), None)
        return Response(status_code=204)
    return _xml(400, "NotImplemented", "not in the fake")


def _sts(fake: FakeUpstream, body: bytes) -> Response:
    form = dict(parse_qsl(body.decode()))
    if form.get("Action") != "AssumeRole" or form.get("RoleArn") not in fake.settings.get(
        "roles", ()
    ):
        return _xml(403, "AccessDenied", "not allowed to assume this role")
    key_id = "ASIA" + secrets.token_hex(8).upper()
    secret, session = secrets.token_urlsafe(30), secrets.token_urlsafe(60)
    fake.settings["keys"][key_id] = (secret, session)
    fake.settings.setdefault("assumed", []).append(key_id)
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    xml = (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<AssumeRoleResult><Credentials>"
        f"<AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
        f"<SessionToken>{session}</SessionToken><Expiration>{expires}</Expiration>"
        "</Credentials></AssumeRoleResult></AssumeRoleResponse>"
    )
    return Response(xml, media_type="text/xml")


def boto3_through(service: str, proxy: str, bundle: Path) -> Any:
    """The real boto3 client for `service`, sending through the gateway at `proxy` (trusting
    its CA `bundle`) with a placeholder key: the gateway signs with the real one."""
    import pytest

    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    return boto3.client(
        service, region_name=REGION, aws_access_key_id="AKIAAGENTPLACEHOLDER",
        aws_secret_access_key="agent-holds-no-key", verify=str(bundle),
        config=Config(proxies={"https": proxy}, retries={"max_attempts": 1}),
    )  # fmt: skip
