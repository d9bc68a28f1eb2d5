"""Gateway spans: one per proxied request, its approval hold as a child.

Built only when an OTLP endpoint is configured (``agentfirewall.telemetry``); then
:class:`FlowTracer` is an addon (its ``done`` hook ends the span) and each flow carries a
:class:`FlowSpans` in ``flow.trace``. Off, ``flow.trace`` stays None and the request path
tests it twice.

==========================  ===========================================================
span                        what
==========================  ===========================================================
``tameflare.proxy``         the request, from its head to its end (server span; parent:
                            the agent's ``traceparent``). The upstream gets a
                            ``traceparent`` naming this span instead of the agent's.
``tameflare.approval.hold`` its child: from the approval's creation to its outcome
==========================  ===========================================================

The agent's ``tracestate`` is dropped unread (``agentfirewall.telemetry``): it reaches
neither the log, nor a span, nor the upstream.

Attributes: ``tameflare.agent``, ``.connector``, ``.action``, ``.decision``, ``.rule``,
``.request_id``, ``.upstream.status_code`` (when an upstream answered),
``http.response.status_code`` (what the agent got), ``.latency_ms``,
``http.request.method``, ``server.address``. Never a header value, a query or a body.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from agentfirewall.telemetry import remote_parent, rule_of, traceparent
from agentfirewall_proxy.tracecontext import CONTROL_TRACEPARENT

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from agentfirewall_proxy.flow import Flow
    from agentfirewall_proxy.http1 import Head

__all__ = ["CONTROL_TRACEPARENT", "FlowSpans", "FlowTracer", "rule_of_flow"]

_TRACE_HEADERS = (b"traceparent", b"tracestate")


class FlowSpans:
    """One flow's spans (``flow.trace``)."""

    __slots__ = ("hold", "owner", "span", "upstream_status")

    def __init__(self, owner: FlowTracer, span: Span) -> None:
        self.owner = owner
        self.span = span
        self.hold: Span | None = None
        self.upstream_status: int | None = None

    def hold_started(self) -> None:
        from opentelemetry import trace

        parent = trace.set_span_in_context(self.span)
        self.hold = self.owner.tracer.start_span("tameflare.approval.hold", context=parent)

    @contextlib.contextmanager
    def control_calls(self) -> Iterator[None]:
        """Calls to the control plane made meanwhile carry the hold span's ``traceparent``."""
        if self.hold is None:
            yield
            return
        token = CONTROL_TRACEPARENT.set(traceparent(self.hold))
        try:
            yield
        finally:
            CONTROL_TRACEPARENT.reset(token)

    def hold_ended(self, outcome: str, approval_id: str | None) -> None:
        if self.hold is None:
            return
        self.hold.set_attribute("tameflare.approval.outcome", outcome)
        if approval_id is not None:
            self.hold.set_attribute("tameflare.approval.id", approval_id)
        self.hold.end()
        self.hold = None

    def inject(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Forwarded `headers` with this span's ``traceparent`` in place of the agent's
        trace headers (its ``tracestate`` among them)."""
        kept = [(k, v) for k, v in headers if k.lower() not in _TRACE_HEADERS]
        value = traceparent(self.span)
        return kept if value is None else [*kept, (b"traceparent", value.encode("ascii"))]

    def trace_id(self) -> str:
        return f"{self.span.get_span_context().trace_id:032x}"


class FlowTracer:
    """The gateway's tracer; an addon whose ``done`` ends each flow's span."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("tameflare.gateway")

    def start(self, flow: Flow, head: Head) -> None:
        """Open `flow`'s span, continuing the agent's ``traceparent`` when it sent one."""
        from opentelemetry.trace import SpanKind

        header = next((v for k, v in head.headers if k.lower() == b"traceparent"), None)
        parent = remote_parent(header.decode("latin-1") if header is not None else None)
        span = self.tracer.start_span(
            "tameflare.proxy",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": flow.method,
                "tameflare.request_id": flow.request_id,
            },
        )
        flow.trace = FlowSpans(self, span)

    def done(self, flow: Flow) -> None:
        spans = flow.trace
        if not isinstance(spans, FlowSpans):
            return
        spans.hold_ended("ended", flow.approval_id)  # a hold the flow ended before settling
        span, flow.trace = spans.span, None
        if not span.is_recording():  # sampled out: nothing to record
            span.end()
            return
        decision = flow.decision
        outcome = "killed" if flow.killed else (decision.outcome if decision else "deny")
        attributes: dict[str, str | int | float] = {
            "tameflare.decision": outcome,
            "http.response.status_code": flow.status,
            "tameflare.latency_ms": round((time.monotonic() - flow.started) * 1000, 3),
        }
        if flow.host:
            attributes["server.address"] = flow.host
        for key, value in (
            ("tameflare.agent", flow.agent.name if flow.agent else None),
            ("tameflare.connector", flow.connector.type if flow.connector else None),
            ("tameflare.action", flow.action),
            ("tameflare.rule", rule_of_flow(flow)),
            ("tameflare.upstream.status_code", spans.upstream_status),
        ):
            if value is not None:
                attributes[key] = value
        span.set_attributes(attributes)
        span.end()

    def shutdown(self) -> None:
        """Export what is queued, then stop."""
        self.provider.shutdown()


def rule_of_flow(flow: Flow) -> str | None:
    """The rule a flow's answer names (as in the gateway's 403 body)."""
    if flow.killed:
        return "kill_switch"
    return rule_of(flow.decision) if flow.decision is not None else None
