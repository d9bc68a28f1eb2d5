"""``aaf_active_connections`` ("Long-polls and event streams open") counts a gateway's
long-poll while it waits, and no more once it has answered."""

from __future__ import annotations

import threading
from typing import Any

from tests.server.conftest import Harness

SERIES = 'aaf_active_connections{agent="gateway"}'


def _open(harness: Harness) -> float | None:
    for line in harness.admin("GET", "/metrics").text.splitlines():
        if line.startswith(SERIES + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_gateway_long_poll_is_counted_while_it_waits(harness: Harness) -> None:
    version = harness.gateway("GET", "/v1/gateway/config").json()["version"]
    answer: dict[str, Any] = {}

    def poll() -> None:
        answer["r"] = harness.gateway("GET", f"/v1/gateway/config?since={version}&wait=20")

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for _ in range(200):  # until the long-poll has started waiting
            if _open(harness) == 1.0:
                break
        assert _open(harness) == 1.0
    finally:
        harness.create_agent("New")  # a change: the long-poll answers
        thread.join(30)
    assert answer["r"].status_code == 200
    assert _open(harness) == 0.0
