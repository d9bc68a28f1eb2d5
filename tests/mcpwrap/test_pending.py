"""The unanswered requests, by id, as a table: an answer is matched to one request only, a
request refused since it was forwarded has its late answer dropped once, and every request
still unanswered is answered once when the session ends (held ones too)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentfirewall_proxy.mcpwrap.pending import Pending


def _call(request_id: object) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call"}


@pytest.mark.parametrize(
    ("forwarded", "message", "refused"),
    [
        ([], _call(1), None),
        ([], _call(None), "a request id must be a string or an integer"),  # (docs/mcp.md)
        ([], {"jsonrpc": "2.0", "id": 1, "result": {}}, None),  # an answer, not a request
        ([], _call(2.0), "a request id must be a string or an integer"),
        ([], _call(True), "a request id must be a string or an integer"),
        ([], [_call(1), _call(1)], "request id 1 is already used by an unanswered request"),
        ([_call(1)], _call(1), "request id 1 is already used by an unanswered request"),
        ([_call(1)], _call("1"), None),  # `1` and `"1"` are different requests
    ],
)
def test_an_answer_could_be_told_apart_or_the_request_is_refused(
    forwarded: list[Any], message: Any, refused: str | None
) -> None:
    pending = Pending()
    for sent in forwarded:
        pending.sent(sent)
    assert pending.untrackable(message) == refused


def test_an_answer_is_matched_once_and_a_cut_requests_late_answer_dropped_once() -> None:
    pending = Pending()
    pending.sent([_call(1), {"jsonrpc": "2.0", "id": 2, "method": "Tools/List "}])
    answer = {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert pending.answered(answer) == "tools/list"
    assert pending.answered(answer) is None
    assert pending.cut_forwarded() == {"1": "tools/call"}
    assert pending.untrackable(_call(1)) is not None  # its answer may still come
    late = {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert pending.too_late(late)
    assert not pending.too_late(late)
    assert pending.untrackable(_call(1)) is None


@pytest.mark.anyio
async def test_every_unanswered_request_is_taken_once_and_its_hold_cancelled() -> None:
    pending = Pending()
    pending.sent(_call("a"))
    hold = asyncio.ensure_future(asyncio.sleep(60))
    pending.hold([_call(1), {"jsonrpc": "2.0", "method": "notifications/x"}, _call(2)], hold)
    assert pending.untrackable(_call(2)) is not None
    assert pending.take_all() == ["a", 1, 2]
    assert pending.take_all() == []
    assert pending.too_late({"jsonrpc": "2.0", "id": "a", "result": {}})  # (forwarded: cut off)
    await asyncio.gather(hold, return_exceptions=True)
    assert hold.cancelled()


@pytest.mark.anyio
async def test_a_cancel_for_a_held_request_ends_its_hold_and_frees_its_id() -> None:
    pending = Pending()
    hold = asyncio.ensure_future(asyncio.sleep(60))
    pending.hold(_call(7), hold)
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
    assert pending.cancel_hold({**cancel, "params": {"requestId": "7"}}) is None
    assert pending.cancel_hold(cancel) == (7, [])  # (no other request held with it)
    await asyncio.gather(hold, return_exceptions=True)
    assert pending.untrackable(_call(7)) is None
