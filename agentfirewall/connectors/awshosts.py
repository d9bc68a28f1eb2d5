"""Which AWS service, region and S3 bucket a hostname addresses.

``bucket.s3.us-west-2.amazonaws.com`` → (``s3``, ``us-west-2``, ``bucket``) (virtual-host
style), ``s3.us-west-2.amazonaws.com`` → (``s3``, ``us-west-2``, None) (path style: the
bucket is the first path segment), ``s3.amazonaws.com`` and ``s3-external-1`` are
``us-east-1``, ``s3-us-west-2`` the legacy dash form, ``s3.dualstack.REGION`` the
dual-stack one. Any other ``SERVICE.REGION.amazonaws.com`` (``sqs``, ``sns``, ``dynamodb``,
``lambda``, ``secretsmanager``, ``sts``) is that service in that region; global endpoints
(``sts.amazonaws.com``, ``iam.amazonaws.com``) are ``us-east-1``. Pure string logic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AwsEndpoint", "aws_endpoint", "credential_scope"]

_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]$")
_SERVICE = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
_SCOPE = re.compile(r"Credential=[^/,\s]+/([0-9]{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
#: Endpoint prefix -> signing name, where they differ.
_SIGNING_NAMES = {"email": "ses", "s3-external-1": "s3"}


@dataclass(frozen=True, slots=True)
class AwsEndpoint:
    service: str
    region: str
    #: The bucket a virtual-host style S3 hostname names (None: path style or not S3).
    bucket: str | None = None


def aws_endpoint(host: str) -> AwsEndpoint | None:
    """The service, region and bucket of `host`, or None when it is no AWS endpoint."""
    host = host.lower().rstrip(".")
    suffix = next((s for s in _SUFFIXES if host.endswith(s)), None)
    if suffix is None:
        return None
    labels = host[: -len(suffix)].split(".")
    for index, label in enumerate(labels):
        if label == "s3" or label.startswith("s3-"):
            return _s3(labels[:index], label, labels[index + 1 :])
    if len(labels) == 1 and _SERVICE.match(labels[0]):
        return AwsEndpoint(_SIGNING_NAMES.get(labels[0], labels[0]), "us-east-1")
    if len(labels) == 2 and _SERVICE.match(labels[0]) and _REGION.match(labels[1]):
        return AwsEndpoint(_SIGNING_NAMES.get(labels[0], labels[0]), labels[1])
    return None


def _s3(before: list[str], label: str, after: list[str]) -> AwsEndpoint | None:
    bucket = ".".join(before) or None
    if bucket is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        return None
    if label in ("s3", "s3-external-1"):
        if after and after[0] == "dualstack":
            after = after[1:]
        if not after:
            return AwsEndpoint("s3", "us-east-1", bucket)
        if len(after) == 1 and _REGION.match(after[0]):
            return AwsEndpoint("s3", after[0], bucket)
        return None
    region = label[3:]
    if not after and _REGION.match(region):
        return AwsEndpoint("s3", region, bucket)
    return None  # s3-accesspoint, s3-website, s3-control...: not named here


def credential_scope(authorization: str | None) -> tuple[str, str] | None:
    """(region, service) of a SigV4 ``Authorization`` header's credential scope."""
    if not authorization:
        return None
    found = _SCOPE.search(authorization)
    if found is None or not _REGION.match(found.group(2)):
        return None
    return found.group(2), found.group(3)
