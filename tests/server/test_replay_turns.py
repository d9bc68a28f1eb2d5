"""Replays and suggestions take their turn, and stream what they read.

The review's probe: eight concurrent replays by a viewer over 100,000 rows held all eight
of the store's readers for ~20 s (the owner's session lookups, the kill switch included,
answered 503) and 1.9 GB of memory (every record loaded before the first was replayed).
Now one runs at a time per server (another gets 429 `replay_busy` at once), and the
records are read as they are replayed (`replaystore.Records`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from agentfirewall_server.replaystore import Records
from tests.server.conftest import SPEC, Harness


def test_a_second_replay_or_suggestion_is_told_to_wait(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    read = Records.__iter__

    def slow(self: Records) -> Iterator[Any]:
        started.set()
        release.wait(10)
        yield from read(self)

    monkeypatch.setattr(Records, "__iter__", slow)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(harness.admin, "POST", "/v1/policies/replay", json={})
        try:
            assert started.wait(10)
            asked: tuple[tuple[str, str, Any], ...] = (("POST", "/v1/policies/replay", {}),
                     ("GET", "/v1/permissions/suggest?agent=Bot", None))  # fmt: skip
            for method, path, body in asked:
                busy = harness.admin(method, path, json=body)
                assert busy.status_code == 429, busy.text
                assert busy.json()["error"] == "replay_busy"
                assert busy.headers["Retry-After"] == "5"
            assert harness.admin("GET", "/v1/agents").status_code == 200  # the rest is served
        finally:
            release.set()
        assert first.result().status_code == 200
    assert harness.admin("POST", "/v1/policies/replay", json={}).status_code == 200  # its turn


def test_records_are_read_as_they_are_replayed(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    for n in range(3):
        spec = {**SPEC, "parameters": {"merge_method": "squash", "n": n}}
        assert harness.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).is_success

    def first_two(conn: Any) -> list[Any]:
        records = iter(Records(conn, 0.0))
        try:
            return [next(records), next(records)]  # (two read: the third never needed)
        finally:
            records.close()  # type: ignore[attr-defined]

    found = harness.state.db.read_sync(first_two)
    assert [r.spec.parameters["n"] for r in found] == [2, 1]  # newest first
    report = harness.admin("POST", "/v1/policies/replay", json={}).json()
    assert report["total"] == 3
