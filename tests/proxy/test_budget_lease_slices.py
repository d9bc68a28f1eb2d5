"""The gateway's leased slices (``budgetlease.py``) against a control plane in memory: every
slice it leases is handed back, whatever requests covered by overlapping sets of budgets
run at once (Hypothesis), and a lease never asks for more than the control plane takes.

A request covered by budgets {A} and one covered by {A, B} lease A at the same moment when
each waits on a lock of its own set: one new slice of A then displaces the other, which
stays active, is never current, so never handed back or reported done: it holds its share
of A until the gateway shuts down (``in_flight`` and ``leased`` stuck above 0).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall_proxy import budgetlease
from agentfirewall_proxy.budgetlease import WANT_CAP, Leases
from tests.fuzzscale import examples

BUDGETS = ("all-count", "transfer-sum", "agent-count")


class ControlError(Exception):
    pass


class Plane:
    """What the control plane knows of leases: the ones granted and not closed yet.

    Each call yields to the loop a chosen number of times (where a real call would wait on
    the network), so concurrent requests interleave in every order Hypothesis picks."""

    def __init__(self, yields: list[int], extra: bool) -> None:
        self.yields = itertools.cycle(yields or [0])
        self.extra = extra
        self.open: dict[str, str] = {}  # lease id -> budget
        self.asked: list[dict[str, float]] = []
        self._ids = itertools.count(1)

    async def _wait(self) -> None:
        for _ in range(next(self.yields)):
            await asyncio.sleep(0)

    async def lease_budget(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._close(payload["handback"])
        self.asked.append(dict(payload["want"]))
        await self._wait()
        leases = {}
        for name, want in payload["want"].items():
            request = float(payload["amounts"][name])
            ident = f"lse_{next(self._ids)}"
            self.open[ident] = name
            granted = request + (min(want, 3 * request) if self.extra else 0.0)
            leases[name] = {
                "lease": ident,
                "budget": name,
                "amount": granted,
                "seconds": 10.0,
                "request": request,
            }
        await self._wait()
        return {"leases": leases, "refused": None}

    async def report_leases(self, reports: list[dict[str, Any]]) -> None:
        await self._wait()
        self._close(reports)

    def _close(self, reports: list[dict[str, Any]]) -> None:
        for item in reports:
            if item["done"]:
                self.open.pop(item["lease"], None)


async def _run(rounds: list[list[tuple[frozenset[str], bool]]], plane: Plane) -> Leases:
    leases = Leases(plane, ControlError)
    names = {b: b for b in BUDGETS}
    for requests in rounds:  # the requests of one round run at once

        async def one(covered: frozenset[str], spent: bool) -> None:
            amounts = {b: 1.0 if b.endswith("count") else 100.0 for b in sorted(covered)}
            payload = {"agent": "Fin", "amounts": amounts}
            debits = await leases.debit(payload, amounts, {b: names[b] for b in amounts})
            assert isinstance(debits, list)
            await asyncio.sleep(0)  # (the upstream answers)
            leases.finish(debits, "Fin", spent)

        await asyncio.gather(*(one(covered, spent) for covered, spent in requests))
    return leases


subsets = st.frozensets(st.sampled_from(BUDGETS), min_size=1)


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rounds=st.lists(
        st.lists(st.tuples(subsets, st.booleans()), min_size=1, max_size=5), min_size=1, max_size=6
    ),
    yields=st.lists(st.integers(0, 3), max_size=8),
    extra=st.booleans(),
)
def test_every_leased_slice_is_handed_back(
    rounds: list[list[tuple[frozenset[str], bool]]],
    yields: list[int],
    extra: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plane = Plane(yields, extra)

    async def scenario() -> tuple[dict[str, str], int]:
        leases = await _run(rounds, plane)
        flusher = leases._flusher
        if flusher is not None:  # the test flushes itself, at a moment it chooses
            flusher.cancel()
        monkeypatch.setattr(budgetlease, "IDLE", -1.0)  # every slice idle now
        await leases.flush()
        left = dict(plane.open)
        await leases.drain()  # (shutting down hands back everything anyway)
        return left, len(plane.open)

    left, after_drain = asyncio.run(scenario())
    # the gateway is still alive: every slice it is not spending from went back
    assert left == {}, f"slices never handed back while the gateway lives: {left}"
    assert after_drain == 0


def test_two_budget_sets_sharing_a_budget_lease_it_one_at_a_time() -> None:
    """The report's case: all Stripe calls counted (A), transfers summed too (B); a
    customer call (A) and a transfer (A, B) at the same moment."""
    plane = Plane([2], extra=True)

    async def scenario() -> tuple[int, int]:
        leases = Leases(plane, ControlError)
        names = {b: b for b in BUDGETS}
        customer = {"all-count": 1.0}
        transfer = {"all-count": 1.0, "transfer-sum": 100.0}
        await asyncio.gather(
            leases.debit({"amounts": customer}, customer, names),
            leases.debit({"amounts": transfer}, transfer, names),
        )
        current = sum(1 for s in leases._open.values() if s.active and s.budget == "all-count")
        await leases.drain()
        return len(plane.asked), current

    asked, active = asyncio.run(scenario())
    assert active == 1  # one current slice of the shared budget, never two
    assert asked in (1, 2)


@pytest.mark.parametrize("amount", [1.0, 1.25e14, 1.25e14 + 1, 9.9e14, 5e17])
def test_a_lease_never_asks_more_than_the_control_plane_takes(amount: float) -> None:
    """A huge Stripe amount was asked as 8 x amount, past the control plane's 1e15 cap: the
    lease was refused as malformed (422 → 503 `budget_unavailable`), not as past the limit."""
    plane = Plane([], extra=False)

    async def scenario() -> None:
        leases = Leases(plane, ControlError)
        amounts = {"transfer-sum": amount}
        await leases.debit({"amounts": amounts}, amounts, {"transfer-sum": "transfer-sum"})
        await leases.drain()

    asyncio.run(scenario())
    (want,) = plane.asked
    assert 0 < want["transfer-sum"] <= WANT_CAP
