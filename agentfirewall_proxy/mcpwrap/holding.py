"""Held client messages: an approval is recorded through the control plane (the gateway's
``Holds``), the client gets ``notifications/progress`` while it waits (when it sent a
progress token), then the message is forwarded or answered with the decision.

A held message's spend was reserved as if approved before it was held
(:mod:`~agentfirewall_proxy.mcpwrap.from_client`); the reservation is settled once
forwarded and released when the hold ends otherwise (denied, timed out, cancelled, the
session cut). An approved message is still refused when the control plane has not answered
for longer than ``--max-config-age`` or its agent is no longer active. An identical request
retried after the approval goes through on it (the control plane hands it the approval);
the held original is then refused for that (-32002, ``data.error: "approval_used"``), never
as an outage: one approval, one request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from agentfirewall_proxy.approvals import HoldOutcome, Holds
from agentfirewall_proxy.budgets import Budgets
from agentfirewall_proxy.control import ControlError
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.binding import bind
from agentfirewall_proxy.mcpwrap.follower import Follower
from agentfirewall_proxy.mcpwrap.gate import Gate
from agentfirewall_proxy.mcpwrap.pending import Pending
from agentfirewall_proxy.mcpwrap.session import Session

__all__ = ["Holding"]

#: A hold's outcome (``Holds``'), or ``used``: the control plane refused its use (409).
_Outcome = HoldOutcome | Literal["used"]
_HOLD_ERRORS: dict[str, str] = {
    "denied": "approval denied",
    "timeout": "approval timed out",
    "unavailable": "approval could not be recorded or confirmed (control plane unreachable)",
    "used": "approval already used (an identical request, retried, went through on it) or no "
    "longer valid: this request was not forwarded",
}


@dataclass
class Holding:
    session: Session
    gate: Gate
    holds: Holds
    budgets: Budgets
    follower: Follower
    pending: Pending
    progress_interval: float
    #: Every hold still running (kept when ``pending.held`` is cleared: awaited at the end,
    #: so their reservations are released before the budgets are drained).
    running: set[asyncio.Task[None]] = field(default_factory=set)

    def hold(self, message: Any, flow: Flow, outgoing: Any = None) -> None:
        """Hold `message` (its spend reserved) until it is decided; `outgoing` is what is
        forwarded once approved (a ``redact`` rule's rewrite; None: `message` itself)."""
        sent = message if outgoing is None else outgoing
        task = asyncio.ensure_future(self._held(message, flow, sent))
        self.pending.hold(message, task)
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    def _timeout(self, flow: Flow) -> float:
        approval = flow.decision.approval if flow.decision is not None else None
        if approval is not None and approval.explicit:
            return float(approval.timeout_seconds)
        config = self.gate.config
        return config.approval_timeout if config is not None else 300.0

    async def _held(self, message: Any, flow: Flow, outgoing: Any) -> None:
        try:
            outcome = await self._approval(message, flow)
            await self._settled(message, flow, outcome, outgoing)
        finally:  # not forwarded (denied, timed out, cancelled, cut): released; else a no-op
            self.budgets.settle(flow)

    async def _approval(self, message: Any, flow: Flow) -> _Outcome:
        """The held message's outcome; its hold (``flow.hold``) lasts from recording the
        approval to confirming its use, as at the gateway (``exchange._hold``)."""
        seconds = self._timeout(flow)
        flow.bound = bind(message, flow)
        flow.hold = (time.monotonic(), 0.0)
        try:
            outcome = await self.holds.create(flow, seconds)
            if outcome is None:
                outcome = await self._wait(message, flow, seconds)
            used = await self._finish(flow, self._sendable(outcome))
            flow.hold = (flow.hold[0], time.monotonic())
            return used
        except asyncio.CancelledError:
            flow.status, flow.reason = 499, "held request cancelled by the client"
            self.session.record(flow)
            raise

    async def _wait(self, message: Any, flow: Flow, seconds: float) -> HoldOutcome:
        waiter = asyncio.ensure_future(self.holds.wait(flow, seconds, lambda: self.session.closing))
        token = rpc.progress_token(message)
        count = 0
        try:
            while True:
                if token is not None:
                    count += 1
                    text = (
                        f"TameFlare: `{flow.action}` is waiting for approval "
                        f"`{flow.approval_id}` ({count})"
                    )
                    await self.session.write(rpc.progress(token, count, text))
                done, _ = await asyncio.wait({waiter}, timeout=self.progress_interval)
                if done:
                    return waiter.result()
        finally:
            waiter.cancel()

    def _sendable(self, outcome: HoldOutcome) -> _Outcome:
        """Refused now, before its approval is spent, for what would refuse it as it is
        sent (`_settled`): the control plane lost, its agent inactive. The approval stays
        approved and unused (the identical call made again may still go on it)."""
        if outcome != "approved":
            return outcome
        if self.follower.contact.lost:
            return "outage"
        return outcome if self.follower.active() else "inactive"

    async def _finish(self, flow: Flow, outcome: _Outcome) -> _Outcome:
        """An approval is used once: its use confirmed with the control plane before the
        message is forwarded (``Holds.finish``), telling a use it refuses (409: used by an
        identical request retried after the approval, or no longer valid: ``used``) from
        one it could not record (``unavailable``)."""
        if outcome != "approved" or flow.approval_id is None:
            return outcome
        try:
            await self.holds.control.consume_approval(flow.approval_id)
        except ControlError as exc:
            return "used" if exc.status == 409 else "unavailable"
        return "approved"

    async def _settled(self, message: Any, flow: Flow, outcome: _Outcome, outgoing: Any) -> None:
        session = self.session
        if outcome == "approved" and self.follower.contact.lost:  # the last checks before it goes
            outcome = "outage"
        elif outcome == "approved" and not self.follower.active():
            outcome = "inactive"
        if outcome == "approved":  # (its spend was reserved before it was held)
            await session.forward(outgoing, flow)
            return
        if outcome == "killed":
            flow.killed, flow.status = True, 403
            text = "TameFlare: kill switch active: the session is cut"
            await session.refuse(message, flow, rpc.DENIED, text, kill_switch=True)
        elif outcome == "inactive":
            flow.status, flow.reason = 403, self.follower.inactive()
            text = f"TameFlare: `{flow.action}`: {flow.reason}: it was not forwarded"
            await session.refuse(message, flow, rpc.DENIED, text, error="agent_inactive")
        elif outcome == "outage":
            flow.status, flow.reason = 503, self.follower.contact.unheard()
            text = f"TameFlare: `{flow.action}`: control_plane_unreachable: {flow.reason}"
            await session.refuse(message, flow, rpc.DENIED, text, error="control_plane_unreachable")
        elif outcome != "gone":
            flow.status = {"timeout": 408, "used": 409}.get(outcome, 403)
            flow.reason = _HOLD_ERRORS[outcome]
            text = f"TameFlare: `{flow.action}`: {flow.reason} (approval `{flow.approval_id}`)"
            extra = {"error": "approval_used"} if outcome == "used" else {}
            await session.refuse(message, flow, rpc.APPROVAL, text,
                                 approval_id=flow.approval_id, **extra)  # fmt: skip
        session.record(flow)
