"""A message over ``--max-message`` is skipped, never relayed, yet the request it is (from the
client) or answers (from the server) is answered with -32600 under its own id, read from the
message's first bytes: no request is left waiting for ever. An id that cannot be read, or
whose answer could not be told apart, gets what JSON-RPC prescribes (null) or nothing.

In process: the relay's two readers fed the bytes, a stand-in server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.gate import Gate, server_entry
from agentfirewall_proxy.mcpwrap.relay import Relay, RelayOptions
from tests.mcpwrap.inproc import StandInServer, in_process

pytestmark = pytest.mark.anyio

LIMIT = 1000
BIG = "x" * 5000


def _relay() -> tuple[Relay, list[Any], StandInServer]:
    gate = Gate("Bot", server_entry("tests", None))
    return in_process(gate, RelayOptions(limit=LIMIT, term_grace=0))


def _call(request_id: object) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "x"}}


def _line(message: object) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def test_a_server_answer_over_the_limit_answers_its_request_with_an_error() -> None:
    relay, to_client, server = _relay()
    relay.pending.sent([_call(1), _call("two"), _call(3), _call(4)])
    relay.pending.cut_forwarded()  # 1-4 refused since they were forwarded (a cut)...
    relay.pending.sent([_call(5), _call("six"), _call(7)])
    for data in (
        _line({"jsonrpc": "2.0", "id": 5, "result": {"text": BIG}}),
        _line({"jsonrpc": "2.0", "id": 1, "result": {"text": BIG}}),  # ...its answer dropped
        _line({"jsonrpc": "2.0", "result": {"text": BIG}, "id": 7}),  # (its id comes too late)
        b'{"jsonrpc":"2.0","id":"six","result":{"text":"' + BIG.encode() + b'"}}',  # (at EOF)
    ):
        server.stdout.feed_data(data)
    server.stdout.feed_eof()
    relay.closing = True  # (the server's end is not what this tests)
    await relay.from_server.pump()

    assert [(a["id"], a["error"]["code"]) for a in to_client] == [
        (5, rpc.INVALID),
        ("six", rpc.INVALID),
    ]
    assert "over the 1000-byte limit" in to_client[0]["error"]["message"]
    assert to_client[0]["error"]["data"]["error"] == "too_large"
    assert relay.pending.untrackable([_call(5), _call("six")]) is None  # answered: ids free
    assert relay.pending.untrackable(_call(7)) is not None  # (still awaited: id unread)


async def test_a_client_request_over_the_limit_is_answered_under_its_id() -> None:
    relay, to_client, server = _relay()
    relay.pending.sent(_call(9))  # an unanswered request already uses id 9
    reader = asyncio.StreamReader(limit=LIMIT)
    for message in (
        {**_call(8), "params": {"name": "x", "arguments": {"pad": BIG}}},
        {**_call(9), "params": {"name": "x", "arguments": {"pad": BIG}}},  # (id in use)
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"pad": BIG}, "id": 10},
    ):
        reader.feed_data(_line(message))
    reader.feed_eof()
    await relay.from_client.pump(reader)

    assert [(a["id"], a["error"]["code"]) for a in to_client] == [
        (8, rpc.INVALID),
        (None, rpc.INVALID),  # an answer under 9 would be taken for the unanswered one's
        (None, rpc.INVALID),  # its id is past the bytes read
    ]
    assert server.sent == []  # nothing of them reached the server
