"""The arguments a client takes, checked once, before anything is sent.

A mistake in the call itself raises at once, as Python does (TypeError for a wrong type,
ValueError for a bad value), naming the argument and what to pass; the API key is never
echoed, a password in a URL is masked (docs/sdk.md, Errors).
"""

from __future__ import annotations

import math
import os
import re
from urllib.parse import urlsplit

from agentfirewall.errors import AuthenticationError

__all__ = [
    "DEFAULT_BASE_URL",
    "check_api_key",
    "check_base_url",
    "check_idempotency_key",
    "check_number",
    "check_seconds",
    "check_url",
    "path_id",
    "shown_url",
]

DEFAULT_BASE_URL = "http://localhost:3000/api"
#: What an agent key looks like (`aaf_live_...`, `aaf_test_...`): never echoed.
_KEY_SHAPE = re.compile(r"\s*aaf_", re.IGNORECASE)
_SWAPPED = "are `api_key` and `base_url` (AAF_API_KEY and AAF_BASE_URL) swapped?"


#: What an action id is: ``act_`` and letters, digits, ``_`` or ``-`` (the server's are ``act_``
#: and 26 base32 characters; a test double's ``act_1`` is one too). Such an id is one path
#: segment exactly as written: never ``.`` or ``..``, which a URL resolves to another route
#: (``/v1/actions/..`` is ``/v1/``), never a slash, ``%``, ``?`` or ``#``, nor another route's
#: name (``stuck``, ``dry-run``).
_ACTION_ID = re.compile(r"act_[A-Za-z0-9_-]{1,100}")


def path_id(action_request_id: object) -> str:
    """The id as one path segment; anything but an ``act_...`` id is the caller's mistake."""
    if not isinstance(action_request_id, str):
        raise TypeError(
            "`action_request_id` must be the `act_...` string of a request_action result "
            f"(`result.action_request_id`), not {type(action_request_id).__name__}"
        )
    if not action_request_id.strip():
        raise ValueError(
            "`action_request_id` is empty: pass the `act_...` id of a request_action result"
        )
    if not _ACTION_ID.fullmatch(action_request_id):
        raise ValueError(
            f"`action_request_id` {action_request_id[:60]!r} is not an action id: pass the "
            "`act_...` id of a request_action result (`result.action_request_id`), as it came"
        )
    return action_request_id


# -- arguments: checked once, before anything is sent ----------------------------------

#: What a key or an Idempotency-Key may hold: visible ASCII (a header value, sent as is).
_HEADER_SAFE = re.compile(r"[!-~]+")
_KEY_SOURCES = "`api_key=` or AAF_API_KEY"


def check_api_key(value: object) -> str:
    """The key, surrounding whitespace dropped (a line break read from a file); never echoed."""
    key = value if value is not None else os.environ.get("AAF_API_KEY")
    if key is not None and not isinstance(key, str):
        raise TypeError(
            f"`api_key` must be a string (the agent's `aaf_...` key), not {type(key).__name__}"
        )
    key = (key or "").strip()
    if not key:
        raise AuthenticationError(
            f"no API key: pass {_KEY_SOURCES} (`tf agent add NAME` prints one)"
        )
    if not _HEADER_SAFE.fullmatch(key):
        raise AuthenticationError(
            f"the API key ({_KEY_SOURCES}) holds a space, a control character or a non-ASCII "
            "letter, which no key has: copy it again (`tf agent rotate-key NAME` makes a new one)"
        )
    if key.lower().startswith(("http://", "https://")):
        raise AuthenticationError(f"the API key ({_KEY_SOURCES}) is a URL: {_SWAPPED}")
    return key


def check_url(value: object, what: str, example: str) -> str:
    """An http(s) URL with a host, without a trailing slash (ValueError names `what`)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string like `{example}`, not {type(value).__name__}")
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        ok = False
    if not ok and _KEY_SHAPE.match(url):  # never echoed
        raise ValueError(f"{what} holds an API key (`aaf_...`), not a URL: {_SWAPPED}")
    if not ok:
        raise ValueError(
            f"{what} `{shown_url(url)}` is not an http(s) URL: write it like `{example}`"
        )
    return url


def shown_url(url: str) -> str:
    """A URL for a message or repr: a password in it is masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def check_base_url(value: str | None) -> str:
    raw = value if value is not None else (os.environ.get("AAF_BASE_URL") or DEFAULT_BASE_URL)
    url = check_url(raw, "`base_url` (or AAF_BASE_URL)", DEFAULT_BASE_URL)
    if urlsplit(url).path.endswith("/v1"):
        raise ValueError(
            f"`base_url` (or AAF_BASE_URL) `{shown_url(url)}` ends in `/v1`: give the API root, "
            f"ending in `/api`, like `{DEFAULT_BASE_URL}` (the client adds `/v1/...`)"
        )
    return url


def check_number(value: object, what: str, *, minimum: float, integer: bool = False) -> float:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number of seconds"
        raise TypeError(f"`{what}` must be {kind}, not {type(value).__name__}")
    if math.isnan(value) or value < minimum:
        raise ValueError(f"`{what}` must be at least {minimum:g}, not {value}")
    return value


def check_seconds(value: object, what: str) -> float:
    """A wait in seconds: a number, at least 0 (``math.inf``: no deadline)."""
    return check_number(value, what, minimum=0)


def check_idempotency_key(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"`idempotency_key` must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= 200 or not _HEADER_SAFE.fullmatch(value):
        raise ValueError(
            "`idempotency_key` must be 1 to 200 visible ASCII characters (no spaces or line "
            "breaks), e.g. a UUID or your own job id"
        )
    return value
