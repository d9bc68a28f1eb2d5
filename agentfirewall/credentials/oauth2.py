"""OAuth2 access tokens: client-credentials and refresh-token grants (RFC 6749 4.4, 6).

The token request is a form POST to the token endpoint; the client authenticates with
HTTP Basic (default) or form fields (``client_auth: body``). ``scope`` carries the
connector's scopes. The answer's ``access_token`` and ``expires_in`` (default one hour)
become a :class:`Token`, refreshed a minute early (at most a quarter of its lifetime);
a rotated ``refresh_token`` replaces the vaulted one for the next refresh (in memory: a
restarted gateway starts again from the vaulted one). An error answer is a
CredentialError naming the endpoint's ``error`` code; the gateway then fails closed.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, urlencode

from agentfirewall.credentials.model import OAuth2Credential, Token, TokenRequest, token_times
from agentfirewall.errors import CredentialError

__all__ = ["OAuth2Source"]

MARGIN_SECONDS = 60.0
_DEFAULT_LIFETIME = 3600.0


class OAuth2Source:
    """Access tokens of one OAuth2 client."""

    def __init__(self, credential: OAuth2Credential, key: str) -> None:
        self.credential = credential
        self.key = key

    def token_request(self, now: float, previous: Token | None) -> TokenRequest:
        c = self.credential
        form: list[tuple[str, str]] = [("grant_type", c.grant)]
        if c.grant == "refresh_token":
            rotated = _value(previous, "refresh_token")
            form.append(("refresh_token", rotated or str(c.refresh_token)))
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
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise CredentialError(f"the token endpoint answered status {status} without JSON")
        if status != 200 or "error" in data:
            code = str(data.get("error") or "no error code")[:100]
            raise CredentialError(f"the token endpoint refused: status {status}, `{code}`")
        token, kind = data.get("access_token"), str(data.get("token_type") or "bearer")
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n\0 "):
            raise CredentialError("the token endpoint answered without a valid `access_token`")
        if kind.lower() != "bearer":
            raise CredentialError(f"unsupported token type `{kind[:40]}`: expected bearer")
        lifetime = data.get("expires_in", _DEFAULT_LIFETIME)
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
            raise CredentialError("the token endpoint answered an invalid `expires_in`")
        values = [("token", token)]
        refresh = data.get("refresh_token")
        if isinstance(refresh, str) and refresh and not any(c in refresh for c in "\r\n\0"):
            values.append(("refresh_token", refresh))
        expires_at, refresh_at = token_times(now, float(lifetime), MARGIN_SECONDS)
        return Token(tuple(values), expires_at, refresh_at)


def _value(token: Token | None, name: str) -> str | None:
    if token is None:
        return None
    try:
        return token.get(name)
    except KeyError:
        return None
