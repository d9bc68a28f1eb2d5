"""Computed credentials: their vaulted configuration, the tokens they mint, the cache.

A connector's credential is normally a static string the gateway puts in a header. A
*computed* credential is a JSON document in the vault (the connector's ``auth_type`` names
its kind) from which the gateway derives what each request carries:

- ``aws_sigv4``: access key id + secret (or a role to assume with them): every request is
  re-signed (``sigv4.py``);
- ``github_app``: app id + private key + installation id: an installation token minted
  with an RS256 app JWT (``githubapp.py``);
- ``oauth2``: token URL + client id/secret (client-credentials) or a refresh token: an
  access token (``oauth2.py``).

Pure data and arithmetic: the clock is passed in (seconds since the epoch), the cache is
an object the caller owns, and fetching a token is the caller's I/O: a source says which
:class:`TokenRequest` to send and reads the answer into a :class:`Token`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Annotated, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentfirewall.errors import CredentialError

__all__ = [
    "COMPUTED_KINDS",
    "MIN_LIFETIME",
    "AwsCredential",
    "ComputedCredential",
    "GitHubAppCredential",
    "OAuth2Credential",
    "Rotation",
    "Token",
    "TokenCache",
    "TokenRequest",
    "TokenSource",
    "parse_computed_credential",
    "vschar",
]

COMPUTED_KINDS = ("aws_sigv4", "github_app", "oauth2")
_LINE = r"^[^\r\n\x00]*$"


def _https(url: str, field: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"`{field}` must be an https:// url (a secret never goes in cleartext)")
    return url


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class AwsCredential(_Strict):
    kind: Literal["aws_sigv4"]
    access_key_id: str = Field(min_length=16, max_length=128, pattern=r"^[A-Z0-9]+$")
    secret_access_key: str = Field(min_length=16, max_length=128, pattern=_LINE)
    session_token: str | None = Field(default=None, max_length=4096, pattern=_LINE)
    #: Assume this role (STS AssumeRole signed with the keys above); tokens are cached.
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$")
    external_id: str | None = Field(default=None, max_length=1224, pattern=_LINE)
    role_session_name: str = Field(default="tameflare", pattern=r"^[\w+=,.@-]{2,64}$")
    duration_seconds: int = Field(default=3600, ge=900, le=43200)
    #: Region of the STS endpoint for AssumeRole.
    sts_region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")


class GitHubAppCredential(_Strict):
    kind: Literal["github_app"]
    app_id: str = Field(min_length=1, max_length=40, pattern=r"^[0-9]+$|^Iv[0-9A-Za-z.]+$")
    private_key: str = Field(min_length=100, max_length=16384)
    installation_id: str = Field(min_length=1, max_length=40, pattern=r"^[0-9]+$")
    api_url: str = Field(default="https://api.github.com", max_length=2048)

    @field_validator("api_url")
    @classmethod
    def _api_https(cls, value: str) -> str:
        return _https(value, "api_url").rstrip("/")

    @field_validator("private_key")
    @classmethod
    def _pem(cls, value: str) -> str:
        if "-----BEGIN" not in value or "PRIVATE KEY-----" not in value:
            raise ValueError("`private_key` must be a PEM private key (the app's .pem file)")
        return value


class OAuth2Credential(_Strict):
    kind: Literal["oauth2"]
    token_url: str = Field(max_length=2048)
    client_id: str = Field(min_length=1, max_length=512, pattern=_LINE)
    client_secret: str | None = Field(default=None, min_length=1, max_length=4096, pattern=_LINE)
    #: ``client_credentials`` unless a refresh token is given.
    grant: Literal["client_credentials", "refresh_token"] = "client_credentials"
    refresh_token: str | None = Field(default=None, min_length=1, max_length=8192, pattern=_LINE)
    scopes: tuple[str, ...] = Field(default=(), max_length=50)
    audience: str | None = Field(default=None, max_length=2048, pattern=_LINE)
    #: How the client authenticates to the token endpoint: HTTP Basic or form fields.
    client_auth: Literal["basic", "body"] = "basic"

    @field_validator("token_url")
    @classmethod
    def _token_https(cls, value: str) -> str:
        return _https(value, "token_url")

    @field_validator("scopes")
    @classmethod
    def _scope_tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for scope in value:
            if not scope or any(c.isspace() or c in '"\\' for c in scope):
                raise ValueError(f"invalid scope `{scope[:80]}`: one token, no spaces or quotes")
        return value

    def model_post_init(self, context: object, /) -> None:
        if self.grant == "refresh_token" and not self.refresh_token:
            raise ValueError("the `refresh_token` grant needs `refresh_token`")
        if self.grant == "client_credentials" and not self.client_secret:
            raise ValueError("the `client_credentials` grant needs `client_secret`")


ComputedCredential = Annotated[
    AwsCredential | GitHubAppCredential | OAuth2Credential, Field(discriminator="kind")
]


class _Document(_Strict):
    credential: ComputedCredential


def parse_computed_credential(text: str, kind: str | None = None) -> ComputedCredential:
    """The credential JSON vaulted for a connector; CredentialError naming the bad field
    (never echoing a value: these are secrets)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise CredentialError("a computed credential must be a JSON object") from None
    if not isinstance(data, dict):
        raise CredentialError("a computed credential must be a JSON object")
    if kind is not None:
        data.setdefault("kind", kind)
        if data["kind"] != kind:
            raise CredentialError(f"credential kind `{data['kind']}` is not `{kind}`", field="kind")
    try:
        return _Document.model_validate({"credential": data}).credential
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"][2:]) or "credential"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise CredentialError(f"invalid `{where}`: {message[:300]}", field=where) from None


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What to send to obtain a token (the caller does the I/O)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


#: The shortest lifetime (seconds) a token is given, whatever its endpoint answers.
MIN_LIFETIME = 5.0
_VSCHAR = re.compile(r"[\x21-\x7e]+")

#: Token values that are no secret: AWS's key id, a token type, the digest of the refresh
#: token the vault held when the token was minted (``oauth2.py``).
_NOT_SECRET = frozenset(("access_key_id", "token_type", "vaulted_sha256"))


@dataclass(frozen=True, slots=True)
class Token:
    """A minted secret and when to replace it (seconds since the epoch).

    `refresh_at` is earlier than `expires_at` by a margin: from then on the next request
    refreshes it; past `expires_at` it is never used. `values` holds what the injector needs
    (the access token; AWS's temporary key id, secret and session token).
    """

    values: tuple[tuple[str, str], ...]
    expires_at: float
    refresh_at: float

    def get(self, name: str) -> str:
        for key, value in self.values:
            if key == name:
                return value
        raise KeyError(name)

    def secrets(self) -> tuple[str, ...]:
        """Every value that travels to the upstream and must never come back."""
        return tuple(v for k, v in self.values if k not in _NOT_SECRET)

    def fresh(self, now: float) -> bool:
        return now < self.refresh_at

    def usable(self, now: float) -> bool:
        return now < self.expires_at


def token_times(now: float, lifetime: float, margin: float) -> tuple[float, float]:
    """(expires_at, refresh_at): refreshed `margin` seconds early, at most a quarter of the
    lifetime early (a one-minute token is not refreshed on every request). A lifetime is
    :data:`MIN_LIFETIME` at least: an endpoint answering a tiny one (``1e-9``, or an expiry
    past by the clocks' drift) does not cost a token request per request."""
    lifetime = max(MIN_LIFETIME, lifetime)
    return now + lifetime, now + lifetime - min(margin, lifetime / 4)


def vschar(value: object) -> bool:
    """Whether `value` is a token as RFC 6749 writes one (``1*VSCHAR``: printable ASCII, no
    space): what goes in a header as is, and what a scrubber finds as it is sent."""
    return isinstance(value, str) and _VSCHAR.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Rotation:
    """A refresh token the token endpoint rotated, to be stored in the vault in place of the
    one it holds (whose SHA-256 is `vaulted_sha256`: the store compares before it writes)."""

    connector_id: str
    vaulted_sha256: str
    refresh_token: str
    #: The id of the lease the refresh was taken under (``Lease``), if any.
    lease: str | None = None

    def __repr__(self) -> str:  # never the token, in a log or a traceback
        return f"Rotation(connector_id={self.connector_id!r}, vaulted_sha256=...)"

    def after(self, stored: Rotation) -> Rotation:
        """This rotation once `stored`, an earlier one of the same process from the same
        vaulted token, is in the vault: this one was refreshed with `stored`'s token (each
        refresh sends the latest rotated while the vault holds the one they came from:
        ``oauth2.py``), so it replaces that one."""
        if (stored.connector_id, stored.vaulted_sha256) != (self.connector_id, self.vaulted_sha256):
            return self
        digest = hashlib.sha256(stored.refresh_token.encode()).hexdigest()
        return replace(self, vaulted_sha256=digest)


@dataclass(frozen=True, slots=True)
class Lease:
    """Leave to refresh one connector's rotating grant, from the control plane: while it
    lasts no other gateway or replica refreshes that grant (storing the rotation ends it).
    `refresh_token` is what the vault holds now: the one to refresh with."""

    id: str
    refresh_token: str
    #: How long it lasts (seconds) from when it was asked for: a refresh under it ends (or
    #: renews it) before then (``broker.py``).
    seconds: float

    def __repr__(self) -> str:  # never the token, in a log or a traceback
        return f"Lease(id={self.id!r}, refresh_token=..., seconds={self.seconds!r})"


class Leases(Protocol):
    """Where a process takes its refresh leases (``broker.py``)."""

    async def acquire(self, connector_id: str) -> Lease | None:
        """The lease on `connector_id`'s grant; None when there is no control plane to ask
        (the refresh then uses the configuration's token, unleased). LeaseBusy while another
        process holds it; CredentialError when it cannot be had."""
        ...

    async def renew(self, connector_id: str, lease: Lease) -> Lease | None:
        """`lease` renewed (the same id, its `seconds` from now), or None when it cannot be
        (it ended and may be another's, or the control plane does not answer)."""
        ...

    async def release(self, connector_id: str, lease: Lease) -> None:
        """End `lease` without a rotation (the refresh failed, or rotated nothing)."""
        ...


class TokenSource(Protocol):
    """How one credential's token is requested and read."""

    #: Cache key: one token per credential (connector id and credential digest).
    key: str

    def token_request(self, now: float, previous: Token | None) -> TokenRequest: ...

    def read_token(self, status: int, body: bytes, now: float) -> Token: ...

    def rotation(self, token: Token) -> Rotation | None:
        """What `token` asks to store in the vault (a rotated refresh token), if anything."""
        ...

    def secrets(self, request: TokenRequest) -> tuple[str, ...]:
        """What of the credential and of `request` an error message must never hold (an
        endpoint may echo it in its answer)."""
        ...


class TokenCache:
    """Tokens by source key; bounded, owned by the caller (the gateway keeps one)."""

    def __init__(self, size: int = 1024) -> None:
        self._tokens: dict[str, Token] = {}
        self._size = size

    def get(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def put(self, key: str, token: Token) -> None:
        if key not in self._tokens and len(self._tokens) >= self._size:
            self._tokens.pop(next(iter(self._tokens)))
        self._tokens[key] = token

    def drop(self, key: str) -> None:
        self._tokens.pop(key, None)
