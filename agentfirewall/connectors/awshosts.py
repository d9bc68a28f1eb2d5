"""Which AWS service, region and S3 bucket a hostname addresses. Pure string logic.

S3 hosts are read from the right, as S3 reads them: the endpoint is the longest known form
at the end of the name (below), and every label left of it is the bucket (virtual-host
style; none: path style, the bucket is the first path segment). So a bucket named
``s3-logs`` or ``my.s3.bucket`` is a bucket, never part of the endpoint.

=========================================  ==========================  ===============
endpoint (``…`` = ``.amazonaws.com``)      region                      bucket
=========================================  ==========================  ===============
``s3…``, ``s3-external-1…``                ``us-east-1``               labels before
``s3-REGION…`` (legacy dash form)          REGION                      labels before
``s3.REGION…``, ``s3.dualstack.REGION…``   REGION                      labels before
``s3-fips.REGION…`` (and ``.dualstack``),  REGION                      labels before
``s3-fips-REGION…`` (legacy)
``s3-accelerate…`` (and ``.dualstack``)    the signature's scope (1)   labels before (2)
``NAME-ACCOUNT.s3-accesspoint.REGION…``    REGION                      the access
(and ``-fips``, ``.dualstack``)                                        point's ARN (3)
=========================================  ==========================  ===============

1. Transfer Acceleration hosts carry no region: a request is signed for the bucket's
   region, and S3 refuses a signature scoped to another. So the region is the SigV4
   credential scope of the request's ``Authorization`` (service ``s3``): the scope the
   gateway signs with, and the one S3 checks. Without one the host names nothing.
2. Acceleration is virtual-host style only: ``s3-accelerate.amazonaws.com/bucket`` names
   nothing (see :func:`s3_refusal`).
3. An access point is no bucket: its requests name the access point's ARN as ``bucket``
   (``arn:aws:s3:us-east-1:123456789012:accesspoint/name``, as boto3 takes it for
   ``Bucket=``), and the whole path is the key.

S3 Control (``ACCOUNT.s3-control.REGION``, and its FIPS and dual-stack forms;
``s3express-control.REGION``), the S3 on Outposts API (``s3-outposts.REGION``) and
Neptune Analytics' data plane (``GRAPH.REGION.neptune-graph``) are their services, with
the value the host carries (:data:`_SPECIAL_FORMS`). Other S3 forms (``s3-website``,
``s3-object-lambda``, Outposts buckets, multi-region access points, PrivateLink ``vpce``
names) name nothing here. Any other
``SERVICE.REGION.amazonaws.com`` (``sqs``, ``sns``, ``dynamodb``, ``lambda``,
``secretsmanager``, ``sts``) is that service in that region; global endpoints
(``sts.amazonaws.com``, ``iam.amazonaws.com``) are ``us-east-1``. Its requests are signed
for the service's signing name, which AWS checks in the signature's scope: the endpoint
prefix, or botocore's ``signingName`` where that differs (``bedrock-runtime`` is signed as
``bedrock``, ``oidc`` as ``sso-oauth``: ``awstargets.SIGNING_NAMES``). A FIPS endpoint,
``SERVICE-fips.REGION.amazonaws.com`` (``kms-fips``, ``iam-fips.amazonaws.com``), is that
service; the other FIPS forms (``fips.batch.REGION``, ``api-fips.sagemaker.REGION``) have
more labels and are signed in the agent's scope, as below. The few hosts an
operation's endpoint trait adds a label to (``sync-states``: Step Functions'
``StartSyncExecution``) are their service (``states``): the name the request is signed
for and its actions' name (``agentfirewall.connectors.awstargets.HOST_LABELS``).

A JSON- or REST-protocol service whose endpoint prefix has more than one label
(``api.ecr.REGION.amazonaws.com``, ``api.sagemaker``, ``streams.dynamodb``,
``runtime.sagemaker``) is named by
:func:`service_endpoint` only, with botocore's one-segment name for it (``ecr``,
``sagemaker``, ``dynamodbstreams``): the connector's, for action names. The signer reads
:func:`aws_endpoint`, which names no such host, and signs it in the scope the agent's SDK
chose, as for any host it cannot name: several sign as another name than any the host
gives (``streams.dynamodb`` as ``dynamodb``, ``metering.marketplace`` as
``aws-marketplace``). Timestream's cell hosts, the endpoints its SDKs discover and then
call (``query-cell2.timestream.REGION``, ``ingest-cell1.timestream.REGION``), are the
service of their plain host (``timestream-query``, ``timestream-write``). So are the hosts
of more than one label an endpoint trait sends some operations to
(``management.deadline.REGION``, ``cp.tracking.geo.REGION``: ``deadline``, ``geo``, from
:data:`~agentfirewall.connectors.awstargets.HOST_PREFIXES`), for naming only.

China hosts (``*.amazonaws.com.cn``) are read as the others; the aws connector serves them
only when configured with those domains (the partition has its own accounts and keys).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentfirewall.connectors.awstargets import (
    HOST_LABELS,
    HOST_PREFIXES,
    SERVICE_NAMES,
    SIGNING_NAMES,
)

__all__ = [
    "ACCOUNT_ID",
    "AwsEndpoint",
    "aws_endpoint",
    "credential_scope",
    "s3_refusal",
    "service_endpoint",
]

_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]")
_SERVICE = re.compile(r"[a-z][a-z0-9-]{1,40}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: An access point host label: ``NAME-ACCOUNT`` (name 3-50 characters, a 12-digit account).
_ACCESS_POINT = re.compile(r"([a-z0-9][a-z0-9-]{1,48}[a-z0-9])-([0-9]{12})")
_SCOPE = re.compile(r"Credential=[^/,\s]+/([0-9]{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
#: Host label -> the service actions name, where they differ: SES's endpoint prefix, an
#: operation's host label and its endpoint prefix.
_ACTION_NAMES = {"email": "ses", **HOST_LABELS}
_GLOBAL = "us-east-1"
#: A discovered cell endpoint's first label (Timestream: ``query-cell2``): the plain one.
_CELL = re.compile(r"^([a-z]+)-cell[0-9]{1,4}(?=\.)")
#: S3 endpoint forms, matched against the last labels of the host (``REGION``: that label
#: is the region), and what the labels before them are.
_S3_FORMS = (
    (("s3",), "bucket"),
    (("s3-external-1",), "bucket"),
    (("s3", "REGION"), "bucket"),
    (("s3", "dualstack", "REGION"), "bucket"),
    (("s3-fips", "REGION"), "bucket"),
    (("s3-fips", "dualstack", "REGION"), "bucket"),
    (("s3-accelerate",), "accelerate"),
    (("s3-accelerate", "dualstack"), "accelerate"),
    (("s3-accesspoint", "REGION"), "access point"),
    (("s3-accesspoint", "dualstack", "REGION"), "access point"),
    (("s3-accesspoint-fips", "REGION"), "access point"),
    (("s3-accesspoint-fips", "dualstack", "REGION"), "access point"),
)
#: Host forms (``REGION``: a region; ``ACCOUNT``: a 12-digit account; ``LABEL``: another
#: value of the request) -> (service, signing name, route table, the value's parameter).
#: S3 Control: ``ACCOUNT.s3-control.REGION`` (and FIPS, dual-stack; without the account,
#: which ``x-amz-account-id`` then gives), its directory-bucket operations on
#: ``s3express-control.REGION`` (signed as ``s3express``); the S3 on Outposts API on
#: ``s3-outposts.REGION``; Neptune Analytics' data plane on ``GRAPH.REGION.neptune-graph``.
_SPECIAL_FORMS: dict[tuple[str, ...], tuple[str, str, str, str | None]] = {
    **{
        (*first, control, *dual, "REGION"): ("s3control", "s3", "s3control/{AccountId}", "account")
        for first in ((), ("ACCOUNT",))
        for control in ("s3-control", "s3-control-fips")
        for dual in ((), ("dualstack",))
    },
    **{
        (express, "REGION"): ("s3control", "s3express", "s3control/s3express-control", None)
        for express in ("s3express-control", "s3express-control-fips")
    },
    **{
        (outposts, "REGION"): ("s3outposts", "s3-outposts", "s3outposts", None)
        for outposts in ("s3-outposts", "s3-outposts-fips")
    },
    ("LABEL", "REGION", "neptune-graph"): (
        "neptune-graph", "neptune-graph", "neptune-graph/{graphIdentifier}", "graph"
    ),
}  # fmt: skip
_SPECIAL_LABELS = frozenset(
    label for form in _SPECIAL_FORMS for label in form if label.upper() != label
)
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: A 12-digit AWS account id.
ACCOUNT_ID = re.compile(r"[0-9]{12}")
#: The legacy dash forms ``s3-REGION`` and ``s3-fips-REGION``.
_S3_DASH = re.compile(r"s3-(?:fips-)?([a-z]{2}(?:-[a-z]+)+-[0-9])")


@dataclass(frozen=True, slots=True)
class AwsEndpoint:
    service: str
    region: str
    #: The bucket a virtual-host style S3 hostname names (None: path style or not S3); for
    #: an access point, its ARN.
    bucket: str | None = None
    #: The service its requests are signed for, the SigV4 scope's (``bedrock`` for
    #: ``bedrock-runtime``: :data:`~agentfirewall.connectors.awstargets.SIGNING_NAMES`);
    #: None where the host does not tell it (the signer takes the agent SDK's scope).
    signing_name: str | None = None
    #: The REST route table its requests are named by (``awsrest.ROUTES``' key), where it
    #: is not the service's: a host form of a service that has more than one.
    routes: str | None = None
    #: A request's parameter the host carries (an endpoint trait's ``{AccountId}.``):
    #: (its parameter name, its value).
    host_param: tuple[str, str] | None = None


def aws_endpoint(host: str, authorization: str | None = None) -> AwsEndpoint | None:
    """The service, region and bucket of `host`, or None when it names no AWS endpoint.

    `authorization` (the request's ``Authorization``) gives the region of a host that has
    none (S3 Transfer Acceleration); without it such a host is None, and the signer takes
    the scope itself (``agentfirewall.credentials.injectors``).
    """
    labels = _labels(host)
    if labels is None:
        return None
    special = _special_form(labels)
    if special is not None:
        return special
    if any(label == "s3" or label.startswith("s3-") for label in labels):
        return _s3(labels, authorization)
    if len(labels) == 1 and _SERVICE.fullmatch(labels[0]):
        return _service(labels[0], _GLOBAL)
    if len(labels) == 2 and _SERVICE.fullmatch(labels[0]) and _REGION.fullmatch(labels[1]):
        return _service(labels[0], labels[1])
    return None


def _special_form(labels: list[str]) -> AwsEndpoint | None:
    """The endpoint of a host of :data:`_SPECIAL_FORMS`, or None."""
    if not _SPECIAL_LABELS.intersection(labels):
        return None
    for pattern, (service, signing, routes, param) in _SPECIAL_FORMS.items():
        if len(pattern) != len(labels):
            continue
        region = value = None
        for want, label in zip(pattern, labels, strict=True):
            if want == "REGION" and _REGION.fullmatch(label):
                region = label
            elif (want == "ACCOUNT" and ACCOUNT_ID.fullmatch(label)) or (
                want == "LABEL" and _HOST_LABEL.fullmatch(label)
            ):
                value = label
            elif want != label:
                break
        else:
            assert region is not None  # (every form has one)
            found = None if value is None or param is None else (param, value)
            return AwsEndpoint(
                service, region, signing_name=signing, routes=routes, host_param=found
            )
    return None


def _service(label: str, region: str) -> AwsEndpoint:
    label = label.removesuffix("-fips")  # a FIPS endpoint of the service: the same service
    prefix = HOST_LABELS.get(label, label)
    signing = SIGNING_NAMES.get(prefix, prefix)
    return AwsEndpoint(_ACTION_NAMES.get(label, label), region, signing_name=signing)


def service_endpoint(host: str, authorization: str | None = None) -> AwsEndpoint | None:
    """:func:`aws_endpoint`, and the hosts of the JSON-protocol services whose endpoint
    prefix has more than one label (``api.ecr.us-east-1.amazonaws.com``: ``ecr``). For
    naming actions, never for signing (module docstring)."""
    found = aws_endpoint(host, authorization)
    if found is not None:
        return found
    labels = _labels(host)
    if labels is None or len(labels) < 3 or not _REGION.fullmatch(labels[-1]):
        return None
    prefix = ".".join(labels[:-1])
    name = (
        SERVICE_NAMES.get(prefix)
        or HOST_PREFIXES.get(prefix)
        or SERVICE_NAMES.get(_CELL.sub(r"\1", prefix))
    )
    return None if name is None else AwsEndpoint(name, labels[-1])


def s3_refusal(host: str) -> str | None:
    """Why a request to `host` is refused rather than left unnamed: an S3 Transfer
    Acceleration host that :func:`aws_endpoint` cannot name (no bucket, or no signature to
    tell the region); else None."""
    labels = _labels(host)
    form = None if labels is None else _s3_form(labels)
    if form is None or form[2] != "accelerate":
        return None
    if form[0] is None:
        return "s3 transfer acceleration is virtual-host style only: put the bucket in the host"
    return (
        f"`{host[:200]}` names no region (s3 transfer acceleration): sign the request "
        "(sigv4, service s3, the bucket's region) and the gateway signs it for that region"
    )


def credential_scope(authorization: str | None) -> tuple[str, str] | None:
    """(region, service) of a SigV4 ``Authorization`` header's credential scope."""
    if not authorization:
        return None
    found = _SCOPE.search(authorization)
    if found is None or not _REGION.fullmatch(found.group(2)):
        return None
    return found.group(2), found.group(3)


def _labels(host: str) -> list[str] | None:
    host = host.lower().rstrip(".")
    suffix = next((s for s in _SUFFIXES if host.endswith(s)), None)
    return None if suffix is None else host[: -len(suffix)].split(".")


def _s3_form(labels: list[str]) -> tuple[str | None, str | None, str] | None:
    """(the labels before the endpoint, joined, or None; the region label, or None; the
    kind of the labels before) of the S3 endpoint `labels` end with, or None."""
    for pattern, kind in _S3_FORMS:
        if len(pattern) > len(labels):
            continue
        tail = labels[len(labels) - len(pattern) :]
        region = None
        for want, label in zip(pattern, tail, strict=True):
            if want == "REGION" and _REGION.fullmatch(label):
                region = label
            elif want != label:
                break
        else:
            return ".".join(labels[: len(labels) - len(pattern)]) or None, region, kind
    found = _S3_DASH.fullmatch(labels[-1])
    if found is None:
        return None
    return ".".join(labels[:-1]) or None, found.group(1), "bucket"


def _s3(labels: list[str], authorization: str | None) -> AwsEndpoint | None:
    form = _s3_form(labels)
    if form is None:
        return None  # s3-website, s3-control, s3-object-lambda, vpce...: not named here
    before, region, kind = form
    if kind == "access point":
        found = _ACCESS_POINT.fullmatch(before or "")
        if found is None or region is None:
            return None
        arn = f"arn:{_partition(region)}:s3:{region}:{found.group(2)}:accesspoint/{found.group(1)}"
        return AwsEndpoint("s3", region, arn, "s3")
    if before is not None and not _BUCKET.fullmatch(before):
        return None
    if kind == "accelerate":
        scope = credential_scope(authorization)
        if before is None or scope is None or scope[1] != "s3":
            return None
        region = scope[0]
    return AwsEndpoint("s3", region or _GLOBAL, before, "s3")


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"
