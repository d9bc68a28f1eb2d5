"""Control-plane spans: one per SDK decision and per execution, approvals and the executor
as children (``otel.py`` says when tracing is on).

=============================  ======================================================
span                           when
=============================  ======================================================
``tameflare.decide``           ``POST /api/v1/actions`` (server span; parent: the
                               agent's ``traceparent``)
``tameflare.approval.create``  its child, when the decision holds the action
``tameflare.approval.create``  also ``POST /api/v1/gateway/approvals`` (server span;
                               parent: the gateway's ``tameflare.approval.hold``)
``tameflare.execute``          ``POST /api/v1/actions/{id}/execute`` (server span)
``tameflare.executor``         its child: the upstream call, which gets a
                               ``traceparent`` naming this span
=============================  ======================================================

A caller's ``tracestate`` is dropped unread (``agentfirewall.telemetry``): it reaches
neither the log, nor a span, nor the upstream.

Attributes are names, outcomes, numbers (``tameflare.agent``, ``.connector``, ``.action``,
``.decision``, ``.rule``, ``.upstream.status_code``, ``.latency_ms``,
``http.response.status_code``): never a key, a token, a credential or a body. Off, the
route code calls :func:`annotate` and :func:`child`, which find no span in a context
variable and return.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING

from agentfirewall.telemetry import (
    remote_parent,
    rule_of,
    traceparent,
    tracer_provider,
    traces_endpoint,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from agentfirewall_server.settings import Settings

__all__ = [
    "ServerTracing",
    "annotate",
    "build_tracing",
    "child",
    "inject",
    "rule_of",
    "set_upstream_status",
]

#: The request span in progress in this task, and the tracing that made it.
_CURRENT: ContextVar[tuple[ServerTracing, Span] | None] = ContextVar(
    "tameflare_server_span", default=None
)
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


class ServerTracing:
    """The control plane's tracer, over a provider of its own."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("tameflare.server")

    @contextlib.contextmanager
    def request_span(self, name: str, headers: Mapping[str, str]) -> Iterator[Span]:
        """A server span for one request, continuing the caller's ``traceparent``."""
        from opentelemetry.trace import SpanKind

        parent = remote_parent(headers.get("traceparent"))
        started = time.perf_counter()
        with self.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
            token = _CURRENT.set((self, span))
            try:
                yield span
            finally:
                _CURRENT.reset(token)
                span.set_attribute("tameflare.latency_ms", _ms(started))

    def shutdown(self) -> None:
        """Export what is queued, then stop."""
        self.provider.shutdown()


def build_tracing(settings: Settings) -> ServerTracing | None:
    """The server's tracing when an OTLP endpoint is configured, else None."""
    endpoint = traces_endpoint(settings.otlp_endpoint)
    if endpoint is None:
        return None
    return ServerTracing(tracer_provider("tameflare-server", endpoint))


def annotate(**attributes: str | int | float | bool | None) -> None:
    """Set ``tameflare.<name>`` attributes on the request span (None values skipped)."""
    current = _CURRENT.get()
    if current is None:
        return
    span = current[1]
    for name, value in attributes.items():
        if value is not None:
            span.set_attribute(f"tameflare.{name}", value)


@contextlib.contextmanager
def child(name: str, **attributes: str | int | None) -> Iterator[None]:
    """A child span of the request span (nothing when tracing is off)."""
    current = _CURRENT.get()
    if current is None:
        yield
        return
    tracing = current[0]
    started = time.perf_counter()
    with tracing.tracer.start_as_current_span(name) as span:
        for key, value in attributes.items():
            if value is not None:
                span.set_attribute(f"tameflare.{key}", value)
        try:
            yield
        finally:
            span.set_attribute("tameflare.latency_ms", _ms(started))


def inject(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` with the current span's ``traceparent`` (the caller's trace headers, a
    ``tracestate`` among them, removed)."""
    if _CURRENT.get() is None:
        return headers
    from opentelemetry import trace

    kept = [h for h in headers if h[0].lower() not in _TRACE_HEADERS]
    value = traceparent(trace.get_current_span())
    return kept if value is None else [*kept, ("traceparent", value)]


def set_upstream_status(status: int) -> None:
    """The status the upstream answered, on the span current now (the executor's)."""
    if _CURRENT.get() is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attribute("tameflare.upstream.status_code", status)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
