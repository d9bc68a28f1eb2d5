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
import ssl
import traceback
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from agentfirewall_proxy.client import EOF, ClientConnection
from agentfirewall_proxy.exchange import exchange, resume_exchange
from agentfirewall_proxy.flow import Cut, Flow, Refusal, Tunnel
from agentfirewall_proxy.http1 import Head, ParseError, RequestParser
from agentfirewall_proxy.parking import Parked
from agentfirewall_proxy.pipeline import (
    KeyRefused,
    agent_for_key,
    check_host_header,
    normalize_host,
    proxy_key_hash,
    split_authority,
)
from agentfirewall_proxy.relay import relay
from agentfirewall_proxy.upstream import UpstreamError

if TYPE_CHECKING:
    from agentfirewall_proxy.approvals import HoldOutcome
    from agentfirewall_proxy.services import Services
    from agentfirewall_proxy.snapshot import AgentEntry, CompiledConfig

__all__ = ["ClientConnection", "Tunnel", "handle_client", "resume_parked"]


def handle_client(
    gateway: Services,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    port_agent: str | None = None,
) -> Coroutine[Any, Any, None]:
    """The coroutine serving one new client connection (the listener runs it as its task:
    no wrapping coroutine, whose frame every wake-up of the connection would resume)."""
    return _run(gateway, ClientConnection(reader, writer, gateway.options, port_agent), None)


async def resume_parked(gateway: Services, parked: Parked, outcome: HoldOutcome) -> None:
    """A parked request's approval settled: answer it, then serve the connection on."""
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
    conn = ClientConnection(reader, writer, gateway.options, parked.port_agent)
    await _run(gateway, conn, resume_exchange(gateway, conn, parked, outcome), parked.tunnel)


async def _run(
    gateway: Services,
    conn: ClientConnection,
    first: Coroutine[Any, Any, bool] | None,
    tunnel: Tunnel | None = None,
) -> None:
    """Serve `conn` (after finishing `first`, a resumed exchange) until it ends."""
    gateway.connections.add(conn)
    try:
        if first is None or (await first and conn.clean):
            await _serve(gateway, conn, tunnel)
        await conn.linger()  # a body left unread: let the client finish and read the answer
    except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
        pass
    except Exception:
        if conn.writer.transport.is_closing():
            return  # cut (kill switch, timeout) while writing: nothing left to report
        gateway.stats["errors"] += 1
        trace = traceback.format_exc(limit=8).rstrip()
        gateway.say(f"agentfirewall_proxy: connection failed: {trace}", "error")
    finally:
        gateway.connections.discard(conn)
        conn.deadline.cancel()
        if not conn.parked:
            conn.abort()  # a parked plain exchange keeps its own duplicate of the socket


async def _serve(gateway: Services, conn: ClientConnection, tunnel: Tunnel | None) -> None:
    """Requests on one connection (or inside one tunnel), one after another."""
    while True:
        event = await conn.next_event(head=True)
        if event is EOF:
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
            await _connect(gateway, conn, event)
            return
        keep_alive = await exchange(gateway, conn, event, tunnel)
        if isinstance(keep_alive, Parked) or not keep_alive or not conn.clean:
            return


def _agent(
    gateway: Services, conn: ClientConnection, config: CompiledConfig, key_hash: str
) -> AgentEntry:
    agent = agent_for_key(config, key_hash)
    gateway.check_port_agent(conn, agent)
    return agent


async def _connect(gateway: Services, conn: ClientConnection, head: Head) -> None:
    """Authenticate and route a CONNECT, then intercept, tunnel blind, or refuse."""
    upgrade = conn.pending_upgrade()
    flow = Flow(request_id=gateway.new_request_id(), method="CONNECT", scheme="https")
    key_hash = ""
    try:
        config = gateway.require_config()
        flow.host, flow.port = split_authority(head.target.decode("latin-1"), 443)
        key_hash = proxy_key_hash(head.get(b"proxy-authorization"))
        try:
            flow.agent = _agent(gateway, conn, config, key_hash)
        except KeyRefused:  # perhaps made a moment ago: look once more
            config = await gateway.look_again()
            flow.agent = _agent(gateway, conn, config, key_hash)
        if upgrade is not None and upgrade.tail:
            raise Refusal(400, "bad_request", "data sent before the CONNECT was answered")
        if gateway.is_passthrough(flow.host):
            await _passthrough(gateway, conn, flow)
            return
        flow.connector = config.route(flow.host)
        gateway.check_kill_switch(flow)
        if flow.connector is None:
            raise Refusal(403, "no_connector", f"no connector for `{flow.host}`: deny-all default")
    except Refusal as exc:
        if exc.status != 403 or flow.agent is None or gateway.is_passthrough(flow.host):
            flow.status, flow.reason = exc.status, exc.message
            gateway.record(flow)
            await _refuse_connect(gateway, conn, flow, exc)
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
    await _serve(gateway, conn, Tunnel(flow.host, flow.port, flow.agent, key_hash, flow.connector))


async def _refuse_connect(
    gateway: Services, conn: ClientConnection, flow: Flow, exc: Refusal
) -> None:
    """Refuse the CONNECT itself (its connection closes)."""
    await conn.refuse(exc.status, gateway.refusal_body(flow, exc), close=True,
                      kill_switch=exc.error == "kill_switch")  # fmt: skip


async def _passthrough(gateway: Services, conn: ClientConnection, flow: Flow) -> None:
    """A blind tunnel for a passthrough host: no interception, decided on the host only.

    In flight from the moment it begins to open (``flow.Cut``): cut while it opens (the kill
    switch, its agent suspended, the control plane lost), the CONNECT is refused at once as
    ``check_forward`` refuses it, and nothing reaches the host; cut once open, the tunnel is
    aborted both ways (its 200 went out: nothing else can be said)."""
    gateway.check_kill_switch(flow)
    cut = flow.cutter = Cut(asyncio.current_task())
    gateway.begin(flow, conn)
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await _tunnel_opened(gateway, flow, cut)
        conn.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        flow.status, flow.reason = 200, "passthrough"
        await relay(conn.reader, conn.writer, reader, writer, flow)
    except Refusal as exc:  # (before its 200)
        cut.answering()
        flow.status, flow.reason = exc.status, exc.message
        await _refuse_connect(gateway, conn, flow, exc)
    except asyncio.CancelledError:
        if not cut.taken():
            raise  # not the cut's: the gateway stopping
        conn.abort()
    finally:
        if writer is not None:
            writer.transport.abort()
        if flow.reason == "passthrough" and flow.killed:  # (opened, then cut)
            flow.reason = "kill_switch_active: the passthrough tunnel was cut by the kill switch"
        elif flow.reason == "passthrough" and flow.cut:
            flow.reason = flow.cut.replace("the exchange", "the passthrough tunnel", 1)
        gateway.end(flow)


async def _tunnel_opened(
    gateway: Services, flow: Flow, cut: Cut
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The passthrough tunnel's upstream connection, open; Refusal when it cannot be had
    (answered at the CONNECT, not a connection dropped) or when the flow was cut."""
    try:
        reader, writer = await gateway.pool.open_tunnel(flow.host, flow.port)
    except asyncio.CancelledError:
        if not cut.taken():
            raise  # not the cut's: the gateway stopping
        gateway.check_forward(flow)  # (a flow cut never passes it)
        raise  # (unreached)
    except UpstreamError as exc:
        raise Refusal(exc.status, "upstream_error", str(exc)) from None
    gateway.attach(flow, writer.transport)
    try:
        gateway.check_forward(flow)  # a kill switch may have come while it opened
    except Refusal:
        writer.transport.abort()
        raise
    return reader, writer


__all__ += ["EOF", "check_host_header", "normalize_host", "relay"]
