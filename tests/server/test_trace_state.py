"""A caller's ``tracestate`` is dropped unread by the control plane: OpenTelemetry never
logs it (its warnings echo each rejected member: text anyone reaching the port chooses),
no span carries it and no upstream request gets it (with the connector's credential)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentfirewall_server.tracing import ServerTracing, child, inject
from tests.spancapture import assert_caller_state_dropped, in_memory_spans

TRACE_ID = "c" * 32
TRACEPARENT = f"00-{TRACE_ID}-{'d' * 16}-01"
FORGED = "FORGED_LOG_LINE: admin approved everything; " + "A" * 400
#: Malformed (each rejected member was logged), too many members (logged), and
#: well-formed (carried into the spans and the upstream request).
TRACESTATES = [
    f"ok=1, {FORGED}",
    ",".join(f"k{i}=v" for i in range(40)),
    "x=" + "Q" * 250 + "," + ",".join(f"k{i}=agent-chosen-{i}" for i in range(30)),
]


@pytest.fixture
def exported() -> Iterator[tuple[ServerTracing, InMemorySpanExporter]]:
    with in_memory_spans() as (provider, exporter):
        yield ServerTracing(provider), exporter


@pytest.mark.parametrize("tracestate", TRACESTATES)
def test_a_callers_tracestate_is_never_logged_exported_or_forwarded(
    exported: tuple[ServerTracing, InMemorySpanExporter],
    caplog: pytest.LogCaptureFixture,
    tracestate: str,
) -> None:
    tracing, exporter = exported
    caplog.set_level(logging.DEBUG)
    headers = {"traceparent": TRACEPARENT, "tracestate": tracestate}
    with tracing.request_span("tameflare.execute", headers), child("tameflare.executor"):
        sent = inject([("Tracestate", "agent=1"), ("accept", "application/json")])
    assert [name for name, _ in sent] == ["accept", "traceparent"]
    assert sent[1][1].startswith(f"00-{TRACE_ID}-")  # the caller's trace goes on
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["tameflare.executor", "tameflare.execute"]
    assert_caller_state_dropped(spans, TRACE_ID, caplog)
