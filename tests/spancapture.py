"""Spans finished in memory, and the checks that a caller's ``tracestate`` left no trace.

The control plane's and the gateway's tests of ``tracestate`` share them: a provider whose
spans are kept in memory, and what every finished span and log record must show.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["assert_caller_state_dropped", "in_memory_spans"]


@contextmanager
def in_memory_spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        provider.shutdown()


def assert_caller_state_dropped(
    spans: Sequence[ReadableSpan], trace_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every span continues the caller's trace `trace_id` without its trace state, and
    OpenTelemetry logged nothing (its warnings quote the rejected members)."""
    for span in spans:
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" == trace_id
        assert not span.context.trace_state
    assert [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")] == []
