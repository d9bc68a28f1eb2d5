"""S3 request naming: bucket and key from the host or path, the operation from method and
query subresources (the table in ``aws.py``'s docstring). Pure string logic.

Query names are read as S3 reads them: case-sensitively (``versionId``, ``uploadId``,
``publicAccessBlock``), and a name S3 does not know is ignored (``DELETE key?Tagging`` is
DeleteObject). A name that is a known one only in another case is refused: it names nothing
S3 would do. A query parameter that is neither a known subresource nor a known plain
parameter names nothing (None: the connector's ``aws.unknown.<method>`` fallback), so no S3
operation hides behind an unlisted subresource.

Headers that change what a write does (``_HEADERS``: its ACL and grants, object lock,
encryption, tags, redirect, what a copy reads and keeps) are parameters, named after the
header without ``x-amz-`` (``x-amz-acl`` → ``acl``, ``x-amz-grant-read`` → ``grant_read``),
so a rule can match them; one given twice is refused. An SSE-C key is a secret: not read.
A part copied from another object (UploadPartCopy) is ``multipart.upload_part_copy``, with
``copy_source`` as ``object.copy`` has it, and decided as ``object.copy`` too (`S3_ALSO`).
"""

from __future__ import annotations

from urllib.parse import unquote

from pydantic import JsonValue

from agentfirewall.actions import Risk
from agentfirewall.connectors.bodies import parse_form
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.errors import ConnectorError

__all__ = ["S3_ALSO", "s3_action"]

#: Configuration subresources: ``aws.s3.<bucket|object>.<name>.<get|put|delete>``.
_BUCKET_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering",
        "inventory", "lifecycle", "location", "logging", "metrics", "notification",
        "object-lock", "ownershipControls", "policy", "policyStatus", "publicAccessBlock",
        "replication", "requestPayment", "tagging", "versioning", "website",
    }
)  # fmt: skip
_OBJECT_SUBRESOURCES = frozenset(
    {"acl", "tagging", "retention", "legal-hold", "attributes", "torrent"}
)
#: Query parameters that change no operation (listing, paging, versions, response headers;
#: ``x-id`` is botocore's operation hint, not read by S3).
_PLAIN = frozenset(
    {
        "prefix", "delimiter", "marker", "max-keys", "list-type", "continuation-token",
        "start-after", "fetch-owner", "encoding-type", "versionId", "partNumber", "uploadId",
        "max-parts", "part-number-marker", "key-marker", "upload-id-marker",
        "version-id-marker", "max-uploads", "response-content-type", "response-expires",
        "response-content-language", "response-cache-control", "response-content-disposition",
        "response-content-encoding", "x-id", "id", "versions", "uploads", "delete", "restore",
        "select", "select-type",
    }
)  # fmt: skip
#: Every known query name in lower case -> its one spelling (S3's).
_SPELLINGS = {name.lower(): name for name in _BUCKET_SUBRESOURCES | _OBJECT_SUBRESOURCES | _PLAIN}
_SHOWN = (
    ("versionId", "version_id"),
    ("uploadId", "upload_id"),
    ("partNumber", "part_number"),
    ("prefix", "prefix"),
)
#: Headers that change what S3 does (parameter: the name without ``x-amz-``, ``-`` as ``_``).
#: Never an SSE-C key or its MD5 (``x-amz-server-side-encryption-customer-key``), nor
#: ``x-amz-mfa`` (a one-time code).
_HEADERS = frozenset(
    {
        "x-amz-copy-source", "x-amz-copy-source-range", "x-amz-metadata-directive",
        "x-amz-tagging-directive", "x-amz-tagging", "x-amz-acl", "x-amz-grant-read",
        "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
        "x-amz-grant-full-control", "x-amz-object-ownership", "x-amz-object-lock-mode",
        "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
        "x-amz-bucket-object-lock-enabled", "x-amz-bypass-governance-retention",
        "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-server-side-encryption-context", "x-amz-server-side-encryption-bucket-key-enabled",
        "x-amz-server-side-encryption-customer-algorithm", "x-amz-website-redirect-location",
        "x-amz-confirm-remove-self-bucket-access",
    }
)  # fmt: skip
#: S3 takes at most 8 KiB of headers: a longer value is refused, never cut short.
_HEADER_LIMIT = 8192
#: Action -> the action it performs too, decided as well (``ParsedAction.also``): a part
#: copied from an object is a copy, so a rule on ``object.copy`` decides it as it does a
#: CopyObject.
S3_ALSO = {"multipart.upload_part_copy": "object.copy"}
_UPLOAD: dict[str, tuple[str, Risk]] = {
    "PUT": ("multipart.upload_part", "medium"),
    "POST": ("multipart.complete", "medium"),
    "DELETE": ("multipart.abort", "medium"),
    "GET": ("multipart.list_parts", "low"),
}
_VERBS = {"GET": "get", "HEAD": "get", "PUT": "put", "DELETE": "delete"}


def s3_action(
    req: HttpRequest, method: str, host_bucket: str | None
) -> tuple[str, Risk, dict[str, JsonValue]] | None:
    """(action after ``aws.s3.``, risk, parameters), or None when nothing is named."""
    path = req.path
    if host_bucket is not None:
        bucket, key = host_bucket, unquote(path[1:])
    else:
        first, _, rest = path[1:].partition("/")
        if "%2f" in first.lower() or "%5c" in first.lower():
            # no bucket name holds a slash: S3 may split there and see another bucket and key
            raise ConnectorError("refused bucket segment: encoded `/` or `\\`", connector="aws")
        bucket, key = unquote(first), unquote(rest)
    query = _query(req)
    params: dict[str, JsonValue] = {}
    if bucket:
        params["bucket"] = bucket
    if key:
        params["key"] = key
    for name, shown in _SHOWN:
        if name in query:
            params[shown] = query[name][0]
    params.update(_header_params(req))
    subs = set(query) - _PLAIN
    if not bucket:
        return ("bucket.list", "low", params) if method == "GET" and not query else None
    if key:
        return _object(method, query, subs, params)
    return _bucket(method, query, subs, params)


def _query(req: HttpRequest) -> dict[str, tuple[str, ...]]:
    """The query, names as spelled: a known name in another case, or a name given twice
    with different values, is refused (which would S3 act on?)."""
    query = parse_form(req.query, connector="aws") or {}
    for name, values in query.items():
        spelled = _SPELLINGS.get(name.lower())
        if spelled is not None and spelled != name:
            raise ConnectorError(
                f"query parameter `{name[:40]}` is not S3's `{spelled}`: S3 reads names as "
                "spelled, refused",
                connector="aws",
            )
        if len(set(values)) > 1:
            raise ConnectorError(
                "the same query parameter twice with different values", connector="aws"
            )
    return query


def _header_params(req: HttpRequest) -> dict[str, str]:
    """The `_HEADERS` the request carries, as parameters (``copy_source`` as S3 reads it:
    percent-decoded, ``bucket/key`` with or without a ``/`` first); one given twice, or
    longer than S3 takes, is refused."""
    found: dict[str, str] = {}
    for name, value in req.headers:
        header = name.lower()
        if header not in _HEADERS:
            continue
        param = header.removeprefix("x-amz-").replace("-", "_")
        if param in found or len(value) > _HEADER_LIMIT:
            raise ConnectorError(
                f"`{header}` given twice or longer than {_HEADER_LIMIT} characters: refused",
                connector="aws",
            )
        found[param] = value.strip(" \t")
    if "copy_source" in found:
        found["copy_source"] = unquote(found["copy_source"]).removeprefix("/")
    return found


def _subresource(
    kind: str, method: str, subs: set[str], allowed: frozenset[str], params: dict[str, JsonValue]
) -> tuple[str, Risk, dict[str, JsonValue]] | None:
    sub = next(iter(subs))
    verb = _VERBS.get(method)
    if len(subs) != 1 or sub not in allowed or verb is None or method == "HEAD":
        return None
    risk: Risk = "low" if verb == "get" else ("high" if verb == "delete" else "medium")
    return f"{kind}.{sub.lower()}.{verb}", risk, params


def _object(
    method: str,
    query: dict[str, tuple[str, ...]],
    subs: set[str],
    params: dict[str, JsonValue],
) -> tuple[str, Risk, dict[str, JsonValue]] | None:
    if len(subs) == 1:
        return _subresource("object", method, subs, _OBJECT_SUBRESOURCES, params)
    if subs:
        return None
    upload = "uploadId" in query
    if "uploads" in query:
        return ("multipart.create", "medium", params) if method == "POST" else None
    if upload:
        found = _UPLOAD.get(method)
        if found is None or (method == "PUT") != ("partNumber" in query):
            return None
        if method == "PUT" and "copy_source" in params:  # UploadPartCopy: a copy (`S3_ALSO`)
            return "multipart.upload_part_copy", "medium", params
        return found[0], found[1], params
    if "restore" in query or "select" in query:
        if method != "POST":
            return None
        return ("object.restore" if "restore" in query else "object.select"), "medium", params
    if method in ("GET", "HEAD"):
        return "object.get", "low", params
    if method == "PUT":
        return ("object.copy" if "copy_source" in params else "object.put"), "medium", params
    if method == "DELETE":
        return "object.delete", "high", params
    return None


def _bucket(
    method: str, query: dict[str, tuple[str, ...]], subs: set[str], params: dict[str, JsonValue]
) -> tuple[str, Risk, dict[str, JsonValue]] | None:
    if len(subs) == 1:
        return _subresource("bucket", method, subs, _BUCKET_SUBRESOURCES, params)
    if subs:
        return None
    if "delete" in query:
        return ("object.delete_many", "high", params) if method == "POST" else None
    if "uploads" in query:
        return ("multipart.list", "low", params) if method == "GET" else None
    if "versions" in query:
        return ("object.list_versions", "low", params) if method == "GET" else None
    if method == "GET":
        return "object.list", "low", params
    if method == "HEAD":
        return "bucket.get", "low", params
    if method == "PUT":
        return "bucket.create", "medium", params
    if method == "DELETE":
        return "bucket.delete", "high", params
    return None
