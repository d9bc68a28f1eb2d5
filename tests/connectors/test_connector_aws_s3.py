"""S3 naming (``agentfirewall/connectors/awss3.py``) against what S3 does: a part copied
from another object is a copy, the headers that change what a write does are parameters a
rule can match, and a query name is read as S3 reads it, as spelled. The requests are the
real boto3's, caught before they are sent."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall.connectors.awss3 import _HEADERS, _SPELLINGS
from agentfirewall.connectors.model import ParsedAction
from agentfirewall.errors import ConnectorError
from tests.fuzzscale import examples

AWS = get_connector("aws")
BUCKET = "demo-bucket"
SECRET = {"Bucket": "vault", "Key": "secret/pass words.txt"}
SOURCE = "vault/secret/pass words.txt"  # `copy_source`: as S3 reads it
PUBLIC = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'
SSE_C_KEY = "k" * 32  # an SSE-C customer key: a secret


class _Sent(Exception):
    pass


@cache
def _client() -> Any:
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    def send(request: object, **_: object) -> None:
        raise _Sent(request)

    client = boto3.client("s3", region_name="us-west-2", aws_access_key_id="AKIAPLACEHOLDER",
                          aws_secret_access_key="placeholder",
                          config=Config(retries={"max_attempts": 1}))  # fmt: skip
    client.meta.events.register("before-send", send)
    return client


def boto3_request(operation: str, **kwargs: Any) -> HttpRequest:
    """The request boto3 sends for ``client.<operation>(**kwargs)``."""
    with pytest.raises(_Sent) as sent:
        getattr(_client(), operation)(**kwargs)
    request = sent.value.args[0]
    headers = tuple(
        (k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()
    )
    return HttpRequest.from_url(request.method, request.url, headers=headers)


def named(operation: str, **kwargs: Any) -> tuple[HttpRequest, ParsedAction]:
    req = boto3_request(operation, **kwargs)
    return req, AWS.parse(req)


# --- UploadPartCopy is a copy -------------------------------------------------------------


def test_a_part_copied_from_an_object_is_named_and_decided_as_a_copy() -> None:
    """UploadPartCopy was ``multipart.upload_part`` without its source: a rule denying
    ``object.copy`` (or matching ``copy_source``) let the object be copied out part by part."""
    part = {"Bucket": BUCKET, "Key": "public/b.txt", "UploadId": "u1", "PartNumber": 1}
    _, copy = named("copy_object", Bucket=BUCKET, Key="public/a.txt", CopySource=SECRET)
    _, parsed = named("upload_part_copy", **part, CopySource=SECRET, CopySourceRange="bytes=0-9")
    assert copy.spec.type == "aws.s3.object.copy"
    assert parsed.spec.type == "aws.s3.multipart.upload_part_copy"
    params = parsed.spec.parameters
    assert params["copy_source"] == copy.spec.parameters["copy_source"] == SOURCE
    assert (params["copy_source_range"], params["upload_id"], params["part_number"]) == (
        "bytes=0-9", "u1", "1"
    )  # fmt: skip
    assert [(a.spec.type, a.spec.parameters) for a in parsed.also] == [
        ("aws.s3.object.copy", params)
    ]
    _, plain = named("upload_part", **part, Body=b"x")
    assert (plain.spec.type, plain.also) == ("aws.s3.multipart.upload_part", ())


@pytest.mark.parametrize("source", ["/vault/a", "vault/a", "vault%2Fa"])
def test_a_copy_source_is_named_as_s3_reads_it(source: str) -> None:
    for query in ("", "?partNumber=1&uploadId=u"):
        req = HttpRequest.from_url("PUT", f"https://{BUCKET}.s3.amazonaws.com/k{query}",
                                   headers=(("x-amz-copy-source", source),))  # fmt: skip
        assert AWS.parse(req).spec.parameters["copy_source"] == "vault/a"


# --- headers that change what S3 does ------------------------------------------------------

OBJECT = {"Bucket": BUCKET, "Key": "k"}
#: (boto3 operation, its arguments, the action, the parameters its headers must give)
HEADER_CASES: list[tuple[str, dict[str, Any], str, dict[str, str]]] = [
    ("put_object", {**OBJECT, "Body": b"x", "ACL": "public-read", "GrantRead": PUBLIC,
                    "GrantReadACP": 'id="a"', "GrantWriteACP": 'id="b"',
                    "GrantFullControl": 'emailAddress="x@example.com"', "Tagging": "team=red",
                    "WebsiteRedirectLocation": "https://evil.example/",
                    "ObjectLockMode": "GOVERNANCE",
                    "ObjectLockRetainUntilDate": datetime(2030, 1, 1, tzinfo=UTC),
                    "ObjectLockLegalHoldStatus": "ON", "ServerSideEncryption": "aws:kms",
                    "SSEKMSKeyId": "arn:aws:kms:us-west-2:1:key/k",
                    "SSEKMSEncryptionContext": "e30=", "BucketKeyEnabled": True},
     "aws.s3.object.put",
     {"acl": "public-read", "grant_read": PUBLIC, "grant_read_acp": 'id="a"',
      "grant_write_acp": 'id="b"', "grant_full_control": 'emailAddress="x@example.com"',
      "tagging": "team=red", "website_redirect_location": "https://evil.example/",
      "object_lock_mode": "GOVERNANCE", "object_lock_retain_until_date": "2030-01-01T00:00:00Z",
      "object_lock_legal_hold": "ON", "server_side_encryption": "aws:kms",
      "server_side_encryption_aws_kms_key_id": "arn:aws:kms:us-west-2:1:key/k",
      "server_side_encryption_context": "e30=",
      "server_side_encryption_bucket_key_enabled": "true"}),
    ("copy_object", {**OBJECT, "CopySource": SECRET, "ACL": "public-read",
                     "MetadataDirective": "REPLACE", "TaggingDirective": "REPLACE"},
     "aws.s3.object.copy",
     {"acl": "public-read", "copy_source": SOURCE,
      "metadata_directive": "REPLACE", "tagging_directive": "REPLACE"}),
    ("create_multipart_upload", {**OBJECT, "ACL": "public-read", "GrantRead": PUBLIC},
     "aws.s3.multipart.create", {"acl": "public-read", "grant_read": PUBLIC}),
    ("create_bucket", {"Bucket": BUCKET, "ACL": "public-read-write", "GrantWrite": PUBLIC,
                       "ObjectLockEnabledForBucket": True, "ObjectOwnership": "ObjectWriter",
                       "CreateBucketConfiguration": {"LocationConstraint": "us-west-2"}},
     "aws.s3.bucket.create",
     {"acl": "public-read-write", "grant_write": PUBLIC, "bucket_object_lock_enabled": "true",
      "object_ownership": "ObjectWriter"}),
    ("upload_part_copy", {**OBJECT, "UploadId": "u", "PartNumber": 2, "CopySource": SECRET,
                          "CopySourceRange": "bytes=0-99"},
     "aws.s3.multipart.upload_part_copy",
     {"copy_source": SOURCE, "copy_source_range": "bytes=0-99"}),
    ("delete_object", {**OBJECT, "BypassGovernanceRetention": True}, "aws.s3.object.delete",
     {"bypass_governance_retention": "true"}),
    ("put_bucket_policy", {"Bucket": BUCKET, "Policy": "{}",
                           "ConfirmRemoveSelfBucketAccess": True},
     "aws.s3.bucket.policy.put", {"confirm_remove_self_bucket_access": "true"}),
    ("put_object", {**OBJECT, "Body": b"x", "SSECustomerAlgorithm": "AES256",
                    "SSECustomerKey": SSE_C_KEY},
     "aws.s3.object.put", {"server_side_encryption_customer_algorithm": "AES256"}),
]  # fmt: skip


@pytest.mark.parametrize(("operation", "kwargs", "action", "expected"), HEADER_CASES)
def test_headers_that_change_what_s3_does_are_parameters(
    operation: str, kwargs: dict[str, Any], action: str, expected: dict[str, str]
) -> None:
    """``x-amz-acl: public-read`` inside a PutObject was not read: a rule denying "make
    this public" as ``object.acl.put`` let the same grant through inside ``object.put``."""
    _, parsed = named(operation, **kwargs)
    assert parsed.spec.type == action
    shown = {k: v for k, v in parsed.spec.parameters.items() if k in expected}
    assert shown == expected


def test_every_header_read_is_tested() -> None:
    tested = {name for *_, expected in HEADER_CASES for name in expected}
    assert tested == {h.removeprefix("x-amz-").replace("-", "_") for h in _HEADERS}


def test_an_sse_c_key_never_enters_the_action() -> None:
    req, parsed = named("copy_object", **OBJECT, CopySource=SECRET, SSECustomerAlgorithm="AES256",
                        SSECustomerKey=SSE_C_KEY, CopySourceSSECustomerAlgorithm="AES256",
                        CopySourceSSECustomerKey=SSE_C_KEY)  # fmt: skip
    sent = [v for k, v in req.headers if "customer-key" in k.lower()]
    assert len(sent) == 4  # the key and its MD5, for the object and for the source
    assert not [v for v in sent if v in repr(parsed.spec.model_dump())]
    assert parsed.spec.parameters["server_side_encryption_customer_algorithm"] == "AES256"


@pytest.mark.parametrize("header", sorted(_HEADERS))
@pytest.mark.parametrize("query", ["", "?partNumber=1&uploadId=u", "?uploads", "?acl"])
def test_a_header_given_twice_is_refused(header: str, query: str) -> None:
    """Two ``x-amz-copy-source`` values: which one S3 reads is not the gateway's guess."""
    headers = ((header, "vault/a"), (header.upper(), "vault/b"))
    method = "POST" if query == "?uploads" else "PUT"
    req = HttpRequest.from_url(method, f"https://{BUCKET}.s3.amazonaws.com/k{query}",
                               headers=headers)  # fmt: skip
    with pytest.raises(ConnectorError, match="twice"):
        AWS.parse(req)


def test_a_header_longer_than_s3_takes_is_refused_not_cut_short() -> None:
    grants = ", ".join(['id="' + "a" * 60 + '"'] * 130 + [PUBLIC])  # the public grant last
    req = HttpRequest.from_url("PUT", f"https://{BUCKET}.s3.amazonaws.com/k",
                               headers=(("x-amz-grant-read", grants),))  # fmt: skip
    with pytest.raises(ConnectorError, match="longer than"):
        AWS.parse(req)


# --- query names, as spelled ----------------------------------------------------------------

_URL = "https://s3.us-west-2.amazonaws.com/bkt"


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [("DELETE", "/key", "Tagging"), ("DELETE", "/key", "TAGGING"), ("DELETE", "", "Policy"),
     ("PUT", "/key", "Acl"), ("GET", "/key", "Torrent"), ("POST", "", "Delete"),
     ("PUT", "/key", "UploadId=1&PartNumber=1"), ("DELETE", "/key", "UploadId=1"),
     ("DELETE", "/key", "VersionId=1"), ("DELETE", "/key", "versionid=1"),
     ("GET", "", "publicaccessblock"), ("DELETE", "", "ownershipcontrols")],
)  # fmt: skip
def test_a_query_name_s3_would_ignore_is_refused(method: str, path: str, query: str) -> None:
    """S3 reads ``?Tagging`` as no subresource (it ignores names it does not know): the
    DELETE named ``object.tagging.delete`` deleted the object."""
    with pytest.raises(ConnectorError, match="not S3's"):
        AWS.parse(HttpRequest.from_url(method, f"{_URL}{path}?{query}"))


def _other_case(name: str, flips: list[bool]) -> str:
    return "".join(c.swapcase() if flip else c for c, flip in zip(name, flips, strict=False))


@settings(max_examples=examples(200), deadline=None)
@given(
    name=st.sampled_from(sorted(_SPELLINGS.values())),
    flips=st.lists(st.booleans(), min_size=30, max_size=30),
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]),
    path=st.sampled_from(["", "/key"]),
    value=st.sampled_from(["", "=", "=1"]),
)
def test_every_known_query_name_is_read_only_as_spelled(
    name: str, flips: list[bool], method: str, path: str, value: str
) -> None:
    """Any other case of every subresource and parameter is refused; as spelled it is not."""
    AWS.parse(HttpRequest.from_url(method, f"{_URL}{path}?{name}{value}"))
    variant = _other_case(name, flips)
    if variant == name:
        variant = name.swapcase()
    with pytest.raises(ConnectorError, match="not S3's"):
        AWS.parse(HttpRequest.from_url(method, f"{_URL}{path}?{variant}{value}"))


def test_the_spellings_are_s3s() -> None:
    """Every query name of S3's model that the table knows, it spells as the model does."""
    botocore = pytest.importorskip("botocore.session")
    model = botocore.get_session().get_service_model("s3")
    names: set[str] = set()
    for operation in model.operation_names:
        op = model.operation_model(operation)
        uri = op.http["requestUri"]
        names.update(p.split("=")[0] for p in uri.partition("?")[2].split("&") if p)
        members = op.input_shape.members.values() if op.input_shape else ()
        names.update(m.serialization["name"] for m in members
                     if m.serialization.get("location") == "querystring")  # fmt: skip
    known = [n for n in names if n.lower() in _SPELLINGS]
    assert len(known) > 40
    assert {n: _SPELLINGS[n.lower()] for n in known} == {n: n for n in known}


@pytest.mark.parametrize(
    ("operation", "kwargs", "action"),
    [("get_object", {**OBJECT, "VersionId": "v"}, "aws.s3.object.get"),
     ("get_public_access_block", {"Bucket": BUCKET}, "aws.s3.bucket.publicaccessblock.get"),
     ("delete_bucket_ownership_controls", {"Bucket": BUCKET},
      "aws.s3.bucket.ownershipcontrols.delete"),
     ("get_bucket_policy_status", {"Bucket": BUCKET}, "aws.s3.bucket.policystatus.get"),
     ("put_bucket_request_payment", {"Bucket": BUCKET,
      "RequestPaymentConfiguration": {"Payer": "Requester"}}, "aws.s3.bucket.requestpayment.put"),
     ("abort_multipart_upload", {**OBJECT, "UploadId": "u"}, "aws.s3.multipart.abort")],
)  # fmt: skip
def test_the_names_boto3_spells_are_named(
    operation: str, kwargs: dict[str, Any], action: str
) -> None:
    assert named(operation, **kwargs)[1].spec.type == action
