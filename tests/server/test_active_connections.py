"""``aaf_active_connections`` ("Long-polls and event streams open") counts a gateway's
and an agent's long-poll while it waits, and no more once it has answered."""

from __future__ import annotations

import threading
from typing import Any

from tests.server.conftest import Harness

SERIES = 'aaf_active_connections{agent="gateway"}'


def _open(harness: Harness, series: str = SERIES) -> float | None:
    for line in harness.admin("GET", "/metrics").text.splitlines():
        if line.startswith(series + " "):
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


def test_an_agents_wait_for_a_decision_is_counted_while_it_waits(harness: Harness) -> None:
    key = harness.create_agent("Waiter")
    rule = {"agent": "Waiter", "connector": "github", "action_pattern": "*",
            "decision": "require_approval"}  # fmt: skip
    assert harness.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    spec = {"type": "github.pr.merge", "resource": {"provider": "github", "target": "o/r#1"}}
    asked = harness.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert asked["status"] == "pending_approval", asked
    series = 'aaf_active_connections{agent="Waiter"}'
    answer: dict[str, Any] = {}

    def wait() -> None:
        path = f"/v1/actions/{asked['action_request_id']}/wait?timeout=20"
        answer["r"] = harness.agent(key, "GET", path)

    thread = threading.Thread(target=wait)
    thread.start()
    try:
        for _ in range(200):  # until the long-poll has started waiting
            if _open(harness, series) == 1.0:
                break
        assert _open(harness, series) == 1.0
    finally:
        harness.admin("POST", f"/v1/approvals/{asked['approval']['id']}/deny")
        thread.join(30)
    assert answer["r"].json()["status"] == "denied"
    assert _open(harness, series) == 0.0
