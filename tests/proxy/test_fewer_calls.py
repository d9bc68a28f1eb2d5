"""Round 5 of the gateway's CPU work (issue 18): each shorter path equals its plain definition."""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.hooks import Addons, DecidedHook, DoneHook, Hook
from agentfirewall_proxy.http1 import (
    RequestParser,
    ResponseParser,
    reason_phrase,
    serialize_request_head,
    serialize_response_head,
)
from agentfirewall_proxy.main import GC_THRESHOLDS, settle_gc
from agentfirewall_proxy.pipeline import Flow
from tests.fuzzscale import examples

_TOKEN = st.binary(min_size=1, max_size=12)
_HEADERS = st.lists(st.tuples(_TOKEN, st.binary(max_size=20)), max_size=8)


def reference_request_head(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """``serialize_request_head`` as it was written before round 5."""
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines.extend(k + b": " + v for k, v in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def reference_response_head(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
) -> bytes:
    lines = [b"HTTP/1.1 %d " % status + (reason or reason_phrase(status))]
    lines.extend(k + b": " + v for k, v in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@settings(max_examples=examples(300), deadline=None)
@given(
    st.sampled_from(["GET", "POST", "DELETE", "PATCH"]),
    st.binary(max_size=30),
    _HEADERS,
    st.integers(100, 599),
    st.binary(max_size=12),
)
def test_serialized_heads_equal_their_definition(
    method: str, target: bytes, headers: list[tuple[bytes, bytes]], status: int, reason: bytes
) -> None:
    assert serialize_request_head(method, target, headers) == reference_request_head(
        method, target, headers
    )
    assert serialize_response_head(status, reason, headers) == reference_response_head(
        status, reason, headers
    )


def test_parsers_say_when_a_head_is_in_progress() -> None:
    """``in_head`` (now a plain attribute) still follows the message."""
    for parser, message in (
        (RequestParser(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        (ResponseParser(), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ):
        assert not parser.in_head
        parser.feed(message[:10])
        assert parser.in_head
        parser.feed(message[10:])
        assert not parser.in_head


def test_addon_methods_are_each_hooks_methods_in_the_addons_order() -> None:
    """The gateway calls ``Addons.methods(hook)`` itself: every addon's method of that hook's
    name, in the order the addons were given, and no other."""
    calls: list[tuple[str, str]] = []

    class Both:
        def __init__(self, name: str) -> None:
            self.name = name

        def decided(self, flow: Flow) -> None:
            calls.append((self.name, "decided"))

        def done(self, flow: Flow) -> None:
            calls.append((self.name, "done"))

    class DoneOnly:
        def done(self, flow: Flow) -> None:
            calls.append(("done-only", "done"))

    addons = Addons([Both("a"), DoneOnly(), Both("b")])
    flow = Flow(request_id="req_1", method="GET")
    expected: dict[type[Hook], list[tuple[str, str]]] = {
        DecidedHook: [("a", "decided"), ("b", "decided")],
        DoneHook: [("a", "done"), ("done-only", "done"), ("b", "done")],
    }
    for hook, order in expected.items():
        calls.clear()
        for method in addons.methods(hook):
            method(flow)
        assert calls == order


def test_settle_gc_freezes_start_up_and_collects_less_often() -> None:
    """The command line settles the collector once listening (as the control plane does)."""
    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
