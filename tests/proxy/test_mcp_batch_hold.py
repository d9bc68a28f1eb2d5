"""A JSON-RPC batch held for approval is held whole (DESIGN.md section 7, guarantee 3): the
approval shows every member, and only a person allowed to approve each held member may
approve it. Decided as its first held member, a batch of ``transfer {amount: 5}`` (any
member approves) and ``transfer {amount: 1000000}`` (an admin must) was shown as the
small one, and a member's approval let the big one run too. Over stdio the same holds:
``tests/mcpwrap/test_wrap_batch_hold.py``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentfirewall.connectors.model import HttpRequest
from agentfirewall.decisions import ApprovalRequirement, Decision
from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.snapshot import compile_snapshot, strictest
from tests.batchhold import POLICY, add_payer, approve_as_member, proxied, transfer
from tests.fakes import FakeUpstreams, mcp
from tests.livesrv import LiveServer
from tests.proxy.support import (
    RunningGateway,
    ca_bundle,
    connector,
    gateway_options,
    rule,
    snapshot,
)

URL = "https://mcp.example.com/mcp"


SMALL = transfer(1, amount=5, memo="coffee " * 100)  # first, and long: the preview shows it only
BIG = transfer(2, amount=1_000_000, to="attacker")


def held(roles: tuple[str, ...], seconds: int = 300, explicit: bool = True) -> Decision:
    terms = ApprovalRequirement(seconds, roles, explicit=explicit)
    return Decision("require_approval", f"held for {roles}", approval=terms)


@pytest.mark.parametrize(
    ("decisions", "roles", "seconds", "explicit"),
    [
        ([held(("member",), 900), held(("admin",), 600)], ("admin",), 600, True),
        ([held(("owner", "admin"), 60), held(("member",), 30)], ("owner", "admin"), 30, True),
        ([held(("owner",), explicit=False), held(("admin",), 900)], ("owner",), 900, True),
        ([held(("admin",), explicit=False), held(("member",), explicit=False)],
         ("admin",), 300, False),
    ],
)  # fmt: skip
def test_a_request_held_for_several_actions_needs_an_approver_allowed_for_each(
    decisions: list[Decision], roles: tuple[str, ...], seconds: int, explicit: bool
) -> None:
    """The strictest approver roles (the least role named ranks them), the shortest
    timeout a rule set (none set: the settings' timeout, as for one action)."""
    which, decision = strictest([Decision("allow", "batch allowed"), *decisions])
    assert which == 0  # the whole request: it names every action
    assert decision.outcome == "require_approval"
    assert decision.approval == ApprovalRequirement(seconds, roles)
    assert decision.approval is not None
    assert decision.approval.explicit is explicit
    assert all(d.reason in decision.reason for d in decisions)


def test_one_held_action_is_held_as_itself_and_a_deny_still_wins() -> None:
    allow = Decision("allow", "ok")
    assert strictest([allow, held(("admin",)), allow]) == (1, held(("admin",)))
    deny = Decision("deny", "no")
    assert strictest([allow, held(("member",)), deny, held(("admin",))]) == (2, deny)


def test_the_gateway_decides_a_held_batch_as_the_whole_batch() -> None:
    rules = [rule("mcp.rpc.*", "allow", "mcp"), rule("mcp.tools.transfer", "allow", "mcp")]
    policies = [{"name": "transfers", "document": yaml.safe_load(POLICY)}]
    snap = snapshot(rules, connectors=[connector("mcp")], policies=policies)
    config = compile_snapshot(snap)
    agent = next(iter(config.agents.values()))
    entry = next(c for c in config.connectors.values() if c.type == "mcp")
    body = json.dumps([SMALL, BIG]).encode()
    request = HttpRequest.from_url("POST", URL, headers=(("Content-Type", "application/json"),),
                                   body=body)  # fmt: skip
    parsed, decision, _ = config.decide(agent, entry, request, datetime.now(UTC))
    assert parsed is not None
    assert parsed.spec.type == "mcp.rpc.batch"
    members = parsed.spec.parameters["members"]
    assert [m["parameters"]["amount"] for m in members] == [5, 1_000_000]  # type: ignore[index,call-overload]
    assert decision.approval == ApprovalRequirement(600, ("admin",))


# -- through the real gateway and control plane -----------------------------------------


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, RunningGateway, str, FakeUpstreams]]:
    tmp = tmp_path_factory.mktemp("batchhold")
    upstreams = FakeUpstreams([mcp()])
    upstreams.start()
    server = LiveServer.start(tmp / "tf")
    try:
        key = add_payer(server)
        answer = server.admin("POST", "/v1/policies", json={"document": POLICY})
        assert answer.status_code == 201, answer.text
        control = HttpControl(server.url, server.gateway_token)
        running = RunningGateway(gateway_options(tmp, upstreams), control).start()
        try:
            yield server, running, key, upstreams
        finally:
            running.stop()
    finally:
        server.stop()
        upstreams.stop()


def _until(found: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_held_batch_shows_every_member_and_only_an_admin_may_approve_it(
    world: tuple[LiveServer, RunningGateway, str, FakeUpstreams], tmp_path: Path
) -> None:
    server, running, key, upstreams = world
    bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")
    http = proxied(running.proxy_url(key, "Payer"), bundle)
    out: list[httpx.Response] = []
    sending = threading.Thread(target=lambda: out.append(http.post(URL, json=[SMALL, BIG])))
    sending.start()
    rows = lambda: server.admin("GET", "/v1/approvals?status=pending").json()["approvals"]  # noqa: E731
    (approval,) = _until(rows)
    assert approval["action_spec"]["type"] == "mcp.rpc.batch"
    assert "1000000" in json.dumps(approval["action_spec"])  # the big one is shown
    assert approval["required_approver_roles"] == ["admin"]
    refused = approve_as_member(server, approval["id"])
    assert refused.status_code == 403, refused.text
    server.admin("POST", f"/v1/approvals/{approval['id']}/deny", json={})
    sending.join(30)
    http.close()
    assert out
    assert out[0].status_code == 403
    assert not upstreams["mcp"].requests  # nothing of the batch ran
