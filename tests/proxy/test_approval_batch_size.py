"""Approvals asked for together never fail together for their size: a batch stays within
:data:`MAX_BATCH_BYTES`, and a control plane with a lower body limit (its 413 records
nothing) gets the batch again in halves, and smaller batches from then on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from agentfirewall.actions import parse_action_spec
from agentfirewall_proxy.approvalbatch import MAX_BATCH_BYTES, ApprovalBatcher
from agentfirewall_proxy.control import ControlError, HttpControl
from tests.livesrv import LiveServer


def _payload(i: int) -> dict[str, Any]:
    """A held request's approval as the gateway sends it: about 2.3 KB (a full preview)."""
    spec = parse_action_spec({"type": "slack.message.send", "resource": {"provider": "slack"},
                              "parameters": {"channel": f"C{i}"}})  # fmt: skip
    return {"agent": "Bot", "connector": "slack", "action_spec": spec.to_dict(),
            "action_hash": spec.action_hash, "reason": "held", "timeout_seconds": 300,
            "request": {"method": "POST", "host": "slack.com", "path": "/api/chat.postMessage",
                        "body_preview": "p" * 2048, "digest": f"{i + 1:064x}"}}  # fmt: skip


def test_a_batch_stays_within_its_byte_bound() -> None:
    sizes: list[int] = []

    async def call(method: str, path: str, body: object) -> Any:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        sizes.append(len(data))
        items = body["approvals"] if isinstance(body, dict) and "approvals" in body else [body]
        answers = [{"id": f"apv_{n}", "status": "pending"} for n, _ in enumerate(items)]
        return httpx.Response(200, json={"approvals": answers})

    async def main() -> list[Any]:
        batcher = ApprovalBatcher(call, ControlError)
        return await asyncio.gather(*(batcher.create(_payload(i)) for i in range(300)))

    answers = asyncio.run(main())
    assert len(answers) == 300
    assert sum(sizes) > 2 * MAX_BATCH_BYTES  # (so more than one batch was needed)
    assert max(sizes) <= MAX_BATCH_BYTES


def test_a_lower_body_limit_is_met_by_halving_and_then_learned(tmp_path: Path) -> None:
    limit = 64 * 1024
    server = LiveServer.start(tmp_path / "tf", env={"AGENTFIREWALL_MAX_BODY_BYTES": str(limit)})
    statuses: list[int] = []

    async def main() -> tuple[list[Any], list[Any]]:
        control = HttpControl(server.url, server.gateway_token)
        real = control._call

        async def counted(method: str, path: str, **kw: Any) -> httpx.Response:
            try:
                response = await real(method, path, **kw)
            except ControlError as exc:
                statuses.append(exc.status)
                raise
            statuses.append(response.status_code)
            return response

        control._call = counted  # type: ignore[method-assign]
        try:
            first = await asyncio.gather(
                *(control.create_approval(_payload(i)) for i in range(100)), return_exceptions=True
            )
            learned = len(statuses)
            second = await asyncio.gather(
                *(control.create_approval(_payload(i)) for i in range(100, 200)),
                return_exceptions=True,
            )
            assert 413 not in statuses[learned:]  # cut to the learned size from the start
            return first, second
        finally:
            await control.aclose()

    try:
        first, second = asyncio.run(main())
    finally:
        server.stop()
    assert 413 in statuses  # the 230 KB batch was refused, then sent in halves
    for made in (first, second):
        assert all(isinstance(m, dict) and m["status"] == "pending" for m in made), made
    assert len({m["id"] for m in first + second}) == 200
