"""The gateway creates approvals asked for together in one call (a real control plane)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall_proxy.approvalbatch import ApprovalBatcher
from agentfirewall_proxy.control import ControlError, HttpControl
from tests.livesrv import LiveServer


def _payload(i: int) -> dict[str, Any]:
    spec = parse_action_spec({"type": "github.pr.merge", "parameters": {"pull_number": i}})
    return {
        "agent": "Bot",
        "connector": "github",
        "action_spec": spec.to_dict(),
        "action_hash": spec.action_hash,
        "risk_score": 50,
        "reason": "held",
        "request": {"method": "PUT", "host": "api.github.com", "path": f"/p/{i}"},
        "timeout_seconds": 60,
    }


def test_concurrent_approvals_go_in_batches_and_each_gets_its_own(
    live_server: LiveServer,
) -> None:
    calls: list[str] = []

    async def main() -> list[Any]:
        control = HttpControl(live_server.url, live_server.gateway_token)
        real = control._call

        async def counted(method: str, path: str, **kw: Any) -> httpx.Response:
            calls.append(path)
            return await real(method, path, **kw)

        control._call = counted  # type: ignore[method-assign]
        try:
            bad = {**_payload(99), "action_hash": "0" * 64}
            return await asyncio.gather(
                *(control.create_approval(_payload(i)) for i in range(12)),
                control.create_approval(bad),
                return_exceptions=True,
            )
        finally:
            await control.aclose()

    results = asyncio.run(main())
    assert calls == ["/v1/gateway/approvals/batch"]
    made, refused = results[:12], results[12]
    assert isinstance(refused, ControlError)
    assert refused.status == 422
    assert len({r["id"] for r in made}) == 12
    for i, row in enumerate(made):
        assert row["status"] == "pending"
        assert row["request"]["path"] == f"/p/{i}"
        shown = live_server.admin("GET", f"/v1/approvals/{row['id']}")
        assert shown.json()["action_spec"]["parameters"] == {"pull_number": i}


def test_a_lone_approval_and_an_old_control_plane_use_the_single_route() -> None:
    seen: list[str] = []

    async def call(method: str, path: str, body: object) -> httpx.Response:
        seen.append(path)
        if path.endswith("/batch"):
            raise ControlError("control plane answered 404 to /v1/gateway/approvals/batch", 404)
        assert isinstance(body, dict)
        return httpx.Response(200, json={"id": f"apv_{body['n']}", "status": "pending"})

    async def main() -> None:
        batcher = ApprovalBatcher(call, ControlError)
        assert (await batcher.create({"n": 0}))["id"] == "apv_0"
        assert seen == ["/v1/gateway/approvals"]
        answers = await asyncio.gather(*(batcher.create({"n": i}) for i in range(3)))
        assert [a["id"] for a in answers] == ["apv_0", "apv_1", "apv_2"]
        assert seen[1] == "/v1/gateway/approvals/batch"
        assert seen[2:] == ["/v1/gateway/approvals"] * 3
        await asyncio.gather(*(batcher.create({"n": i}) for i in range(2)))
        assert "/v1/gateway/approvals/batch" not in seen[5:]  # remembered

    asyncio.run(main())


def test_an_unreachable_control_plane_fails_every_waiting_approval_closed() -> None:
    async def call(method: str, path: str, body: object) -> httpx.Response:
        raise ControlError("control plane unreachable: ConnectError")

    async def main() -> list[Any]:
        batcher = ApprovalBatcher(call, ControlError)
        return await asyncio.gather(
            *(batcher.create({"n": i}) for i in range(3)), return_exceptions=True
        )

    for result in asyncio.run(main()):
        assert isinstance(result, ControlError)
        with pytest.raises(ControlError):
            raise result
