"""One request/response exchange: decide, then hold, refuse or forward and stream back.

A connector that reads bodies gets the whole body up to the inspection limit
(``Options.body_inspect_limit``, 16 MiB) before deciding; any connector gets a body a
method-override middleware would read (``base.override_readable``), so that its
``_method`` is refused (``base.request_method``; past the limit it is never allowed,
``pipeline.decide``). A held request's body is read
whole (up to that limit) so its approval binds it (``pipeline.bind_request``). The rest of
a larger body is streamed. Both directions are re-framed by the gateway (``Content-Length``
or fresh chunks), so what the upstream sees is exactly what was decided on. The response side
(relay, scrubbing of injected secrets) is ``respond.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from agentfirewall.connectors.base import override_readable
from agentfirewall_proxy.approvals import HoldOutcome
from agentfirewall_proxy.flow import Cut, scrubber_of
from agentfirewall_proxy.guard import note_findings
from agentfirewall_proxy.guarded import guards_response, redact_request
from agentfirewall_proxy.http1 import (
    END,
    Head,
    Upgrade,
    serialize_request_head,
)
from agentfirewall_proxy.injection import inject, prepare, signed_body
from agentfirewall_proxy.parking import Parked, park
from agentfirewall_proxy.pipeline import (
    Flow,
    KeyRefused,
    Refusal,
    agent_for_key,
    bind_request,
    check_host_header,
    check_upgrade,
    clean_path,
    credential_target,
    decide,
    http_request,
    scan_path,
    serving,
    target_of,
    upstream_headers,
)
from agentfirewall_proxy.respond import respond, response_head
from agentfirewall_proxy.upstream import UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from agentfirewall.decisions import Decision
    from agentfirewall_proxy.client import ClientConnection
    from agentfirewall_proxy.flow import Tunnel
    from agentfirewall_proxy.services import Services
    from agentfirewall_proxy.snapshot import CompiledConfig

__all__ = ["exchange", "resume_exchange"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: What the answer to a request cut after it was sent adds (``_upstream_failed``).
_SENT_BEFORE_CUT = "; its request was sent before the cut: the upstream may have acted on it"
_T = TypeVar("_T")


async def exchange(
    gateway: Services, conn: ClientConnection, head: Head, tunnel: Tunnel | None
) -> bool | Parked:
    """Handle one request on `conn`; True when the connection may carry another.

    A :class:`Parked` answer means the request is held with its socket parked: the
    connection's coroutine ends, and :func:`resume_exchange` finishes the request later.
    """
    flow = Flow(request_id=gateway.new_request_id(), method=head.method)
    # this task serves the flow: once it is in flight (`begin`), a cut ends whatever it
    # waits on (`_answer_cut` answers)
    cut = flow.cutter = Cut(asyncio.current_task(conn.deadline.loop()))
    if gateway.tracer is not None:
        gateway.tracer.start(flow, head)
    upgrade = None
    parked = None
    conn.body_pending = True
    expect = head.get(b"expect") if head.has_body and head.version == "1.1" else None
    conn.continue_due = expect is not None and expect.lower() == b"100-continue"
    try:
        try:
            config = _identify(gateway, conn, flow, head, tunnel)
        except KeyRefused:
            if tunnel is not None:  # its key was let in at the CONNECT: revoked since
                raise
            await gateway.look_again()  # perhaps made a moment ago: look once more
            config = _identify(gateway, conn, flow, head, tunnel)
        if config.budget_fields:  # a policy reads budget.<name>.*
            flow.budget_view = await gateway.budgets.attributes()
        upgrade = _upgrade(conn, head) if b"upgrade" in head.names else None
        limit = gateway.options.body_inspect_limit
        if conn.continue_due:
            _deny_before_body(gateway, flow, head, limit)
        if upgrade is None:
            prefix, complete = await _body_prefix(gateway, conn, head, flow, limit)
        else:
            prefix, complete = b"", True  # an upgrade request has no body (`_upgrade`)
        conn.body_pending = not complete
        config = gateway.require_config()  # (the current one: a new one may have come)
        decision = decide(config, flow, http_request(flow, head, prefix, complete, limit))
        gateway.begin(flow, conn)
        gateway.decided(flow)
        if decision.outcome == "deny":
            kill = decision.kill_switch
            raise Refusal(403, "kill_switch" if kill else "denied", decision.reason)
        if upgrade is not None:  # its messages go unread: refused where a content rule reads
            decision = check_upgrade(config, flow, decision)
        if decision.outcome == "allow" and config.budgets:  # past one: refused or held
            held = await _reserve(gateway, flow, force=False)
            if held is not None:
                decision = flow.decision = held
        if decision.outcome == "require_approval":
            if not complete:  # an approval binds the whole body: read it (up to the limit)
                prefix, complete = await _read_body(conn, prefix, limit)
                conn.body_pending = not complete
                if not complete:
                    raise _unbindable(limit)
            flow.bound = bind_request(flow, head, prefix)
            if flow.redact:  # refused now if it cannot be, not once its approval is spent
                prefix = redact_request(config.guard, flow, head, prefix, complete)
                flow.redact = frozenset()  # (redacted: `_forward` sends it as it is)
            if config.budgets:  # reserved as if approved: a `deny` budget refuses before a
                await _reserve(gateway, flow, force=True)  # person is asked or a grant used
            parkable = complete and upgrade is None
            parked = await _hold(gateway, conn, head, flow, prefix if parkable else None, tunnel)
            if parked is not None:
                return parked
        if not complete:
            conn.clean = False  # the rest of the body is streamed below
        return await _forward(gateway, conn, head, flow, prefix, complete, upgrade)
    except Refusal as exc:
        return await _refused(gateway, conn, head, flow, exc)
    except UpstreamError as exc:
        return await _upstream_failed(gateway, conn, flow, exc)
    except asyncio.CancelledError:
        if not cut.taken():
            raise  # not the cut's: the gateway stopping
        return await _answer_cut(gateway, conn, head, flow)
    finally:
        if parked is None:
            _note_outcome(flow)
            gateway.end(flow)


async def resume_exchange(
    gateway: Services, conn: ClientConnection, parked: Parked, outcome: HoldOutcome
) -> bool:
    """Finish a parked exchange on its re-attached connection, once its approval settled."""
    head, flow = parked.head, parked.flow
    conn.body_pending = False
    cut = flow.cutter = Cut(asyncio.current_task(conn.deadline.loop()))
    gateway.begin(flow, conn)
    try:
        await _before_use(gateway, flow, outcome)
        outcome = await _through(gateway.holds.finish(flow, outcome))
        _stop_if_cut(gateway, flow)  # (its approval used: a request cut is not sent)
        _hold_ended(flow)
        if flow.trace is not None:
            flow.trace.hold_ended(outcome, flow.approval_id)
        _raise_unless_approved(outcome)
        flow.reason = "approved"  # (its spend was reserved before it was held)
        return await _forward(gateway, conn, head, flow, parked.prefix, True, None)
    except Refusal as exc:
        return await _refused(gateway, conn, head, flow, exc)
    except UpstreamError as exc:
        return await _upstream_failed(gateway, conn, flow, exc)
    except asyncio.CancelledError:
        if not cut.taken():
            raise  # not the cut's: the gateway stopping
        return await _answer_cut(gateway, conn, head, flow)
    finally:
        _note_outcome(flow)
        gateway.end(flow)


async def _reserve(gateway: Services, flow: Flow, *, force: bool) -> Decision | None:
    """Reserve the request's spend from the budgets covering it (none: nothing to do).

    For a request a person approves (`force`, reserved before it is held) a
    ``require_approval`` budget lets it through; a ``deny`` budget never does. A held
    request that is not approved sends nothing: its reservation is released when it ends,
    and so is one a cut stopped waiting for, once it is made (released as never sent)."""
    config = gateway.require_config()
    if not config.budgets:
        return None

    def give_back() -> None:  # reserved once the request was cut: released as never sent
        if flow.reservation is not None or flow.leased is not None:
            gateway.budgets.settle(flow)

    held = await _through(gateway.budgets.reserve(config.budgets, flow, force=force), give_back)
    _stop_if_cut(gateway, flow)  # (cut by this task itself: released as never sent)
    return held


async def _through(call: Coroutine[Any, Any, _T], left: Callable[[], None] | None = None) -> _T:
    """The outcome of `call`, a control-plane call that reserves or records (a budget, an
    approval), run to its end even when the wait for it ends first: a cut (``flow.Cut``)
    ends the wait at once, never the call, whose outcome would be lost (a reservation or
    a budget slice never given back). `left`, if given, runs when the call ends after its
    wait was given up (and did not fail): it gives back what was reserved meanwhile (what
    was reserved before is the flow's, given back when it ends)."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():
            _left_behind(task, None)
        else:
            task.add_done_callback(lambda done: _left_behind(done, left))
        raise


def _left_behind(done: asyncio.Future[Any], left: Callable[[], None] | None) -> None:
    """A control-plane call whose wait was given up has ended: `left` unless it failed
    (then nothing was reserved; its error is taken, no one waits for it)."""
    if done.cancelled() or done.exception() is not None:
        return
    if left is not None:
        left()


def _stop_if_cut(gateway: Services, flow: Flow) -> None:
    """Refuse a request cut before it was sent (``flow.Cut``) as ``check_forward`` refuses
    it: 403 ``kill_switch`` or ``agent_inactive``, 503 ``control_plane_unreachable``; else
    (the cause gone meanwhile: an agent active again) as it was cut."""
    if flow.cut_by is not None:
        gateway.check_forward(flow)  # (a flow cut never passes it)


async def _answer_cut(gateway: Services, conn: ClientConnection, head: Head, flow: Flow) -> bool:
    """Answer a request cut in flight (``flow.Cut``: its upstream side aborted already).

    Not sent, it is refused as ``check_forward`` refuses it (a 403 or 503 the agent reads,
    never a dropped connection nor the connect that timed out); sent, it is answered as cut
    (``_upstream_failed``: the upstream may have acted on it), never sent again. Once part
    of an answer went out, or while the body of a request partly sent still comes in, its
    connection is aborted instead: no second answer, the body not read on."""
    if conn.written != flow.written_before or (flow.sent and conn.body_pending):
        conn.abort()
        return False
    if not flow.sent:
        try:
            _stop_if_cut(gateway, flow)
        except Refusal as exc:
            return await _refused(gateway, conn, head, flow, exc)
    return await _upstream_failed(gateway, conn, flow, UpstreamError(502, "the exchange was cut"))


def _note_outcome(flow: Flow) -> None:
    """What the traffic record must say beyond the status: cut by the kill switch, scrubbed."""
    if flow.killed and not flow.reason.startswith("kill_switch"):
        flow.reason = "kill_switch_active: the exchange was cut by the kill switch"
    elif flow.cut and flow.sent and not flow.killed:  # (not sent: its refusal says why)
        flow.reason = flow.cut
    if flow.findings:
        redacted = f" ({flow.redacted} redacted)" if flow.redacted else ""
        note_findings(flow, list(flow.findings), f"content{redacted}")
    if flow.scrubbed:
        reason = flow.reason or (flow.decision.reason if flow.decision else "")
        flow.reason = f"{reason}; {flow.scrubbed} injected secret(s) scrubbed from the response"


async def _refused(
    gateway: Services, conn: ClientConnection, head: Head, flow: Flow, exc: Refusal
) -> bool:
    _answers_itself(flow)
    if not flow.handed_off:  # the gateway answers itself (not after a forward)
        flow.handed_off = time.monotonic()
    flow.status, flow.reason = exc.status, exc.message
    if conn.body_pending and conn.clean:
        conn.clean = await _drain_small(conn)
    await conn.refuse(exc.status, gateway.refusal_body(flow, exc),
                      kill_switch=exc.error == "kill_switch",
                      close=not (conn.clean and head.keep_alive))  # fmt: skip
    return conn.clean and head.keep_alive


async def _upstream_failed(
    gateway: Services, conn: ClientConnection, flow: Flow, exc: UpstreamError
) -> bool:
    """Answer why, unless part of an answer went out already: then the connection closes.

    A request cut in flight after it was sent (``flow.Cut``: its upstream connection
    aborted) is answered as cut, never as the upstream's failure nor as not forwarded."""
    _answers_itself(flow)
    cut = flow.cut_by if flow.sent else None
    if cut is not None:
        refusal = Refusal(cut.status, cut.error, cut.message + _SENT_BEFORE_CUT)
    else:
        refusal = Refusal(exc.status, "upstream_error", str(exc))
    # an approved request keeps saying so (`tf logs`: held → approved), then why it failed
    approved = flow.reason.startswith("approved")
    flow.status = refusal.status
    flow.reason = f"{flow.reason}; {refusal.message}" if approved else refusal.message
    if conn.written == flow.written_before and not conn.writer.transport.is_closing():
        await conn.refuse(refusal.status, gateway.refusal_body(flow, refusal),
                          kill_switch=refusal.error == "kill_switch", close=True)  # fmt: skip
    return False


def _answers_itself(flow: Flow) -> None:
    """The exchange answers by itself from here on: a cut no longer cancels its task."""
    if flow.cutter is not None:
        flow.cutter.answering()


def _identify(
    gateway: Services, conn: ClientConnection, flow: Flow, head: Head, tunnel: Tunnel | None
) -> CompiledConfig:
    """Target, agent and connector of the request (refusing mismatches); the config they
    were read from."""
    config = gateway.require_config()
    if tunnel is not None:
        flow.scheme, flow.host, flow.port = "https", tunnel.host, tunnel.port
        target = head.target.decode("latin-1")
        if not target.startswith("/"):
            raise Refusal(400, "bad_request", "expected an origin-form request inside the tunnel")
        check_host_header(head, tunnel.host, tunnel.port, "https")
        # read again from the current snapshot: a key revoked, an agent suspended, its
        # level or its connector changed or removed since the CONNECT applies to this
        # request already (a tunnel opened without a connector stays refused)
        flow.agent = agent_for_key(config, tunnel.key_hash)
        flow.connector = tunnel.connector and config.route(tunnel.host)
    else:
        flow.scheme, flow.host, flow.port, target = target_of(head)
        flow.agent = agent_for_key(config, conn.key_hash(head.get(b"proxy-authorization")))
        gateway.check_port_agent(conn, flow.agent)
        flow.connector = config.route(flow.host)
    flow.path, flow.query = clean_path(target)
    scan_path(config, flow)  # (a secret in it is masked in its record, however refused)
    gateway.check_kill_switch(flow, head)
    if flow.connector is None:
        raise Refusal(403, "no_connector", f"no connector for `{flow.host}`: deny-all default")
    # plain http: a credential never travels in cleartext; a tunnel: nor to another port
    flow.scheme, flow.port = credential_target(flow.connector, flow.scheme, flow.host, flow.port)
    return config


def _upgrade(conn: ClientConnection, head: Head) -> Upgrade | None:
    """The switch a request with an ``Upgrade`` header asks for, decided on its head alone.

    Only to WebSocket (``Head.asks_websocket``): a switched connection is relayed as bytes
    (its messages unread: refused where a content rule could apply,
    ``pipeline.check_upgrade``), and after an ``h2c`` one every later request would reach
    the upstream undecided. Any
    other protocol (``curl --http2`` asks for ``h2c``) is no switch, the parser reads on
    (``http1.RequestParser``): None, a plain HTTP/1.1 request, forwarded without its
    ``Upgrade`` and ``HTTP2-Settings``.

    Only a GET without a body may ask (a WebSocket handshake, RFC 6455): the parser hands
    whatever follows an upgrade's head to the upgraded stream, so a body would be decided
    as absent and reach the upstream without it (a partial refund made a full one). Else
    400. None when the parser did not switch (no ``Connection: upgrade``): a plain request,
    forwarded without its ``Upgrade``. After a switch the connection carries no other
    request: it closes after the answer, a 101 or not."""
    if not head.asks_websocket:
        return None
    if head.has_body:
        message = "an Upgrade request cannot carry a body: send the body without `Upgrade`"
        raise Refusal(400, "bad_request", message)
    if head.method != "GET":
        message = f"only a GET request can ask for an Upgrade, not `{head.method}`"
        raise Refusal(400, "bad_request", message)
    upgrade = conn.pending_upgrade()
    if upgrade is not None:
        conn.clean = False
    return upgrade


def _unbindable(limit: int) -> Refusal:
    message = f"request body larger than the {limit}-byte inspection limit: cannot bind it"
    return Refusal(413, "body_too_large", f"{message} to an approval")


def _deny_before_body(gateway: Services, flow: Flow, head: Head, limit: int) -> None:
    """``Expect: 100-continue``: refuse before asking for the body when it cannot matter.

    ``100 Continue`` is sent only when the body is first read (``ClientConnection``): after
    identity, routing and the kill switch, and after the decision for a connector that
    decides without the body. A connector that reads bodies is first decided on the head
    alone: a deny that holds whatever the body says (the action named, no field unseen)
    is answered at once; anything else asks for the body.
    """
    decision = decide(gateway.require_config(), flow, http_request(flow, head, b"", False, limit))
    if decision.outcome == "deny" and flow.parsed is not None and not decision.errors:
        raise Refusal(403, "kill_switch" if decision.kill_switch else "denied", decision.reason)


async def _body_prefix(
    gateway: Services, conn: ClientConnection, head: Head, flow: Flow, limit: int
) -> tuple[bytes, bool]:
    """The body up to the inspection `limit` when the connector reads bodies, a content
    rule scans them or a method-override middleware would read it (nothing yet else: it
    is streamed); (bytes, whether that is the whole body)."""
    if not head.has_body:
        events = conn.parser.events
        if events and events[0] is END:  # the usual case: = `await _expect_end(conn)`
            events.popleft()
        else:
            await _expect_end(conn)
        return b"", True
    assert flow.connector is not None
    scanned = gateway.require_config().guard.request is not None  # content rules read it
    ctype = head.get(b"content-type")
    overridable = override_readable(head.method, ctype.decode("latin-1") if ctype else None)
    reads = flow.connector.body_limit or scanned or overridable
    return await _read_body(conn, b"", limit if reads else 0)


async def _read_body(conn: ClientConnection, have: bytes, limit: int) -> tuple[bytes, bool]:
    """`have` plus what follows, until the body ends or `limit` bytes are at hand."""
    chunks: list[bytes] = [have] if have else []
    size = len(have)
    while size < limit:
        event = await conn.next_event(head=False)
        if event is END:
            return b"".join(chunks), True
        if not isinstance(event, bytes):
            raise Refusal(400, "bad_request", "request body ended early")
        chunks.append(event)
        size += len(event)
    events = conn.parser.events
    if events and events[0] is END:
        events.popleft()
        return b"".join(chunks), True
    return b"".join(chunks), False


async def _expect_end(conn: ClientConnection) -> None:
    event = await conn.next_event(head=False)
    if event is not END:
        raise Refusal(400, "bad_request", "unexpected data after the request head")


async def _drain_small(conn: ClientConnection, limit: int = 65536) -> bool:
    """Read and drop a refused request's small remaining body; False when it is too big.

    Nothing is read (False: the connection closes) after a framing error, or when the
    client still waits for a ``100 Continue`` it will not get.
    """
    if conn.parser.failed or conn.continue_due:
        return False
    seen = 0
    while seen <= limit:
        if not conn.parser.events and conn.reader.at_eof():
            return False
        event = await conn.next_event(head=False)
        if event is END:
            return True
        if not isinstance(event, bytes):
            return False
        seen += len(event)
    return False


async def _hold(
    gateway: Services,
    conn: ClientConnection,
    head: Head,
    flow: Flow,
    prefix: bytes | None,
    tunnel: Tunnel | None,
) -> Parked | None:
    """Wait for the approval; or park the request (`prefix` given: it was read whole).

    The hold (``flow.hold``) lasts from recording the approval to confirming its use: the
    control plane's and the approver's time, not the gateway's own (``traffic_record``).
    """
    holds, seconds = gateway.holds, gateway.approval_timeout(flow)
    await _sendable(gateway, flow)  # (an identical retry's approval or a grant is spent at once)
    flow.hold = (time.monotonic(), 0.0)
    if flow.trace is None:
        outcome = await _through(holds.create(flow, seconds))
    else:
        flow.trace.hold_started()
        with flow.trace.control_calls():
            outcome = await _through(holds.create(flow, seconds))
    _stop_if_cut(gateway, flow)  # (its approval stays, as a held request's the switch ends)
    if outcome is None:
        parked = park(conn, head, flow, prefix, tunnel) if prefix is not None else None
        if parked is not None:
            gateway.park(parked, seconds)
            return parked
        # held, the holds end it (`Holds.kill`), not a cut; approved, it is confirmed used
        waited = await holds.wait(flow, seconds, conn.gone)
        await _before_use(gateway, flow, waited)
        confirmed: HoldOutcome = await _through(holds.finish(flow, waited))
        _stop_if_cut(gateway, flow)
        outcome = confirmed
    _hold_ended(flow)
    if flow.trace is not None:
        flow.trace.hold_ended(outcome, flow.approval_id)
    _raise_unless_approved(outcome)
    flow.reason = f"approved by grant {flow.grant_id}" if flow.grant_id else "approved"
    return None


async def _sendable(gateway: Services, flow: Flow) -> None:
    """Refuse `flow` now, before an approval is spent on it, for what would refuse it
    unsent when it is sent (``_forward``): its connector removed or changed, or its
    credential's target refused (``pipeline.serving``); a kill switch, its agent inactive,
    the control plane lost, a cut (``check_forward``); a computed credential's token that
    cannot be had (``injection.prepare``, 502). Its approval stays approved and unused."""
    flow.connector = connector = serving(gateway.require_config(), flow)
    gateway.check_forward(flow)
    if connector.injector is not None:
        await prepare(gateway.tokens, flow)


async def _before_use(gateway: Services, flow: Flow, outcome: HoldOutcome) -> None:
    """Before the approval of `flow` is confirmed used (``Holds.finish``): refused for
    what is known now (:func:`_sendable`), its hold ended, its approval left unused (the
    identical request sent again may still go on it). What changes while its use is
    confirmed is refused as it is sent: the approval is spent then (a race)."""
    if outcome != "approved" or flow.approval_id is None:
        return  # (nothing to spend: a grant's, a retry's, or refused as it says)
    try:
        await _sendable(gateway, flow)
    except Refusal:
        _hold_ended(flow)
        if flow.trace is not None:
            flow.trace.hold_ended(outcome, flow.approval_id)
        raise


def _hold_ended(flow: Flow) -> None:
    if flow.hold is not None:
        flow.hold = (flow.hold[0], time.monotonic())


def _raise_unless_approved(outcome: HoldOutcome) -> None:
    if outcome == "approved":
        return
    if outcome == "denied":
        raise Refusal(403, "approval_denied", "the approval was denied")
    if outcome == "timeout":
        raise Refusal(408, "approval_timeout", "no decision before the approval timed out")
    if outcome == "killed":
        raise Refusal(403, "kill_switch", "kill_switch_active")
    if outcome == "inactive":
        raise Refusal(403, "agent_inactive", "the agent was suspended or removed while its "
                      "request was held")  # fmt: skip
    if outcome == "gone":
        raise Refusal(499, "client_closed", "the client left while its request was held")
    if outcome == "outage":
        raise Refusal(503, "control_plane_unreachable", "no word from the control plane for "
                      "longer than --max-config-age while the request was held")  # fmt: skip
    raise Refusal(503, "control_plane_unavailable", "the approval could not be recorded")


def _authority(flow: Flow) -> bytes:
    host = f"[{flow.host}]" if ":" in flow.host else flow.host
    if flow.port != _DEFAULT_PORTS[flow.scheme]:
        host = f"{host}:{flow.port}"
    return host.encode("idna") if not host.isascii() else host.encode("ascii")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


def _body_framing(head: Head, prefix: bytes, complete: bool) -> tuple[int | None, bool]:
    """(Content-Length, chunked) of the forwarded body, whatever the method.

    A body read whole gets its exact length; a streamed one keeps the client's length or
    is re-chunked. No body and no client ``Content-Length``: neither header (a bodiless
    GET/HEAD/DELETE stays bodiless); ``Content-Length: 0`` stays 0.
    """
    if complete:
        has_length = head.has_body or head.content_length is not None
        return (len(prefix) if has_length else None), False
    if head.chunked:
        return None, True
    return head.content_length, False


async def _forward(
    gateway: Services,
    conn: ClientConnection,
    head: Head,
    flow: Flow,
    prefix: bytes,
    complete: bool,
    upgrade: Upgrade | None,
) -> bool:
    """Send the decided request upstream and stream the response back.

    Its credential is the one the config in force gives when it is sent, after every wait
    (its hold, a budget, a token, the upstream connection): ``pipeline.serving``."""
    if flow.redact:
        prefix = redact_request(gateway.require_config().guard, flow, head, prefix, complete)
    framing = _body_framing(head, prefix, complete)
    first = await _request(gateway, head, flow, prefix, complete, framing, upgrade)
    # the gateway's part ends here: connecting to the upstream (or retrying on a fresh
    # connection) and sending the rest of a streamed body are the upstream's time
    flow.handed_off = time.monotonic()
    for attempt in (0, 1):
        up = await gateway.pool.acquire(flow.scheme, flow.host, flow.port)
        gateway.attach(flow, up)  # (a cut from here on aborts it)
        try:
            while serving(gateway.require_config(), flow) is not flow.connector:
                # a new config came while it waited: the credential it gives (or a refusal)
                first = await _request(gateway, head, flow, prefix, complete, framing, upgrade)
            gateway.check_forward(flow)  # what came while it waited (a kill switch) stops it
            up.writer.write(first)
            flow.sent = True
            if not complete:
                await _stream_request_body(conn, up, flow, framing[1])
            response = await response_head(gateway, up)
            flow.answered = response.status
            if flow.cut_by is not None:  # its head was read as it was cut: answered as cut
                raise UpstreamError(502, "the exchange was cut")
        except UpstreamError as exc:
            up.abort()
            again = attempt == 0 and up.reused and complete and exc.unanswered
            if again and replayable(head) and flow.cut_by is None:  # (cut: answered so)
                continue  # a pooled connection the upstream had closed: once more, fresh
            raise
        except BaseException:
            up.abort()
            raise
        break
    if flow.trace is not None:
        flow.trace.upstream_status = response.status
    try:
        return await respond(gateway, conn, head, flow, up, response, upgrade)
    except BaseException:
        up.abort()
        raise


async def _request(
    gateway: Services,
    head: Head,
    flow: Flow,
    prefix: bytes,
    complete: bool,
    framing: tuple[int | None, bool],
    upgrade: Upgrade | None,
) -> bytes:
    """What goes upstream first: the request's head and the body bytes at hand (framed
    as `framing` says: ``_body_framing``), with the credential of the connector serving
    its host in the config in force (``pipeline.serving``, which refuses where none may
    go); a computed credential waits for its token (the caller looks again after it)."""
    flow.connector = connector = serving(gateway.require_config(), flow)
    flow.scrubber = flow.body_signer = None  # (a computed credential's, set anew below)
    length, chunked = framing
    computed = connector.injector is not None
    token = await prepare(gateway.tokens, flow) if computed else None
    # only what can be searched may come back when it is scrubbed, guarded or metered
    searchable = scrubber_of(flow) is not None or guards_response(gateway, flow) or flow.llm_budget
    headers = upstream_headers(head, flow, _authority(flow), length, chunked=chunked,
                               searchable=searchable)  # fmt: skip
    if upgrade is not None:
        headers += [(b"Connection", b"Upgrade"), (b"Upgrade", head.get(b"upgrade") or b"")]
    if flow.trace is not None:  # the upstream's parent span is the gateway's, not the agent's
        headers = flow.trace.inject(headers)
    if computed:  # last: a signature covers the final headers
        headers = inject(gateway.tokens, flow, head, headers, prefix if complete else None, token)
        prefix = signed_body(flow, prefix, last=complete)  # the same length
    target = flow.path + ("?" + flow.query if flow.query else "")
    first = serialize_request_head(flow.method, target.encode("latin-1"), headers)
    flow.bytes_out = len(prefix)
    return first + (_chunk(prefix) if chunked else prefix)


#: Methods that change nothing (RFC 9110 "safe"): sent twice, nothing happens twice.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def replayable(head: Head) -> bool:
    """Whether a request the upstream may have received can be sent again on a fresh
    connection: a safe method, or one carrying an ``Idempotency-Key`` (the upstream then
    performs it once however often it arrives; Go's ``net/http`` rule). A POST whose pooled
    connection closed unanswered is answered 502 instead: the upstream may have performed
    it, and an action runs at most once."""
    return head.method in _SAFE_METHODS or head.get(b"idempotency-key") is not None


async def _stream_request_body(
    conn: ClientConnection, up: UpstreamConnection, flow: Flow, chunked: bool
) -> None:
    while True:
        event = await conn.next_event(head=False)
        if event is END:
            break
        if not isinstance(event, bytes):
            raise Refusal(400, "bad_request", "request body ended early")
        flow.bytes_out += len(event)
        if flow.body_signer is not None:
            event = signed_body(flow, event, last=False)
        up.writer.write(_chunk(event) if chunked else event)
        if up.writer.transport.get_write_buffer_size() > 262144:
            await up.writer.drain()
    if flow.body_signer is not None:
        signed_body(flow, b"", last=True)  # raises when the body ended before its last chunk
    if chunked:
        up.writer.write(b"0\r\n\r\n")
    conn.clean = True
    conn.body_pending = False
