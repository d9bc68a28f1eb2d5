"""The aws connector: request -> action table (host + path + query + Action/X-Amz-Target),
and the requests it refuses rather than name wrongly."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall.connectors.awshosts import aws_endpoint, credential_scope
from agentfirewall.errors import ConnectorError
from tests.fuzzscale import examples

AWS = get_connector("aws")
JSON10 = ("Content-Type", "application/x-amz-json-1.0")
FORM = ("Content-Type", "application/x-www-form-urlencoded")

CASES = [
    # (method, url, headers, body, action, target)
    ("PUT", "https://bk1.s3.us-west-2.amazonaws.com/a/b.txt?x-id=PutObject", (), b"",
     "aws.s3.object.put", "bk1/a/b.txt"),
    ("GET", "https://s3.us-west-2.amazonaws.com/bk1/a%20b.txt", (), b"", "aws.s3.object.get",
     "bk1/a b.txt"),
    ("HEAD", "https://bk1.s3.amazonaws.com/k", (), b"", "aws.s3.object.get", "bk1/k"),
    ("DELETE", "https://bk1.s3.amazonaws.com/k", (), b"", "aws.s3.object.delete", "bk1/k"),
    ("PUT", "https://bk1.s3.amazonaws.com/k", (("x-amz-copy-source", "/other/x"),), b"",
     "aws.s3.object.copy", "bk1/k"),
    ("POST", "https://bk1.s3.amazonaws.com/k?uploads", (), b"", "aws.s3.multipart.create",
     "bk1/k"),
    ("PUT", "https://bk1.s3.amazonaws.com/k?partNumber=1&uploadId=u", (), b"",
     "aws.s3.multipart.upload_part", "bk1/k"),
    ("POST", "https://bk1.s3.amazonaws.com/k?uploadId=u", (), b"", "aws.s3.multipart.complete",
     "bk1/k"),
    ("DELETE", "https://bk1.s3.amazonaws.com/k?uploadId=u", (), b"", "aws.s3.multipart.abort",
     "bk1/k"),
    ("GET", "https://bk1.s3.amazonaws.com/?list-type=2&prefix=p", (), b"", "aws.s3.object.list",
     "bk1"),
    ("POST", "https://bk1.s3.amazonaws.com/?delete", (), b"", "aws.s3.object.delete_many", "bk1"),
    ("PUT", "https://bk1.s3.amazonaws.com/?policy", (), b"", "aws.s3.bucket.policy.put", "bk1"),
    ("PUT", "https://bk1.s3.amazonaws.com/k?tagging", (), b"", "aws.s3.object.tagging.put",
     "bk1/k"),
    ("PUT", "https://s3.us-west-2.amazonaws.com/bk1", (), b"", "aws.s3.bucket.create", "bk1"),
    ("GET", "https://s3.amazonaws.com/", (), b"", "aws.s3.bucket.list", None),
    ("GET", "https://bk1.s3.amazonaws.com/?weird", (), b"", "aws.unknown.get", None),
    ("POST", "https://sqs.us-west-2.amazonaws.com/", (("X-Amz-Target", "AmazonSQS.SendMessage"),
     JSON10), b'{"QueueUrl":"https://sqs.us-west-2.amazonaws.com/1/jobs","MessageBody":"x"}',
     "aws.sqs.send_message", "jobs"),
    ("POST", "https://sqs.us-west-2.amazonaws.com/1/jobs", (FORM,),
     b"Action=DeleteMessage&ReceiptHandle=r", "aws.sqs.delete_message", "jobs"),
    ("POST", "https://dynamodb.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "DynamoDB_20120810.PutItem"), JSON10), b'{"TableName":"orders","Item":{}}',
     "aws.dynamodb.put_item", "orders"),
    ("POST", "https://sns.us-west-2.amazonaws.com/", (FORM,),
     b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-west-2%3A1%3At&Message=hi",
     "aws.sns.publish", "arn:aws:sns:us-west-2:1:t"),
    ("POST", "https://secretsmanager.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "secretsmanager.GetSecretValue"),), b'{"SecretId":"prod/db"}',
     "aws.secretsmanager.get_secret_value", "prod/db"),
    ("GET", "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", (), b"",
     "aws.sts.get_caller_identity", None),
    ("POST", "https://lambda.us-west-2.amazonaws.com/2015-03-31/functions/fn/invocations", (),
     b"{}", "aws.lambda.invoke", "fn"),
    ("DELETE", "https://lambda.us-west-2.amazonaws.com/2015-03-31/functions/fn", (), b"",
     "aws.lambda.delete_function", "fn"),
    ("GET", "https://example.com.evil/", (), b"", "aws.unknown.get", None),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "headers", "body", "action", "target"), CASES)
def test_names(
    method: str, url: str, headers: tuple[tuple[str, str], ...], body: bytes, action: str,
    target: str | None,
) -> None:  # fmt: skip
    parsed = AWS.parse(HttpRequest.from_url(method, url, headers=headers, body=body))
    assert parsed.spec.type == action
    assert parsed.spec.resource.target == target


REFUSED = [
    ("POST", "https://sqs.us-west-2.amazonaws.com/",
     (("X-Amz-Target", "DynamoDB_20120810.DeleteTable"),), b"{}", "addresses dynamodb"),
    ("GET", "https://bkt.s3.amazonaws.com/k?X-Amz-Signature=a&X-Amz-Credential=c", (), b"",
     "presigned"),
    ("POST", "https://sns.us-west-2.amazonaws.com/?Action=Publish", (FORM,),
     b"Action=DeleteTopic", "both the query and the body"),
    ("POST", "https://sns.us-west-2.amazonaws.com/", (FORM,),
     b"Action=Publish&Action=DeleteTopic", "twice"),
    ("POST", "https://dynamodb.us-west-2.amazonaws.com/",
     (("X-Amz-Target", "DynamoDB_20120810.PutItem"),),
     b'{"TableName":"a","TableName":"b"}', "twice"),
    ("POST", "https://dynamodb.us-west-2.amazonaws.com/?Action=DeleteTable",
     (("X-Amz-Target", "DynamoDB_20120810.PutItem"),), b"{}", "both"),
    ("GET", "https://bkt.s3.amazonaws.com/k?versionId=1&versionId=2", (), b"", "twice"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "headers", "body", "message"), REFUSED)
def test_refuses_what_it_cannot_name_truly(
    method: str, url: str, headers: tuple[tuple[str, str], ...], body: bytes, message: str
) -> None:
    with pytest.raises(ConnectorError, match=message):
        AWS.parse(HttpRequest.from_url(method, url, headers=headers, body=body))


def test_truncated_json_body_is_refused() -> None:
    req = HttpRequest.from_url(
        "POST", "https://dynamodb.us-west-2.amazonaws.com/",
        headers=(("X-Amz-Target", "DynamoDB_20120810.PutItem"),),
        body=json.dumps({"TableName": "t"}).encode()[:5], body_complete=False,
    )  # fmt: skip
    with pytest.raises(ConnectorError, match="inspection limit"):
        AWS.parse(req)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("bkt.s3.us-west-2.amazonaws.com", ("s3", "us-west-2", "bkt")),
        ("my.dotted.bucket.s3.eu-central-1.amazonaws.com", ("s3", "eu-central-1",
                                                            "my.dotted.bucket")),
        ("s3.dualstack.us-east-2.amazonaws.com", ("s3", "us-east-2", None)),
        ("bkt.s3-us-west-1.amazonaws.com", ("s3", "us-west-1", "bkt")),
        ("s3.amazonaws.com", ("s3", "us-east-1", None)),
        ("sts.amazonaws.com", ("sts", "us-east-1", None)),
        ("sqs.ap-southeast-2.amazonaws.com", ("sqs", "ap-southeast-2", None)),
        ("s3-website-us-east-1.amazonaws.com", None),
        ("amazonaws.com.evil.com", None),
        ("a.b.c.amazonaws.com", None),
    ],
)  # fmt: skip
def test_endpoints(host: str, expected: tuple[str, str, str | None] | None) -> None:
    found = aws_endpoint(host)
    assert (None if found is None else (found.service, found.region, found.bucket)) == expected


def test_credential_scope() -> None:
    auth = "AWS4-HMAC-SHA256 Credential=AKIA/20260101/eu-west-1/es/aws4_request, SignedHeaders=host"
    assert credential_scope(auth) == ("eu-west-1", "es")
    assert credential_scope("Bearer x") is None


_BUCKETS = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
_KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=30)  # fmt: skip


@settings(max_examples=examples(80), deadline=None)
@given(
    bucket=_BUCKETS,
    key=_KEYS,
    method=st.sampled_from(["GET", "PUT", "DELETE", "HEAD"]),
    query=st.sampled_from(["", "x-id=GetObject", "versionId=3", "tagging", "uploadId=u"]),
)
def test_both_s3_addressing_styles_name_the_same_action(
    bucket: str, key: str, method: str, query: str
) -> None:
    """Virtual-host and path style, with any key in any percent-encoding S3 accepts, name
    the same action on the same bucket and key (the key S3 would store)."""
    encoded = quote(key, safe="/")
    suffix = f"?{query}" if query else ""
    virtual = HttpRequest.from_url(
        method, f"https://{bucket}.s3.eu-west-1.amazonaws.com/{encoded}{suffix}"
    )
    path = HttpRequest.from_url(
        method, f"https://s3.eu-west-1.amazonaws.com/{bucket}/{encoded}{suffix}"
    )
    one, two = AWS.parse(virtual), AWS.parse(path)
    assert one.spec.type == two.spec.type
    if not one.spec.type.startswith("aws.unknown"):  # (the fallback keeps the raw path)
        assert one.spec.parameters == two.spec.parameters
        assert one.spec.parameters["key"] == key
        assert one.spec.parameters["bucket"] == bucket


# --- operation names: boto3's, from the one spelling the API model uses ------------------


def _signed(region: str, service: str = "s3") -> tuple[str, str]:
    """A SigV4 ``Authorization`` as an SDK sends it (the gateway re-signs; the scope tells
    the region of a host that names none)."""
    return ("Authorization", f"AWS4-HMAC-SHA256 Credential=AKIAPLACEHOLDER/20260101/{region}/"
            f"{service}/aws4_request, SignedHeaders=host, Signature=00")  # fmt: skip


RENAMED = [
    # boto3's method names (botocore's xform_name), where a plain CamelCase split differs
    ("POST", "https://elasticbeanstalk.us-west-2.amazonaws.com/", (FORM,),
     b"Action=SwapEnvironmentCNAMEs&Version=2010-12-01",
     "aws.elasticbeanstalk.swap_environment_cnames"),  # was swap_environment_cnam_es
    ("POST", "https://storagegateway.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "StorageGateway_20130630.DescribeCachediSCSIVolumes"), JSON10), b"{}",
     "aws.storagegateway.describe_cached_iscsi_volumes"),  # was describe_cachedi_scsi_volumes
    ("POST", "https://monitoring.us-west-2.amazonaws.com/", (FORM,),
     b"Action=GetOTelEnrichment&Version=2010-08-01",
     "aws.monitoring.get_otel_enrichment"),  # was get_o_tel_enrichment
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "headers", "body", "action"), RENAMED)
def test_operations_are_named_as_boto3_names_them(
    method: str, url: str, headers: tuple[tuple[str, str], ...], body: bytes, action: str
) -> None:
    parsed = AWS.parse(HttpRequest.from_url(method, url, headers=headers, body=body))
    assert parsed.spec.type == action


DDB = "https://dynamodb.us-west-2.amazonaws.com/"
SNS = "https://sns.us-west-2.amazonaws.com/"

#: Spellings of one operation that are not the model's, or that put a second operation
#: beside it: refused, never named (each was named before, most as another action).
SPELLINGS = [
    # X-Amz-Target: another case of DynamoDB_20120810.PutItem
    ("POST", DDB, (("X-Amz-Target", "DynamoDB_20120810.putItem"),), b"{}", "putItem"),
    ("POST", DDB, (("X-Amz-Target", "DynamoDB_20120810.putitem"),), b"{}", "putitem"),
    ("POST", DDB, (("X-Amz-Target", "DynamoDB_20120810.PUTITEM"),), b"{}", "PUTITEM"),
    ("POST", DDB, (("X-Amz-Target", "DynamoDB_20120810.deleteTable"),), b"{}", "deleteTable"),
    # whitespace HTTP does not trim (only spaces and tabs are)
    ("POST", DDB, (("X-Amz-Target", "DynamoDB_20120810.PutItem\x0b"),), b"{}", "invalid"),
    ("POST", DDB, (("X-Amz-Target", "DynamoDB_20120810.PutItem\xa0"),), b"{}", "invalid"),
    ("POST", DDB, (("X-Amz-Target", "DynamoDB_20120810.PutItem"),
                   ("x-amz-target", "DynamoDB_20120810.DeleteTable")), b"{}", "twice"),
    ("POST", f"{DDB}?action=DeleteTable", (("X-Amz-Target", "DynamoDB_20120810.PutItem"),),
     b"{}", "both"),
    # query Action: another case, a trailing newline (`$` matched before it)
    ("POST", SNS, (FORM,), b"Action=publish", "publish"),
    ("POST", SNS, (FORM,), b"Action=PUBLISH", "PUBLISH"),
    ("GET", f"{SNS}?Action=deleteTopic", (), b"", "deleteTopic"),
    ("GET", f"{SNS}?Action=Publish%0A", (), b"", "invalid aws operation"),
    # another parameter that may name the operation: another case, the `Operation` alias
    ("POST", SNS, (FORM,), b"action=DeleteTopic", "`action`"),
    ("POST", SNS, (FORM,), b"ACTION=DeleteTopic", "`ACTION`"),
    ("POST", SNS, (FORM,), b"%61ction=DeleteTopic", "`action`"),
    ("POST", SNS, (FORM,), b"Operation=DeleteTopic", "`Operation`"),
    ("POST", SNS, (FORM,), b"Act%C4%B1on=DeleteTopic", "`Act\u0131on`"),  # dotless i
    ("POST", SNS, (FORM,), b"Action=Publish&ACT%C4%B0ON=DeleteTopic", "`ACT\u0130ON`"),
    ("POST", SNS, (FORM,), b"Action=Publish&action=DeleteTopic", "`action`"),
    ("POST", SNS, (FORM,), b"Action=Publish&Operation=DeleteTopic", "`Operation`"),
    ("POST", f"{SNS}?Action=Publish", (FORM,), b"action=DeleteTopic", "both the query and"),
    ("POST", f"{SNS}?action=DeleteTopic", (FORM,), b"Action=Publish", "both the query and"),
    # a form body on another method is read too: its Action beside the query's
    ("PUT", f"{SNS}?Action=Publish", (FORM,), b"Action=DeleteTopic", "both the query and"),
    # one field, two values across the query and the body (the body's was kept)
    ("POST", f"{SNS}?TopicArn=arn%3Aaws%3Asns%3Aus-west-2%3A1%3Aok", (FORM,),
     b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-west-2%3A1%3Aprod", "different values"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "headers", "body", "message"), SPELLINGS)
def test_an_operation_in_another_spelling_is_refused(
    method: str, url: str, headers: tuple[tuple[str, str], ...], body: bytes, message: str
) -> None:
    with pytest.raises(ConnectorError, match=re.escape(message)):
        AWS.parse(HttpRequest.from_url(method, url, headers=headers, body=body))


#: Real operations with acronyms, plural acronyms, digits and botocore's exceptions.
_OPERATIONS = ["PutItem", "DeleteTable", "GetSecretValue", "DescribeDBInstances",
               "AssumeRoleWithSAML", "ListWebACLs", "SwapEnvironmentCNAMEs", "ListMFADevices",
               "GetOpenIDConnectProvider", "CreateAutoMLJobV2", "CreateCachediSCSIVolume",
               "ListHITsForQualificationType", "GetOTelEnrichment", "Publish"]  # fmt: skip
#: What an attacker inserts into an operation: separators, spaces HTTP keeps, look-alikes.
_FOREIGN = st.sampled_from(["_", "-", ".", " ", "\t", "\x00", "\x0b", "\xa0", "\u200b",
                            "\u0130", "\u0131", "\u017f", "\u212a", "\uff29",
                            "\u0435"])  # fmt: skip


def _request(operation: str, protocol: str, encode: list[bool]) -> HttpRequest:
    if protocol == "json":
        headers = (("X-Amz-Target", f"DynamoDB_20120810.{operation}"), JSON10)
        return HttpRequest.from_url("POST", DDB, headers=headers, body=b"{}")
    flags = iter(encode + [False] * 400)
    key, value = (  # any byte percent-encoded, as AWS decodes every one
        "".join(f"%{b:02X}" if next(flags) or not chr(b).isalnum() else chr(b) for b in part)
        for part in (b"Action", operation.encode())
    )
    if protocol == "query":
        return HttpRequest.from_url("GET", f"{SNS}?{key}={value}")
    return HttpRequest.from_url("POST", SNS, headers=(FORM,), body=f"{key}={value}".encode())


@settings(max_examples=examples(300), deadline=None)
@given(
    operation=st.sampled_from(_OPERATIONS),
    flips=st.lists(st.booleans(), min_size=64, max_size=64),
    insert=st.none() | st.tuples(st.integers(0, 40), _FOREIGN),
    protocol=st.sampled_from(["json", "query", "form"]),
    encode=st.lists(st.booleans(), max_size=60),
)
def test_every_spelling_is_named_as_boto3_names_it_or_refused(
    operation: str,
    flips: list[bool],
    insert: tuple[int, str] | None,
    protocol: str,
    encode: list[bool],
) -> None:
    """Any case of a real operation, with any character slipped in, in a target, a query or
    a form body, any byte percent-encoded: the model's spelling names boto3's method name;
    a spelling whose first letter is lower case, with no lower-case letter, or with any
    character but an ASCII letter or digit is refused; what else passes is named exactly
    as botocore's ``xform_name`` names that spelling, never by a looser reading."""
    xform_name = pytest.importorskip("botocore").xform_name
    spelling = "".join(
        c.swapcase() if flip else c for c, flip in zip(operation, flips, strict=False)
    )
    if insert is not None:
        where, char = insert
        spelling = spelling[:where] + char + spelling[where:]
    try:
        parsed = AWS.parse(_request(spelling, protocol, encode))
    except ConnectorError:
        assert spelling != operation, "the model's own spelling is always named"
        return
    if protocol == "json":
        spelling = spelling.rstrip(" \t")  # HTTP trims a header value's spaces and tabs
    assert spelling.isascii()
    assert spelling.isalnum()
    assert spelling[0].isupper()
    assert any(c.islower() for c in spelling)
    service = "dynamodb" if protocol == "json" else "sns"
    assert parsed.spec.type == f"aws.{service}.{xform_name(spelling)}"


#: (service, protocol) pairs whose every operation, serialized by botocore, is named.
_BOTOCORE_SERVICES = [
    ("dynamodb", "json"), ("sqs", "json"), ("sqs", "query"), ("sns", "query"),
    ("sts", "query"), ("secretsmanager", "json"), ("iam", "query"), ("rds", "query"),
    ("ec2", "ec2"), ("elasticbeanstalk", "query"), ("storagegateway", "json"),
    ("cloudwatch", "query"), ("kinesis", "json"), ("logs", "json"),
]  # fmt: skip


def test_every_operation_botocore_sends_is_named_as_boto3_names_it() -> None:
    """A second implementation (h11's way): each operation of these services, serialized
    as botocore sends it (X-Amz-Target, or Action and Version in the form body), is named
    ``aws.<endpoint prefix>.<boto3 method name>``, or refused when that name is longer than
    an action segment (63 characters: a few EC2 operations)."""
    botocore_session = pytest.importorskip("botocore.session")
    from botocore import xform_name
    from botocore.serialize import create_serializer

    session = botocore_session.get_session()
    wrong = []
    for service, protocol in _BOTOCORE_SERVICES:
        model = session.get_service_model(service)
        serializer = create_serializer(protocol, include_validation=False)
        url = f"https://{model.endpoint_prefix}.us-west-2.amazonaws.com/"
        for operation in model.operation_names:
            sent = serializer.serialize_to_request({}, model.operation_model(operation))
            body = sent["body"]
            if isinstance(body, dict):
                body = urlencode(body)
            req = HttpRequest.from_url(
                sent["method"], url, headers=tuple(sent["headers"].items()),
                body=body.encode() if isinstance(body, str) else body,
            )  # fmt: skip
            name = xform_name(operation)
            try:
                action = AWS.parse(req).spec.type
            except ConnectorError:  # only a name longer than an action segment
                if len(name) <= 63:
                    wrong.append((service, operation, "refused"))
                continue
            if action != f"aws.{model.endpoint_prefix}.{name}":
                wrong.append((service, operation, action))
    assert wrong == []


# --- S3 endpoint forms -------------------------------------------------------------------

ARN = "arn:aws:s3:us-east-2:123456789012:accesspoint/ap1"

#: Each S3 endpoint form: (method, url, headers, action, bucket, key, region). Each was
#: ``aws.unknown.<method>`` before, or (a bucket that starts like an endpoint) unnamed.
S3_HOSTS = [
    ("GET", "https://bk1.s3-accelerate.amazonaws.com/a/b", (_signed("eu-west-1"),),
     "aws.s3.object.get", "bk1", "a/b", "eu-west-1"),
    ("PUT", "https://bk1.s3-accelerate.dualstack.amazonaws.com/a/b", (_signed("eu-west-1"),),
     "aws.s3.object.put", "bk1", "a/b", "eu-west-1"),
    ("GET", "https://bk1.s3-accelerate.amazonaws.com/?accelerate", (_signed("eu-west-1"),),
     "aws.s3.bucket.accelerate.get", "bk1", None, "eu-west-1"),
    ("GET", "https://bk1.s3-fips.us-east-2.amazonaws.com/a/b", (), "aws.s3.object.get", "bk1",
     "a/b", "us-east-2"),
    ("DELETE", "https://bk1.s3-fips.dualstack.us-east-2.amazonaws.com/a/b", (),
     "aws.s3.object.delete", "bk1", "a/b", "us-east-2"),
    ("PUT", "https://s3-fips.us-east-2.amazonaws.com/bk1?accelerate", (),
     "aws.s3.bucket.accelerate.put", "bk1", None, "us-east-2"),
    ("GET", "https://s3-fips-us-gov-west-1.amazonaws.com/bk1/a", (), "aws.s3.object.get", "bk1",
     "a", "us-gov-west-1"),
    ("GET", "https://ap1-123456789012.s3-accesspoint.us-east-2.amazonaws.com/bk1/a", (),
     "aws.s3.object.get", ARN, "bk1/a", "us-east-2"),
    ("PUT", "https://ap1-123456789012.s3-accesspoint.dualstack.us-east-2.amazonaws.com/a", (),
     "aws.s3.object.put", ARN, "a", "us-east-2"),
    ("GET", "https://ap1-123456789012.s3-accesspoint-fips.us-east-2.amazonaws.com/?list-type=2",
     (), "aws.s3.object.list", ARN, None, "us-east-2"),
    ("GET", "https://ap1-123456789012.s3-accesspoint.us-gov-west-1.amazonaws.com/a", (),
     "aws.s3.object.get", "arn:aws-us-gov:s3:us-gov-west-1:123456789012:accesspoint/ap1", "a",
     "us-gov-west-1"),
    ("GET", "https://ap1-123456789012.s3-accesspoint.cn-north-1.amazonaws.com.cn/a", (),
     "aws.s3.object.get", "arn:aws-cn:s3:cn-north-1:123456789012:accesspoint/ap1", "a",
     "cn-north-1"),
    # buckets whose labels look like endpoints: S3 reads the endpoint from the right
    ("GET", "https://s3-logs.s3.us-west-2.amazonaws.com/a", (), "aws.s3.object.get", "s3-logs",
     "a", "us-west-2"),
    ("GET", "https://my.s3.bucket.s3.us-west-2.amazonaws.com/a", (), "aws.s3.object.get",
     "my.s3.bucket", "a", "us-west-2"),
    ("GET", "https://s3-accelerate.s3.amazonaws.com/a", (), "aws.s3.object.get",
     "s3-accelerate", "a", "us-east-1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "url", "headers", "action", "bucket", "key", "region"), S3_HOSTS
)
def test_every_s3_endpoint_form_is_named(
    method: str, url: str, headers: tuple[tuple[str, str], ...], action: str, bucket: str,
    key: str | None, region: str,
) -> None:  # fmt: skip
    parsed = AWS.parse(HttpRequest.from_url(method, url, headers=headers))
    assert parsed.spec.type == action
    assert parsed.spec.parameters["bucket"] == bucket
    assert parsed.spec.parameters.get("key") == key
    assert parsed.spec.parameters["region"] == region


S3_REFUSED = [
    # acceleration names no region: without a scope, the gateway could not sign it right
    ("GET", "https://bk1.s3-accelerate.amazonaws.com/a", (), "names no region"),
    ("GET", "https://bk1.s3-accelerate.amazonaws.com/a", (_signed("eu-west-1", "sqs"),),
     "names no region"),
    # path style through acceleration: not an addressing S3 documents
    ("DELETE", "https://s3-accelerate.amazonaws.com/bk1/a", (_signed("eu-west-1"),),
     "virtual-host style only"),
    ("GET", "https://s3-accelerate.dualstack.amazonaws.com/bk1/a", (_signed("eu-west-1"),),
     "virtual-host style only"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "headers", "message"), S3_REFUSED)
def test_an_s3_endpoint_that_cannot_be_named_is_refused(
    method: str, url: str, headers: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(ConnectorError, match=message):
        AWS.parse(HttpRequest.from_url(method, url, headers=headers))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("bkt.s3-fips.us-east-2.amazonaws.com", ("s3", "us-east-2", "bkt")),
        ("s3-fips.dualstack.us-east-2.amazonaws.com", ("s3", "us-east-2", None)),
        ("s3-logs.s3.amazonaws.com", ("s3", "us-east-1", "s3-logs")),
        ("ap1-123456789012.s3-accesspoint.us-east-2.amazonaws.com", ("s3", "us-east-2", ARN)),
        ("s3.dualstack.amazonaws.com", None),  # dual-stack is regional only
    ],
)  # fmt: skip
def test_s3_endpoints(host: str, expected: tuple[str, str, str | None] | None) -> None:
    found = aws_endpoint(host)
    assert (None if found is None else (found.service, found.region, found.bucket)) == expected


def test_an_accelerated_request_is_named_in_the_region_it_is_signed_for() -> None:
    """The signer (``credentials/injectors.py``) reads the host without the signature: an
    acceleration host is None there, so it signs with the agent's scope, the region named."""
    host = "bk1.s3-accelerate.amazonaws.com"
    assert aws_endpoint(host) is None
    signed = aws_endpoint(host, _signed("ap-south-1")[1])
    assert signed is not None
    assert (signed.region, signed.bucket) == ("ap-south-1", "bk1")


class _Sent(Exception):
    pass


_AP = "arn:aws:s3:us-west-2:123456789012:accesspoint/myap"
_BK = "demo-bucket"


@pytest.mark.parametrize(
    ("s3", "fips", "bucket"),
    [
        pytest.param({"use_accelerate_endpoint": True}, False, _BK, id="accelerate"),
        pytest.param({"use_accelerate_endpoint": True, "use_dualstack_endpoint": True}, False,
                     _BK, id="accelerate-dualstack"),
        pytest.param({}, True, _BK, id="fips"),
        pytest.param({"use_dualstack_endpoint": True}, True, _BK, id="fips-dualstack"),
        pytest.param({"addressing_style": "path"}, True, _BK, id="fips-path"),
        pytest.param({}, False, _AP, id="access-point"),
        pytest.param({"use_dualstack_endpoint": True}, False, _AP, id="access-point-dualstack"),
        pytest.param({}, True, _AP, id="access-point-fips"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("region", ["us-west-2", "eu-central-1"])
def test_what_boto3_sends_to_each_s3_endpoint_is_named(
    s3: dict[str, object], fips: bool, bucket: str, region: str
) -> None:
    """boto3 builds the request (its endpoint rules pick the host) and signs it; the
    connector names the action on the bucket boto3 was given (an access point's ARN) in the
    region boto3 signed for, which is the one the gateway signs for too."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    def send(request: object, **_: object) -> None:
        raise _Sent(request)

    config = Config(s3=s3, use_fips_endpoint=fips, retries={"max_attempts": 1})
    client = boto3.client("s3", region_name=region, aws_access_key_id="AKIAPLACEHOLDER",
                          aws_secret_access_key="placeholder", config=config)  # fmt: skip
    client.meta.events.register("before-send", send)
    with pytest.raises(_Sent) as sent:
        client.delete_object(Bucket=bucket, Key="a/b c.txt")
    request = sent.value.args[0]
    headers = tuple(
        (k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()
    )
    req = HttpRequest.from_url(request.method, request.url, headers=headers)
    parsed = AWS.parse(req)
    scope = credential_scope(req.header("authorization"))
    assert scope is not None
    assert scope[1] == "s3"
    assert parsed.spec.type == "aws.s3.object.delete"
    assert parsed.spec.parameters["bucket"] == bucket
    assert parsed.spec.parameters["key"] == "a/b c.txt"
    assert parsed.spec.parameters["region"] == scope[0]
    signer = aws_endpoint(req.host)  # as the gateway's signer reads it
    assert signer is None or signer.region == scope[0]
