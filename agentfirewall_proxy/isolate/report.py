"""Reporting what `--isolate` blocked: a line on stderr per new destination, and traffic records
(decision ``deny``, action ``isolate.direct_connection``, path ``run ID #N``: the run and the
count of its attempts) so `tf logs` shows them.

Records go to the control plane's traffic API with the gateway token (``TF_GATEWAY_TOKEN``,
or the project's ``.tf/gateway.token`` when that server is the project's own), directly, never
through a proxy of the environment; without a token they stay on stderr only. They
are sent every second while the agent runs and once more at its end, at most
:data:`MAX_RECORDS` per run (the summary still counts them all).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

import httpx

from agentfirewall_proxy.isolate.packets import Blocked

__all__ = ["ACTION", "MAX_RECORDS", "BlockedLog", "traffic_record"]

ACTION = "isolate.direct_connection"
MAX_RECORDS = 500
REASON = "isolate: direct connection refused: the client ignored the proxy variables"


def traffic_record(agent: str, blocked: Blocked, run: str, number: int) -> dict[str, Any]:
    """The traffic row of one blocked attempt (the shape the gateway sends); its path names
    the run and counts the run's attempts (``run 3f9c0a12 #4``)."""
    return {
        "request_id": f"iso_{run}_{number}",
        "agent": agent,
        "action": ACTION,
        "method": blocked.protocol.upper(),
        "host": blocked.name if blocked.protocol == "dns" and blocked.name else blocked.target,
        "path": f"run {run} #{number}",
        "decision": "deny",
        "reason": REASON,
    }


class BlockedLog:
    """Counts blocked attempts, says so on stderr, sends them to the control plane."""

    def __init__(
        self,
        agent: str,
        *,
        server_url: str | None,
        gateway_token: str | None,
        say: Callable[[str], None],
    ) -> None:
        self.agent = agent
        self.run = secrets.token_hex(4)
        self.count = 0
        self._url = f"{server_url.rstrip('/')}/api/v1/gateway/traffic" if server_url else None
        self._token = gateway_token
        self._say = say
        self._seen: set[str] = set()
        self._pending: list[dict[str, Any]] = []
        self._sent = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tf-isolate-report", daemon=True)
        self.unsent = 0

    def start(self) -> BlockedLog:
        self._thread.start()
        return self

    def add(self, blocked: Blocked) -> None:
        with self._lock:
            self.count += 1
            first = blocked.describe() not in self._seen
            self._seen.add(blocked.describe())
            if self._sent + len(self._pending) < MAX_RECORDS:
                self._pending.append(traffic_record(self.agent, blocked, self.run, self.count))
        if first:
            self._say(f"tf: blocked {blocked.describe()}: the client ignored the proxy variables")

    def _run(self) -> None:
        while not self._done.wait(1.0):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        if self._url is None or self._token is None:
            self.unsent += len(batch)
            return
        try:
            response = httpx.post(
                self._url,
                json={"records": batch},
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=5.0,
                trust_env=False,  # straight to the control plane: never the user's HTTP_PROXY
            )
            ok = response.is_success
        except httpx.HTTPError:
            ok = False
        with self._lock:
            if ok:
                self._sent += len(batch)
            else:
                self.unsent += len(batch)

    def close(self) -> None:
        """Send what is left and print the run's summary."""
        self._done.set()
        self._thread.join(timeout=10)
        self.flush()
        if not self.count:
            return
        where = f'; `tf logs --agent "{self.agent}"` lists them'
        if self.unsent:
            where = f" ({self.unsent} not recorded: no gateway token or server unreachable)"
        plural = "s" if self.count != 1 else ""
        self._say(f"tf: --isolate blocked {self.count} direct connection{plural}{where}")
