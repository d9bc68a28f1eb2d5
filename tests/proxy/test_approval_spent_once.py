"""One approval, one request, on every control plane: two identical requests racing for one
approval reach the upstream once, and the one that lost is told what happened.

An agent's request is held; a person approves it; before the gateway has confirmed the
original's use of the approval (``POST …/consume``), the agent sends the identical request
again, and the control plane hands the retry that approval (``reused``). The original must
then be refused, never forwarded too (guarantee 4: at most once), and its answer and its
traffic record must say why: 409 ``approval_used``, not a 503 "could not be recorded".

The race is made certain with events, not timing: the gateway's control plane is seen
through a link (:class:`ConsumeHeld`) that holds the original's ``consume_approval`` once
it arrives, until the retry has been answered; then it goes on. Both control planes: a
real server (``HttpControl``) and a ``--config-file`` snapshot (``StaticControl`` reading
the file), each with a request parked (plain HTTP, read whole) and one waiting inside an
intercepted tunnel, on two connectors (stripe's refusal carries ``error`` as an object).
Also the ``StaticControl`` alone: every way of spending one approval, at once from threads.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentfirewall_proxy.control import Control, ControlError, HttpControl, StaticControl
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, KEY, RunningGateway, ca_bundle, gateway_options

AGENT = "Bot"


class ConsumeHeld:
    """A control plane (`inner`) behind a link that holds each ``consume_approval``: the
    call waits, once `asked` is set, until `go` is set; every other call passes."""

    def __init__(self, inner: Control) -> None:
        self.inner = inner
        self.asked = threading.Event()
        self.go = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def consume_approval(self, approval_id: str) -> Any:
        self.asked.set()
        await asyncio.to_thread(self.go.wait, 30)  # (bounded: a failing test still ends)
        return await self.inner.consume_approval(approval_id)


@dataclass
class Plane:
    """A control plane a gateway runs against, and what the test reads from it."""

    control: Control
    pending: Callable[[], list[str]]  # the ids of the agent's pending approvals
    approve: Callable[[str], None]
    traffic: Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    """One held request: the fake that counts it, its URL and body."""

    name: str
    fake: str
    method: str
    url: str
    body: bytes
    content_type: str


CASES = [
    Case("github-parked", "github", "PUT", "http://api.github.com/repos/acme/api/pulls/{n}/merge",
         b'{"merge_method":"squash"}', "application/json"),
    Case("github-in-tunnel", "github", "PUT",
         "https://api.github.com/repos/acme/api/pulls/{n}/merge", b'{"merge_method":"squash"}',
         "application/json"),
    Case("stripe-in-tunnel", "stripe", "POST", "https://api.stripe.com/v1/refunds",
         b"charge=ch_{n}&amount=500", "application/x-www-form-urlencoded"),
]  # fmt: skip
RULES = [("github", "github.pr.merge"), ("stripe", "stripe.refund.create")]
_numbers = iter(range(100, 10_000))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A real control plane with the agent (its key), both connectors and both rules."""
    live = LiveServer.start(tmp_path_factory.mktemp("spent") / "tf")
    try:
        key = live.create_agent(AGENT)
        for kind, _ in RULES:
            body = {"type": kind, "token": CREDENTIALS[kind]}
            answer = live.admin("POST", "/v1/connectors", json=body)
            assert answer.status_code == 201, answer.text
        for kind, action in RULES:
            rule = {"agent": AGENT, "connector": kind, "action_pattern": action,
                    "decision": "require_approval"}  # fmt: skip
            answer = live.admin("POST", "/v1/permissions", json=rule)
            assert answer.status_code in (200, 201), answer.text
        yield live, key
    finally:
        live.stop()


def _server_plane(server: LiveServer, key: str) -> tuple[Plane, str]:
    def pending() -> list[str]:
        answer = server.admin("GET", "/v1/approvals", params={"status": "pending"})
        return [a["id"] for a in answer.json()["approvals"] if a["agent"] == AGENT]

    def approve(approval_id: str) -> None:
        answer = server.admin("POST", f"/v1/approvals/{approval_id}/approve", json={})
        assert answer.status_code == 200, answer.text

    def traffic() -> list[dict[str, Any]]:
        answer = server.admin("GET", "/v1/traffic", params={"agent": AGENT, "limit": 200})
        rows: list[dict[str, Any]] = answer.json()["traffic"]
        return rows

    control = HttpControl(server.url, server.gateway_token)
    return Plane(control, pending, approve, traffic), key


def _static_plane(tmp: Path) -> tuple[Plane, str]:
    """A ``--config-file`` gateway's control plane: the file, read as the gateway reads it."""
    config = {
        "agents": [{"name": AGENT, "api_keys": [KEY]}],
        "connectors": [
            {"id": kind, "type": kind, "credential": CREDENTIALS[kind]} for kind, _ in RULES
        ],
        "permissions": [
            {"agent": AGENT, "connector": kind, "action_pattern": action,
             "decision": "require_approval"}
            for kind, action in RULES
        ],
    }  # fmt: skip
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    control = StaticControl(path)

    def pending() -> list[str]:
        return [a["id"] for a in control.pending()]

    return Plane(control, pending, control.approve, lambda: list(control.traffic)), KEY


@pytest.fixture(params=["server", "static"])
def plane(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Plane, str]:
    if request.param == "server":
        return _server_plane(*request.getfixturevalue("server"))
    return _static_plane(tmp_path)


def _until(found: Callable[[], Any], what: str, seconds: float = 20.0) -> Any:
    """`found()` once it is truthy (bounded: asked every 50 ms for `seconds` at most)."""
    for _ in range(int(seconds / 0.05)):
        value = found()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


def _client(running: RunningGateway, key: str) -> httpx.Client:
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    verify = ssl.create_default_context(cafile=str(bundle))
    return httpx.Client(proxy=running.proxy_url(key, AGENT), verify=verify, trust_env=False,
                        timeout=60)  # fmt: skip


def _send(http: httpx.Client, case: Case, n: int) -> httpx.Response:
    body = case.body.replace(b"{n}", str(n).encode())
    headers = {"Content-Type": case.content_type}
    return http.request(case.method, case.url.format(n=n), content=body, headers=headers)


def _reached(fakes: FakeUpstreams, case: Case, n: int) -> int:
    """How many of this case's requests (its number `n`) reached the upstream."""
    path = case.url.format(n=n).split("://", 1)[1].partition("/")[2]
    body = case.body.replace(b"{n}", str(n).encode())
    sent = fakes[case.fake].received(case.method, "/" + path.partition("?")[0])
    return sum(1 for r in sent if r.body == body)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_an_approval_is_spent_once_and_the_request_that_lost_is_told_why(
    plane: tuple[Plane, str], case: Case, fakes: FakeUpstreams, tmp_path: Path
) -> None:
    control_plane, key = plane
    link = ConsumeHeld(control_plane.control)
    running = RunningGateway(gateway_options(tmp_path, fakes), link).start()  # type: ignore[arg-type]
    n = next(_numbers)
    seen = set(control_plane.pending())
    answers: list[httpx.Response] = []
    try:
        with _client(running, key) as first, _client(running, key) as second:
            original = threading.Thread(target=lambda: answers.append(_send(first, case, n)))
            original.start()
            (approval_id,) = _until(
                lambda: [i for i in control_plane.pending() if i not in seen], "held"
            )
            control_plane.approve(approval_id)
            assert link.asked.wait(20), "the original never asked to use its approval"
            retry = _send(second, case, n)  # identical: the control plane hands it the approval
            link.go.set()
            original.join(60)
    finally:
        link.go.set()
        running.stop()
    assert retry.status_code == 200, retry.text
    assert answers, "the original got no answer"
    refused = answers[0]
    assert _reached(fakes, case, n) == 1  # at most once: the retry ran, on the one approval
    assert refused.status_code == 409, refused.text
    body = refused.json()
    if case.fake == "stripe":  # stripe-python reads `error` as an object
        error, reason = body["error"]["code"], body["error"]["message"].removeprefix("TameFlare: ")
    else:
        error, reason = body["error"], body["reason"]
    assert error == "approval_used"
    assert f"approval `{approval_id}` was already used" in reason
    assert "identical request" in reason
    assert "not forwarded" in reason
    assert "unreachable" not in reason
    assert "could not be recorded" not in reason
    request_id = refused.headers["x-tameflare-request-id"]

    def record() -> list[dict[str, Any]]:
        return [r for r in control_plane.traffic() if r["request_id"] == request_id]

    (row,) = _until(record, "the original's traffic record")
    assert row["status_code"] == 409
    assert row["reason"] == reason
    assert row["action"] == body["action"]


def test_a_static_control_plane_spends_an_approval_once_whatever_asks_at_once() -> None:
    """Every way of spending one approved approval, from many threads released together
    (identical requests asking for it, held ones confirming its use): one of them gets it."""
    control = StaticControl({"agents": [{"name": AGENT, "api_keys": [KEY]}]})
    spec = {"type": "github.pr.merge", "resource": {"provider": "github"}}
    payload = {"agent": AGENT, "connector": "github", "action_spec": spec,
               "action_hash": "h" * 64, "request": {"digest": "d" * 64}}  # fmt: skip
    (created,) = asyncio.run(_gather(control.create_approval(payload)))
    control.approve(created["id"])
    askers = 16
    barrier = threading.Barrier(askers)
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def ask(index: int) -> None:
        barrier.wait(10)
        if index % 2:  # an identical request: handed the approval, else held anew
            answer = asyncio.run(control.create_approval(payload))
            got = ("retry", "used" if answer.get("reused") else "held anew")
        else:  # a held request confirming its use
            try:
                asyncio.run(control.consume_approval(created["id"]))
                got = ("held", "used")
            except ControlError as exc:
                got = ("held", f"refused {exc.status}")
        with lock:
            outcomes.append(got)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(askers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == askers
    assert [got for _, got in outcomes].count("used") == 1, outcomes
    assert {got for asker, got in outcomes if asker == "held"} <= {"used", "refused 409"}
    assert {got for asker, got in outcomes if asker == "retry"} <= {"used", "held anew"}
    with pytest.raises(ControlError) as refused:
        asyncio.run(control.consume_approval(created["id"]))
    assert refused.value.status == 409
    assert "already used" in str(refused.value)


async def _gather(*calls: Any) -> list[Any]:
    return list(await asyncio.gather(*calls))
