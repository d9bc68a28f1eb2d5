"""OAuth2 access tokens: client-credentials and refresh-token grants (RFC 6749 4.4, 6).

The token request is a form POST to the token endpoint; the client authenticates with
HTTP Basic (default) or form fields (``client_auth: body``). ``scope`` carries the
connector's scopes. The answer's ``access_token`` (``1*VSCHAR``, RFC 6749 A.12: printable
ASCII, no space) and ``expires_in`` (seconds, a number or a numeric string as Azure AD v1
sends it; finite and positive; default one hour; :data:`~.model.MIN_LIFETIME` at least)
become a :class:`Token`, refreshed a minute early (at most a quarter of its lifetime), with
a ``refresh_token`` it answers (``1*VSCHAR`` too: it is sent in the next form). Anything
else is a CredentialError, before anything is cached, and the gateway then fails closed. An
error answer's message names the endpoint's ``error`` only when it is a registered code
(:data:`ERROR_CODES`): an endpoint may echo the client secret or the refresh token in any
text it answers, as it was sent (a Basic credential's base64, a form's percent-encoding
pass any grammar a code has).

A token endpoint that rotates refresh tokens (and refuses a used one) answers a new
``refresh_token`` with each access token. :meth:`OAuth2Source.rotation` names it, and the
gateway stores it in the vault in place of the one sent (the control plane compares
before it writes: ``POST /api/v1/gateway/connectors/{id}/refresh-token``), so a restarted
gateway, and every other gateway, refreshes with it. Until the vault has it, the token
carries it: the next refresh sends the rotated token as long as the vault still holds the
one the token was minted with (``vaulted_sha256``), and the vaulted one as soon as the vault
changed (the rotation stored, another gateway's rotation, or an admin's new grant).

Gateways and replicas that share a vault take turns: a refresh-token grant is refreshed
under a lease from the control plane (:attr:`OAuth2Source.lease_owner`,
``agentfirewall.credentials.broker``), which names the token the vault holds now; storing
the rotation ends the lease, so the next refresh anywhere sends the rotated token, never a
used one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from urllib.parse import parse_qsl, quote, urlencode

from agentfirewall.credentials.model import (
    OAuth2Credential,
    Rotation,
    Token,
    TokenRequest,
    parse_computed_credential,
    token_times,
    vschar,
)
from agentfirewall.errors import CredentialError

__all__ = ["ERROR_CODES", "OAuth2Source", "with_rotated_refresh_token"]

MARGIN_SECONDS = 60.0
_DEFAULT_LIFETIME = 3600.0
#: The ``error`` codes relayed (RFC 6749 5.2, RFC 6750 3.1, RFC 8628 3.5, and RFC 6749 4.1.2.1's
#: that endpoints answer too): any other text is not, whatever its shape.
ERROR_CODES = frozenset((
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
    "unsupported_grant_type", "invalid_scope", "access_denied", "temporarily_unavailable",
    "server_error", "slow_down", "expired_token", "authorization_pending", "invalid_token",
    "insufficient_scope",
))  # fmt: skip
#: The form fields of a token request that carry a secret.
_SECRET_FIELDS = ("client_secret", "refresh_token")
_TOKEN_TYPE = re.compile(r"[A-Za-z][\w.-]{0,39}", re.ASCII)
_NUMBER = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


class OAuth2Source:
    """Access tokens of one OAuth2 client."""

    def __init__(self, credential: OAuth2Credential, key: str, connector_id: str = "") -> None:
        self.credential = credential
        self.key = key
        self.connector_id = connector_id

    @property
    def lease_owner(self) -> str | None:
        """The connector whose refresh lease a refresh of this grant takes (a refresh-token
        grant of a vaulted connector: its endpoint may rotate the token), else None."""
        if self.credential.grant == "refresh_token" and self.connector_id:
            return self.connector_id
        return None

    def with_vaulted(self, refresh_token: str) -> OAuth2Source:
        """This source as if the vault held `refresh_token` (what a lease says it holds now):
        same key, so the token it mints replaces this source's cached one."""
        credential = self.credential.model_copy(update={"refresh_token": refresh_token})
        return OAuth2Source(credential, self.key, self.connector_id)

    def refresh_token_for(self, previous: Token | None) -> str:
        """The refresh token the next request sends: the one `previous` was rotated to while
        the vault still holds the one `previous` was minted with, else the vaulted one."""
        vaulted = str(self.credential.refresh_token)
        rotated = _value(previous, "refresh_token")
        if rotated and _value(previous, "vaulted_sha256") == _sha256(vaulted):
            return rotated
        return vaulted

    def rotation(self, token: Token) -> Rotation | None:
        """The rotated refresh token `token` carries, when it is not the vaulted one."""
        c = self.credential
        rotated = _value(token, "refresh_token")
        if c.grant != "refresh_token" or not rotated or rotated == c.refresh_token:
            return None
        return Rotation(self.connector_id, _sha256(str(c.refresh_token)), rotated)

    def secrets(self, request: TokenRequest) -> tuple[str, ...]:
        """The client secret, the vaulted refresh token and the one `request` sends, and as
        it sends them: its Basic credential, its form's values as encoded."""
        body = request.body.decode()
        sent = [v for k, v in parse_qsl(body) if k in _SECRET_FIELDS]
        encoded = [p.partition("=")[2] for p in body.split("&")
                   if p.partition("=")[0] in _SECRET_FIELDS]  # fmt: skip
        basic = [v for k, v in request.headers if k == "Authorization"]
        c = self.credential
        return tuple(s for s in (c.client_secret, c.refresh_token, *sent, *encoded, *basic) if s)

    def token_request(self, now: float, previous: Token | None) -> TokenRequest:
        c = self.credential
        form: list[tuple[str, str]] = [("grant_type", c.grant)]
        if c.grant == "refresh_token":
            form.append(("refresh_token", self.refresh_token_for(previous)))
        if c.scopes:
            form.append(("scope", " ".join(c.scopes)))
        if c.audience:
            form.append(("audience", c.audience))
        headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
        ]
        if c.client_auth == "basic" and c.client_secret:
            pair = f"{quote(c.client_id, safe='')}:{quote(c.client_secret, safe='')}"
            headers.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
        else:
            form.append(("client_id", c.client_id))
            if c.client_secret:
                form.append(("client_secret", c.client_secret))
        return TokenRequest("POST", c.token_url, tuple(headers), urlencode(form).encode())

    def read_token(self, status: int, body: bytes, now: float) -> Token:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # (not UTF-8; nested past the parser's depth)
            data = None
        if not isinstance(data, dict):
            raise CredentialError(f"the token endpoint answered status {status} without JSON")
        if status != 200 or "error" in data:
            raise CredentialError(f"the token endpoint refused: status {status}, "
                                  f"{_error_code(data.get('error'))}")  # fmt: skip
        token, kind = data.get("access_token"), data.get("token_type") or "bearer"
        if not vschar(token):  # (`1*VSCHAR`: a header value as is, scrubbed as it is sent)
            raise CredentialError("the token endpoint answered without a valid `access_token`")
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise CredentialError(
                f"unsupported token type {_shown(kind, _TOKEN_TYPE)}: expected bearer"
            )
        lifetime = _lifetime(data.get("expires_in", _DEFAULT_LIFETIME))
        values = [("token", str(token))]
        refresh = data.get("refresh_token")
        if refresh is not None and refresh != "":  # (absent: nothing rotated)
            if not vschar(refresh):  # (sent in the next form, stored in the vault)
                raise CredentialError("the token endpoint answered an invalid `refresh_token`")
            values.append(("refresh_token", str(refresh)))
        if self.credential.grant == "refresh_token":  # what the vault held: see the module
            values.append(("vaulted_sha256", _sha256(str(self.credential.refresh_token))))
        expires_at, refresh_at = token_times(now, float(lifetime), MARGIN_SECONDS)
        return Token(tuple(values), expires_at, refresh_at)


def _error_code(error: object) -> str:
    """An error answer's ``error`` in backticks when it is a registered code, else a mention
    (see :data:`ERROR_CODES`)."""
    if isinstance(error, str) and error in ERROR_CODES:
        return f"`{error}`"
    return "an unregistered error code (not shown)" if error else "no error code"


def _shown(value: object, grammar: re.Pattern[str]) -> str:
    """An endpoint's `value` in backticks when `grammar` says it is a code, else a mention:
    an endpoint may echo the client secret or the refresh token in any text it answers."""
    if isinstance(value, str) and grammar.fullmatch(value):
        return f"`{value}`"
    return "an unreadable code (not shown)"


def _lifetime(value: object) -> float:
    """`expires_in` in seconds: a number, or a numeric string (Azure AD v1); finite and
    positive (``NaN`` compares false with everything)."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CredentialError("the token endpoint answered an invalid `expires_in`")
    try:
        lifetime = float(value)
    except OverflowError:  # (an integer past any float)
        lifetime = math.nan
    if not math.isfinite(lifetime) or lifetime <= 0:
        raise CredentialError("the token endpoint answered an invalid `expires_in`")
    return lifetime


def with_rotated_refresh_token(text: str, vaulted_sha256: str, refresh_token: str) -> str:
    """The OAuth2 credential document `text` with `refresh_token` in place of the refresh
    token whose SHA-256 is `vaulted_sha256` (what a vault stores after a rotation).

    `text` unchanged when it holds `refresh_token` already (the same rotation sent twice).
    A CredentialError when `text` is no refresh-token grant (`field` "grant"), when it holds
    another refresh token (`field` "refresh_token": an admin's new grant or another
    gateway's rotation came first; comparing first keeps the newer one), or when
    `refresh_token` is not a valid one. Never echoes a token.
    """
    if not vschar(refresh_token):  # (what a token endpoint answers: ``read_token``)
        raise CredentialError("the rotated refresh token is not a valid one",
                              field="refresh_token")  # fmt: skip
    current = parse_computed_credential(text, "oauth2")
    assert isinstance(current, OAuth2Credential)
    if current.grant != "refresh_token":
        raise CredentialError("the credential has no refresh token to rotate", field="grant")
    held = _sha256(str(current.refresh_token))
    if hmac.compare_digest(held, _sha256(refresh_token)):
        return text
    if not hmac.compare_digest(held, vaulted_sha256):
        raise CredentialError("the vault holds another refresh token now", field="refresh_token")
    document = json.loads(text)
    document["refresh_token"] = refresh_token
    rotated = json.dumps(document)
    parse_computed_credential(rotated, "oauth2")  # the new token is a valid one
    return rotated


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _value(token: Token | None, name: str) -> str | None:
    if token is None:
        return None
    try:
        return token.get(name)
    except KeyError:
        return None
