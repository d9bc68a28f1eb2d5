"""A cut session answers each unanswered request once: every forwarded request is marked cut
off before the first refusal is written, so the server's answer to one that comes while the
refusals are written is dropped (never a second answer for its id), and its id is free again.

In process: the relay with a stand-in server stdin, the server's answer fed in during the
first write to the client (when a slow client makes the relay wait)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.gate import Gate, server_entry
from agentfirewall_proxy.mcpwrap.relay import Relay
from tests.mcpwrap.inproc import in_process

pytestmark = pytest.mark.anyio


def _call(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "x"}}


CUTS: dict[str, Callable[[Relay], Coroutine[Any, Any, None]]] = {
    "agent_inactive": lambda relay: relay.cut_unanswered("suspended", "agent_inactive", "inactive"),
    "kill_switch": lambda relay: relay.cut("kill switch `ks`"),
}


@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
async def test_an_answer_during_the_cut_is_dropped_not_a_second_answer(
    cut: Callable[[Relay], Coroutine[Any, Any, None]],
) -> None:
    relay, _, _ = in_process(Gate("Bot", server_entry("tests", None)))
    relay.pending.sent([_call(1), _call(2), _call(3)])
    to_client: list[Any] = []

    async def write(data: bytes) -> None:
        to_client.append(json.loads(data))
        if len(to_client) == 1:  # the server answers 2 and 3 while the client is slow
            await relay.from_server.receive(b'{"jsonrpc":"2.0","id":2,"result":{}}')
            await relay.from_server.receive(b'[{"jsonrpc":"2.0","id":3,"result":{}}]')

    relay.write = write  # type: ignore[method-assign]
    await cut(relay)
    answers = [m for out in to_client for m in (out if isinstance(out, list) else [out])]
    assert sorted(m["id"] for m in answers) == [1, 2, 3]  # one answer each
    assert all(m["error"]["code"] == rpc.DENIED for m in answers)
    assert relay.pending.untrackable(_call(1)) is not None  # its answer may still come
    assert relay.pending.untrackable([_call(2), _call(3)]) is None  # theirs came: free again
