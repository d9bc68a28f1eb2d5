"""GitHub App installation tokens: an RS256 app JWT buys a one-hour installation token.

The app JWT (``iss`` = app id, ``iat`` a minute in the past for clock drift, ``exp`` nine
minutes ahead; GitHub allows ten) is sent to ``POST /app/installations/{id}/access_tokens``;
the answer's ``token`` and ``expires_at`` become a :class:`Token` refreshed five minutes
before it expires. The private key never leaves the gateway; the installation token goes
only to the connector's hosts. Pure: the clock is passed in.
"""

from __future__ import annotations

import json
from datetime import datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from agentfirewall.credentials.model import (
    GitHubAppCredential,
    Rotation,
    Token,
    TokenRequest,
    token_times,
    vschar,
)
from agentfirewall.errors import CredentialError

__all__ = ["GitHubAppSource", "app_jwt"]

#: Refresh this long before the installation token expires.
MARGIN_SECONDS = 300.0


def app_jwt(app_id: str, key: RSAPrivateKey, now: float) -> str:
    """The app's own JWT (RS256), valid from a minute ago for nine minutes."""
    issued = int(now) - 60
    claims = {"iat": issued, "exp": issued + 600, "iss": app_id}
    return jwt.encode(claims, key, algorithm="RS256")


def _load_key(pem: str) -> RSAPrivateKey:
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise CredentialError(
            "`private_key` does not load: expected the app's unencrypted PEM private key",
            field="private_key",
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise CredentialError("`private_key` must be an RSA key (GitHub Apps sign RS256)",
                              field="private_key")  # fmt: skip
    return key


class GitHubAppSource:
    """Installation tokens of one GitHub App installation."""

    def __init__(self, credential: GitHubAppCredential, key: str) -> None:
        self.credential = credential
        self.key = key
        self._private = _load_key(credential.private_key)

    def token_request(self, now: float, previous: Token | None) -> TokenRequest:
        c = self.credential
        return TokenRequest(
            "POST",
            f"{c.api_url}/app/installations/{c.installation_id}/access_tokens",
            (
                ("Authorization", f"Bearer {app_jwt(c.app_id, self._private, now)}"),
                ("Accept", "application/vnd.github+json"),
                ("X-GitHub-Api-Version", "2022-11-28"),
            ),
        )

    def rotation(self, token: Token) -> Rotation | None:
        return None  # nothing of its credential changes

    def secrets(self, request: TokenRequest) -> tuple[str, ...]:
        """The private key and the app JWT `request` sends."""
        sent = dict(request.headers).get("Authorization", "").removeprefix("Bearer ")
        return tuple(s for s in (self.credential.private_key, sent) if s)

    def read_token(self, status: int, body: bytes, now: float) -> Token:
        if status != 201 and status != 200:  # (its `message` is not relayed: any text)
            why = _REFUSALS.get(status, "")
            raise CredentialError(f"github refused the installation token: status {status}{why}")
        try:
            data = json.loads(body)
            token, expires = data["token"], str(data["expires_at"])
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError, OSError):
            # (no JSON, or nested past the parser's depth; no object; a date past any clock)
            raise CredentialError("github answered the token request without a token") from None
        if not vschar(token):
            raise CredentialError("github answered with an invalid installation token")
        expires_at, refresh_at = token_times(now, expires_at - now, MARGIN_SECONDS)
        return Token((("token", str(token)),), expires_at, refresh_at)


#: What a refusal of GitHub's says, by status (its own text is never relayed).
_REFUSALS = {
    401: ": the app JWT was refused (check `app_id` and `private_key`)",
    403: ": the app may not create tokens for this installation (suspended, or permissions)",
    404: ": no such installation of the app (check `installation_id` and `api_url`)",
    422: ": the token request was refused as invalid",
}
