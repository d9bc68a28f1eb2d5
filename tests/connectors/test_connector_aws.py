"""The aws connector: request -> action table (host + path + query + Action/X-Amz-Target),
and the requests it refuses rather than name wrongly."""

from __future__ import annotations

import functools
import gzip
import json
import random
import re
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest, awstargets, get_connector
from agentfirewall.connectors.awscbor import cbor_fields
from agentfirewall.connectors.awshosts import (
    AwsEndpoint,
    aws_endpoint,
    credential_scope,
    service_endpoint,
)
from agentfirewall.connectors.awsroutes import rule_name
from agentfirewall.connectors.awstargets import (
    CBOR,
    HOST_LABELS,
    SERVICE_NAMES,
    SIGNING_NAMES,
    TARGETS,
)
from agentfirewall.errors import ConnectorError
from tests.fuzzscale import examples

AWS = get_connector("aws")
JSON10 = ("Content-Type", "application/x-amz-json-1.0")
JSON11 = ("Content-Type", "application/x-amz-json-1.1")
SMITHY = ("smithy-protocol", "rpc-v2-cbor")
CBOR_BODY = ("Content-Type", "application/cbor")
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
    ("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-"
     "sonnet-20240620-v1%3A0/converse", (), b"{}", "aws.bedrock-runtime.converse",
     "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("POST", "https://bedrock-runtime-fips.us-east-1.amazonaws.com/model/us.anthropic.claude-"
     "3-5-sonnet-20240620-v1%3A0/Invoke", (), b"{}", "aws.bedrock-runtime.invoke_model",
     "us.anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("GET", "https://bedrock-runtime.us-east-1.amazonaws.com/async-invoke", (), b"",
     "aws.bedrock-runtime.list_async_invokes", None),
    ("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse/extra", (), b"",
     "aws.unknown.post", None),
    # JSON-protocol services whose target prefix is not the host's name: each was refused
    ("POST", "https://kms.us-west-2.amazonaws.com/", (("X-Amz-Target", "TrentService.Encrypt"),
     JSON11), b'{"KeyId":"alias/k","Plaintext":"eA=="}', "aws.kms.encrypt", None),
    ("POST", "https://ssm.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "AmazonSSM.GetParameter"), JSON11), b'{"Name":"/db"}', "aws.ssm.get_parameter", None),
    ("POST", "https://ecs.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "AmazonEC2ContainerServiceV20141113.RunTask"), JSON11), b"{}", "aws.ecs.run_task", None),
    ("POST", "https://monitoring.us-west-2.amazonaws.com/", (("X-Amz-Target",  # boto3's default
     "GraniteServiceVersion20100801.PutMetricData"), JSON10), b"{}",
     "aws.monitoring.put_metric_data", None),
    ("POST", "https://sqs.us-west-2.amazonaws.com/", (("X-Amz-Target", "AmazonSQS.DeleteQueue"),
     JSON10), b'{"QueueUrl":"https://sqs.us-west-2.amazonaws.com/1/jobs"}',
     "aws.sqs.delete_queue", "jobs"),
    # CloudTrail's prefix has dots of its own (was an invalid target)
    ("POST", "https://cloudtrail.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.StopLogging"), JSON11), b"{}",
     "aws.cloudtrail.stop_logging", None),
    # an endpoint prefix of two labels: botocore's name (was aws.unknown.post)
    ("POST", "https://api.ecr.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"), JSON11), b"{}",
     "aws.ecr.get_authorization_token", None),
    ("POST", "https://streams.dynamodb.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "DynamoDBStreams_20120810.GetRecords"), JSON10), b"{}", "aws.dynamodbstreams.get_records",
     None),
    # one target prefix, two services: the host tells them apart
    ("POST", "https://query.timestream.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "Timestream_20181101.DescribeEndpoints"), JSON10), b"{}",
     "aws.timestream-query.describe_endpoints", None),
    ("POST", "https://query-cell2.timestream.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "Timestream_20181101.Query"), JSON10), b'{"QueryString": "SELECT 1"}',
     "aws.timestream-query.query", None),
    ("POST", "https://ingest.timestream.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "Timestream_20181101.DescribeEndpoints"), JSON10), b"{}",
     "aws.timestream-write.describe_endpoints", None),
    # an operation's own host (endpoint trait): its service
    ("POST", "https://sync-states.us-west-2.amazonaws.com/", (("X-Amz-Target",
     "AWSStepFunctions.StartSyncExecution"), JSON10), b"{}",
     "aws.states.start_sync_execution", None),
    # China (served when the connector is configured with `*.amazonaws.com.cn`)
    ("POST", "https://kms.cn-north-1.amazonaws.com.cn/", (("X-Amz-Target",
     "TrentService.Decrypt"), JSON11), b"{}", "aws.kms.decrypt", None),
    # RPCv2-CBOR: the operation from the path, the parameters from the CBOR body
    ("POST", "https://monitoring.us-west-2.amazonaws.com/service/GraniteServiceVersion20100801/"
     "operation/PutMetricStream", (SMITHY, CBOR_BODY), b"\xa1gRoleArnrarn:aws:iam::1:r/a",
     "aws.monitoring.put_metric_stream", "arn:aws:iam::1:r/a"),
    ("POST", "https://monitoring.us-west-2.amazonaws.com/service/GraniteServiceVersion20100801/"
     "operation/ListDashboards", (SMITHY,), b"", "aws.monitoring.list_dashboards", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("host", "target", "action"),
    [("ssm", "AmazonSSM.GetParameter", "aws.ssm.get_parameter"),  # WithDecryption: a secret
     ("ssm", "AmazonSSM.GetParametersByPath", "aws.ssm.get_parameters_by_path"),
     ("kms", "TrentService.Decrypt", "aws.kms.decrypt"),
     ("secretsmanager", "secretsmanager.BatchGetSecretValue",
      "aws.secretsmanager.batch_get_secret_value")],
)  # fmt: skip
def test_reads_that_return_a_secret_in_the_clear_are_high_risk(
    host: str, target: str, action: str
) -> None:
    url = f"https://{host}.us-east-1.amazonaws.com/"
    headers = (("X-Amz-Target", target), JSON11)
    parsed = AWS.parse(HttpRequest.from_url("POST", url, headers=headers, body=b"{}"))
    assert (parsed.spec.type, parsed.risk) == (action, "high")  # was "low": a `get`


@pytest.mark.parametrize(("method", "url", "headers", "body", "action", "target"), CASES)
def test_names(
    method: str, url: str, headers: tuple[tuple[str, str], ...], body: bytes, action: str,
    target: str | None,
) -> None:  # fmt: skip
    parsed = AWS.parse(HttpRequest.from_url(method, url, headers=headers, body=body))
    assert parsed.spec.type == action
    assert parsed.spec.resource.target == target


REFUSED = [
    # a REST service is named by its path: another protocol's name for the operation too
    ("DELETE", "https://eks.us-east-1.amazonaws.com/clusters/prod",
     (("X-Amz-Target", "AWSWesleyFrontend.DescribeCluster"),), b"", "named by its path"),
    ("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
     (SMITHY,), b"{}", "named by its path"),
    # SES serves both protocols on one host: a path and an `Action` together
    ("POST", "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails?Action=GetAccount",
     (), b"{}", "which names the operation"),
    ("POST", "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails", (FORM,),
     b"Action=GetAccount", "which names the operation"),
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
    # a target prefix the table names another service (each was named: it started like the
    # host's name), or does not name at all
    ("POST", "https://dynamodb.us-west-2.amazonaws.com/",
     (("X-Amz-Target", "DynamoDBStreams_20120810.GetRecords"),), b"{}",
     "addresses dynamodbstreams, the host dynamodb"),
    ("POST", "https://dynamodb.us-west-2.amazonaws.com/",
     (("X-Amz-Target", "DynamoDBx.DeleteTable"),), b"{}", "unknown `X-Amz-Target`"),
    ("POST", "https://dynamodb.us-west-2.amazonaws.com/",
     (("X-Amz-Target", "DynamoDB_20991231.DeleteTable"),), b"{}", "unknown `X-Amz-Target`"),
    ("POST", "https://ssm.us-west-2.amazonaws.com/",
     (("X-Amz-Target", "TrentService.ScheduleKeyDeletion"),), b"{}", "addresses kms"),
    ("POST", "https://api.ecr.us-west-2.amazonaws.com/",
     (("X-Amz-Target", "TrentService.Decrypt"),), b"{}", "addresses kms, the host ecr"),
    # STS and SNS speak the query protocol only (their targets were named)
    ("POST", "https://sts.amazonaws.com/",
     (("X-Amz-Target", "AWSSecurityTokenServiceV20110615.AssumeRole"),), b"{}", "unknown"),
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
        # an operation's own host: the service it is signed for (was signed `sync-states`)
        ("sync-states.us-east-1.amazonaws.com", ("states", "us-east-1", None)),
        ("data-servicediscovery.eu-west-1.amazonaws.com", ("servicediscovery", "eu-west-1", None)),
        ("kms.cn-northwest-1.amazonaws.com.cn", ("kms", "cn-northwest-1", None)),
        # two-label endpoint prefixes: the signer signs them in the agent's scope
        ("api.ecr.us-east-1.amazonaws.com", None),
        ("streams.dynamodb.us-east-1.amazonaws.com", None),
    ],
)  # fmt: skip
def test_endpoints(host: str, expected: tuple[str, str, str | None] | None) -> None:
    found = aws_endpoint(host)
    assert (None if found is None else (found.service, found.region, found.bucket)) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.ecr.us-east-1.amazonaws.com", ("ecr", "us-east-1")),
        ("api.tunneling.iot.eu-west-1.amazonaws.com", ("iotsecuretunneling", "eu-west-1")),
        ("streams.dynamodb.us-east-1.amazonaws.com", ("dynamodbstreams", "us-east-1")),
        ("metering.marketplace.us-east-1.amazonaws.com", ("meteringmarketplace", "us-east-1")),
        ("api.ecr.cn-north-1.amazonaws.com.cn", ("ecr", "cn-north-1")),
        ("kms.us-east-1.amazonaws.com", ("kms", "us-east-1")),
        ("api.ecr.amazonaws.com", None),  # no region
        ("api.nothing.us-east-1.amazonaws.com", None),
        ("x.api.ecr.us-east-1.amazonaws.com", None),
        # the cells Timestream's SDKs discover (DescribeEndpoints) and call
        ("query-cell2.timestream.us-east-1.amazonaws.com", ("timestream-query", "us-east-1")),
        ("ingest-cell13.timestream.us-east-1.amazonaws.com", ("timestream-write", "us-east-1")),
        ("query-cell2.timestream.amazonaws.com", None),
        ("query-cellx.timestream.us-east-1.amazonaws.com", None),
        ("x-cell2.api.ecr.us-east-1.amazonaws.com", None),
        ("query.cell2.timestream.us-east-1.amazonaws.com", None),
    ],
)  # fmt: skip
def test_service_endpoints(host: str, expected: tuple[str, str] | None) -> None:
    found = service_endpoint(host)
    assert (None if found is None else (found.service, found.region)) == expected


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
    if "\x00" in key:  # no store holds a NUL in a name: both styles refuse it, or (no
        for request in (virtual, path):  # route: the fallback keeps the raw path) agree
            try:
                unnamed = AWS.parse(request).spec
            except ConnectorError as exc:
                refused = str(exc)
                assert "NUL" in refused
                continue
            assert unnamed.type == f"aws.unknown.{method.lower()}"
            assert "\x00" not in repr(unnamed.parameters)
        return
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
    scope = f"{_KEY_ID}/20260101/{region}/{service}/aws4_request"  # (a literal key id and
    # date here reads as a secret to tests/core/test_content_injection.py's scanner)
    return ("Authorization", f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, "
            "Signature=00")  # fmt: skip


_KEY_ID = "AKIAPLACEHOLDER"


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


#: (service, protocol) pairs of the query protocols whose every operation, serialized by
#: botocore, is named (every JSON-protocol service: test_every_json_service_operation_...).
_BOTOCORE_SERVICES = [
    ("sqs", "query"), ("sns", "query"), ("sts", "query"), ("iam", "query"), ("rds", "query"),
    ("ec2", "ec2"), ("elasticbeanstalk", "query"), ("cloudwatch", "query"),
]  # fmt: skip


def _service_model(name: str) -> Any:
    from botocore.model import ServiceModel

    return ServiceModel(_botocore_models()[name], service_name=name)


def _sent(sent: dict[str, Any], endpoint_prefix: str) -> HttpRequest:
    """The request botocore's serializer made (``serialize_to_request``), to its host."""
    host = f"{sent.get('host_prefix', '')}{endpoint_prefix}.us-west-2.amazonaws.com"
    body = sent["body"]
    if isinstance(body, dict):
        body = urlencode(body)
    query = f"?{urlencode(sent['query_string'])}" if sent["query_string"] else ""
    return HttpRequest.from_url(
        sent["method"], f"https://{host}{sent['url_path']}{query}",
        headers=tuple(sent["headers"].items()),
        body=body.encode() if isinstance(body, str) else body,
    )  # fmt: skip


def test_every_operation_botocore_sends_is_named_as_boto3_names_it() -> None:
    """A second implementation (h11's way): each operation of these services, serialized
    as botocore sends it (Action and Version in the form body), is named
    ``aws.<endpoint prefix>.<boto3 method name>``, or refused when that name is longer than
    an action segment (63 characters: a few EC2 operations)."""
    from botocore import xform_name
    from botocore.serialize import create_serializer

    wrong = []
    for service, protocol in _BOTOCORE_SERVICES:
        model = _service_model(service)
        serializer = create_serializer(protocol, include_validation=False)
        for operation in model.operation_names:
            sent = serializer.serialize_to_request({}, model.operation_model(operation))
            name = xform_name(operation)
            try:
                action = AWS.parse(_sent(sent, model.endpoint_prefix)).spec.type
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


# --- the JSON-protocol services: agentfirewall/connectors/awstargets.py is botocore's ----


@functools.cache
def _botocore_models() -> dict[str, dict[str, Any]]:
    """Every service model of the installed botocore (service name -> its ``service-2``
    document), found as botocore's loader finds it (the search paths in order, the latest
    API version), read with plain ``json`` (the loader's ordered dicts take five times as long)."""
    loaders = pytest.importorskip("botocore.loaders", reason="botocore derives the tables")
    loader = loaders.create_loader()
    models = {}
    for name in loader.list_available_services("service-2"):
        version = loader.determine_latest_version(name, "service-2")
        for root in loader.search_paths:
            path = Path(root, name, version, "service-2.json")
            if path.with_suffix(".json.gz").is_file():
                models[name] = json.loads(
                    gzip.decompress(path.with_suffix(".json.gz").read_bytes())
                )
                break
            if path.is_file():
                models[name] = json.loads(path.read_bytes())
                break
    return models


def _protocols(model: dict[str, Any]) -> list[str]:
    meta = model["metadata"]
    return list(meta.get("protocols") or [meta["protocol"]])


def _json_services() -> dict[str, dict[str, Any]]:
    """The services that speak the JSON protocol (``X-Amz-Target``): ``json`` among their
    protocols, whether first, after ``smithy-rpc-v2-cbor`` or beside ``query``
    (``awsQueryCompatible``: SQS, CloudWatch)."""
    return {n: m for n, m in _botocore_models().items() if "json" in _protocols(m)}


def botocore_tables() -> dict[str, Any]:
    """The tables of agentfirewall/connectors/awstargets.py, derived from botocore's data."""
    targets: dict[str, set[str]] = {}
    cbor = set()
    for model in _json_services().values():
        meta = model["metadata"]
        prefix, endpoint = meta["targetPrefix"].lower(), meta["endpointPrefix"]
        targets.setdefault(prefix, set()).add(endpoint)
        if "smithy-rpc-v2-cbor" in _protocols(model):
            cbor.add(prefix)
    host_labels, host_prefixes = _operation_hosts()
    return {
        "TARGETS": {k: tuple(sorted(v)) for k, v in sorted(targets.items())},
        "SERVICE_NAMES": _service_names(),
        "CBOR": frozenset(cbor),
        "HOST_LABELS": host_labels,
        "HOST_PREFIXES": host_prefixes,
        "SIGNING_NAMES": _signing_names(),
        "XFORM_EXCEPTIONS": _xform_exceptions(),
        "QUERY": _query_services(),
    }


def _operation_hosts() -> tuple[dict[str, str], dict[str, str]]:
    """The hosts an endpoint trait sends operations to (``hostPrefix``), of the JSON and
    REST services (S3's aside, prefixes with a label of the request's: ``{AccountId}.``, and
    hosts that are another service's endpoint):
    one label (``sync-states``, ``runtime-medical-imaging``) -> the endpoint prefix; more
    than one (``management.deadline``) -> the service's name for actions (``deadline``)."""
    labels: dict[str, str] = {}
    dotted: dict[str, str] = {}
    owned = {model["metadata"]["endpointPrefix"] for model in _botocore_models().values()}
    for model in _botocore_models().values():
        protocol = _protocols(model)
        endpoint = model["metadata"]["endpointPrefix"]
        if not ("json" in protocol or protocol[0].startswith("rest")) or endpoint.startswith("s3"):
            continue
        for operation in model["operations"].values():
            host_prefix = operation.get("endpoint", {}).get("hostPrefix")
            host = (host_prefix or "") + endpoint
            if not host_prefix or "{" in host_prefix or host in owned:
                continue  # (``data-signer`` is also Signer Data's own host: that service's)
            if "." not in host:
                labels[host] = endpoint
            elif "." not in endpoint:
                dotted[host] = endpoint
    return dict(sorted(labels.items())), dict(sorted(dotted.items()))


def _query_services() -> frozenset[str]:
    """The services (their action names: ``ses`` for ``email``) whose host reads the query
    protocol's ``Action``: ``query`` or ``ec2`` among their protocols, or JSON services
    compatible with it (``awsQueryCompatible``: SQS, CloudWatch)."""
    names = set()
    for model in _botocore_models().values():
        meta = model["metadata"]
        protocols = _protocols(model)
        if "query" in protocols or "ec2" in protocols or "awsQueryCompatible" in meta:
            endpoint = service_endpoint(f"{meta['endpointPrefix']}.us-east-1.amazonaws.com")
            assert endpoint is not None, meta["endpointPrefix"]
            names.add(endpoint.service)
    return frozenset(names)


def _xform_exceptions() -> dict[str, str]:
    """botocore's method names that its ``xform_name`` rule does not give (its
    ``_xform_cache`` is seeded with them: ``SendWhatsAppMessage`` is ``send_whatsapp_message``);
    names the cache learnt since are the rule's own, and left out."""
    import botocore

    seeded = {name: snake for (name, sep), snake in botocore._xform_cache.items() if sep == "_"}
    return {name: snake for name, snake in sorted(seeded.items()) if snake != rule_name(name)}


def _service_names() -> dict[str, str]:
    """Every endpoint prefix of more than one label, of the JSON and REST services, and
    botocore's name for its service (the first in order where two services share one:
    ``sms-voice.pinpoint``); none whose name is another service's endpoint prefix
    (``portal.sso`` is botocore's ``sso``, the prefix of SSO Admin): it stays unnamed."""
    models = _botocore_models()
    prefixes = {model["metadata"]["endpointPrefix"] for model in models.values()}
    names: dict[str, str] = {}
    for name, model in sorted(models.items()):
        prefix = model["metadata"]["endpointPrefix"]
        protocol = _protocols(model)
        served = "json" in protocol or protocol[0].startswith("rest")
        if "." in prefix and served and name not in prefixes:
            names.setdefault(prefix, name)
    return dict(sorted(names.items()))


def _signing_names() -> dict[str, str]:
    """Every service's one-label endpoint prefix whose ``signingName`` differs from it,
    whatever its protocol; one prefix never takes two signing names."""
    names: dict[str, set[str]] = {}
    for model in _botocore_models().values():
        meta = model["metadata"]
        prefix = meta["endpointPrefix"]
        if "." not in prefix and meta.get("signingName", prefix) != prefix:
            names.setdefault(prefix, set()).add(meta["signingName"])
    assert all(len(signing) == 1 for signing in names.values()), names
    return {prefix: next(iter(signing)) for prefix, signing in sorted(names.items())}


_TABLES_DOC = '''\
"""The ``X-Amz-Target`` prefixes of AWS's JSON-protocol services and the hosts they address.

Generated from the service models of botocore {version} ({count} services with ``json``
among their protocols); do not edit by hand. After a botocore upgrade,
``test_the_target_table_is_botocores`` fails until it is regenerated::

    python -m tests.connectors.test_connector_aws > agentfirewall/connectors/awstargets.py
    ruff format agentfirewall/connectors/awstargets.py

- :data:`TARGETS`: a service's ``metadata.targetPrefix``, lower-cased (the prefix of
  ``X-Amz-Target: <prefix>.<Operation>``, and the service in an RPCv2-CBOR path), and the
  ``metadata.endpointPrefix`` of each service that takes it: the host's labels before the
  region. Two services that share a prefix (Timestream's query and write APIs) are told
  apart by the host; two prefixes of one endpoint (Kinesis Analytics' two API versions)
  name their operations alike, on the one service.
- :data:`CBOR`: the target prefixes of the services that also speak RPCv2-CBOR.
- :data:`QUERY`: the services whose host reads the query protocol's ``Action`` (their
  action names: ``ses`` for ``email``): ``query`` or ``ec2`` among their protocols, or
  ``awsQueryCompatible`` (SQS, CloudWatch). On any other host ``Action`` names nothing.
- :data:`HOST_LABELS`: the host label of the operations that an endpoint trait sends to
  another host (``sync-`` + ``states``: Step Functions' ``StartSyncExecution``;
  ``runtime-medical-imaging``), and the endpoint prefix it stands for.
- :data:`HOST_PREFIXES`: the same hosts where they have more than one label
  (``management.deadline``, ``cp.tracking.geo``), and the service they are (``deadline``).
- :data:`SERVICE_NAMES`: the endpoint prefixes of more than one label, of the JSON and REST
  services (``api.ecr``, ``runtime.sagemaker``), and the service name actions use instead,
  one segment (botocore's: ``ecr``, ``sagemaker-runtime``).
- :data:`SIGNING_NAMES`: the one-label endpoint prefixes, of any protocol, whose requests
  are signed for another name (``metadata.signingName``: ``bedrock-runtime`` is signed
  as ``bedrock``, ``email`` as ``ses``): the SigV4 scope's service, which AWS checks.
- :data:`XFORM_EXCEPTIONS`: the operations whose boto3 method name is not what botocore's
  ``xform_name`` rule gives (``SendWhatsAppMessage`` is ``send_whatsapp_message``).
"""

from __future__ import annotations

__all__ = [
    "BOTOCORE_VERSION",
    "CBOR",
    "HOST_LABELS",
    "HOST_PREFIXES",
    "QUERY",
    "SERVICE_NAMES",
    "SIGNING_NAMES",
    "TARGETS",
    "XFORM_EXCEPTIONS",
]

BOTOCORE_VERSION = "{version}"
'''


def render_awstargets() -> str:
    """The source of agentfirewall/connectors/awstargets.py (then ``ruff format`` it)."""
    import botocore

    tables = botocore_tables()
    out = [_TABLES_DOC.format(version=botocore.__version__, count=len(_json_services()))]
    out.append("TARGETS: dict[str, tuple[str, ...]] = {")
    out.extend(f'    "{prefix}": {endpoints!r},' for prefix, endpoints in tables["TARGETS"].items())
    out.append("}")
    for name in ("CBOR", "QUERY"):
        out.append(f"{name}: frozenset[str] = frozenset(")
        out.append("    {")
        out.extend(f'        "{prefix}",' for prefix in sorted(tables[name]))
        out.append("    }")
        out.append(")")
    for name in (
        "HOST_LABELS",
        "HOST_PREFIXES",
        "SERVICE_NAMES",
        "SIGNING_NAMES",
        "XFORM_EXCEPTIONS",
    ):
        out.append(f"{name}: dict[str, str] = {{")
        out.extend(f'    "{k}": "{v}",' for k, v in tables[name].items())
        out.append("}")
    return "\n".join(out) + "\n"


def _differences(committed: object, derived: object) -> object:
    if isinstance(committed, dict) and isinstance(derived, dict):
        return {
            "to add": {k: v for k, v in derived.items() if k not in committed},
            "to drop": sorted(set(committed) - set(derived)),
            "to change": {k: v for k, v in derived.items() if k in committed and committed[k] != v},
        }
    assert isinstance(committed, frozenset)
    assert isinstance(derived, frozenset)
    return {"to add": sorted(derived - committed), "to drop": sorted(committed - derived)}


def test_the_target_table_is_botocores() -> None:
    """awstargets.py holds what the installed botocore's data gives: a botocore that adds,
    drops or moves a JSON-protocol service fails here, with what to change, until the table
    is regenerated (its docstring says how)."""
    derived = botocore_tables()
    wrong = {
        name: _differences(getattr(awstargets, name), table)
        for name, table in derived.items()
        if getattr(awstargets, name) != table
    }
    assert wrong == {}, (
        "regenerate: python -m tests.connectors.test_connector_aws > "
        "agentfirewall/connectors/awstargets.py"
    )


def test_every_host_the_table_adds_names_one_service() -> None:
    """The names the table gives hosts are one action segment each, and no host of another
    service: a dotted endpoint's name (``ecr`` for ``api.ecr``) and an operation's host
    label (``sync-states``) are no service's endpoint prefix in botocore's data, so that
    ``ecr.REGION`` could be nothing but ECR."""
    prefixes = {model["metadata"]["endpointPrefix"] for model in _botocore_models().values()}
    for name in [*SERVICE_NAMES.values(), *HOST_LABELS]:
        assert re.fullmatch(r"[a-z][a-z0-9-]{1,40}", name), name
        assert name not in prefixes, name
    assert set(HOST_LABELS.values()) <= prefixes


def test_every_service_host_is_signed_for_its_signing_name() -> None:
    """The signer's scope for each one-label service host, in every region form, is the
    name botocore signs that service for (AWS refuses a signature scoped to another):
    every service of the installed botocore, whatever its protocol. S3's own forms are
    read apart (test_s3_endpoints); a host the signer cannot name takes the agent's scope."""
    checked = 0
    for name, model in _botocore_models().items():
        meta = model["metadata"]
        prefix = meta["endpointPrefix"]
        if "." in prefix or name == "s3":
            continue
        expected = meta.get("signingName", prefix)
        regional = prefix in ("s3-control", "s3-outposts")  # (no global host)
        hosts = [f"{prefix}.eu-west-3.amazonaws.com", f"{prefix}.amazonaws.com"][: 2 - regional]
        for host in hosts:
            endpoint = aws_endpoint(host)
            assert endpoint is not None, host
            assert (endpoint.signing_name, name) == (expected, name), host
            checked += 1
    for label, prefix in HOST_LABELS.items():  # an operation's own host: its service's name
        endpoint = aws_endpoint(f"{label}.us-east-1.amazonaws.com")
        assert endpoint is not None
        assert endpoint.signing_name == SIGNING_NAMES.get(prefix, prefix)
    assert checked > 600
    assert aws_endpoint("bedrock-runtime.us-east-1.amazonaws.com") == AwsEndpoint(
        "bedrock-runtime", "us-east-1", signing_name="bedrock"
    )  # the action keeps the host's name: aws.bedrock-runtime.*


_ACCOUNT = ("account", "123456789012")
_GRAPH = ("graph", "g-0123456789")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("123456789012.s3-control.eu-west-3", ("s3control", "s3", _ACCOUNT)),
        ("123456789012.s3-control-fips.dualstack.eu-west-3", ("s3control", "s3", _ACCOUNT)),
        ("s3-control.eu-west-3", ("s3control", "s3", None)),
        # was signed as `s3express-control`: AWS refused every call
        ("s3express-control.eu-west-3", ("s3control", "s3express", None)),
        ("s3express-control-fips.eu-west-3", ("s3control", "s3express", None)),
        ("s3-outposts.eu-west-3", ("s3outposts", "s3-outposts", None)),
        ("g-0123456789.eu-west-3.neptune-graph", ("neptune-graph", "neptune-graph", _GRAPH)),
        # not those forms: a bucket named like them, an account that is none, other shapes
        ("s3-control.s3.eu-west-3", ("s3", "s3", None)),
        ("s3-outposts.s3.eu-west-3", ("s3", "s3", None)),
        ("12345.s3-control.eu-west-3", None),
        ("bucket.s3-control.eu-west-3", None),
        ("a.b.s3-control.eu-west-3", None),
        ("s3-control.amazonaws.com.eu-west-3", None),
        ("g-0123456789.neptune-graph.eu-west-3", None),
        ("x_y.eu-west-3.neptune-graph", None),
        ("a.g-0123456789.eu-west-3.neptune-graph", None),
    ],
)  # fmt: skip
def test_the_hosts_that_carry_a_value(host: str, expected: tuple[Any, ...] | None) -> None:
    """S3 Control's and Neptune Analytics' data-plane hosts carry a value of the request
    (the account, the graph): their service, the name they are signed for (boto3's), and
    the value; any other shape is not one of them."""
    endpoint = aws_endpoint(f"{host}.amazonaws.com")
    found = endpoint and (endpoint.service, endpoint.signing_name, endpoint.host_param)
    assert found == expected


def test_a_fips_host_is_its_service() -> None:
    """Every ``SERVICE-fips.REGION.amazonaws.com`` (and global ``iam-fips.amazonaws.com``)
    host of botocore's endpoint data is the service its plain host is, named and signed
    alike (it was ``kms-fips``: a KMS target there was refused, a signature refused)."""
    loaders = pytest.importorskip("botocore.loaders", reason="botocore's endpoint data")
    data = loaders.create_loader().load_data("endpoints")
    [aws] = [p for p in data["partitions"] if p["partition"] == "aws"]
    checked = 0
    for service in aws["services"].values():
        for endpoint in service.get("endpoints", {}).values():
            host = endpoint.get("hostname", "")
            found = re.fullmatch(r"([a-z0-9-]+)-fips(\.[a-z0-9-]+)?\.amazonaws\.com", host)
            if found is None or found.group(1).startswith("s3"):
                continue
            plain = aws_endpoint(host.replace("-fips", "", 1))
            assert plain is not None, host
            assert aws_endpoint(host) == plain, host
            checked += 1
    assert checked > 800
    kms = aws_endpoint("kms-fips.us-east-1.amazonaws.com")
    assert kms == AwsEndpoint("kms", "us-east-1", signing_name="kms")
    headers = (JSON11, ("X-Amz-Target", "TrentService.Encrypt"))
    request = HttpRequest.from_url(
        "POST", "https://kms-fips.us-east-1.amazonaws.com/", headers=headers, body=b"{}"
    )
    assert AWS.parse(request).spec.type == "aws.kms.encrypt"


def test_shared_prefixes_are_the_ones_decided() -> None:
    """Where services share a target prefix, the host tells them apart (Timestream's query
    and write APIs: ``Timestream_20181101``); where one endpoint takes two prefixes, its
    operations are named alike (Kinesis Analytics' two API versions: one service, the same
    verbs on the same applications). A new case fails here: decide how it is named first."""
    shared_targets = {prefix for prefix, endpoints in TARGETS.items() if len(endpoints) > 1}
    assert shared_targets == {"timestream_20181101"}
    counts = Counter(endpoint for endpoints in TARGETS.values() for endpoint in endpoints)
    assert {endpoint for endpoint, n in counts.items() if n > 1} == {"kinesisanalytics"}
    assert all(prefix in TARGETS for prefix in CBOR)


#: Each request field the connector takes a parameter from, filled in wherever an operation
#: has it, so that the corpus checks the parameters too.
_RESOURCE_VALUES = {
    "TableName": "t1", "QueueUrl": "https://sqs.us-west-2.amazonaws.com/123456789012/q1",
    "QueueName": "q1", "TopicArn": "arn:aws:sns:us-west-2:123456789012:t1",
    "TargetArn": "arn:aws:sns:us-west-2:123456789012:t2", "SecretId": "s1",
    "RoleArn": "arn:aws:iam::123456789012:role/r1", "FunctionName": "f1",
}  # fmt: skip


def _resource_input(operation: Any) -> dict[str, str]:
    members = operation.input_shape.members if operation.input_shape is not None else {}
    return {
        field: value
        for field, value in _RESOURCE_VALUES.items()
        if field in members and members[field].type_name == "string"
    }


def test_every_json_service_operation_is_named_as_boto3_names_it() -> None:
    """Every operation of every JSON-protocol service in botocore's data (KMS, SSM, ECS,
    CloudWatch, CloudTrail's dotted prefix, ECR on ``api.ecr``, Step Functions on its
    ``sync-`` host...), serialized as botocore sends it with every resource field the
    connector reads filled in, is named ``aws.<endpoint prefix>.<boto3 method name>``
    (botocore's service name where the prefix has dots) with its resource target, or
    refused only when that name is longer than an action segment; and each operation of
    the services that also speak RPCv2-CBOR, sent as CBOR, is the same action with the
    same parameters: whichever protocol an SDK prefers, one name."""
    from botocore import xform_name
    from botocore.serialize import create_serializer

    as_json = create_serializer("json", include_validation=False)
    as_cbor = create_serializer("smithy-rpc-v2-cbor", include_validation=False)
    wrong: list[tuple[str, str, str]] = []
    named = 0
    for service, data in _json_services().items():
        model = _service_model(service)
        prefix = model.endpoint_prefix
        expected = service if "." in prefix else prefix
        cbor = "smithy-rpc-v2-cbor" in _protocols(data)
        for operation in model.operation_names:
            operation_model = model.operation_model(operation)
            params = _resource_input(operation_model)
            name = xform_name(operation)
            sent = as_json.serialize_to_request(params, operation_model)
            try:
                parsed = AWS.parse(_sent(sent, prefix))
            except ConnectorError as exc:  # only a name longer than an action segment
                if len(name) <= 63:
                    wrong.append((service, operation, str(exc)))
                continue
            named += 1
            if parsed.spec.type != f"aws.{expected}.{name}":
                wrong.append((service, operation, parsed.spec.type))
            if params and parsed.spec.resource.target is None:
                wrong.append((service, operation, f"no target of {sorted(params)}"))
            if cbor:
                twin = AWS.parse(
                    _sent(as_cbor.serialize_to_request(params, operation_model), prefix)
                )
                if twin.spec != parsed.spec:
                    wrong.append((service, operation, f"as cbor: {twin.spec}"))
    assert wrong == []
    assert named > 6000  # every service's operations, not a few


# --- RPCv2-CBOR: the path names the operation, the body's fields the parameters ----------

CW = "https://monitoring.us-west-2.amazonaws.com"
OP = "/service/GraniteServiceVersion20100801/operation/DeleteAlarms"
TARGET_GET = ("X-Amz-Target", "GraniteServiceVersion20100801.GetMetricData")

#: Requests that could run another operation than the one named, or that the upstream could
#: read otherwise than the connector: refused.
CBOR_REFUSED = [
    # a second way to name the operation beside the path: which one runs?
    ("POST", f"{CW}{OP}?Action=GetMetricData", (SMITHY, CBOR_BODY), b"\xa0", "a query"),
    ("POST", f"{CW}{OP}", (SMITHY, CBOR_BODY, TARGET_GET), b"\xa0", "`X-Amz-Target`"),
    ("POST", f"{CW}{OP}", (FORM,), b"Action=GetMetricData", "`smithy-protocol: rpc-v2-cbor`"),
    ("POST", f"{CW}/", (SMITHY, TARGET_GET), b"{}", "invalid rpc-v2-cbor request"),
    # the header: another protocol, twice
    ("POST", f"{CW}{OP}", (("smithy-protocol", "rpc-v2-json"), CBOR_BODY), b"\xa0",
     "`smithy-protocol"),
    ("POST", f"{CW}{OP}", (SMITHY, SMITHY, CBOR_BODY), b"\xa0", "`smithy-protocol"),
    # the path in another spelling, or another method
    ("POST", f"{CW}{OP}/", (SMITHY, CBOR_BODY), b"\xa0", "invalid rpc-v2-cbor request"),
    ("POST", f"{CW}/service/GraniteServiceVersion20100801/Operation/DeleteAlarms",
     (SMITHY, CBOR_BODY), b"\xa0", "invalid rpc-v2-cbor request"),
    ("POST", f"{CW}/Service/GraniteServiceVersion20100801/operation/DeleteAlarms",
     (SMITHY, CBOR_BODY), b"\xa0", "invalid rpc-v2-cbor request"),
    ("POST", f"{CW}/service/GraniteServiceVersion20100801%2Foperation%2FDeleteAlarms",
     (SMITHY, CBOR_BODY), b"\xa0", "invalid rpc-v2-cbor request"),
    ("POST", f"{CW}//service/GraniteServiceVersion20100801/operation/DeleteAlarms",
     (SMITHY, CBOR_BODY), b"\xa0", "invalid rpc-v2-cbor request"),
    ("POST", f"{CW}{OP.replace('DeleteAlarms', 'Delete%41larms')}", (SMITHY, CBOR_BODY),
     b"\xa0", "invalid aws operation"),
    ("POST", f"{CW}{OP.replace('DeleteAlarms', 'deleteAlarms')}", (SMITHY, CBOR_BODY),
     b"\xa0", "invalid aws operation"),
    ("GET", f"{CW}{OP}", (SMITHY,), b"", "invalid rpc-v2-cbor request"),
    # a body that is not CBOR, or a field the upstream may read either way
    ("POST", f"{CW}{OP}", (SMITHY, FORM), b"Action=GetMetricData", "`application/cbor`"),
    ("POST", f"{CW}{OP}", (SMITHY,), b"\xa0", "`application/cbor`"),
    ("POST", f"{CW}{OP}", (SMITHY, CBOR_BODY, FORM), b"\xa0", "`application/cbor`"),
    ("POST", f"{CW}{OP}", (SMITHY, CBOR_BODY), b"\xa2gRoleArnaagRoleArnab", "twice"),
    ("POST", f"{CW}{OP}", (SMITHY, CBOR_BODY), b"\xa1gRoleArn", "truncated"),
    # another service than the host's, one that does not speak CBOR, or none
    ("POST", f"https://kms.us-west-2.amazonaws.com{OP}", (SMITHY, CBOR_BODY), b"\xa0",
     "addresses monitoring, the host kms"),
    ("POST", "https://dynamodb.us-west-2.amazonaws.com/service/DynamoDB_20120810/operation/"
     "DeleteTable", (SMITHY, CBOR_BODY), b"\xa0", "does not speak rpc-v2-cbor"),
    ("POST", f"{CW}/service/Nothing/operation/DeleteAlarms", (SMITHY, CBOR_BODY), b"\xa0",
     "unknown rpc-v2-cbor service"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "headers", "body", "message"), CBOR_REFUSED)
def test_an_rpc_v2_cbor_request_named_two_ways_is_refused(
    method: str, url: str, headers: tuple[tuple[str, str], ...], body: bytes, message: str
) -> None:
    with pytest.raises(ConnectorError, match=re.escape(message)):
        AWS.parse(HttpRequest.from_url(method, url, headers=headers, body=body))


def test_a_truncated_cbor_body_is_refused() -> None:
    req = HttpRequest.from_url(
        "POST", f"{CW}{OP}", headers=(SMITHY, CBOR_BODY), body=b"\xa0", body_complete=False
    )
    with pytest.raises(ConnectorError, match="inspection limit"):
        AWS.parse(req)


#: Malformed CBOR bodies (RFC 8949), each refused with what is wrong.
MALFORMED_CBOR = [
    (b"\x80", "not a map"),
    (b"\xa1\x01\x02", "not a text string"),  # an integer key
    (b"\xa1\xc1\x61a\x01", "not a text string"),  # a tagged key
    (b"\xa2\x61a\x01\x61a\x02", "twice"),
    (b"\xa1\x61a\x01\x00", "bytes after"),
    (b"\xa1\x61a", "truncated"),
    (b"\xa1\x61a\x62b", "truncated"),
    (b"\xa1\x61a\x1c", "reserved"),  # additional information 28-30
    (b"\xa1\x61a\xff", "break outside"),
    (b"\xa1\x61a\x1f", "invalid cbor head"),  # an indefinite-length integer
    (b"\xa1\x61a\xdf\x01", "invalid cbor head"),  # an indefinite-length tag
    (b"\xa1\x61a\x7f\x41b\xff", "invalid chunk"),  # a byte chunk in a text string
    (b"\xa1\x61a\x7f\x7f\xff\xff", "invalid chunk"),  # an indefinite chunk
    (b"\xa1\x61a\x7f\x61\xc3\x61\xa9\xff", "invalid utf-8"),  # é split across two chunks
    (b"\xa1\x61a\x62\xc3\x28", "invalid utf-8"),
    (b"\xa1\x61a\xbf\x61b\xff", "a key and no value"),
    (b"\xa1\x61a" + b"\x81" * 80 + b"\x00", "deeper than 64"),
    (b"\xa1\x61a" + b"\xc1" * 80 + b"\x00", "deeper than 64"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), MALFORMED_CBOR)
def test_malformed_cbor_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        cbor_fields(body)


_CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=12) | st.binary(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
_CBOR_TOP = st.dictionaries(
    st.sampled_from(sorted(_RESOURCE_VALUES)) | st.text(max_size=8), _CBOR_VALUES, max_size=6
)


def _cbor(value: object, rng: random.Random) -> bytes:
    """`value` in CBOR, each head in any width that holds it, strings, arrays and maps of
    definite or indefinite length (strings in chunks), as RFC 8949 lets an encoder choose."""

    def head(major: int, n: int) -> bytes:
        widths = [w for w in (0, 1, 2, 4, 8) if (n < 24 if w == 0 else n < 256**w)]
        width = rng.choice(widths)
        if width == 0:
            return bytes([major << 5 | n])
        return bytes([major << 5 | (23 + width.bit_length())]) + n.to_bytes(width, "big")

    if value is None or isinstance(value, bool):
        return {None: b"\xf6", False: b"\xf4", True: b"\xf5"}[value]
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, (str, bytes)):
        major = 3 if isinstance(value, str) else 2
        if rng.random() < 0.3:  # indefinite: chunks cut between characters
            cuts = sorted(rng.sample(range(len(value) + 1), min(2, len(value) + 1)))
            parts = [value[a:b] for a, b in zip([0, *cuts], [*cuts, len(value)], strict=True)]
            raw = [p.encode() if isinstance(p, str) else p for p in parts]
            return (
                bytes([major << 5 | 31]) + b"".join(head(major, len(r)) + r for r in raw) + b"\xff"
            )
        raw_value = value.encode() if isinstance(value, str) else value
        return head(major, len(raw_value)) + raw_value
    items: list[object] = (
        list(value) if isinstance(value, list) else [x for kv in dict(value).items() for x in kv]  # type: ignore[call-overload]
    )
    major = 4 if isinstance(value, list) else 5
    inner = b"".join(_cbor(item, rng) for item in items)
    if rng.random() < 0.3:
        return bytes([major << 5 | 31]) + inner + b"\xff"
    return head(major, len(items) // (1 if major == 4 else 2)) + inner


def _no_nulls(value: object) -> object:
    """`value` as botocore's decoder gives it: a map drops its null values."""
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    return [_no_nulls(v) for v in value] if isinstance(value, list) else value


@settings(max_examples=examples(100), deadline=None)
@given(value=_CBOR_TOP, rng=st.randoms(use_true_random=False))
def test_cbor_fields_are_what_botocore_decodes(
    value: dict[str, object], rng: random.Random
) -> None:
    """Any map, in any encoding RFC 8949 allows, read as botocore's own CBOR decoder reads
    it (a second implementation): each top-level text value; and each cut of the body short
    of its end refused (SQLite's way: every step, not one)."""
    parsers = pytest.importorskip("botocore.parsers")
    body = _cbor(value, rng)
    decoder = parsers.RpcV2CBORParser()
    assert decoder.parse_data_item(decoder.get_peekable_stream_from_bytes(body)) == _no_nulls(value)
    assert cbor_fields(body) == {k: v if isinstance(v, str) else None for k, v in value.items()}
    for end in range(1, len(body)):
        with pytest.raises(ConnectorError):
            cbor_fields(body[:end])


@settings(max_examples=examples(150), deadline=None)
@given(value=_CBOR_TOP, rng=st.randoms(use_true_random=False),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=3))  # fmt: skip
def test_mutated_cbor_is_read_as_botocore_reads_it_or_refused(
    value: dict[str, object], rng: random.Random, edits: list[tuple[int, int]]
) -> None:
    """Bytes of a body changed at random (mitmproxy's corpus of odd requests, generated):
    the text fields the connector reads, botocore's decoder reads alike (it drops a null
    field), or the connector refuses the body."""
    parsers = pytest.importorskip("botocore.parsers")
    body = bytearray(_cbor(value, rng))
    for where, byte in edits:
        body[where % len(body)] = byte
    try:
        fields = cbor_fields(bytes(body))
    except ConnectorError:
        return
    decoder = parsers.RpcV2CBORParser()
    try:
        decoded = decoder.parse_data_item(decoder.get_peekable_stream_from_bytes(bytes(body)))
    except Exception:
        return
    assert isinstance(decoded, dict)
    texts = {k: v for k, v in decoded.items() if isinstance(v, str)}
    assert {k: v for k, v in fields.items() if v is not None} == texts


if __name__ == "__main__":
    sys.stdout.write(render_awstargets())
