"""Leased budget slices: most budget-covered requests cost no control-plane call.

For ``count`` and ``sum`` budgets a request's spend is known before it is forwarded
(``agentfirewall.budgetspend``). The gateway holds a slice of each budget, leased from
the control plane (``agentfirewall_server.budgetleases``: set aside atomically there, so
every gateway and replica together never pass the limit), and debits a request from its
slices locally. A request the slices cannot cover asks for a new lease, which carries the
request's own amount and hands back what the old slice had left (one call; concurrent
requests wait for it rather than asking too). The control plane refuses past the limit
exactly as for a reservation; a refusal that other gateways' idle slices could lift is
asked again for a few seconds while they come back.

One lock per budget, taken in one order: two requests covered by different sets of budgets
that share one (all Stripe calls counted, transfers summed) never lease that budget at
once, so there is one current slice per budget and every slice is handed back.

After the response the debit is spent (any answer below 400, a 101 upgrade included,
whatever became of the response after its head; or sent with no answer: it may have
happened) or credited back (refused upstream, never sent). The gateway reports each
lease's cumulative spend per agent every second when busy, every 5 seconds when not (so
``used`` lags by that much; ``remaining`` never overstates: a slice counts in full);
within a quarter second it hands back slices that expired or sat idle for half a second;
shutting down hands back all.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["LeaseControl", "Leases", "Say", "Slice", "say_plain"]

#: Where a gateway's message goes, with its level: ``Gateway.say`` (a JSON line under
#: ``--log-format json``).
Say = Callable[[str, str], None]


def say_plain(message: str, level: str = "info") -> None:
    """A message on stderr as it is (no gateway formats it: ``tf mcp wrap``, tests)."""
    del level
    print(message, file=sys.stderr, flush=True)


#: How often idle and expired slices are handed back (seconds).
FLUSH = 0.25
#: How often the spend of the slices still in use is reported (seconds): every second
#: once `_BUSY` requests were debited since the last report, else every 5 seconds.
REPORT = 1.0
QUIET_REPORT = 5.0
_BUSY = 64
#: A slice not debited for this long goes back to the budget.
IDLE = 0.5
#: How long a refusal that returning slices could lift is asked again.
RETRY_FOR = 3.0
_RETRY_EVERY = 0.2
#: The most a lease may ask for beyond its request (the control plane's cap on `want`,
#: ``routes/budgetleases.py``; no limit is higher, so asking more could not be granted).
WANT_CAP = 1e15


class LeaseControl(Protocol):
    """The two calls of ``control.Control`` leases use (named here: this module stays
    below ``control``)."""

    async def lease_budget(self, payload: dict[str, Any]) -> dict[str, Any]: ...
    async def report_leases(self, reports: list[dict[str, Any]]) -> None: ...


@dataclass(slots=True, eq=False)
class Slice:
    """One lease of one budget, as this gateway spends from it."""

    budget: str
    lease: str
    granted: float
    deadline: float  # loop time; no debit after it
    left: float
    last_debit: float
    spent: dict[str, float] = field(default_factory=dict)  # cumulative, per agent
    freed: float = 0.0  # cumulative: handed back
    in_flight: float = 0.0  # debited, response not seen yet
    active: bool = True
    reported: tuple[float, float] = (0.0, 0.0)  # (spent, freed) as last acknowledged

    def retire(self) -> None:
        if self.active:
            self.active = False
            self.freed += self.left
            self.left = 0.0

    @property
    def closable(self) -> bool:
        return not self.active and self.in_flight == 0

    def report(self) -> dict[str, Any]:
        return {"lease": self.lease, "spent": dict(self.spent), "freed": self.freed,
                "done": self.closable}  # fmt: skip


class Leases:
    """This gateway's budget slices, by budget key (id and definition: a budget changed,
    or removed and set again, is another; the old slices are never spent from again)."""

    def __init__(
        self, control: LeaseControl, errors: type[Exception], say: Say = say_plain
    ) -> None:
        self.control = control
        #: What a failed control-plane call raises (``ControlError``).
        self._errors = errors
        self.say = say
        self._current: dict[str, Slice] = {}
        self._open: dict[str, Slice] = {}  # lease id -> not yet closed on the control plane
        self._locks: dict[str, asyncio.Lock] = {}  # by budget key
        self._flusher: asyncio.Task[None] | None = None
        self._reported = 0.0  # loop time of the last report
        self._debits = 0  # local debits since then

    def _debit(self, amounts: dict[str, float]) -> list[tuple[Any, float]] | None:
        """Debit every budget from its slice, or none (a slice short or expired)."""
        now = asyncio.get_running_loop().time()
        slices = []
        for ident, amount in amounts.items():
            found = self._current.get(ident)
            if found is None or not found.active or found.deadline <= now or found.left < amount:
                return None
            slices.append((found, amount))
        for found, amount in slices:
            found.left -= amount
            found.in_flight += amount
            found.last_debit = now
        self._debits += 1
        return list(slices)

    async def debit(
        self, payload: dict[str, Any], amounts: dict[str, float], names: dict[str, str]
    ) -> Any:
        """Debit `amounts` (per budget id; `names` by id) locally, leasing more if needed.

        Returns the debits (for :meth:`finish`), or the control plane's refusal (a dict).
        Raises the control's error when the control plane cannot be asked."""
        give_up = asyncio.get_running_loop().time() + RETRY_FOR
        while True:
            debits = self._debit(amounts)
            if debits is not None:
                return debits
            async with contextlib.AsyncExitStack() as held:
                # each budget's own lock, in one order (no deadlock): a request covered by
                # {A} and one by {A, B} never lease A at once (one slice would be lost)
                for ident in sorted(amounts):
                    await held.enter_async_context(self._locks.setdefault(ident, asyncio.Lock()))
                debits = self._debit(amounts)  # another request leased meanwhile
                if debits is not None:
                    return debits
                answer = await self._lease(payload, amounts, names)
            if isinstance(answer, list):
                return answer
            if not answer.get("retry") or asyncio.get_running_loop().time() > give_up:
                return answer
            await asyncio.sleep(_RETRY_EVERY)  # other gateways' idle slices come back

    async def _lease(
        self, payload: dict[str, Any], amounts: dict[str, float], names: dict[str, str]
    ) -> list[tuple[Any, float]] | dict[str, Any]:
        handing_back = []
        want: dict[str, float] = {}
        for ident, amount in amounts.items():
            old = self._current.pop(ident, None)
            used = 0.0
            if old is not None:
                used = old.granted - old.left
                old.retire()
                handing_back.append(old.report())
            # (at most what the control plane takes: a huge request is refused as past
            # the limit, 403, not as a malformed lease)
            want[names[ident]] = min(max(8 * amount, 2 * used), WANT_CAP)
        # the old slices' leftovers go back in the same transaction (cumulative reports:
        # the next flush sends them again, harmlessly)
        answer = await self.control.lease_budget(
            {**payload, "want": want, "handback": handing_back}
        )
        refused = answer.get("refused")
        if refused:
            return dict(refused)
        now = asyncio.get_running_loop().time()
        debits: list[tuple[Any, float]] = []
        for raw in dict(answer.get("leases") or {}).values():
            granted, ident = float(raw["amount"]), str(raw["budget"])
            found = Slice(ident, str(raw["lease"]), granted, now + float(raw["seconds"]),
                          granted, now)  # fmt: skip
            displaced = self._current.get(ident)
            if displaced is not None:  # (the locks prevent it) never left active unseen:
                displaced.retire()  # a slice not current would never be handed back
            self._current[ident] = found
            self._open[found.lease] = found
            amount = float(raw["request"])  # the control plane's measure of this request
            found.left -= amount
            found.in_flight += amount
            debits.append((found, amount))
        self._start()
        return debits

    def finish(self, debits: list[tuple[Any, float]], agent: str, spent: bool) -> None:
        """The response is known: the debits are spent, or go back to their slices."""
        for found, amount in debits:
            assert isinstance(found, Slice)
            found.in_flight -= amount
            if spent:
                found.spent[agent] = found.spent.get(agent, 0.0) + amount
            elif found.active:
                found.left += amount
            else:
                found.freed += amount

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._open:
            await asyncio.sleep(FLUSH)
            await self.flush()

    async def flush(self, *, everything: bool = False) -> None:
        """Report what changed; hand back expired, idle (or, at shutdown, all) slices."""
        now = asyncio.get_running_loop().time()
        for ident, found in list(self._current.items()):
            if everything or found.deadline <= now or now - found.last_debit > IDLE:
                found.retire()
                del self._current[ident]
        closing = [s for s in self._open.values() if s.closable]
        every = REPORT if self._debits >= _BUSY else QUIET_REPORT
        if not closing and not everything and now - self._reported < every:
            return
        due = [s for s in self._open.values()
               if s.closable or (sum(s.spent.values()), s.freed) != s.reported]  # fmt: skip
        if not due:
            return
        self._reported, self._debits = now, 0
        reports = [s.report() for s in due]
        try:
            await self.control.report_leases(reports)
        except self._errors as exc:  # cumulative: the next round sends it again
            self.say(f"agentfirewall_proxy: budget lease report failed: {exc}", "warning")
            return
        for found, sent in zip(due, reports, strict=True):
            found.reported = (sum(sent["spent"].values()), sent["freed"])
            if sent["done"]:
                self._open.pop(found.lease, None)

    async def drain(self) -> None:
        """Shutting down: hand every slice back. A lease with a debit still in flight is
        not closed: it stays counted on the control plane (it may have happened)."""
        if self._flusher is not None:
            self._flusher.cancel()
        for found in self._open.values():
            found.retire()
        for _ in range(3):
            if not self._open:
                return
            await self.flush(everything=True)
            if all(not s.closable for s in self._open.values()):
                return
