"""An agent's ``tracestate`` is dropped unread by the gateway: OpenTelemetry never logs it
(its warnings echo each rejected member: text any client of the port chooses, before any
proxy credential is checked), no span carries it and the upstream never gets it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.http1 import Head
from agentfirewall_proxy.tracecontext import CONTROL_TRACEPARENT
from agentfirewall_proxy.tracing import FlowSpans, FlowTracer
from tests.server.test_trace_state import TRACE_ID, TRACEPARENT, TRACESTATES
from tests.spancapture import assert_caller_state_dropped, in_memory_spans


@pytest.fixture
def exported() -> Iterator[tuple[FlowTracer, InMemorySpanExporter]]:
    with in_memory_spans() as (provider, exporter):
        yield FlowTracer(provider), exporter


@pytest.mark.parametrize("tracestate", TRACESTATES)
def test_an_agents_tracestate_is_never_logged_exported_or_forwarded(
    exported: tuple[FlowTracer, InMemorySpanExporter],
    caplog: pytest.LogCaptureFixture,
    tracestate: str,
) -> None:
    tracer, exporter = exported
    caplog.set_level(logging.DEBUG)
    headers = [(b"traceparent", TRACEPARENT.encode()), (b"Tracestate", tracestate.encode())]
    names = [k.lower() for k, _ in headers]
    head = Head("GET", b"http://api.stripe.com/v1/charges", headers, "1.1", True, False, None,
                names)  # fmt: skip
    flow = Flow(request_id="req_1", method="GET")
    tracer.start(flow, head)
    spans = flow.trace
    assert isinstance(spans, FlowSpans)
    sent = spans.inject([*headers, (b"accept", b"*/*")])
    spans.hold_started()
    with spans.control_calls():
        control = CONTROL_TRACEPARENT.get()
    tracer.done(flow)
    assert [name for name, _ in sent] == [b"accept", b"traceparent"]
    assert sent[1][1].startswith(f"00-{TRACE_ID}-".encode())  # the agent's trace goes on
    assert control is not None
    assert control.startswith(f"00-{TRACE_ID}-")
    finished = exporter.get_finished_spans()
    assert sorted(s.name for s in finished) == ["tameflare.approval.hold", "tameflare.proxy"]
    assert_caller_state_dropped(finished, TRACE_ID, caplog)
