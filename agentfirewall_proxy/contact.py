"""Contact with the control plane, bounded by ``--max-config-age`` (the gateway's and
``tf mcp wrap``'s rule, written once).

Past the bound without word from the control plane, the config in force may miss a kill
switch: the proxy is *lost* and refuses every request (fail closed) until it answers again.
The watch keeps its own clock, so a call lost in a partition (a long poll or heartbeat
that never returns) cannot hide the outage. From half the bound on it probes: it asks for
the config itself, so a quiet control plane is not taken for a lost one, and once lost it
asks until the control plane answers. Only a config answer (changed or not) ends an
outage: another call's answer says nothing of what changed meanwhile. A config older than
the one in force (a replica behind the others, cut off from the database) is no answer:
the gateway neither applies it nor tells the watch (``Gateway._older``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["ContactWatch"]

#: The longest a probe's config fetch may take (``ContactWatch.probe_timeout``).
_PROBE_TIMEOUT = 5.0


class ContactWatch:
    """When the control plane last answered, and whether that is longer ago than `bound`.

    Each side acts through its callbacks: `lose` once it is lost (``lost`` is already
    true), `found` once a config answer ends the outage, `probe` to fetch the config (it
    bounds its fetch by ``probe_timeout`` and calls ``heard(config=True)`` when answered).
    `answers`, when given, counts the control plane's other answers (traffic shipped): read
    each tick, a count that moved is word from it too (not once lost).
    """

    def __init__(
        self,
        bound: float,
        *,
        lose: Callable[[], Awaitable[None]],
        found: Callable[[], None],
        probe: Callable[[], Awaitable[None]],
        answers: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bound = bound
        self.probe_timeout = min(_PROBE_TIMEOUT, bound)
        self._lose = lose
        self._found = found
        self._probe = probe
        self._answers = answers
        self._counted = 0
        self._clock = clock
        #: When the control plane last answered (`clock`), and whether that is longer ago
        #: than `bound` (every request refused).
        self.heard_at = clock()
        self.lost = False

    @property
    def age(self) -> float:
        """Seconds since the control plane last answered."""
        return self._clock() - self.heard_at

    def unheard(self) -> str:
        """Why a request is refused while lost."""
        bound = f"--max-config-age {self.bound:g}"
        return f"no word from the control plane for {self.age:.0f} s ({bound})"

    def heard(self, *, config: bool = False) -> None:
        """The control plane answered (`config`: a config fetch). Once lost, only a config
        answer ends the outage."""
        if self.lost and not config:
            return
        self.heard_at = self._clock()
        if self.lost:
            self.lost = False
            self._found()

    async def watch(self) -> None:
        """Watch until cancelled, on a tick of a second at most (a quarter of the bound)."""
        tick = min(1.0, self.bound / 4)
        probe: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(tick)
                if self._answers is not None and (count := self._answers()) != self._counted:
                    self._counted = count
                    self.heard()
                age = self.age
                if age > self.bound and not self.lost:
                    self.lost = True
                    await self._lose()
                if age > self.bound / 2 and (probe is None or probe.done()):
                    probe = asyncio.ensure_future(self._probe())
        finally:
            if probe is not None:
                probe.cancel()
