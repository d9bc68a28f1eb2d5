"""S3 request naming: bucket and key from the host or path, the operation from method and
query subresources (the table in ``aws.py``'s docstring). Pure string logic.

A query parameter that is neither a known subresource nor a known plain parameter names
nothing (None: the connector's ``aws.unknown.<method>`` fallback), so no S3 operation
hides behind an unlisted subresource.
"""

from __future__ import annotations

from urllib.parse import unquote

from pydantic import JsonValue

from agentfirewall.actions import Risk
from agentfirewall.connectors.bodies import parse_form
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.errors import ConnectorError

__all__ = ["s3_action"]

#: Configuration subresources: ``aws.s3.<bucket|object>.<name>.<get|put|delete>``.
_BUCKET_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering",
        "inventory", "lifecycle", "location", "logging", "metrics", "notification",
        "object-lock", "ownershipcontrols", "policy", "policystatus", "publicaccessblock",
        "replication", "requestpayment", "tagging", "versioning", "website",
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
        "start-after", "fetch-owner", "encoding-type", "versionid", "partnumber", "uploadid",
        "max-parts", "part-number-marker", "key-marker", "upload-id-marker",
        "version-id-marker", "max-uploads", "response-content-type", "response-expires",
        "response-content-language", "response-cache-control", "response-content-disposition",
        "response-content-encoding", "x-id", "id", "versions", "uploads", "delete", "restore",
        "select", "select-type",
    }
)  # fmt: skip
_SHOWN = (
    ("versionid", "version_id"),
    ("uploadid", "upload_id"),
    ("partnumber", "part_number"),
    ("prefix", "prefix"),
)
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
    query = {k.lower(): v for k, v in (parse_form(req.query, connector="aws") or {}).items()}
    if any(len(set(v)) > 1 for v in query.values()):
        raise ConnectorError("the same query parameter twice with different values",
                             connector="aws")  # fmt: skip
    params: dict[str, JsonValue] = {}
    if bucket:
        params["bucket"] = bucket
    if key:
        params["key"] = key
    for name, shown in _SHOWN:
        if name in query:
            params[shown] = query[name][0]
    subs = set(query) - _PLAIN
    if not bucket:
        return ("bucket.list", "low", params) if method == "GET" and not query else None
    if key:
        return _object(req, method, query, subs, params)
    return _bucket(method, query, subs, params)


def _subresource(
    kind: str, method: str, subs: set[str], allowed: frozenset[str], params: dict[str, JsonValue]
) -> tuple[str, Risk, dict[str, JsonValue]] | None:
    sub = next(iter(subs))
    verb = _VERBS.get(method)
    if len(subs) != 1 or sub not in allowed or verb is None or method == "HEAD":
        return None
    risk: Risk = "low" if verb == "get" else ("high" if verb == "delete" else "medium")
    return f"{kind}.{sub}.{verb}", risk, params


def _object(
    req: HttpRequest,
    method: str,
    query: dict[str, tuple[str, ...]],
    subs: set[str],
    params: dict[str, JsonValue],
) -> tuple[str, Risk, dict[str, JsonValue]] | None:
    if len(subs) == 1:
        return _subresource("object", method, subs, _OBJECT_SUBRESOURCES, params)
    if subs:
        return None
    upload = "uploadid" in query
    if "uploads" in query:
        return ("multipart.create", "medium", params) if method == "POST" else None
    if upload:
        found = _UPLOAD.get(method)
        if found is None or (method == "PUT") != ("partnumber" in query):
            return None
        return found[0], found[1], params
    if "restore" in query or "select" in query:
        if method != "POST":
            return None
        return ("object.restore" if "restore" in query else "object.select"), "medium", params
    if method in ("GET", "HEAD"):
        return "object.get", "low", params
    if method == "PUT":
        copy = req.header("x-amz-copy-source")
        if copy is not None:
            params["copy_source"] = unquote(copy)[:2048]
            return "object.copy", "medium", params
        return "object.put", "medium", params
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
