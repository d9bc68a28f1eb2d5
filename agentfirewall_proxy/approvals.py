"""Holding a request until a human decides, without a thread per held request.

The approval is created durably through the control plane (``POST /gateway/approvals``);
the held coroutine then long-polls ``/gateway/approvals/{id}/wait`` while also watching the
client connection and the kill switch. The control plane answers an identical request
(same agent, same action hash) retried after approval with that approval, marked used, so
the retry goes through once without a second approval, even after a gateway restart.

Outcomes: ``approved`` (forward), ``denied`` (403), ``timeout`` (408), ``killed`` (403 with
the kill-switch header), ``gone`` (the client left; the approval stays on the server),
``unavailable`` (the control plane could not record the approval: 503, fail closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from agentfirewall_proxy.control import Control, ControlError

if TYPE_CHECKING:
    from agentfirewall_proxy.pipeline import Flow

__all__ = ["HoldOutcome", "Holds"]

HoldOutcome = Literal["approved", "denied", "timeout", "killed", "gone", "unavailable"]
_POLL = 25.0


class Holds:
    """Every held flow of one gateway, each with a future the kill switch can resolve."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.held: dict[Flow, asyncio.Future[HoldOutcome]] = {}

    def __len__(self) -> int:
        return len(self.held)

    def kill(self, flow: Flow, outcome: HoldOutcome = "killed") -> None:
        future = self.held.get(flow)
        if future is not None and not future.done():
            future.set_result(outcome)

    def release_all(self) -> None:
        """On shutdown: every held request ends (its approval stays on the server)."""
        for flow in list(self.held):
            self.kill(flow, "gone")

    @staticmethod
    def payload(flow: Flow, timeout: float) -> dict[str, object]:
        assert flow.parsed is not None
        assert flow.decision is not None
        assert flow.agent is not None
        assert flow.connector is not None
        spec, decision = flow.parsed.spec, flow.decision
        body: dict[str, object] = {
            "agent": flow.agent.name,
            "connector": flow.connector.type,
            "action_spec": spec.to_dict(),
            "action_hash": spec.action_hash,
            "risk_score": decision.risk_score,
            "reason": decision.reason,
            "request": {"method": flow.method, "host": flow.host, "path": flow.path},
            "timeout_seconds": int(timeout),
        }
        if decision.approval is not None:
            body["approver_roles"] = list(decision.approval.approver_roles)
        return body

    async def hold(
        self, flow: Flow, seconds: float, closed: Callable[[], Awaitable[None]]
    ) -> HoldOutcome:
        """Create the approval and wait for its outcome (or the client, or the kill switch)."""
        try:
            approval = await self.control.create_approval(self.payload(flow, seconds))
        except ControlError:
            return "unavailable"
        if approval.get("status") == "approved":
            return "approved"  # an identical retry: the control plane marked it used
        approval_id = str(approval["id"])
        del approval  # a held request keeps as little as possible alive
        loop = asyncio.get_running_loop()
        killed: asyncio.Future[HoldOutcome] = loop.create_future()
        self.held[flow] = killed
        gone = asyncio.ensure_future(closed())
        try:
            return await self._wait(approval_id, loop.time() + seconds, killed, gone)
        finally:
            self.held.pop(flow, None)
            gone.cancel()

    async def _wait(
        self,
        approval_id: str,
        deadline: float,
        killed: asyncio.Future[HoldOutcome],
        gone: asyncio.Future[None],
    ) -> HoldOutcome:
        loop = asyncio.get_running_loop()
        poll: asyncio.Future[dict[str, Any]] | None = None
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return "timeout"
                poll = asyncio.ensure_future(
                    self.control.wait_approval(approval_id, min(_POLL, remaining))
                )
                waiting: set[asyncio.Future[Any]] = {poll, killed, gone}
                await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if killed.done():
                    return killed.result()
                if gone.done():
                    return "gone"
                if not poll.done():
                    continue
                outcome = await self._settle(approval_id, poll)
                if outcome is not None:
                    return outcome
        finally:
            if poll is not None and not poll.done():
                poll.cancel()

    async def _settle(
        self, approval_id: str, poll: asyncio.Future[dict[str, Any]]
    ) -> HoldOutcome | None:
        """The outcome a finished long-poll tells, or None to keep waiting."""
        try:
            status = str(poll.result().get("status"))
        except ControlError:
            await asyncio.sleep(1.0)
            return None
        if status == "approved":
            try:
                await self.control.consume_approval(approval_id)
            except ControlError:
                return "unavailable"
            return "approved"
        if status == "denied":
            return "denied"
        if status in ("expired", "used"):
            return "timeout"
        return None
