"""The gateway's cheap per-request paths give exactly what the plain definitions give."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input
from agentfirewall_proxy.client import ClientConnection
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.http1 import Head
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.pipeline import (
    Refusal,
    check_host_header,
    clean_path,
    created_at,
    decide,
    proxy_key_hash,
    split_authority,
    target_of,
)
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.fuzzscale import examples
from tests.proxy.support import KEY, connector, key_hash, rule, snapshot

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=examples(300), deadline=None)
@given(st.integers(0, 253370764800 * 10**9), st.integers(0, 3))
def test_created_at_equals_strftime(ns: int, again: int) -> None:
    moment = EPOCH + timedelta(microseconds=ns // 1000)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert created_at(ns) == expected
    # the same second again (the cached part) and the next one
    assert created_at(ns + again * 1000) == (moment + timedelta(microseconds=again)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )


def _outcome(function: Callable[..., object], *args: object) -> object:
    """What `function(*args)` returns, or the refusal it raises (status, error, message)."""
    try:
        return function(*args)
    except Refusal as exc:
        return (exc.status, exc.error, exc.message)


def reference_clean_path(target: str) -> tuple[str, str]:
    """``clean_path``'s character check as a loop over the characters (its definition)."""
    path = target.partition("?")[0]
    control = any(ord(c) < 0x21 or ord(c) == 0x7F for c in path)
    if path.startswith("/") and control and "#" not in target and "\\" not in path:
        raise Refusal(400, "bad_request", "invalid characters in the request path")
    return clean_path(target)


_PATH_CHARS = st.sampled_from(["/", "a", "?", "#", "\\", " ", "\x00", "\x1f", "\x7f", "\x80",
                               "é", "%2e", "%5C", ".", "\t", "\u2028", "~", "!"])  # fmt: skip


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(_PATH_CHARS, max_size=12).map("".join))
def test_clean_path_refuses_the_same_characters(tail: str) -> None:
    for target in ("/" + tail, tail):
        assert _outcome(clean_path, target) == _outcome(reference_clean_path, target)


_AUTHORITIES = st.sampled_from(["127.0.0.1:8080", "127.0.0.1", "Example.COM.", "example.com:80",
    "[::1]:80", "[::1]", "::1", "a:0", "a:99999", "a:+80", "a b", "", "a@b", "a:", "[::1]x",
    "xn--bcher-kva.example", "bücher.example", "a\tb"])  # fmt: skip


@settings(max_examples=examples(300), deadline=None)
@given(_AUTHORITIES, st.lists(_AUTHORITIES, max_size=2), st.booleans())
def test_a_host_header_equal_to_the_url_authority_is_checked_as_before(
    authority: str, hosts: list[str], upper: bool
) -> None:
    headers = [(b"HOST" if upper else b"Host", h.encode("utf-8")) for h in hosts]
    names = [k.lower() for k, _ in headers]
    head = Head("GET", f"http://{authority}/x".encode(), headers, "1.1", True, False, None, names)

    def reference() -> object:
        host, port = split_authority(authority.encode().decode("latin-1"), 80)
        check_host_header(head, host, port, "http")  # the full check, no shortcut
        return "http", host, port, "/x"

    if "@" in authority:
        return
    assert _outcome(target_of, head) == _outcome(reference)


_CREDENTIALS = st.sampled_from([None, b"", b"Basic " + base64.b64encode(b"Bot:k1"),
    b"Basic " + base64.b64encode(b"Bot:k2"), b"basic " + base64.b64encode(b"x:k1"),
    b"Bearer abc", b"Basic !!!", b"Basic " + base64.b64encode(b"nocolon")])  # fmt: skip


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(_CREDENTIALS, min_size=1, max_size=6))
def test_the_key_hash_per_connection_equals_proxy_key_hash(values: list[bytes | None]) -> None:
    conn = ClientConnection(None, None, Options())  # type: ignore[arg-type]
    for value in values:
        assert _outcome(conn.key_hash, value) == _outcome(proxy_key_hash, value)


_TOOLS = st.sampled_from(["search_issues", "delete_repo", "pay", "get_weather", "tools/list"])
_DECIDE_CONFIG = compile_snapshot(
    snapshot(
        [rule("mcp.*", "allow"), rule("mcp.tools.delete_repo", "require_approval"),
         rule("mcp.tools.search_issues", "deny"),
         rule("github.*", "allow")],
        connectors=[connector("mcp"), connector("github")],
    )
)  # fmt: skip


def _message(number: int, tool: str) -> dict[str, object]:
    if tool == "tools/list":
        return {"jsonrpc": "2.0", "id": number, "method": "tools/list"}
    params = {"name": tool, "arguments": {"amount": number}}
    return {"jsonrpc": "2.0", "id": number, "method": "tools/call", "params": params}


@settings(max_examples=examples(150), deadline=None)
@given(
    st.lists(_TOOLS, min_size=1, max_size=3),
    st.booleans(),
    st.none() | st.fixed_dictionaries({"content.secrets": st.booleans(), "x": st.text()}),
)
def test_the_recorded_input_is_built_from_the_context_it_was_decided_in(
    tools: list[str], batch: bool, content: dict[str, object] | None
) -> None:
    """``decide`` records the input with the context the engine evaluated the deciding
    action in, as it did when it built a second, equal context for it."""
    messages = [_message(i, t) for i, t in enumerate(tools)]
    body = json.dumps(messages if batch else messages[0]).encode()
    agent = _DECIDE_CONFIG.agent_for_key(key_hash(KEY))
    assert agent is not None
    routed = _DECIDE_CONFIG.route("mcp.example.com")
    flow = Flow(request_id="req_1", method="POST", scheme="https", host="mcp.example.com",
                port=443, path="/mcp", agent=agent, connector=routed, content=content)  # fmt: skip
    headers = (("Content-Type", "application/json"),)
    request = HttpRequest("POST", "https", "mcp.example.com", 443, "/mcp", "", headers, body, True)
    decision = decide(_DECIDE_CONFIG, flow, request)
    assert flow.parsed is not None
    assert flow.decision is decision
    now = datetime.fromtimestamp(flow.input["n"], UTC) if flow.input else None
    assert now is not None
    reference = EvaluationContext(
        agent=agent.name, mode="proxy", now=now, connector="mcp",
        enforcement_level=agent.level, risk=flow.parsed.risk, attributes=content or {},
    )  # fmt: skip
    # a batch: every other action it was decided on too (the batch's own, its members)
    whole = routed.impl.parse(request)
    also = [(a.spec, a.risk) for a in (whole, *whole.also)] if whole.also else []
    if also:
        also.remove(next(pair for pair in also if pair[0] == flow.parsed.spec))
    assert flow.input == record_input(flow.parsed.spec, reference, also=also)
