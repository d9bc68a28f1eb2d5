"""OpenTelemetry set-up and JSON log lines, shared by the control plane and the gateway.

Here, in the core, so the gateway (``agentfirewall_proxy``) and the control plane
(``agentfirewall_server``) read one configuration without either importing the other.
Only the standard library is imported; OpenTelemetry is imported inside the functions
that need it, when tracing is on.

Tracing is off unless an OTLP endpoint is configured: the ``--otlp-endpoint`` flag or
setting (``AGENTFIREWALL_OTLP_ENDPOINT``), or OpenTelemetry's own
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``. Off, nothing of
OpenTelemetry is imported and the request paths test one attribute for ``None``.
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keep it off whatever is set.

On, spans go in batches (``OTEL_BSP_*`` tune them) to ``ENDPOINT/v1/traces`` over
OTLP/HTTP (protobuf), from a tracer provider of our own: the process-wide one is left to
the host application (``tf up`` runs the server and a gateway in one process).

Trace context: a caller's ``traceparent`` is continued (:func:`remote_parent`) and the
requests we send carry one naming our span (:func:`traceparent`). A caller's
``tracestate`` is dropped unread: OpenTelemetry would log each member it rejects (the
caller's text, in our log) and carry the rest into our spans and into the requests we send
upstream with a connector's credential.

JSON logs (``--log-format json``): one object per line with ``ts``, ``level``, ``logger``,
``message`` and the ``trace_id`` / ``span_id`` of the span current when it was logged.
"""

from __future__ import annotations

import importlib.util
import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from agentfirewall.decisions import Decision

__all__ = [
    "OtelMissingError",
    "current_ids",
    "json_line",
    "otel_problem",
    "remote_parent",
    "rule_of",
    "traceparent",
    "tracer_provider",
    "traces_endpoint",
]

_EXTRA = "pip install 'tameflare[otel]'"


class OtelMissingError(RuntimeError):
    """Tracing was configured but the ``otel`` extra is not installed."""


def traces_endpoint(configured: str | None, env: dict[str, str] | None = None) -> str | None:
    """The OTLP/HTTP traces URL to export to, or None when tracing is off."""
    env = dict(os.environ) if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    if configured:
        return configured.rstrip("/") + "/v1/traces"
    if specific := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return specific  # the signal-specific variable is the full URL, as the spec says
    if base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return base.rstrip("/") + "/v1/traces"
    return None


def otel_problem(configured: str | None) -> str | None:
    """Why tracing cannot start as configured (the extra is missing), else None."""
    endpoint = traces_endpoint(configured)
    if endpoint is None:
        return None
    for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return _missing(endpoint)
    return None


def _missing(endpoint: str) -> str:
    return (
        f"tracing is configured (OTLP endpoint `{endpoint}`) but OpenTelemetry is not "
        f"installed: {_EXTRA}"
    )


def tracer_provider(service: str, endpoint: str) -> TracerProvider:
    """A provider exporting batches to `endpoint` (``OTEL_SERVICE_NAME`` overrides `service`)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise OtelMissingError(_missing(endpoint)) from None
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def remote_parent(header: str | None) -> Context:
    """The context continuing a caller's ``traceparent`` header (an empty context, for a
    root span, when it sent none or an invalid one). Its ``tracestate`` is never read."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not header:
        return Context()
    return TraceContextTextMapPropagator().extract({"traceparent": header})


def traceparent(span: Span) -> str | None:
    """The ``traceparent`` header naming `span` (None for an invalid span): the only trace
    header we send."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def current_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) in hex of the current span; (None, None) when there is none."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def json_line(level: str, logger: str, message: str, **fields: Any) -> str:
    """One JSON log line (no newline); `fields` without a trace id get the current one."""
    record: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "logger": logger,
        "message": message,
    }
    if "trace_id" not in fields:
        fields["trace_id"], fields["span_id"] = current_ids()
    record.update(fields)
    return json.dumps(record, separators=(",", ":"), default=str)


def rule_of(decision: Decision) -> str | None:
    """The rule behind a decision: the kill switch, the first matched rule or policy, or the
    default that applied (``default_allow``, ``default_deny``)."""
    if decision.kill_switch:
        return "kill_switch"
    names = decision.matched_rules or decision.matched_policies
    if names:
        return names[0]
    return f"default_{decision.outcome}" if decision.default_applied else None
