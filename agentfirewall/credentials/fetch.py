"""One token request over HTTP, with the caller's httpx client (the gateway's, which
reaches the endpoint through its resolve map or upstream proxy; the control plane's).

Only https; the answer is read up to 1 MiB; an endpoint that cannot be reached or answers
more is a CredentialError naming its host (never a secret), which the caller's broker turns
into "fail closed".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from agentfirewall.credentials.model import TokenRequest
from agentfirewall.errors import CredentialError

__all__ = ["send_token_request"]

_MAX_TOKEN_RESPONSE = 1 << 20


async def send_token_request(
    client: httpx.AsyncClient,
    request: TokenRequest,
    *,
    url: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    **options: Any,
) -> tuple[int, bytes]:
    """(status, body) of `request`, sent to `url` when given (the endpoint's address as the
    caller resolved it) with `headers` before the request's own."""
    parts = urlsplit(request.url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host:
        raise CredentialError("a token endpoint must be an https:// url")
    try:
        async with client.stream(
            request.method,
            url or request.url,
            headers=[*headers, *request.headers],
            content=request.body or None,
            **options,
        ) as response:
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_TOKEN_RESPONSE:
                    raise CredentialError(f"the token endpoint `{host}` answered too much")
            return response.status_code, body
    except httpx.HTTPError as exc:
        kind = type(exc).__name__
        raise CredentialError(f"the token endpoint `{host}` is unreachable ({kind})") from None
