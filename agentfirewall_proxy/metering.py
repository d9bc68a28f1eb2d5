"""The LLM usage a token or cost budget settles from (``budgets.py``), for both ways a
response goes back: relayed as it comes (``respond.py``) or checked by content rules
(``guarded.py``). Each feeds the same :class:`~agentfirewall_proxy.llmusage.UsageReader`
the body's decoded bytes, and :func:`metered` sets ``flow.usage`` and ``flow.model``
from it once the response is done, however it ended.

An agent that leaves before the end (hangs up, or stops reading until the write times
out) does not end the count: the rest of the body is read for its usage only
(:func:`read_on`: at most 64 MiB, each read waiting at most the io timeout, all of it at
most the upstream timeout), then the call settles. When the usage still cannot be read
(the body broke off, a JSON answer is not JSON, a bound was hit), the call settles at the
most it may have used (``llmusage.estimate``: the request's body bytes as input tokens,
its ``max_tokens`` or the cap as output) and its traffic record says ``usage estimated:
…`` (fail closed: never counted as free).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from agentfirewall_proxy.budgets import count_most
from agentfirewall_proxy.http1 import END
from agentfirewall_proxy.llmusage import UsageReader
from agentfirewall_proxy.scrub import ScrubError
from agentfirewall_proxy.upstream import EOF

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentfirewall_proxy.client import ClientConnection
    from agentfirewall_proxy.flow import Flow
    from agentfirewall_proxy.http1 import Head, ResponseHead
    from agentfirewall_proxy.options import Options
    from agentfirewall_proxy.upstream import UpstreamConnection

__all__ = ["metered", "read_on", "usage_reader"]

#: What is read on for the usage after the agent left, at most.
READ_ON_BYTES = 64 * 1024 * 1024


def usage_reader(flow: Flow, head: Head, response: ResponseHead) -> UsageReader | None:
    """A reader of the response's usage when a token or cost budget settles from it: an
    answer below 400 with a body (a refusal releases the reservation)."""
    if not flow.llm_budget or flow.reservation is None or response.status >= 400:
        return None
    if head.method == "HEAD" or response.status in (101, 204, 304):
        return None
    ctype = (response.get(b"content-type") or b"").lower()
    return UsageReader(stream=b"event-stream" in ctype, json_body=b"json" in ctype)


async def read_on(
    conn: ClientConnection,
    up: UpstreamConnection,
    flow: Flow,
    body: tuple[Callable[[bytes], object], Callable[[], object]],
    close_delimited: bool,
    options: Options,
) -> bool:
    """The agent left mid-body: its connection is closed, and the rest of the body is read
    for the usage only (bounded: the module docstring), each piece given to `body`'s
    feed, its end to its finish; then the upstream connection is closed too. False: the
    client connection is not reused."""
    feed, finish = body
    conn.abort()
    read = 0
    with contextlib.suppress(TimeoutError, OSError, ScrubError):
        async with asyncio.timeout(options.upstream_timeout):
            while read <= READ_ON_BYTES:
                event = await up.next_event(options.io_timeout)
                if isinstance(event, bytes):
                    read += len(event)
                    flow.bytes_in += len(event)
                    feed(event)
                    continue
                if event is END or (event is EOF and close_delimited):
                    finish()
                break
    up.abort()
    return False


def metered(flow: Flow, reader: UsageReader) -> None:
    """``flow.usage`` and ``flow.model`` as `reader` read them (``{}``: the answer was read
    whole and named none); the most the call may have used when it could not be read
    (said in the flow's reason: ``budgets.count_most``)."""
    usage, model = reader.finish()
    why = reader.unread()
    if why:
        count_most(flow, why, usage, model)
        return
    flow.usage, flow.model = usage or {}, model
