"""Hooks and addons, in mitmproxy's vocabulary.

A hook is a documented dataclass naming a moment of a flow's life; an addon is a plain
object with a method named after each hook it wants (``decided(flow)``, ``done(flow)``).
Hooks are synchronous and run on the request path, so addons must be quick: queue work,
never block. :func:`default_addons` is the explicit list a gateway starts with.

=========  =================================================================  ===========
hook       when                                                               may change
=========  =================================================================  ===========
decided    the engine has decided (``flow.decision``, ``flow.parsed`` set)     nothing
done       the exchange ended: answered, refused, cut or failed (every flow)   nothing
=========  =================================================================  ===========

``flow.action`` names the action from ``decided`` on. A request parked while held
(``parking.py``) drops ``flow.parsed`` to stay small, so at ``done`` read ``flow.action``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from agentfirewall.content import masked_field, shown_path
from agentfirewall_proxy.pipeline import Flow, recorded_path, traffic_record

if TYPE_CHECKING:
    from agentfirewall_proxy.traffic import TrafficShipper

__all__ = [
    "AccessLog",
    "Addons",
    "Counters",
    "DecidedHook",
    "DoneHook",
    "Hook",
    "TrafficRecorder",
    "default_addons",
]


@dataclass(frozen=True, slots=True)
class Hook:
    """Base of every hook: the flow it is about."""

    name: ClassVar[str] = ""
    flow: Flow


@dataclass(frozen=True, slots=True)
class DecidedHook(Hook):
    """The engine decided on the flow's action (before any hold or forward)."""

    name: ClassVar[str] = "decided"


@dataclass(frozen=True, slots=True)
class DoneHook(Hook):
    """The flow is over, whatever its outcome; ``flow.status`` is what the agent got."""

    name: ClassVar[str] = "done"


class Addons:
    """Dispatch hooks to the addons that define a method of the hook's name."""

    def __init__(self, addons: Iterable[object]) -> None:
        self.addons = list(addons)
        self._methods: dict[str, list[Callable[[Flow], object]]] = {}
        for hook in (DecidedHook, DoneHook):
            self._methods[hook.name] = [
                getattr(addon, hook.name) for addon in self.addons if hasattr(addon, hook.name)
            ]

    def methods(self, hook: type[Hook]) -> tuple[Callable[[Flow], object], ...]:
        """The addons' methods for `hook`, in the addons' order: the gateway calls each with
        the flow (no hook object per flow on the request path)."""
        return tuple(self._methods[hook.name])


class TrafficRecorder:
    """Queue one traffic record per flow for the control plane (no secrets, no bodies)."""

    def __init__(self, shipper: TrafficShipper) -> None:
        self.shipper = shipper

    def done(self, flow: Flow) -> None:
        self.shipper.record(traffic_record(flow))


class Counters:
    """The counters heartbeats report."""

    def __init__(self) -> None:
        self.stats: dict[str, int] = {
            "requests": 0,
            "denied": 0,
            "held": 0,
            "errors": 0,
            "killed": 0,
            "secrets_scrubbed": 0,
            "content_detected": 0,
            "content_flagged": 0,
        }

    def decided(self, flow: Flow) -> None:
        if flow.decision is not None and flow.decision.outcome == "require_approval":
            self.stats["held"] += 1

    def done(self, flow: Flow) -> None:
        self.stats["requests"] += 1
        if flow.status in (403, 407):
            self.stats["denied"] += 1
        if flow.killed:
            self.stats["killed"] += 1
        self.stats["secrets_scrubbed"] += flow.scrubbed
        self.stats["content_detected"] += len(flow.findings)
        self.stats["content_flagged"] += flow.response_findings


class AccessLog:
    """One line per flow on stderr (``--access-log``): ids, names and status, no values;
    its path, host and reason with every credential masked, as the control plane stores
    them (``agentfirewall.content.shown_path`` and ``masked``; a log is read by more people
    than an approver).

    With ``json``, a JSON object per line, carrying the flow's trace id when it is traced.
    """

    def __init__(self, json: bool = False) -> None:
        self.json = json

    def done(self, flow: Flow) -> None:
        agent = flow.agent.name if flow.agent else "-"
        if self.json:
            print(_json_access_line(flow), file=sys.stderr)
            return
        target, reason = _target(flow), masked_field(flow.reason)
        print(f"{flow.request_id} {agent} {flow.method} {target} {flow.status} {reason}",
              file=sys.stderr)  # fmt: skip


def _target(flow: Flow) -> str:
    """`host/path`; a CONNECT's target is `host:port` (it has no path)."""
    if flow.method == "CONNECT":
        return f"{masked_field(flow.host)}:{flow.port}"
    return masked_field(flow.host) + shown_path(recorded_path(flow))


def _json_access_line(flow: Flow) -> str:
    from agentfirewall.telemetry import json_line

    decision = flow.decision
    return json_line(
        "info",
        "agentfirewall_proxy.access",
        "request",
        trace_id=flow.trace.trace_id() if flow.trace is not None else None,
        request_id=flow.request_id,
        agent=flow.agent.name if flow.agent else None,
        connector=flow.connector.type if flow.connector else None,
        action=flow.action,
        decision="killed" if flow.killed else (decision.outcome if decision else "deny"),
        method=flow.method,
        host=masked_field(flow.host),
        path=None if flow.method == "CONNECT" else shown_path(recorded_path(flow)),
        status=flow.status,
        reason=masked_field(flow.reason),
        latency_ms=round((time.monotonic() - flow.started) * 1000, 3),
    )


def default_addons(
    shipper: TrafficShipper,
    counters: Counters,
    *,
    access_log: bool = False,
    json_log: bool = False,
) -> list[object]:
    """The addons every gateway runs, in order (the tracer, when on, comes after them)."""
    addons: list[object] = [counters, TrafficRecorder(shipper)]
    if access_log:
        addons.append(AccessLog(json=json_log))
    return addons
