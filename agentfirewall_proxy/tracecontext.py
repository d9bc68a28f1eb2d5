"""The ``traceparent`` a call to the control plane carries, when tracing set one.

A context variable, so the control client (``control.py``) and the approval batcher read it
without importing the tracer: ``tracing.FlowSpans.control_calls`` sets it around an
approval's creation (the control plane's span is then a child of the hold span).
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["CONTROL_TRACEPARENT"]

#: The ``traceparent`` a call to the control plane made now should carry (set around an
#: approval's creation, so the control plane's span is a child of the hold span).
CONTROL_TRACEPARENT: ContextVar[str | None] = ContextVar("tameflare_control_trace", default=None)
