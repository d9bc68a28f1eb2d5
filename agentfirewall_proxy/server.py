"""The gateway's listening side: client connections, CONNECT tunnels, TLS interception.

With ``upstream.py`` (outbound connections) and ``exchange.py`` (one forwarded exchange),
this is all of the socket code. One coroutine per client connection, no thread; requests on
a connection (pipelined or not) are handled strictly one after another.

A connection starts in plain HTTP (absolute-form requests, each carrying the agent's
``Proxy-Authorization``). ``CONNECT host:port`` is authenticated and routed before any TLS:
a passthrough host is tunnelled blind; any other host is intercepted with a leaf
certificate for that host (the SNI must name it), and the requests inside the tunnel are
bound to the CONNECT's agent and host. A tunnel the gateway would refuse (kill switch, no
connector for the host) is intercepted too, so the agent reads the same 403 JSON and
headers inside it as over plain HTTP; only what cannot be intercepted (bad target, proxy
auth, a passthrough host) is refused at the CONNECT itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentfirewall_proxy.http1 import END, Head, ParseError, RequestParser, Upgrade
from agentfirewall_proxy.parking import Parked, streams_gone
from agentfirewall_proxy.pipeline import (
    Flow,
    Refusal,
    agent_for_key,
    check_host_header,
    normalize_host,
    proxy_key_hash,
    refusal,
    split_authority,
)

if TYPE_CHECKING:
    from agentfirewall_proxy.approvals import HoldOutcome
    from agentfirewall_proxy.gateway import Gateway
    from agentfirewall_proxy.snapshot import AgentEntry, ConnectorEntry

__all__ = ["ClientConnection", "Tunnel", "handle_client", "resume_parked"]

_WRITE_HIGH = 256 * 1024


class _Eof:
    __slots__ = ()


EOF = _Eof()


@dataclass(frozen=True, slots=True)
class Tunnel:
    """What a CONNECT fixed for every request inside it."""

    host: str
    port: int
    agent: AgentEntry
    #: The SHA-256 of the key the CONNECT carried: each request inside re-reads its agent
    #: from the current snapshot (a suspension or level change reaches open tunnels).
    key_hash: str
    #: None for a tunnel opened only to answer its requests with the gateway's refusal.
    connector: ConnectorEntry | None


class ClientConnection:
    """One client socket: a pull parser over its bytes, and guarded writes."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gateway: Gateway,
        port_agent: str | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.gateway = gateway
        self.options = gateway.options
        self.parser = RequestParser(gateway.options.max_head_bytes)
        self.port_agent = port_agent
        #: False once a request body was left unread: the connection must then close.
        self.clean = True
        #: True while the current request's body has not been read to its end.
        self.body_pending = False
        #: True once its request is parked with the connection's streams (not closed).
        self.parked = False
        #: The request asked ``Expect: 100-continue`` and its body was not read yet.
        self.continue_due = False

    async def next_event(self, *, head: bool) -> object:
        """The next parser event; reading under the slowloris / idle / io deadlines."""
        events = self.parser.events
        if events:
            if not head:
                self.continue_due = False  # the client sends its body without waiting
            return events.popleft()
        if not head and self.continue_due:
            self.continue_due = False
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not events:
            if not head:
                limit = self.options.io_timeout
            elif self.parser.in_head:
                limit = self.options.header_timeout - (loop.time() - started)
            else:
                limit = self.options.idle_timeout
            try:
                async with asyncio.timeout(max(limit, 0.001)):
                    data = await self.reader.read(65536)
            except TimeoutError:
                return ParseError(408, "timed out reading the request")
            except (ConnectionError, OSError):
                return EOF
            if not data:
                return EOF
            if head and not self.parser.in_head and not events:
                started = loop.time()
            self.parser.feed(data)
        return events.popleft()

    def pending_upgrade(self) -> Upgrade | None:
        """After a CONNECT/Upgrade head and its END, the tail the parser handed back."""
        events = self.parser.events
        if events and events[0] is END:
            events.popleft()
        if events and isinstance(events[0], Upgrade):
            found = events.popleft()
            assert isinstance(found, Upgrade)
            return found
        return None

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def flush(self) -> None:
        """Wait for the client to read when its buffer is full (a bounded wait)."""
        if self.writer.transport.get_write_buffer_size() > _WRITE_HIGH:
            async with asyncio.timeout(self.options.io_timeout):
                await self.writer.drain()

    async def refuse(self, status: int, body: dict[str, object], **kw: bool) -> None:
        self.write(refusal(status, body, **kw))
        with contextlib.suppress(Exception):
            await self.flush()

    def gone(self) -> bool:
        """The client closed or lost its connection (checked while a request is held)."""
        return streams_gone(self.reader, self.writer)

    def abort(self) -> None:
        self.writer.transport.abort()


async def handle_client(
    gateway: Gateway,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    port_agent: str | None = None,
) -> None:
    await _run(ClientConnection(reader, writer, gateway, port_agent), None)


async def resume_parked(gateway: Gateway, parked: Parked, outcome: HoldOutcome) -> None:
    """A parked request's approval settled: answer it, then serve the connection on."""
    from agentfirewall_proxy.exchange import resume_exchange

    flow = parked.flow
    try:
        if outcome == "gone":
            raise ConnectionResetError
        reader, writer = await parked.streams()
    except OSError:
        parked.close()
        flow.status, flow.reason = 499, "the client left while its request was held"
        gateway.end(flow)
        return
    conn = ClientConnection(reader, writer, gateway, parked.port_agent)
    await _run(conn, resume_exchange(gateway, conn, parked, outcome), parked.tunnel)


async def _run(
    conn: ClientConnection,
    first: Coroutine[Any, Any, bool] | None,
    tunnel: Tunnel | None = None,
) -> None:
    """Serve `conn` (after finishing `first`, a resumed exchange) until it ends."""
    gateway = conn.gateway
    gateway.connections.add(conn)
    try:
        if first is None or (await first and conn.clean):
            await _serve(conn, tunnel)
    except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
        pass
    except Exception:
        if conn.writer.transport.is_closing():
            return  # cut (kill switch, timeout) while writing: nothing left to report
        gateway.stats["errors"] += 1
        traceback.print_exc(limit=8, file=sys.stderr)
    finally:
        gateway.connections.discard(conn)
        if not conn.parked:
            conn.abort()  # a parked plain exchange keeps its own duplicate of the socket


async def _serve(conn: ClientConnection, tunnel: Tunnel | None) -> None:
    """Requests on one connection (or inside one tunnel), one after another."""
    gateway = conn.gateway
    while True:
        event = await conn.next_event(head=True)
        if isinstance(event, _Eof):
            return
        if isinstance(event, ParseError):
            await conn.refuse(event.status, {"error": "bad_request", "reason": event.message},
                              close=True)  # fmt: skip
            return
        if not isinstance(event, Head):
            return
        if event.method == "CONNECT":
            if tunnel is not None:
                await conn.refuse(400, {"error": "bad_request", "reason": "nested CONNECT"},
                                  close=True)  # fmt: skip
                return
            await _connect(conn, event)
            return
        keep_alive = await gateway.exchange(conn, event, tunnel)
        if isinstance(keep_alive, Parked) or not keep_alive or not conn.clean:
            return


async def _connect(conn: ClientConnection, head: Head) -> None:
    """Authenticate and route a CONNECT, then intercept, tunnel blind, or refuse."""
    gateway = conn.gateway
    upgrade = conn.pending_upgrade()
    flow = Flow(request_id=gateway.new_request_id(), method="CONNECT", scheme="https")
    key_hash = ""
    try:
        config = gateway.require_config()
        flow.host, flow.port = split_authority(head.target.decode("latin-1"), 443)
        key_hash = proxy_key_hash(head.get(b"proxy-authorization"))
        flow.agent = agent_for_key(config, key_hash)
        gateway.check_port_agent(conn, flow.agent)
        if upgrade is not None and upgrade.tail:
            raise Refusal(400, "bad_request", "data sent before the CONNECT was answered")
        if gateway.is_passthrough(flow.host):
            await _passthrough(conn, flow)
            return
        flow.connector = config.route(flow.host)
        gateway.check_kill_switch(flow)
        if flow.connector is None:
            raise Refusal(403, "no_connector", f"no connector for `{flow.host}`: deny-all default")
    except Refusal as exc:
        if exc.status != 403 or flow.agent is None or gateway.is_passthrough(flow.host):
            flow.status, flow.reason = exc.status, exc.message
            gateway.record(flow)
            await conn.refuse(exc.status, gateway.refusal_body(flow, exc), close=True,
                              kill_switch=exc.error == "kill_switch")  # fmt: skip
            return
        # kill switch or no connector: refused inside the tunnel, request by request, by
        # the same checks plain HTTP runs (nothing is ever forwarded from such a tunnel)
        flow.status, flow.reason = exc.status, exc.message
    conn.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    await conn.flush()
    context = gateway.certs.context_for(flow.host)
    try:
        await conn.writer.start_tls(context, ssl_handshake_timeout=conn.options.header_timeout)
    except (OSError, TimeoutError):
        if flow.status:  # a refused tunnel whose client gave up on TLS: keep its record
            gateway.record(flow)
        raise
    conn.parser = RequestParser(conn.options.max_head_bytes)
    assert flow.agent is not None
    await _serve(conn, Tunnel(flow.host, flow.port, flow.agent, key_hash, flow.connector))


async def _passthrough(conn: ClientConnection, flow: Flow) -> None:
    """A blind tunnel for a passthrough host: no interception, decided on the host only."""
    gateway = conn.gateway
    gateway.check_kill_switch(flow)
    reader, writer = await gateway.pool.open_tunnel(flow.host, flow.port)
    conn.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    flow.status, flow.reason = 200, "passthrough"
    try:
        await relay(conn.reader, conn.writer, reader, writer, flow)
    finally:
        writer.transport.abort()
        gateway.record(flow)


async def relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    flow: Flow,
) -> None:
    """Copy bytes both ways until either side closes (tunnels and WebSockets)."""

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
        while data := await src.read(65536):
            if upward:
                flow.bytes_out += len(data)
            else:
                flow.bytes_in += len(data)
            dst.write(data)
            await dst.drain()
        with contextlib.suppress(OSError, RuntimeError):
            dst.write_eof()

    tasks = [
        asyncio.ensure_future(pump(client_reader, up_writer, True)),
        asyncio.ensure_future(pump(up_reader, client_writer, False)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ += ["EOF", "check_host_header", "normalize_host", "relay"]
