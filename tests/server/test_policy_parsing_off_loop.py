"""A policy document is never parsed on the event loop, and only a few at once.

The review's attack: a viewer posted two 512 KB documents (260,000 one-letter list items)
to `/policies/replay`; the control plane parsed them with pure-Python PyYAML, twice, on
its event loop, and answered nothing else, `/api/health` and agents' decisions included,
for 19 s (`/policies/validate`: 10 s). The loader now refuses such a document after
`MAX_NODES` nodes (tests/core/test_policy_loader_limits.py); every route that parses one
does it in a worker thread (`routes.policies.off_loop`), `PARSERS` at a time."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.to_thread
import pytest

from agentfirewall.policy import loader
from agentfirewall_server.routes.policies import PARSERS, off_loop
from tests.server.conftest import Harness

POLICY = (
    "name: p\nrules:\n  - name: r\n    decision: deny\n"
    "    conditions: [{field: action_spec.type, operator: equals, value: a.b}]\n"
)


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_no_route_parses_a_policy_document_on_the_event_loop(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[bool] = []
    parse = loader.parse_document

    def spy(*args: Any, **kw: Any) -> Any:
        parsed.append(_on_loop())
        return parse(*args, **kw)

    monkeypatch.setattr(loader, "parse_document", spy)
    document = {"document": POLICY}
    calls = [
        ("POST", "/v1/policies/validate", document),
        ("POST", "/v1/policies", document),
        ("PUT", "/v1/policies/p", {"document": POLICY.replace("deny", "allow")}),
        ("POST", "/v1/policies/replay", {"policies": [POLICY]}),
        ("POST", "/v1/shadow/policies", {"document": POLICY.replace("name: p", "name: s")}),
        ("GET", "/v1/shadow", None),
    ]
    for method, path, body in calls:
        before = len(parsed)
        answer = harness.admin(method, path, json=body)
        assert answer.status_code in (200, 201), (path, answer.text)
        assert len(parsed) > before, f"{method} {path} parsed no document"
    assert not any(parsed), parsed  # each one in a worker thread
    refused = harness.admin("POST", "/v1/policies/replay", json={"policies": ["x: [" * 65]})
    assert refused.status_code == 422
    assert "nested deeper than 64 levels" in refused.json()["message"]


class _State:
    """An app's state: the limiter is per app, keyed by it."""


@pytest.mark.anyio
async def test_at_most_parsers_documents_are_parsed_at_once() -> None:
    request: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(af=_State())))
    lock, entered, gate = threading.Lock(), threading.Semaphore(0), threading.Event()
    running = peak = 0

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        entered.release()
        gate.wait(10)
        with lock:
            running -= 1

    async with anyio.create_task_group() as group:
        for _ in range(PARSERS + 3):
            group.start_soon(off_loop, request, work)
        for _ in range(PARSERS):
            assert await anyio.to_thread.run_sync(entered.acquire, True, 10)
        await anyio.sleep(0.05)  # room for one more to start, were there no limit
        gate.set()
    assert peak == PARSERS
