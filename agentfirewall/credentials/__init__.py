"""Computed credentials (pure): SigV4 re-signing, GitHub App tokens, OAuth2 tokens.

See :mod:`agentfirewall.credentials.model` for the vaulted configuration and the token
lifecycle, :mod:`.injectors` for what the gateway calls per request.
"""

from __future__ import annotations

from agentfirewall.credentials.injectors import (
    AwsInjector,
    Injector,
    Outgoing,
    TokenInjector,
    build_injector,
)
from agentfirewall.credentials.model import (
    COMPUTED_KINDS,
    AwsCredential,
    ComputedCredential,
    GitHubAppCredential,
    Lease,
    Leases,
    OAuth2Credential,
    Rotation,
    Token,
    TokenCache,
    TokenRequest,
    TokenSource,
    parse_computed_credential,
)
from agentfirewall.credentials.oauth2 import with_rotated_refresh_token

__all__ = [
    "COMPUTED_KINDS",
    "AwsCredential",
    "AwsInjector",
    "ComputedCredential",
    "GitHubAppCredential",
    "Injector",
    "Lease",
    "Leases",
    "OAuth2Credential",
    "Outgoing",
    "Rotation",
    "Token",
    "TokenCache",
    "TokenInjector",
    "TokenRequest",
    "TokenSource",
    "build_injector",
    "parse_computed_credential",
    "with_rotated_refresh_token",
]
