"""An AWS REST service through the gateway, with the real boto3 client: a rule that allows
EKS's reads lets ``describe_cluster`` through (signed with the gateway's key), and denies
``delete_cluster``, however the request names another operation beside its path (0.1.0
named ``DELETE /clusters/prod?Action=DescribeClusters`` a read, and let it through).
S3 Control alike, on the hosts that carry the account (0.1.0 named none of its calls, and
signed its directory-bucket ones for a name AWS refuses)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.aws import ACCOUNT, REGION, aws, boto3_through
from tests.fakes.base import FakeUpstream, FakeUpstreams
from tests.proxy.support import KEY, ca_bundle, connector, rule, snapshot, start_gateway

KEY_ID = "AKIAGATEWAYEKS000000"
SECRET = "gateway/eks/secret/0123456789abcdef"
EKS = f"https://eks.{REGION}.amazonaws.com"
#: S3 Control's deletes in our account are denied, wherever the request names it
_OUR_ACCOUNT = {
    "name": "keep-our-account",
    "document": {
        "name": "keep-our-account",
        "rules": [{
            "name": "no-deletes-here",
            "conditions": {"all": [
                {"field": "action_spec.type", "operator": "starts_with",
                 "value": "aws.s3control.delete_"},
                {"field": "action_spec.parameters.account", "operator": "equals",
                 "value": ACCOUNT},
            ]},
            "decision": "deny",
        }],
    },
}  # fmt: skip


@dataclass
class Setup:
    fake: FakeUpstream
    proxy: str
    bundle: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    fakes = FakeUpstreams([aws()]).start()
    fakes["aws"].settings["keys"][KEY_ID] = (SECRET, None)
    credential = json.dumps({"kind": "aws_sigv4", "access_key_id": KEY_ID,
                             "secret_access_key": SECRET})  # fmt: skip
    snap = snapshot(
        [rule("aws.eks.describe_*", "allow"), rule("aws.s3control.*", "allow")],
        connectors=[connector("aws", domains=[], auth_type="aws_sigv4", credential=credential)],
        policies=[_OUR_ACCOUNT],
    )  # nothing else: deny by default
    tmp = tmp_path_factory.mktemp("awsrest")
    gateway, _ = start_gateway(tmp, fakes, snap)
    bundle = ca_bundle(gateway.ca_path, tmp / "bundle.pem")
    try:
        yield Setup(fakes["aws"], gateway.proxy_url(KEY), bundle)
    finally:
        gateway.stop()
        fakes.stop()


def _eks(setup: Setup) -> Any:
    return boto3_through("eks", setup.proxy, setup.bundle)


def test_a_read_the_rule_allows_goes_through_signed(setup: Setup) -> None:
    answer = _eks(setup).describe_cluster(name="prod")
    assert answer["cluster"] == {"name": "prod", "status": "ACTIVE"}
    assert setup.fake.settings["rejected"] == []


def test_a_delete_is_denied_however_it_is_dressed(setup: Setup) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as denied:
        _eks(setup).delete_cluster(name="prod")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    context = ssl.create_default_context(cafile=str(setup.bundle))
    with httpx.Client(proxy=setup.proxy, verify=context, timeout=30) as client:
        for url, headers, action in [
            (f"{EKS}/clusters/prod?Action=DescribeClusters", {}, "aws.eks.delete_cluster"),
            (f"{EKS}/clusters/prod?Operation=DescribeCluster&action=DescribeCluster", {},
             "aws.eks.delete_cluster"),
            (f"{EKS}/CLUSTERS/prod", {}, "aws.eks.delete_cluster"),
            (f"{EKS}/clusters/prod", {"X-Amz-Target": "AWSWesleyFrontend.DescribeCluster"},
             None),  # refused: a REST service is named by its path
        ]:  # fmt: skip
            answer = client.delete(url, headers={"Authorization": "AWS4-HMAC-SHA256 x",
                                                  **headers})  # fmt: skip
            assert answer.status_code == 403, (url, answer.text)
            assert (answer.json()["error"], answer.json()["action"]) == ("denied", action)
    assert setup.fake.settings.get("deleted", []) == []  # no delete reached EKS


def test_s3_control_is_named_signed_and_denied_by_account(setup: Setup) -> None:
    """boto3's S3 Control client sends to ``ACCOUNT.s3-control.REGION`` (and a directory
    bucket's calls to ``s3express-control.REGION``): reads the rule allows go through,
    signed for ``s3`` (``s3express``) with the gateway's key; a delete the rule allows for
    in our account is denied by a policy that reads the account, and one whose header names
    another account than its host is refused."""
    from botocore.exceptions import ClientError

    control = boto3_through("s3control", setup.proxy, setup.bundle)
    block = control.get_public_access_block(AccountId=ACCOUNT)
    assert block["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True
    scope = control.get_access_point_scope(AccountId=ACCOUNT, Name="ap--usw2-az1--xa-s3")
    assert scope["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert setup.fake.settings["rejected"] == []
    with pytest.raises(ClientError) as denied:
        control.delete_public_access_block(AccountId=ACCOUNT)
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    context = ssl.create_default_context(cafile=str(setup.bundle))
    url = f"https://{ACCOUNT}.s3-control.{REGION}.amazonaws.com/v20180820/configuration/publicAccessBlock"
    with httpx.Client(proxy=setup.proxy, verify=context, timeout=30) as client:
        answer = client.delete(url, headers={"Authorization": "AWS4-HMAC-SHA256 x",
                                             "x-amz-account-id": "210987654321"})  # fmt: skip
    assert answer.status_code == 403
    assert "another account" in answer.json()["reason"]
    assert [d for d in setup.fake.settings.get("deleted", []) if "block" in d] == []
