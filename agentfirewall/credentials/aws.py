"""AWS keys for re-signing: static, or temporary ones from STS ``AssumeRole``.

With a ``role_arn`` the gateway signs ``AssumeRole`` (``sts.REGION.amazonaws.com``) with
the static keys and signs the agent's requests with the temporary keys it answers,
refreshed five minutes before they expire. Without one, the static keys sign directly
(no token, no I/O). Pure: the clock is passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode
from xml.etree import ElementTree

from agentfirewall.credentials.model import (
    AwsCredential,
    Rotation,
    Token,
    TokenRequest,
    token_times,
    vschar,
)
from agentfirewall.credentials.sigv4 import AwsKeys, payload_hash, sign
from agentfirewall.errors import CredentialError

__all__ = ["ERROR_CODES", "AssumeRoleSource", "keys_of", "static_keys"]

MARGIN_SECONDS = 300.0
_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
#: The error codes relayed (AssumeRole's and AWS's common ones): any other text is not,
#: whatever its shape (an endpoint may echo a secret in it, in any encoding).
ERROR_CODES = frozenset((
    "AccessDenied", "AccessDeniedException", "ExpiredToken", "ExpiredTokenException",
    "IncompleteSignature", "InternalFailure", "InvalidAction", "InvalidClientTokenId",
    "InvalidParameterCombination", "InvalidParameterValue", "InvalidQueryParameter",
    "MalformedPolicyDocument", "MalformedQueryString", "MissingAction",
    "MissingAuthenticationToken", "MissingParameter", "NotAuthorized", "OptInRequired",
    "PackedPolicyTooLarge", "RegionDisabledException", "RequestExpired", "ServiceUnavailable",
    "SignatureDoesNotMatch", "Throttling", "ThrottlingException", "UnrecognizedClientException",
    "ValidationError",
))  # fmt: skip


def static_keys(credential: AwsCredential) -> AwsKeys:
    return AwsKeys(credential.access_key_id, credential.secret_access_key, credential.session_token)


def keys_of(token: Token) -> AwsKeys:
    """The temporary keys an ``AssumeRole`` token holds."""
    return AwsKeys(
        token.get("access_key_id"), token.get("secret_access_key"), token.get("session_token")
    )


class AssumeRoleSource:
    """Temporary keys for one role, assumed with the connector's static keys."""

    def __init__(self, credential: AwsCredential, key: str) -> None:
        if credential.role_arn is None:
            raise CredentialError("no `role_arn` to assume", field="role_arn")
        self.credential = credential
        self.key = key

    def token_request(self, now: float, previous: Token | None) -> TokenRequest:
        c = self.credential
        host = f"sts.{c.sts_region}.amazonaws.com"
        form = [
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", str(c.role_arn)),
            ("RoleSessionName", c.role_session_name),
            ("DurationSeconds", str(c.duration_seconds)),
        ]
        if c.external_id:
            form.append(("ExternalId", c.external_id))
        body = urlencode(form).encode()
        headers = [
            ("Host", host),
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        ]
        signed = sign(
            method="POST",
            path="/",
            query="",
            headers=headers,
            payload=payload_hash("sts", None, body),
            keys=static_keys(c),
            region=c.sts_region,
            service="sts",
            now=datetime.fromtimestamp(now, UTC),
        )
        return TokenRequest("POST", f"https://{host}/", (*headers[1:], *signed), body)

    def rotation(self, token: Token) -> Rotation | None:
        return None  # nothing of its credential changes

    def secrets(self, request: TokenRequest) -> tuple[str, ...]:
        """The static secret key and session token."""
        c = self.credential
        return tuple(s for s in (c.secret_access_key, c.session_token) if s)

    def read_token(self, status: int, body: bytes, now: float) -> Token:
        if status != 200:
            raise CredentialError(f"sts refused AssumeRole: status {status}{_sts_code(body)}")
        try:
            root = _xml(body)
            found = root.find(f".//{_NS}Credentials")
            if found is None:
                raise ValueError("no credentials")
            values = tuple(
                (name, (found.findtext(f"{_NS}{tag}") or "").strip())
                for name, tag in (
                    ("access_key_id", "AccessKeyId"),
                    ("secret_access_key", "SecretAccessKey"),
                    ("session_token", "SessionToken"),
                )
            )
            expires = (found.findtext(f"{_NS}Expiration") or "").strip()
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        except (ElementTree.ParseError, ValueError, OverflowError, OSError):
            raise CredentialError("sts answered AssumeRole without credentials") from None
        if not all(vschar(v) for _, v in values):
            raise CredentialError("sts answered AssumeRole with invalid credentials")
        expires_at, refresh_at = token_times(now, expires_at - now, MARGIN_SECONDS)
        return Token(values, expires_at, refresh_at)


def _sts_code(body: bytes) -> str:
    """STS's error ``Code`` (``AccessDenied``), when it is a registered one
    (:data:`ERROR_CODES`): any other text is not relayed (its ``Message`` never is)."""
    try:
        code = _xml(body).findtext(f".//{_NS}Code")
    except (ElementTree.ParseError, ValueError):
        return ""
    return f", `{code}`" if code in ERROR_CODES else ""


def _xml(body: bytes) -> ElementTree.Element:
    """STS's XML answer; no DTD, hence no entity expansion (billion laughs, XXE)."""
    if b"<!" in body:
        raise ValueError("a document type or entity in the sts answer")
    return ElementTree.fromstring(body)  # noqa: S314 (no DTD: checked above)
