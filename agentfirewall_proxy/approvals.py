"""Holding a request until a human decides: no thread and no poll per held request.

The approval is created durably through the control plane (``POST /gateway/approvals``,
:meth:`Holds.create`); the held request then waits on one small future (:meth:`Holds.wait`)
or, parked (``parking.py``), on nothing at all: the gateway's ``resume`` callback gets its
outcome (:meth:`Holds.park`). An approval is confirmed used before forwarding
(:meth:`Holds.finish`). A single watcher task serves every held
request of the gateway: it long-polls ``POST /gateway/approvals/wait`` with the held ids in
chunks of up to 1,000 (one request per chunk, answered as soon as any of them is decided),
and once a second it times out overdue holds and releases those whose client has left. The
control plane answers an identical request (same agent, same action hash) retried after
approval with that approval, marked used, so the retry goes through once without a second
approval, even after a gateway restart; the held original, if the retry took the approval
before its own use was confirmed, is then refused (:meth:`Holds.finish`: 409
``approval_used``, never forwarded as well). A request an active grant covers is approved
at once (``grant_id``, the use audited on the control plane).

Outcomes: ``approved`` (forward), ``denied`` (403), ``timeout`` (408), ``killed`` (403 with
the kill-switch header), ``inactive`` (its agent was suspended or removed meanwhile: 403),
``gone`` (the client left; the approval stays on the server), ``unavailable`` (the control
plane could not record or confirm the approval: 503, fail closed), ``outage`` (no word from
the control plane for longer than ``--max-config-age``: 503, fail closed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from agentfirewall.content import describe
from agentfirewall_proxy.control import Control, ControlError
from agentfirewall_proxy.flow import Refusal

if TYPE_CHECKING:
    from agentfirewall_proxy.parking import Parked
    from agentfirewall_proxy.pipeline import Flow

__all__ = ["HoldOutcome", "Holds"]

HoldOutcome = Literal[
    "approved", "denied", "timeout", "killed", "inactive", "gone", "unavailable", "outage"
]
_SETTLED: dict[str, HoldOutcome] = {
    "approved": "approved",
    "denied": "denied",
    "expired": "timeout",
    "used": "timeout",
    "not_found": "unavailable",
}
_POLL = 25.0
_CHUNK = 1000
#: A chunk whose ids changed is re-polled at most this often (bursts of new holds).
_DEBOUNCE = 0.2
_SWEEP = 1.0


class _Hold:
    """One held request: awaited through `future`, or `parked` (then resumed by callback)."""

    __slots__ = ("deadline", "flow", "future", "gone", "parked")

    def __init__(
        self,
        flow: Flow,
        deadline: float,
        gone: Callable[[], bool],
        future: asyncio.Future[HoldOutcome] | None = None,
        parked: Parked | None = None,
    ) -> None:
        self.flow = flow
        self.deadline = deadline
        self.gone = gone
        self.future = future
        self.parked = parked


class _Chunk:
    """Up to 1,000 held ids and the long-poll currently covering them."""

    __slots__ = ("ids", "poll", "stale", "started")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.poll: asyncio.Future[list[dict[str, Any]]] | None = None
        self.started = 0.0
        self.stale = False


class Holds:
    """Every held request of one gateway, by approval id, and the watcher that settles them."""

    def __init__(
        self, control: Control, resume: Callable[[Parked, HoldOutcome], None] | None = None
    ) -> None:
        self.control = control
        #: Called with each parked request's outcome (the gateway resumes the exchange).
        self.resume = resume
        self.held: dict[str, _Hold] = {}
        #: Held ids per long-poll (the control plane accepts up to 1,000).
        self.chunk = _CHUNK
        self._chunks: list[_Chunk] = []
        self._wake: asyncio.Event | None = None
        self._watcher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self.held)

    # -- the held side -----------------------------------------------------------------

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
            "request": flow.bound or {"method": flow.method, "host": flow.host, "path": flow.path},
            "timeout_seconds": int(timeout),
        }
        if decision.approval is not None:
            body["approver_roles"] = list(decision.approval.approver_roles)
        if flow.findings:  # which detector fired where; the control plane shows the spec with
            # each detection replaced, never the text (what the hash binds is the request's)
            found = describe(list(flow.findings))
            body.update(reason=f"{decision.reason}; content: {found}"[:2000], redact=True)
        return body

    async def create(self, flow: Flow, seconds: float) -> HoldOutcome | None:
        """Record the approval (``flow.approval_id``); an outcome when there is no need to wait.

        ``approved`` for an identical retry the control plane matched to an approval it has
        just marked used, ``unavailable`` when it could not record one (fail closed).
        """
        payload = self.payload(flow, seconds)
        flow.bound = None  # sent: a parked request keeps nothing of it (memory per hold)
        try:
            approval = await self.control.create_approval(payload)
        except ControlError:
            return "unavailable"
        if approval.get("status") == "approved":
            grant = approval.get("grant_id")
            flow.grant_id = str(grant) if grant else None
            return "approved"
        flow.approval_id = str(approval["id"])
        return None

    async def wait(self, flow: Flow, seconds: float, gone: Callable[[], bool]) -> HoldOutcome:
        """The outcome of `flow`'s approval (created by :meth:`create`)."""
        assert flow.approval_id is not None
        loop = asyncio.get_running_loop()
        held = _Hold(flow, loop.time() + seconds, gone, future=loop.create_future())
        self._register(held)
        try:
            assert held.future is not None
            return await held.future
        finally:
            self.held.pop(flow.approval_id, None)

    def park(self, parked: Parked, seconds: float) -> None:
        """Hold `parked` with no coroutine: :attr:`resume` gets its outcome."""
        deadline = asyncio.get_running_loop().time() + seconds
        self._register(_Hold(parked.flow, deadline, parked.gone, parked=parked))

    def _register(self, held: _Hold) -> None:
        assert held.flow.approval_id is not None
        self.held[held.flow.approval_id] = held
        self._add(held.flow.approval_id)

    async def finish(self, flow: Flow, outcome: HoldOutcome) -> HoldOutcome:
        """An approval is used once: confirm it with the control plane before forwarding.

        A use it refuses (409: the approval was spent already, by the identical request
        retried after the approval, which the control plane let through on it, or closed
        by its agent's suspension) raises :class:`Refusal` 409 ``approval_used``, the hold
        ended (:func:`_spent`); any other failure to confirm is ``unavailable`` (503, fail
        closed)."""
        if outcome != "approved" or flow.approval_id is None:
            return outcome
        try:
            await self.control.consume_approval(flow.approval_id)
        except ControlError as exc:
            if exc.status == 409:
                raise _spent(flow, flow.approval_id) from None
            return "unavailable"
        return "approved"

    def flows(self) -> list[Flow]:
        return [held.flow for held in self.held.values()]

    def kill(self, flow: Flow, outcome: HoldOutcome = "killed") -> None:
        held = self.held.get(flow.approval_id or "")
        if held is not None:
            self._settle(held, outcome)

    def release_all(self) -> None:
        """On shutdown: every held request ends (its approval stays on the server)."""
        for held in list(self.held.values()):
            self._settle(held, "gone")
        if self._watcher is not None:
            self._watcher.cancel()

    def _settle(self, held: _Hold, outcome: HoldOutcome) -> None:
        if held.future is not None:
            if not held.future.done():
                held.future.set_result(outcome)
            return
        if self.held.pop(held.flow.approval_id or "", None) is not None:
            assert held.parked is not None
            assert self.resume is not None
            self.resume(held.parked, outcome)

    # -- the watcher ---------------------------------------------------------------------

    def _add(self, approval_id: str) -> None:
        chunk = self._chunks[-1] if self._chunks else None
        if chunk is None or len(chunk.ids) >= self.chunk:
            chunk = _Chunk()
            self._chunks.append(chunk)
        chunk.ids.append(approval_id)
        chunk.stale = True
        if self._watcher is None or self._watcher.done():
            self._wake = asyncio.Event()
            self._watcher = asyncio.ensure_future(self._watch())
        assert self._wake is not None
        self._wake.set()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        wake = self._wake
        next_sweep = loop.time() + _SWEEP
        try:
            while self._chunks:
                now = loop.time()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + _SWEEP
                self._repoll(now)
                wake.clear()
                waiting: set[asyncio.Future[Any]] = {c.poll for c in self._chunks if c.poll}
                woken = asyncio.ensure_future(wake.wait())
                timeout = _DEBOUNCE if any(c.stale for c in self._chunks) else _SWEEP
                try:
                    await asyncio.wait(
                        waiting | {woken},
                        timeout=min(timeout, max(next_sweep - now, 0.0)),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    woken.cancel()
        finally:
            for chunk in self._chunks:
                if chunk.poll is not None:
                    chunk.poll.cancel()

    def _sweep(self, now: float) -> None:
        """Overdue holds time out; holds whose client left are released."""
        for held in list(self.held.values()):
            if now >= held.deadline:
                self._settle(held, "timeout")
            elif held.gone():
                self._settle(held, "gone")

    def _repoll(self, now: float) -> None:
        """Read finished long-polls; (re)start one for every chunk that needs it."""
        for chunk in list(self._chunks):
            if chunk.poll is not None and chunk.poll.done():
                self._read(chunk.poll)
                chunk.poll = None
            if chunk.poll is None or chunk.stale:
                chunk.ids = [i for i in chunk.ids if i in self.held]
            if not chunk.ids:
                if chunk.poll is not None:
                    chunk.poll.cancel()
                self._chunks.remove(chunk)
                continue
            if chunk.poll is not None and not (chunk.stale and now - chunk.started >= _DEBOUNCE):
                continue
            if chunk.poll is not None:
                chunk.poll.cancel()
            chunk.poll = asyncio.ensure_future(self._poll(list(chunk.ids)))
            chunk.started, chunk.stale = now, False

    async def _poll(self, ids: list[str]) -> list[dict[str, Any]]:
        try:
            return await self.control.wait_approvals(ids, _POLL)
        except Exception:  # unreachable or a bad answer: ask again in a second
            await asyncio.sleep(1.0)
            return []

    def _read(self, poll: asyncio.Future[list[dict[str, Any]]]) -> None:
        if poll.cancelled():
            return
        for approval in poll.result():
            held = self.held.get(str(approval.get("id")))
            outcome = _SETTLED.get(str(approval.get("status")))
            if held is not None and outcome is not None:
                self._settle(held, outcome)


def _spent(flow: Flow, approval_id: str) -> Refusal:
    """Why `flow` is not forwarded: its approval was spent by another request. The hold
    ends here, as its record and its span say (``held_ms``, outcome ``used``)."""
    if flow.hold is not None:
        flow.hold = (flow.hold[0], time.monotonic())
    if flow.trace is not None:
        flow.trace.hold_ended("used", approval_id)
    return Refusal(
        409,
        "approval_used",
        f"approval `{approval_id}` was already used: the identical request sent again "
        "after it was approved went through on it (or its agent was suspended or removed "
        "since, which closes its approvals); this request was not forwarded",
    )
