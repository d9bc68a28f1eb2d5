"""The aws connector: request -> action table (host + path + query + Action/X-Amz-Target),
and the requests it refuses rather than name wrongly."""

from __future__ import annotations

import json
from urllib.parse import quote

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
