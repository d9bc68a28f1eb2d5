"""Injectors: a forwarded request in, the credential headers it must carry out.

An :class:`Injector` is built once per connector from its vaulted credential
(:func:`build_injector`). Per request the gateway gives it the request as forwarded
(:class:`Outgoing`), the current token of its ``source`` when it has one (the gateway
fetches, caches and refreshes tokens) and the time, and adds the headers it returns.
`drop` names the agent's headers removed first (its placeholder ``Authorization`` and
its own SigV4 headers). Pure: no I/O, the clock and the token are passed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from agentfirewall.connectors.awshosts import aws_endpoint, credential_scope
from agentfirewall.connectors.base import Connector
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.credentials.aws import AssumeRoleSource, keys_of, static_keys
from agentfirewall.credentials.awschunked import (
    SIGNED_FORMS,
    SIGNED_STREAMING_TRAILER,
    ChunkResigner,
    seed_signature,
)
from agentfirewall.credentials.githubapp import GitHubAppSource
from agentfirewall.credentials.model import (
    AwsCredential,
    GitHubAppCredential,
    OAuth2Credential,
    Token,
    TokenSource,
    parse_computed_credential,
)
from agentfirewall.credentials.oauth2 import OAuth2Source
from agentfirewall.credentials.sigv4 import payload_hash, sign, signing_key
from agentfirewall.errors import CredentialError

__all__ = ["AwsInjector", "Injector", "Outgoing", "TokenInjector", "build_injector"]

_AWS_DROP = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The request as it will be forwarded (headers without the agent's credential).

    `body` is the whole body, or None when it is streamed past the inspection limit.
    `agent_headers` are the agent's original headers (its SigV4 payload hash and scope).
    """

    method: str
    host: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    agent_headers: tuple[tuple[str, str], ...] = ()

    def agent_header(self, name: str) -> str | None:
        for key, value in self.agent_headers:
            if key.lower() == name:
                return value
        return None


class Injector(Protocol):
    kind: str
    source: TokenSource | None
    drop: frozenset[str]

    def inject(self, req: Outgoing, token: Token | None, now: float) -> list[tuple[str, str]]: ...

    def body_signer(
        self, req: Outgoing, added: list[tuple[str, str]], token: Token | None
    ) -> ChunkResigner | None:
        """What re-signs the body as it is forwarded (None: the body goes as it is)."""
        ...


class AwsInjector:
    """Re-signs every request with SigV4 (static keys, or the assumed role's)."""

    kind = "aws_sigv4"
    drop = _AWS_DROP

    def __init__(self, credential: AwsCredential, key: str, *, hash_body: bool = True) -> None:
        self.credential = credential
        self.source: TokenSource | None = (
            AssumeRoleSource(credential, key) if credential.role_arn else None
        )
        self.static = static_keys(credential)
        self.hash_body = hash_body

    def inject(self, req: Outgoing, token: Token | None, now: float) -> list[tuple[str, str]]:
        endpoint = aws_endpoint(req.host)
        if endpoint is not None and endpoint.signing_name is not None:
            region, service = endpoint.region, endpoint.signing_name
        else:  # an endpoint not named from its host: the scope the agent's SDK chose
            scope = credential_scope(req.agent_header("authorization"))
            if scope is None:
                raise CredentialError(f"cannot tell the aws region and service of `{req.host}`")
            region, service = scope
        keys = self.static if token is None else keys_of(token)
        payload = payload_hash(
            service, req.agent_header("x-amz-content-sha256"), req.body, hash_body=self.hash_body
        )
        return sign(
            method=req.method,
            path=req.path,
            query=req.query,
            headers=req.headers,
            payload=payload,
            keys=keys,
            region=region,
            service=service,
            now=datetime.fromtimestamp(now, UTC),
        )

    def body_signer(
        self, req: Outgoing, added: list[tuple[str, str]], token: Token | None
    ) -> ChunkResigner | None:
        """The chunks' signer of a signed aws-chunked upload, chained from `added`'s."""
        form = req.agent_header("x-amz-content-sha256")
        if form not in SIGNED_FORMS:
            return None
        signed = dict(added)
        authorization, stamp = signed["Authorization"], signed["X-Amz-Date"]
        scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/", 1)[1]
        day, region, service, _ = scope.split("/")
        keys = self.static if token is None else keys_of(token)
        key = signing_key(keys.secret_access_key, day, region, service)
        trailer = form == SIGNED_STREAMING_TRAILER
        return ChunkResigner(key, stamp, scope, seed_signature(authorization), trailer=trailer)


class TokenInjector:
    """Carries a minted token (GitHub App installation token, OAuth2 access token) in the
    connector's own scheme (``token …`` for GitHub, Basic for git over HTTPS) or as a
    bearer token."""

    drop = frozenset({"authorization"})

    def __init__(
        self, kind: str, source: TokenSource, connector: Connector, auth_type: str | None
    ) -> None:
        self.kind = kind
        self.source: TokenSource | None = source
        self.connector = connector
        self.auth_type = auth_type
        self.drop = frozenset({"authorization", *connector.auth_header_names})

    def inject(self, req: Outgoing, token: Token | None, now: float) -> list[tuple[str, str]]:
        if token is None:
            raise CredentialError(f"no {self.kind} token")
        view = HttpRequest(req.method, "https", req.host, path=req.path, query=req.query)
        return self.connector.auth_headers_for(view, token.get("token"), auth_type=self.auth_type)

    def body_signer(
        self, req: Outgoing, added: list[tuple[str, str]], token: Token | None
    ) -> ChunkResigner | None:
        return None  # a token signs no body


def build_injector(
    connector_id: str, connector: Connector, kind: str, text: str, grant: str = ""
) -> Injector:
    """The injector of one connector's computed credential (CredentialError when invalid).

    Its token cache key is the connector id and a digest of the credential, so a changed
    credential never reuses a token minted from the old one. An OAuth2 refresh token is left
    out of the digest: storing a rotated one (``oauth2.py``) changes the credential but not
    the grant, and must not cost a new token (which would rotate it again). Two refresh-token
    grants of one client (two users) then differ in the connector id alone: the control
    plane never gives an id twice (``routes/connectors.py``), so the id names one grant.
    Where ids are an operator's (a gateway's config file), `grant` names it instead: the
    credential as the operator wrote it (``control.StaticControl``).
    """
    credential = parse_computed_credential(text, kind)
    if isinstance(credential, OAuth2Credential):
        text = credential.model_copy(update={"refresh_token": None}).model_dump_json()
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    key = f"{connector_id}:{grant}:{digest}" if grant else f"{connector_id}:{digest}"
    if isinstance(credential, AwsCredential):
        return AwsInjector(credential, key)
    if isinstance(credential, GitHubAppCredential):
        return TokenInjector(kind, GitHubAppSource(credential, key), connector, None)
    assert isinstance(credential, OAuth2Credential)
    bearer = "bearer" if connector.name != "github" else None
    return TokenInjector(kind, OAuth2Source(credential, key, connector_id), connector, bearer)
