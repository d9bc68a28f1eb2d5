"""What a security review reproduced through the gateway, decided in process by its
snapshot: with multipart uploads allowed and copies denied, an object was copied out part by
part (UploadPartCopy), and a policy denying "make this public" was passed by a PutObject
carrying ``x-amz-acl: public-read``. Naming: ``tests/connectors/test_connector_aws_s3.py``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agentfirewall.connectors.model import HttpRequest
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.proxy.support import connector, rule, snapshot

URL = "https://demo-bucket.s3.us-west-2.amazonaws.com/public/b.txt"
SOURCE = ("x-amz-copy-source", "demo-bucket/secret/passwords.txt")
CREDENTIAL = json.dumps({"kind": "aws_sigv4", "access_key_id": "AKIAGATEWAYTEST00000",
                         "secret_access_key": "gateway/test/secret/0123456789abcdef"})  # fmt: skip
NO_PUBLIC_OBJECTS = {
    "name": "no-public-objects",
    "scope": {"action_types": ["aws.s3.*"]},
    "rules": [{"name": "public-acl", "decision": "deny",
               "conditions": {"field": "action_spec.parameters.acl", "operator": "in",
                              "value": ["public-read", "public-read-write"]}}],
}  # fmt: skip


@pytest.mark.parametrize(
    ("query", "headers", "outcome"),
    [
        ("?partNumber=1&uploadId=u", (SOURCE,), "deny"),  # UploadPartCopy: a copy
        ("?partNumber=1&uploadId=u", (), "allow"),  # UploadPart
        ("", (SOURCE,), "deny"),  # CopyObject
        ("", (("x-amz-acl", "public-read"),), "deny"),
        ("", (("x-amz-acl", "private"),), "allow"),
        ("?uploads", (("x-amz-acl", "public-read"),), "deny"),
    ],
)  # fmt: skip
def test_a_rule_on_copies_and_acls_covers_every_s3_request_that_does_them(
    query: str, headers: tuple[tuple[str, str], ...], outcome: str
) -> None:
    rules = [rule("aws.s3.multipart.*", "allow"), rule("aws.s3.object.put", "allow"),
             rule("aws.s3.object.copy", "deny"), rule("aws.s3.object.get", "deny")]  # fmt: skip
    aws = connector("aws", auth_type="aws_sigv4", credential=CREDENTIAL)
    policies = [{"name": "no-public-objects", "document": NO_PUBLIC_OBJECTS}]
    config = compile_snapshot(snapshot(rules, connectors=[aws], policies=policies))
    agent = next(a for a in config.agents.values() if a.name == "Bot")
    entry = next(c for c in config.connectors.values() if c.type == "aws")
    method = "POST" if query == "?uploads" else "PUT"
    request = HttpRequest.from_url(method, URL + query, headers=headers)
    parsed, decision, _ = config.decide(agent, entry, request, datetime.now(UTC))
    assert parsed is not None
    assert decision.outcome == outcome, decision.reason
