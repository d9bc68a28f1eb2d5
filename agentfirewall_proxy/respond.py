"""The response side of an exchange: relayed back to the agent, scrubbed of secrets.

Both directions are re-framed by the gateway: a response keeps its ``Content-Length``
(scrubbing replaces a secret by a filler of the same length) or is sent in fresh chunks.
Server-sent events pass chunk by chunk as they arrive. When the connector injects a
credential, every form of it is replaced in the status line, headers and body
(``scrub.py``), in WebSocket frames (``wsframes.py``) and in any other upgraded stream; a
body the gateway cannot search (a compression it cannot decode) is refused or cut. An
upgrade a token or cost budget covers is refused (403 ``budget_unmetered``) once the
upstream agrees to it, before anything is relayed: its usage could not be measured. The
LLM usage a token or cost budget settles from is read from the body on either way back
(``metering.py``), read on when the agent leaves before the end, estimated when it cannot
be read.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from agentfirewall_proxy.budgets import refuse_unmetered
from agentfirewall_proxy.flow import scrubber_of
from agentfirewall_proxy.guarded import body_run, guarded_respond, guards_response
from agentfirewall_proxy.http1 import (
    END,
    Head,
    ParseError,
    ResponseHead,
    Upgrade,
    chunk,
    serialize_response_head,
)
from agentfirewall_proxy.llmusage import UsageReader
from agentfirewall_proxy.metering import metered, read_on, usage_reader
from agentfirewall_proxy.pipeline import Flow, Refusal
from agentfirewall_proxy.relay import relay
from agentfirewall_proxy.scrub import (
    ScrubbedBody,
    Scrubber,
    ScrubError,
    ScrubStream,
    body_decoder,
)
from agentfirewall_proxy.upstream import EOF, UpstreamConnection, UpstreamError
from agentfirewall_proxy.wsframes import FrameScrubber

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentfirewall_proxy.client import ClientConnection
    from agentfirewall_proxy.services import Services

__all__ = ["respond", "response_head"]

_DROP_DOWN = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
     b"content-length", b"trailer", b"upgrade", b"te"}
)  # fmt: skip


async def response_head(gateway: Services, up: UpstreamConnection) -> ResponseHead:
    timeout = gateway.options.upstream_timeout
    heard = False  # any answer, an interim one or a part of a head
    while True:
        try:
            event = await up.next_event(timeout)
        except TimeoutError:
            raise UpstreamError(504, "the upstream did not answer in time") from None
        except OSError:
            event = EOF
        if event is EOF:
            raise UpstreamError(502, "the upstream closed the connection",
                                unanswered=not heard and not up.parser.in_head)  # fmt: skip
        if isinstance(event, ParseError):
            raise UpstreamError(502, event.message)
        heard = True
        if isinstance(event, ResponseHead):
            if 100 <= event.status < 200 and event.status != 101:
                continue  # interim answers are not relayed (END follows, skipped below)
            return event


async def respond(
    gateway: Services,
    conn: ClientConnection,
    head: Head,
    flow: Flow,
    up: UpstreamConnection,
    response: ResponseHead,
    upgrade: Upgrade | None,
) -> bool:
    """Relay the response; True when the client connection may carry another request."""
    usage = usage_reader(flow, head, response)
    try:
        flow.status = response.status
        if response.status == 101 and upgrade is None:  # the gateway asked for no switch
            raise UpstreamError(502, "the upstream switched protocols (101) unasked: what would "
                                "follow on the connection could not be decided")  # fmt: skip
        scrubber = scrubber_of(flow)
        no_body = head.method == "HEAD" or response.status in (101, 204, 304)
        if not no_body and guards_response(gateway, flow):  # content rules read the response
            if scrubber is not None and response.status == 206:
                raise UpstreamError(502, "a partial response (206) cannot be checked")
            return await guarded_respond(gateway, conn, head, flow, up, response, usage)
        headers, reason = response.headers, response.reason
        if scrubber is not None:  # the head never carries the injected credential back
            if response.status == 206:  # no range was asked: a piece could be half a secret
                raise UpstreamError(502, "a partial response (206) cannot be checked for the "
                                    "injected credential")  # fmt: skip
            reason, headers, found = scrubber.response_head(reason, headers)
            flow.scrubbed += found
        if response.status == 101 and upgrade is not None:
            if flow.llm_budget:  # no `usage` to settle from: refused before a frame passes
                refuse_unmetered(gateway.require_config().budgets, flow)
            relayed = _upgraded_scrubber(scrubber, headers)
            conn.write(serialize_response_head(101, reason, headers))
            if upgrade.tail:
                up.writer.write(upgrade.tail)
            await _relay_upgraded(conn, up, flow, relayed)
            up.abort()
            return False
        no_body = head.method == "HEAD" or response.status in (204, 304)
        # (the scrubber returns the very list it was given when it found nothing)
        names = response.names if headers is response.headers else [k.lower() for k, _ in headers]
        headers = [pair for pair, low in zip(headers, names, strict=True) if low not in _DROP_DOWN]
        body = None
        if scrubber is not None and not no_body:
            decoder = None
            if b"content-encoding" in names:  # (without one, body_decoder changes nothing)
                try:
                    headers, decoder = body_decoder(headers)
                except ScrubError as exc:
                    raise UpstreamError(502, str(exc)) from None
            body = ScrubbedBody(scrubber.stream(), decoder)
        length = None if body is not None and body.decoder is not None else response.content_length
        close_delimited = not no_body and response.content_length is None and not response.chunked
        if length is not None and (not no_body or head.method == "HEAD"):
            headers.append((b"Content-Length", b"%d" % length))
        chunk_out = not no_body and length is None and head.version == "1.1"
        if chunk_out:
            headers.append((b"Transfer-Encoding", b"chunked"))
        keep = head.keep_alive and conn.clean and (no_body or chunk_out or length is not None)
        if not keep:
            headers.append((b"Connection", b"close"))
        first = serialize_response_head(response.status, reason, headers)
        if no_body or not up.parser.events:
            conn.write(first)  # now: a stream's first bytes may be far off
            first = b""
        reusable = response.keep_alive
        if no_body:
            if head.method == "HEAD":
                up.reset_parser()
            elif await up.next_event(gateway.options.io_timeout) is not END:
                reusable = False
        else:
            framing = (chunk_out, close_delimited)
            try:
                ended = await _stream_response_body(gateway, conn, up, flow, framing, first, body,
                                                    usage)  # fmt: skip
            except (OSError, TimeoutError):  # the agent left (the upstream's end returns None)
                if usage is None:
                    raise
                return await read_on(conn, up, flow, _usage_feed(usage, body), close_delimited,
                                     gateway.options)  # fmt: skip
            if ended is None:
                conn.abort()
                up.abort()
                return False
            reusable = ended and response.keep_alive
        await conn.flush()
        if reusable:
            gateway.pool.release(up)
        else:
            up.abort()
        return keep
    finally:  # however it ended (the budget settles from it next: ``Gateway.end``)
        if usage is not None:
            metered(flow, usage)


def _upgraded_scrubber(
    scrubber: Scrubber | None, headers: list[tuple[bytes, bytes]]
) -> FrameScrubber | ScrubStream | None:
    """How an upgraded stream is scrubbed: by WebSocket frame, as raw bytes, or not at all."""
    if scrubber is None:
        return None
    names = {k.lower(): v.strip().lower() for k, v in headers}
    if b"sec-websocket-extensions" in names:
        raise UpstreamError(502, "the upstream negotiated a websocket extension not asked for")
    if names.get(b"upgrade") == b"websocket":
        return FrameScrubber(scrubber)
    return scrubber.stream()  # another protocol: same-length replacement in the raw bytes


async def _relay_upgraded(
    conn: ClientConnection,
    up: UpstreamConnection,
    flow: Flow,
    scrubbed: FrameScrubber | ScrubStream | None,
) -> None:
    """Both directions of an upgraded connection; the upstream's side scrubbed if need be."""
    early = b"".join(e.tail for e in up.parser.events if isinstance(e, Upgrade))
    up.parser.events.clear()
    if scrubbed is None:
        if early:
            conn.write(early)
        await relay(conn.reader, conn.writer, up.reader, up.writer, flow)
        return

    async def downward(data: bytes) -> None:
        while True:
            flow.bytes_in += len(data)
            if out := scrubbed.feed(data):
                conn.writer.write(out)
                await conn.writer.drain()
            data = await up.reader.read(65536)
            if not data:
                break
        if isinstance(scrubbed, ScrubStream) and (rest := scrubbed.finish()):
            conn.writer.write(rest)
        with contextlib.suppress(OSError, RuntimeError):
            conn.writer.write_eof()

    async def upward() -> None:
        while data := await conn.reader.read(65536):
            flow.bytes_out += len(data)
            up.writer.write(data)
            await up.writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            up.writer.write_eof()

    down, up_task = asyncio.ensure_future(downward(early)), asyncio.ensure_future(upward())
    tasks = [down, up_task]
    try:  # until the upstream is done (a client's half-close is passed on, not the end)
        while not down.done():
            await asyncio.wait([down, up_task] if not up_task.done() else [down],
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if up_task.done() and not up_task.cancelled() and up_task.exception() is not None:
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        flow.scrubbed += scrubbed.count


def _usage_feed(
    usage: UsageReader, body: ScrubbedBody | None
) -> tuple[Callable[[bytes], None], Callable[[], None]]:
    """What gives `usage` the body's decoded bytes (read on after the agent left), and
    what ends it."""

    def feed(data: bytes) -> None:
        usage.feed(body.feed(data) if body is not None else data)

    def finish() -> None:
        if body is not None:
            usage.feed(body.finish())
        usage.end()

    return feed, finish


async def _stream_response_body(
    gateway: Services,
    conn: ClientConnection,
    up: UpstreamConnection,
    flow: Flow,
    framing: tuple[bool, bool],
    pending: bytes,
    body: ScrubbedBody | None = None,
    usage: UsageReader | None = None,
) -> bool | None:
    """Relay the body as it arrives: True when the upstream may be reused, None if broken
    (the upstream stopped sending or failed; an error writing to the agent is raised).

    What the upstream already sent is written in one go (with the head, in `pending`, when
    the body came with it), its body pieces scrubbed in one feed; whenever nothing more is
    at hand, what is pending goes out.
    With a credential injected, `body` decodes and scrubs it on the way (an undecodable
    body is cut: None; :class:`Refusal` 502 while nothing was written yet).
    """
    chunk_out, close_delimited = framing
    timeout = gateway.options.io_timeout
    events = up.parser.events
    out = [pending] if pending else []  # (joined once written: no copy per piece)
    unsent = bool(pending)  # the head is in `out` until written
    try:
        while True:
            if out and not events:
                conn.write(b"".join(out))
                out, unsent = [], False
                await conn.flush()
                await asyncio.sleep(0)  # (the next read may not wait: let others run first)
            # what is parsed already is taken as `up.next_event` would, without a coroutine
            try:
                event = events.popleft() if events else await up.next_event(timeout)
            except (TimeoutError, OSError):
                return None
            if isinstance(event, bytes):
                event = body_run(event, events)  # (one feed for all parsed: 1-byte chunks)
                flow.bytes_in += len(event)
                if body is not None:
                    event = body.feed(event)
                if usage is not None:
                    usage.feed(event)
                if event:
                    out.append(chunk(event) if chunk_out else event)
                continue
            if event is END or (event is EOF and close_delimited):
                if body is not None and (rest := body.finish()):
                    out.append(chunk(rest) if chunk_out else rest)
                    if usage is not None:
                        usage.feed(rest)
                if usage is not None:
                    usage.end()
                if chunk_out:
                    out.append(b"0\r\n\r\n")
                conn.write(b"".join(out))
                return event is END
            return None
    except ScrubError as exc:
        flow.reason = str(exc)
        if unsent:  # nothing went out yet: a 502 says why
            raise Refusal(502, "upstream_error", str(exc)) from None
        return None
    finally:
        if body is not None:
            flow.scrubbed += body.count
