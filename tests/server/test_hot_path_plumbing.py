"""The hot path's plumbing gives what the generic Starlette/stdlib calls give.

``web.header`` against ``Request.headers.get``, ``web.read_body`` (ASGI messages read
directly) against the same limits applied to ``request.stream()``, and the signer's
base64url against ``base64.urlsafe_b64encode``: Hypothesis draws the inputs.
"""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect, Request

from agentfirewall_server.signer import _b64
from agentfirewall_server.web import _DRAIN_FACTOR, ApiError, _too_large, header, read_body
from tests.fuzzscale import examples

_NAMES = [b"authorization", b"Authorization", b"idempotency-key", b"content-length", b"x-a"]
_raw_headers = st.lists(
    st.tuples(st.sampled_from(_NAMES), st.binary(max_size=12).map(lambda b: b.strip())),
    max_size=8,
)


@given(_raw_headers, st.sampled_from([b"authorization", b"idempotency-key", b"content-length"]))
def test_header_is_what_starlette_gives(raw: list[tuple[bytes, bytes]], name: bytes) -> None:
    scope = {"type": "http", "headers": raw}
    assert header(Request(scope), name) == Request(dict(scope)).headers.get(name.decode())
    assert header(Request(scope), name) == Request(dict(scope)).headers.get(name.decode())


@given(st.binary(max_size=200))
def test_b64_is_urlsafe_base64_without_padding(raw: bytes) -> None:
    assert _b64(raw) == base64.urlsafe_b64encode(raw).rstrip(b"=")


async def _reference(request: Request) -> bytes:
    """``read_body`` as it was, over ``request.stream()``."""
    limit: int = request.app.state.settings.max_body_bytes
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit * _DRAIN_FACTOR:
            raise _too_large(limit, close=True)
        if total <= limit:
            chunks.append(chunk)
    if total > limit:
        raise _too_large(limit, close=False)
    return b"".join(chunks)


_message = st.one_of(
    st.builds(
        lambda body, more: {"type": "http.request", "body": body, "more_body": more},
        st.binary(max_size=20),
        st.booleans(),
    ),
    st.just({"type": "http.request"}),  # no body, no more_body: the last, empty
    st.just({"type": "http.disconnect"}),
    st.just({"type": "lifespan.other"}),  # neither: skipped by both
)


def _outcome(messages: list[dict[str, Any]], limit: int, read: Any) -> Any:
    queue = [*messages, {"type": "http.disconnect"}]  # a client gone after its messages

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    app = SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(max_body_bytes=limit)))
    request = Request({"type": "http", "headers": [], "app": app}, receive)
    try:
        return ("body", asyncio.run(read(request)))
    except ApiError as exc:
        return ("error", exc.status, exc.headers, exc.extra)
    except ClientDisconnect:
        return ("disconnect",)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(_message, max_size=6), st.integers(min_value=0, max_value=40))
def test_read_body_is_the_stream_read(messages: list[dict[str, Any]], limit: int) -> None:
    assert _outcome(messages, limit, read_body) == _outcome(messages, limit, _reference)


def test_a_second_read_raises_as_the_stream_does() -> None:
    messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    app = SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(max_body_bytes=10)))
    request = Request({"type": "http", "headers": [], "app": app}, receive)

    async def twice() -> None:
        assert await read_body(request) == b"{}"
        await read_body(request)

    with pytest.raises(RuntimeError, match="Stream consumed"):
        asyncio.run(twice())
