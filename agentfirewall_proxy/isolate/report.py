"""Reporting what `--isolate` blocked: a line on stderr per new destination (the first
:data:`MAX_LINES`), and traffic records (decision ``deny``, action ``isolate.direct_connection``,
path ``run ID #N``: the run and the count of its attempts) so `tf logs` shows them.

Records go to the control plane's traffic API with the gateway token (``TF_GATEWAY_TOKEN``,
or the project's ``.tf/gateway.token`` when that server is the project's own), directly, never
through a proxy of the environment; without a token they stay on stderr only. They
are sent every second while the agent runs and once more at its end, at most
:data:`MAX_RECORDS` per run; a batch the control plane refuses for what it holds is sent
again record by record. The summary counts every attempt and says which are not in `tf logs`,
and why.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

import httpx

from agentfirewall_proxy.isolate.packets import Blocked

__all__ = ["ACTION", "FIELD_LIMITS", "MAX_LINES", "MAX_RECORDS", "BlockedLog", "traffic_record"]

ACTION = "isolate.direct_connection"
MAX_RECORDS = 500
#: Destinations named on stderr one by one: a flood of them would slow the counting (and
#: fill the terminal); the rest are counted.
MAX_LINES = 50
REASON = "isolate: direct connection refused: the client ignored the proxy variables"
#: What the control plane accepts in a traffic record's fields (``TrafficRecord`` in
#: agentfirewall_server/routes/gateway.py): one longer value gets the whole batch refused.
FIELD_LIMITS = {
    "request_id": 100,
    "agent": 200,
    "action": 600,
    "method": 16,
    "host": 300,
    "path": 8192,
    "reason": 2000,
}
# Answers that refuse what a batch holds, which one record can cause: sent again one by one.
_REFUSED_CONTENT = frozenset({400, 413, 422})


def traffic_record(agent: str, blocked: Blocked, run: str, number: int) -> dict[str, Any]:
    """The traffic row of one blocked attempt (the shape the gateway sends), each field cut to
    what the control plane accepts; its path names the run and counts the run's attempts
    (``run 3f9c0a12 #4``)."""
    record = {
        "request_id": f"iso_{run}_{number}",
        "agent": agent,
        "action": ACTION,
        "method": blocked.protocol.upper(),
        "host": blocked.name if blocked.protocol == "dns" and blocked.name else blocked.target,
        "path": f"run {run} #{number}",
        "decision": "deny",
        "reason": REASON,
    }
    return {name: value[: FIELD_LIMITS.get(name)] for name, value in record.items()}


def _why(status: int) -> str | None:
    """Why records the control plane answered `status` to are not in `tf logs` (None: they
    are); 0: it could not be reached."""
    if 200 <= status < 300:
        return None
    if status == 0:
        return "the control plane was unreachable"
    return f"the control plane answered HTTP {status}"


class BlockedLog:
    """Counts blocked attempts, says so on stderr, sends them to the control plane
    (`transport`: httpx's, for tests)."""

    def __init__(
        self,
        agent: str,
        *,
        server_url: str | None,
        gateway_token: str | None,
        say: Callable[[str], None],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.agent = agent
        self.run = secrets.token_hex(4)
        self.count = 0
        self._url = f"{server_url.rstrip('/')}/api/v1/gateway/traffic" if server_url else None
        self._token = gateway_token
        self._transport = transport
        self._say = say
        self._seen: set[str] = set()
        self._pending: list[dict[str, Any]] = []
        self._queued = 0  # records made, of at most MAX_RECORDS: pending, in flight or done
        self._sent = 0
        self._unsent: dict[str, int] = {}  # why -> how many records
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tf-isolate-report", daemon=True)

    @property
    def unsent(self) -> int:
        return sum(self._unsent.values())

    def start(self) -> BlockedLog:
        self._thread.start()
        return self

    def add(self, blocked: Blocked) -> None:
        described = blocked.describe()
        with self._lock:
            self.count += 1
            new = described not in self._seen and len(self._seen) <= MAX_LINES
            if new:
                self._seen.add(described)
            shown = len(self._seen)
            if self._queued < MAX_RECORDS:
                self._queued += 1
                self._pending.append(traffic_record(self.agent, blocked, self.run, self.count))
        if new and shown <= MAX_LINES:
            self._say(f"tf: blocked {described}: the client ignored the proxy variables")
        elif new:
            self._say(f"tf: blocked more than {MAX_LINES} destinations: the rest are only counted")

    def _run(self) -> None:
        while not self._done.wait(1.0):
            self.flush()

    def _post(self, client: httpx.Client, url: str, records: list[dict[str, Any]]) -> int:
        """The control plane's status for `records` (0: it could not be reached)."""
        try:
            return client.post(url, json={"records": records}).status_code
        except httpx.HTTPError:
            return 0

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        url, token = self._url, self._token
        if url is None or token is None:
            self._tally([("no gateway token to send them with", len(batch))])
            return
        with httpx.Client(
            headers={"Authorization": f"Bearer {token}"},
            timeout=5.0,
            trust_env=False,  # straight to the control plane: never the user's HTTP_PROXY
            transport=self._transport,
        ) as client:
            status = self._post(client, url, batch)
            answers = [(status, len(batch))]
            if status in _REFUSED_CONTENT and len(batch) > 1:  # one bad record loses no other
                answers = [(self._post(client, url, [record]), 1) for record in batch]
        self._tally([(_why(status), number) for status, number in answers])

    def _tally(self, results: list[tuple[str | None, int]]) -> None:
        """Count (why not recorded, or None: recorded; how many records)."""
        with self._lock:
            for why, number in results:
                if why is None:
                    self._sent += number
                else:
                    self._unsent[why] = self._unsent.get(why, 0) + number

    def close(self, missed: int = 0, *, complete: bool = True) -> None:
        """Send what is left and print the run's summary. `missed`: attempts the sandbox
        counted but could not tell apart (too many at once), so never reported one by one;
        not `complete`: it stopped counting before it had read them all (the count is a
        lower bound)."""
        self._done.set()
        self._thread.join(timeout=10)
        self.flush()
        total = self.count + missed
        if not total:
            return
        gaps = [f"{number} not recorded: {why}" for why, number in self._unsent.items()]
        if self.count > self._queued:
            gaps.append(f"{self.count - self._queued} over the {MAX_RECORDS} recorded per run")
        if missed:
            gaps.append(f"{missed} too many at once to be told apart")
        logs = f'`tf logs --agent "{self.agent}"` lists '
        if not gaps:
            where = f"; {logs}them"
        else:
            where = f" ({'; '.join(gaps)})" + (f"; {logs}{self._sent}" if self._sent else "")
        plural = "s" if total != 1 else ""
        least = "" if complete else "at least "
        self._say(f"tf: --isolate blocked {least}{total} direct connection{plural}{where}")
