"""Content guardrails around forwarding: redact the request body, check the response.

Request: a ``redact`` rule matched (``flow.redact``): the detections of the named
detectors in the body are replaced by ``[REDACTED:<detector>]`` before forwarding, and
the body is re-framed with its new ``Content-Length``. A detection in a body field that
carries text base64-encoded (``body.content(base64)``) is replaced in the decoded text
and the field re-encoded (``agentfirewall.content.redact_encoded``). Only a body read
whole and not compressed can be rewritten, and only the body: a detection to redact in
the URL or a header, in base64 the action carries outside a body field (a GraphQL
document's ``createCommitOnBranch`` contents: ``parameters.…``), a body beyond the
inspection limit or a compressed one is refused (fail closed). The body's text is rewritten,
then read again as it was scanned (``agentfirewall.content.body_pieces``): what a redaction
could not rewrite (a multipart part decoded, the body read in its charset, a JSON number)
is still found, and refused.

Response (a policy reads ``response.*``): the body is decoded (the gateway asked for
``identity``; gzip/deflate are decoded, anything else refused), scrubbed of the injected
credential as usual, and scanned. A server-sent event stream is checked event by event
as its consumer reads it (``eventscan.py``: JSON data decoded, each field's text joined
across events) and streamed; an event after which a field's text may end in the beginning
of a secret (``EventReader.holding``: ``AKIA``, ``-----BEGIN ``...) is held back with the
events after it until one settles it, so no part of a key that a later event completes
is relayed before the cut; an event (with those held back before it) larger than the
inspection limit ends the stream. Any other body is read whole (up to the inspection limit: a
larger one is cut, fail closed) and checked before its head is sent, the text of the
fields its action's connector says it carries base64-encoded (``Connector.response_encoded``:
a file read through GitHub's contents API) decoded too (``body.content(base64)``), in the
charset its ``Content-Type`` names too (``body.utf-16-le``: a client's ``.text`` decodes by
it). Bytes that do not decode, and a charset the content rules cannot read, are answered
502 before the head; bytes that do not decode end an event stream after it. The
verdict (``agentfirewall.policy.guard.response_verdict``): ``cut`` answers 502
``response_blocked`` (or ends the event stream), ``redact`` replaces (inside a base64
field, re-encoded; what the rescan still finds, as on the request side, and an injection
marker found only in an event's normalised reading, cut instead), ``pass`` relays; every
detection is flagged in the flow's reason
(traffic log) and counters. In ``monitor`` enforcement nothing is cut or redacted, only
flagged.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agentfirewall.actions import ActionSpec
from agentfirewall.content import (
    Finding,
    Scanner,
    body_pieces,
    describe,
    encoded_body_pieces,
    redact_body,
    redact_encoded,
    scan_pieces,
)
from agentfirewall.content.bodies import readable
from agentfirewall.content.encoded import encoded_fields
from agentfirewall.content.locate import NORMALIZED
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.guard import GuardPlan, response_verdict
from agentfirewall_proxy.codings import content_codings
from agentfirewall_proxy.eventredact import redact_events
from agentfirewall_proxy.eventscan import EventReader
from agentfirewall_proxy.eventwire import EventBuffer
from agentfirewall_proxy.flow import scrubber_of
from agentfirewall_proxy.guard import content_attributes, note_findings
from agentfirewall_proxy.http1 import END, Head, ResponseHead, chunk, serialize_response_head
from agentfirewall_proxy.metering import read_on
from agentfirewall_proxy.pipeline import Flow, Refusal
from agentfirewall_proxy.scrub import ScrubError, body_decoder
from agentfirewall_proxy.upstream import EOF, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable

    from agentfirewall_proxy.client import ClientConnection
    from agentfirewall_proxy.http1 import Event
    from agentfirewall_proxy.llmusage import UsageReader
    from agentfirewall_proxy.services import Services

__all__ = [
    "body_run",
    "guarded_respond",
    "guards_response",
    "redact_request",
    "response_findings",
]

_DROP_DOWN = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
     b"content-length", b"trailer", b"upgrade", b"te"}
)  # fmt: skip


def body_run(first: bytes, events: deque[Event]) -> bytes:
    """`first` and the body pieces parsed after it (`events`, taken): decoded and scrubbed in
    one go, not piece by piece (an upstream may answer in 1-byte chunks)."""
    if not events or not isinstance(events[0], bytes):
        return first
    run = [first]
    while events and isinstance(piece := events[0], bytes):
        events.popleft()
        run.append(piece)
    return b"".join(run)


def guards_response(gateway: Services, flow: Flow) -> bool:
    """True when a policy reads the response's content."""
    config = gateway.config
    return config is not None and config.guard.response is not None


def redact_request(
    guard: GuardPlan, flow: Flow, head: Head, prefix: bytes, complete: bool
) -> bytes:
    """The request body with `flow.redact`'s detections replaced (see the docstring)."""
    scanner = guard.request
    assert scanner is not None
    targeted = [f for f in flow.findings if f.detector in flow.redact]
    outside = [f for f in targeted if not f.location.startswith(("body", "form.", "multipart"))]
    if outside:
        why = ""
        if any(f.location.startswith("parameters.") for f in outside):
            why = (" (base64 inside a GraphQL document cannot be re-encoded in place: send the"
                   " file without it, or through the contents API)")  # fmt: skip
        raise Refusal(403, "denied", f"a redact rule cannot rewrite {describe(outside)}{why}")
    if not targeted:
        return prefix
    if not complete:
        raise Refusal(413, "body_too_large", "request body larger than the inspection limit: "
                      "cannot redact it")  # fmt: skip
    if content_codings(head):  # (every Content-Encoding header: the upstream reads them all)
        raise Refusal(415, "unsupported_encoding", "a compressed request body cannot be redacted")
    ctype = (head.get(b"content-type") or b"").decode("latin-1")
    body, count, left = _redact(scanner, prefix, ctype, flow.redact, targeted)
    if left:
        raise Refusal(403, "denied", f"a redact rule cannot rewrite {describe(left)}")
    flow.redacted = count
    return body


def _redact(
    scanner: Scanner, body: bytes, ctype: str, names: frozenset[str], findings: list[Finding]
) -> tuple[bytes, int, list[Finding]]:
    """`body` with what the detectors `names` found replaced: decoded, redacted and
    re-encoded inside each base64 field `findings` name, then in the rest; (body,
    replacements, what a rescan of the fields re-encoded or of the body still finds: the
    caller refuses). The body's text is rewritten, never what is read from it otherwise (a
    multipart's decoded part, its charset's reading, a number, a normalised reading): the
    rescan finds those."""
    findings = [f for f in findings if f.detector in names]
    body, inside = redact_encoded(scanner, body, names, findings)
    fields = sorted(encoded_fields(findings))  # (of the kind `mime`: its parts read again)
    if fields:  # a rescan of the fields re-encoded must find nothing (fail closed)
        again = scan_pieces(scanner, encoded_body_pieces(body, ctype, fields))
        if left := [f for f in again if f.detector in names]:
            return body, 0, left
    body, count = redact_body(scanner, body, ctype, names)
    again = scan_pieces(scanner, body_pieces(body, ctype))  # (fail closed, as above)
    if left := [f for f in again if f.detector in names]:
        return body, 0, left
    return body, count + inside, []


def _verdict(
    gateway: Services, flow: Flow, findings: list[Finding], spanning: list[Finding] | None = None
) -> tuple[str, frozenset[str]]:
    """What to do with a response's detections (monitor level: only flag). `spanning`:
    those that span events, or are found only in a normalised reading, which cannot be
    redacted (cut instead)."""
    config = gateway.require_config()
    assert flow.agent is not None
    flow.response_findings += len(findings)
    if not findings:
        return "pass", frozenset()
    provider = flow.connector.type if flow.connector else None
    spec = (
        flow.parsed.spec
        if flow.parsed is not None
        else ActionSpec(type=flow.action or "unknown.request", resource={"provider": provider})
    )
    attributes = {**(flow.content or {}), **content_attributes(findings, "response")}
    ctx = EvaluationContext(
        agent=flow.agent.name, mode="proxy", now=datetime.now(UTC),
        connector=provider, enforcement_level=flow.agent.level,
        risk=flow.parsed.risk if flow.parsed is not None else None, attributes=attributes,
    )  # fmt: skip
    outcome, label, names = response_verdict(config.engine, config.guard, spec, ctx)
    if flow.agent.level == "monitor" and outcome != "pass":
        outcome, names = "pass", frozenset()
        label = f"{label} (monitor: not enforced)"
    what = {"cut": "cut", "redact": "redacted", "pass": "flagged"}[outcome]
    rule = f" by rule `{label}`" if label else ""
    if outcome == "cut":  # the refusal's message is the flow's reason
        raise Refusal(502, "response_blocked", f"response cut{rule}: {describe(findings)}")
    if outcome == "redact" and (begun := [f for f in spanning or () if f.detector in names]):
        read = all(f.location.endswith(NORMALIZED) for f in begun)
        why = "is found only in its normalised reading" if read else "spans events"
        raise Refusal(502, "response_blocked", f"response cut{rule}: {describe(begun)} {why}: "
                      "it cannot be redacted")  # fmt: skip
    note_findings(flow, findings, f"response {what}{rule}")
    return outcome, names


def response_findings(scanner: Scanner, flow: Flow, body: bytes, ctype: str) -> list[Finding]:
    """Every detection in a response body read whole, and in the text of the fields its
    action's connector says the answer carries base64-encoded (``body.content(base64)``)."""
    pieces = body_pieces(body, ctype)
    action = flow.parsed.spec.type if flow.parsed is not None else flow.action
    encoded = flow.connector.impl.response_encoded(action) if flow.connector and action else ()
    if encoded:  # (none: the common case, nothing more to do)
        pieces += encoded_body_pieces(body, ctype, encoded, pieces)
    return scan_pieces(scanner, pieces)


async def guarded_respond(
    gateway: Services,
    conn: ClientConnection,
    head: Head,
    flow: Flow,
    up: UpstreamConnection,
    response: ResponseHead,
    usage: UsageReader | None = None,
) -> bool:
    """Relay a response with a body, checked by the content rules (module docstring); its
    decoded bytes go to `usage` too (``metering.py``), read on if the agent leaves."""
    scanner = gateway.require_config().guard.response
    assert scanner is not None
    flow.status = response.status
    headers, reason = response.headers, response.reason
    scrubber = scrubber_of(flow)
    if scrubber is not None:
        reason, headers, found = scrubber.response_head(reason, headers)
        flow.scrubbed += found
    headers = [(k, v) for k, v in headers if k.lower() not in _DROP_DOWN]
    try:
        headers, decoder = body_decoder(headers)
    except ScrubError as exc:
        raise UpstreamError(502, str(exc)) from None
    stream = scrubber.stream() if scrubber is not None else None
    ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"").decode("latin-1")
    sse = ctype.split(";")[0].strip().lower() == "text/event-stream"
    close_delimited = response.content_length is None and not response.chunked

    def clean(data: bytes) -> bytes:
        pieces = decoder.feed(data) if decoder is not None else [data]
        out = b"".join(stream.feed(p) if stream is not None else p for p in pieces)
        if usage is not None:
            usage.feed(out)
        return out

    def rest() -> bytes:
        last = decoder.finish() if decoder is not None else b""
        out = stream.feed(last) if stream is not None else last
        if stream is not None:
            out += stream.finish()
            flow.scrubbed += stream.count
        if usage is not None:
            usage.feed(out)
            usage.end()
        return out

    if sse:
        try:
            return await _relay_events(gateway, conn, head, flow, up, response, headers, reason,
                                       (scanner, clean, rest, close_delimited))  # fmt: skip
        except (OSError, TimeoutError):  # the agent left (the upstream's errors end the stream)
            if usage is None:
                raise
            return await read_on(conn, up, flow, (clean, rest), close_delimited, gateway.options)
    if not readable(ctype):  # (its reader decodes it so: what it holds is not known)
        raise Refusal(502, "upstream_error", "the response's charset is not one the content "
                      "rules can read")  # fmt: skip
    try:  # (nothing is sent yet: bytes that do not decode are answered 502)
        body, event = await _read_whole(gateway, flow, up, clean, rest, close_delimited)
    except ScrubError as exc:
        raise Refusal(502, "upstream_error", str(exc)) from None
    data = bytes(body)
    # a cut raises Refusal: the caller aborts the upstream connection and answers 502
    findings = response_findings(scanner, flow, data, ctype)
    outcome, names = _verdict(gateway, flow, findings)
    if outcome == "redact":
        data, _, left = _redact(scanner, data, ctype, names, findings)
        if left:
            raise Refusal(502, "response_blocked", f"response cut: a redact rule cannot "
                          f"rewrite {describe(left)}")  # fmt: skip
    if event is END and response.keep_alive:
        gateway.pool.release(up)
    else:
        up.abort()
    keep = head.keep_alive and conn.clean
    headers.append((b"Content-Length", b"%d" % len(data)))
    if not keep:
        headers.append((b"Connection", b"close"))
    conn.write(serialize_response_head(response.status, reason, headers) + data)
    await conn.flush()
    return keep


async def _read_whole(
    gateway: Services,
    flow: Flow,
    up: UpstreamConnection,
    clean: Callable[[bytes], bytes],
    rest: Callable[[], bytes],
    close_delimited: bool,
) -> tuple[bytearray, object]:
    """The whole response body, decoded and scrubbed, and how it ended (END or EOF)."""
    limit = gateway.options.body_inspect_limit
    body = bytearray()
    while True:
        try:
            event = await up.next_event(gateway.options.io_timeout)
        except (TimeoutError, OSError):
            event = None
        if isinstance(event, bytes):
            event = body_run(event, up.parser.events)
            flow.bytes_in += len(event)
            body += clean(event)
            if len(body) > limit:
                raise Refusal(502, "response_too_large", f"response larger than the {limit}-byte "
                              "inspection limit: the content rules cannot check it")  # fmt: skip
            continue
        if event is END or (event is EOF and close_delimited):
            body += rest()
            return body, event
        raise Refusal(502, "upstream_error", "the upstream response ended early")


async def _relay_events(
    gateway: Services,
    conn: ClientConnection,
    head: Head,
    flow: Flow,
    up: UpstreamConnection,
    response: ResponseHead,
    headers: list[tuple[bytes, bytes]],
    reason: bytes,
    tools: tuple[Scanner, Callable[[bytes], bytes], Callable[[], bytes], bool],
) -> bool:
    """An event stream, checked one event at a time (``eventscan.py``) and relayed once no
    field may end in a secret's beginning (held back until then): a cut, bytes that do not
    decode, or an event past the inspection limit end the stream there (its head is sent:
    no 502 can follow), what was held back unsent."""
    scanner, clean, rest, close_delimited = tools
    chunked = head.version == "1.1"
    headers.append((b"Transfer-Encoding", b"chunked") if chunked else (b"Connection", b"close"))
    conn.write(serialize_response_head(response.status, reason, headers))
    await conn.flush()
    reader = EventReader(scanner)
    events = EventBuffer()
    held = bytearray()  # events checked, not relayed yet: a field may end in a secret's beginning
    number = 0
    limit = gateway.options.body_inspect_limit
    while True:
        try:
            event = await up.next_event(gateway.options.io_timeout)
        except (TimeoutError, OSError):
            event = EOF
        ended = event is END or (event is EOF and close_delimited)
        try:
            if isinstance(event, bytes):
                event = body_run(event, up.parser.events)
                flow.bytes_in += len(event)
                pieces = events.feed(clean(event))
            elif ended:
                pieces = events.feed(rest()) + events.finish()
            else:
                event = None
        except ScrubError as exc:
            flow.reason, event = str(exc), None
        if event is None:
            up.abort()
            conn.abort()
            return False
        out = bytearray()
        try:
            for piece in pieces:
                number += 1
                held += _checked_event(gateway, flow, reader, piece, number)
                if not reader.holding:
                    out += held
                    held.clear()
            if ended:  # (no event can complete what is held back any more)
                out += held
            elif len(events) + len(held) > limit:  # (an event, or those held, past the limit)
                raise Refusal(502, "response_too_large", f"response event larger than the "
                              f"{limit}-byte inspection limit: the content rules cannot check "
                              "it")  # fmt: skip
        except Refusal as exc:  # the head is sent: the stream ends here, cut
            flow.reason = exc.message
            if out:
                conn.write(chunk(bytes(out)) if chunked else bytes(out))
            up.abort()
            await conn.flush()
            conn.abort()
            return False
        if out:
            conn.write(chunk(bytes(out)) if chunked else bytes(out))
            await conn.flush()
        if not ended:  # (the next read may not wait: let others run first)
            await asyncio.sleep(0)
            continue
        if chunked:
            conn.write(b"0\r\n\r\n")
            await conn.flush()
        if event is END and response.keep_alive:
            gateway.pool.release(up)
        else:
            up.abort()
        return chunked and head.keep_alive and conn.clean


def _checked_event(
    gateway: Services, flow: Flow, reader: EventReader, piece: bytes, number: int
) -> bytes:
    """One event as it may go on (redacted if need be); Refusal when it is cut. A marker
    found only in a normalised reading cannot be redacted either: cut as one that spans
    events is."""
    findings, spanning = reader.findings(piece, number)
    spanning = [*spanning, *(f for f in findings if f.location.endswith(NORMALIZED))]
    outcome, names = _verdict(gateway, flow, findings, spanning)  # (a cut raises)
    if outcome != "redact":
        return piece
    return redact_events(reader.scanner, piece, names)
