"""What the gateway decides and does: credentials, headers, levels, holds, kill switch,
traffic records. Driven by httpx through the gateway (CONNECT + interception) against the
fake GitHub, with a StaticControl as the control plane."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.pipeline import Flow
from tests.fakes import FakeUpstreams
from tests.proxy.support import (
    CREDENTIALS,
    KEY,
    OTHER_KEY,
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

GITHUB_RULES = [
    rule("github.*", "allow"),
    rule("github.unknown.get", "allow"),  # /fake/bytes: no route names it
    rule("github.repo.delete", "deny"),
    rule("github.pr.merge", "require_approval"),
]
MERGE = "https://api.github.com/repos/acme/api/pulls/7/merge"


@pytest.fixture
def start(
    fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[Callable[..., tuple[RunningGateway, StaticControl]]]:
    started: list[RunningGateway] = []
    fakes["github"].clear()

    def run(
        snap: dict[str, Any] | None = None, **options: Any
    ) -> tuple[RunningGateway, StaticControl]:
        snap = snap or snapshot(GITHUB_RULES, connectors=[connector("github")])
        running, control = start_gateway(tmp_path, fakes, snap, **options)
        started.append(running)
        return running, control

    yield run
    for running in started:
        running.stop()


def client(running: RunningGateway, key: str = KEY, **kw: Any) -> httpx.Client:
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    return httpx.Client(
        proxy=running.proxy_url(key), verify=ssl.create_default_context(cafile=str(bundle)),
        trust_env=False, timeout=20, **kw,
    )  # fmt: skip


def wait_pending(control: StaticControl, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pending = control.pending()
        if len(pending) >= count:
            return pending
        time.sleep(0.02)
    raise AssertionError("no approval was created")


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_allowed_call_gets_the_connector_credential_and_tameflare_headers(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, _ = start()
    with client(running) as http:
        answer = http.get(
            "https://api.github.com/user",
            headers={"Authorization": f"token {PLACEHOLDER}", "Cookie": "a=b", "X-Custom": "1"},
        )
    assert answer.status_code == 200
    seen = fakes["github"].last()
    assert seen.header("authorization") == f"token {CREDENTIALS['github']}"
    assert PLACEHOLDER not in seen.raw_text()
    assert KEY not in seen.raw_text()
    assert seen.header("x-tameflare-agent") == "Bot"
    assert str(seen.header("x-tameflare-request-id")).startswith("req_")
    assert seen.header("proxy-authorization") is None
    assert seen.header("proxy-connection") is None
    assert (seen.header("cookie"), seen.header("x-custom")) == ("a=b", "1")


def test_traffic_records_and_heartbeats_hold_no_secret(
    start: Callable[..., tuple[RunningGateway, StaticControl]],
) -> None:
    running, control = start()
    with client(running) as http:
        http.get("https://api.github.com/user", headers={"Authorization": f"token {PLACEHOLDER}",
                                                          "Cookie": "session=s3cr3t"})  # fmt: skip
        http.request("DELETE", "https://api.github.com/repos/acme/api", content=b"body-s3cr3t")
    deadline = time.monotonic() + 5
    while len(control.traffic) < 3 and time.monotonic() < deadline:  # CONNECT isn't recorded
        time.sleep(0.05)
    records = list(control.traffic)
    by_action = {r["action"]: r for r in records}
    assert [r["decision"] for r in records if r["method"] == "GET"] == ["allow"]
    deleted = by_action["github.repo.delete"]
    assert (deleted["decision"], deleted["status_code"], deleted["method"]) == (
        "deny",
        403,
        "DELETE",
    )
    assert deleted["host"] == "api.github.com"
    assert deleted["agent"] == "Bot"
    text = json.dumps(records) + json.dumps(control.heartbeats)
    for secret in (PLACEHOLDER, KEY, "s3cr3t", CREDENTIALS["github"]):
        assert secret not in text
    assert control.heartbeats
    assert control.heartbeats[0]["listen"].endswith(str(running.port))


def test_monitor_forwards_everything_and_records_would_outcomes(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start(snapshot(GITHUB_RULES, connectors=[connector("github")],
                                      level="monitor"))  # fmt: skip
    with client(running) as http:
        assert http.delete("https://api.github.com/repos/acme/api").status_code == 204
        assert http.put(MERGE, json={}).status_code == 200
    assert [r.method for r in fakes["github"].received()] == ["DELETE", "PUT"]
    time.sleep(0.3)
    outcomes = {r["action"]: r["would_outcome"] for r in control.traffic}
    assert outcomes["github.repo.delete"] == "would_deny"
    assert outcomes["github.pr.merge"] == "would_hold"


def test_soft_enforce_forwards_denies_but_holds_approvals(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start(snapshot(GITHUB_RULES, connectors=[connector("github")],
                                      level="soft_enforce", approval_timeout=1))  # fmt: skip
    with client(running) as http:
        assert http.delete("https://api.github.com/repos/acme/api").status_code == 204
        assert http.put(MERGE, json={}).status_code == 408
    assert control.pending()
    assert fakes["github"].received("PUT") == []


def test_held_request_completes_after_approval(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    with client(running) as http:
        thread, out = in_thread(lambda: http.put(MERGE, json={"merge_method": "squash"}))
        (approval,) = wait_pending(control)
        assert approval["action_spec"]["type"] == "github.pr.merge"
        assert fakes["github"].received("PUT") == []
        control.approve(approval["id"])
        thread.join(15)
    assert out[0].status_code == 200
    assert out[0].json()["merged"] is True
    forwarded = fakes["github"].received("PUT")
    assert len(forwarded) == 1
    assert forwarded[0].header("authorization") == f"token {CREDENTIALS['github']}"


def test_held_request_denied_gets_403(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    with client(running) as http:
        thread, out = in_thread(lambda: http.put(MERGE, json={}))
        control.deny(wait_pending(control)[0]["id"])
        thread.join(15)
    assert out[0].status_code == 403
    assert out[0].json()["error"] == "approval_denied"
    assert fakes["github"].received("PUT") == []


def test_held_request_times_out_with_408(
    start: Callable[..., tuple[RunningGateway, StaticControl]],
) -> None:
    running, _ = start(snapshot(GITHUB_RULES, connectors=[connector("github")], approval_timeout=1))
    with client(running) as http:
        answer = http.put(MERGE, json={})
    assert answer.status_code == 408
    assert answer.json()["error"] == "approval_timeout"


def test_approval_survives_disconnect_and_an_identical_retry_goes_through_once(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    with client(running) as http, pytest.raises(httpx.ReadTimeout):
        http.put(MERGE, json={"merge_method": "squash"}, timeout=1.0)
    (approval,) = wait_pending(control)
    assert running.gateway is not None
    deadline = time.monotonic() + 5  # the holds' watcher sweeps once a second
    while len(running.gateway.holds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(running.gateway.holds) == 0
    control.approve(approval["id"])
    with client(running) as http:
        assert http.put(MERGE, json={"merge_method": "squash"}).status_code == 200
        thread, out = in_thread(lambda: http.put(MERGE, json={"merge_method": "squash"}))
        second = [a for a in wait_pending(control) if a["id"] != approval["id"]]
        assert second, "the second retry needs a new approval"
        control.deny(second[0]["id"])
        thread.join(15)
    assert out[0].status_code == 403
    assert len(fakes["github"].received("PUT")) == 1


def test_kill_switch_refuses_new_requests_and_cuts_held_and_in_flight(
    start: Callable[..., tuple[RunningGateway, StaticControl]],
) -> None:
    running, control = start()
    url = "https://api.github.com/fake/bytes/400000000"
    with client(running) as held_client, client(running) as streaming_client:
        thread, out = in_thread(lambda: held_client.put(MERGE, json={}))
        wait_pending(control)
        with streaming_client.stream("GET", url) as response:
            chunks = response.iter_raw()
            next(chunks)
            kill = [{"scope": "all", "target": None, "reason": "stop"}]
            control.update(
                snapshot(GITHUB_RULES, connectors=[connector("github")], kill_switches=kill)
            )
            with pytest.raises(httpx.HTTPError):
                for _ in chunks:
                    pass
        thread.join(15)
    assert out[0].status_code == 403
    assert out[0].headers["x-tameflare-kill-switch"] == "active"
    with client(running) as http:  # answered inside the tunnel, as over plain HTTP
        refused = http.get("https://api.github.com/user")
    assert refused.status_code == 403
    assert refused.headers["x-tameflare-kill-switch"] == "active"


@pytest.mark.parametrize(("scope", "target"), [("agent", "Bot"), ("connector", "github")])
def test_scoped_kill_switch(
    start: Callable[..., tuple[RunningGateway, StaticControl]], scope: str, target: str
) -> None:
    rules = [*GITHUB_RULES, rule("github.*", "allow", agent="Other")]
    snap = snapshot(rules, connectors=[connector("github")],
                    kill_switches=[{"scope": scope, "target": target, "reason": "x"}])  # fmt: skip
    running, _ = start(snap)
    with client(running) as http:
        answer = http.get("http://api.github.com/user")
    assert answer.status_code == 403
    assert answer.headers["x-tameflare-kill-switch"] == "active"
    with client(running, OTHER_KEY) as http:
        status = http.get("http://api.github.com/user").status_code
    assert status == (403 if scope == "connector" else 200)


def test_config_changes_apply_within_a_second(
    start: Callable[..., tuple[RunningGateway, StaticControl]],
) -> None:
    running, control = start()
    with client(running, OTHER_KEY) as http:
        assert http.get("http://api.github.com/user").status_code == 403  # no permission
        control.update(snapshot([*GITHUB_RULES, rule("github.*", "allow", agent="Other")],
                                connectors=[connector("github")]))  # fmt: skip
        deadline = time.monotonic() + 1.5
        status = 403
        while status == 403 and time.monotonic() < deadline:
            status = http.get("http://api.github.com/user").status_code
    assert status == 200


def test_a_config_the_gateway_cannot_apply_refuses_everything_not_the_last_one(
    start: Callable[..., tuple[RunningGateway, StaticControl]],
) -> None:
    """Enforcing the last config would miss what changed since: a kill switch above all."""
    running, control = start()
    good = snapshot(GITHUB_RULES, connectors=[connector("github")])

    def settle(http: httpx.Client, status: int) -> httpx.Response:
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline + 5, "every answer was a cut"
            try:
                answer = http.get("http://api.github.com/user")
            except httpx.RemoteProtocolError:  # in flight when the refusal came: cut
                continue
            if "was cut" in answer.text:  # in flight when it came, answered as cut: again
                continue
            if answer.status_code == status or time.monotonic() > deadline:
                return answer
            time.sleep(0.02)

    with client(running) as http:
        assert http.get("http://api.github.com/user").status_code == 200
        # what a later version might send: a kill switch scope this one does not know
        control.update({**good, "kill_switches": [{"scope": "galaxy", "reason": "stop"}]})
        refused = settle(http, 403)
        assert refused.status_code == 403
        assert refused.headers["x-tameflare-kill-switch"] == "active"
        assert "could not apply configuration" in refused.json()["reason"]
        assert "galaxy" in refused.json()["reason"]
        control.update(good)
        assert settle(http, 200).status_code == 200


def test_a_thousand_agents_on_one_port_identified_by_credential(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    keys = {f"agent-{n}": f"aaf_live_{n:032d}" for n in range(1000)}
    agents = [
        {"id": f"agt_{n}", "name": name, "status": "active", "enforcement_level": "full_enforce",
         "key_hashes": [hashlib.sha256(key.encode()).hexdigest()]}
        for n, (name, key) in enumerate(keys.items())
    ]  # fmt: skip
    rules = [rule("github.user.get", "allow", agent=name) for name in keys]
    running, _ = start(snapshot(rules, connectors=[connector("github")], agents=agents))
    for name in ("agent-0", "agent-517", "agent-999"):
        with client(running, keys[name]) as http:
            assert http.get("https://api.github.com/user").status_code == 200
        assert fakes["github"].last().header("x-tameflare-agent") == name
    with client(running, "aaf_live_" + "9" * 32) as http, pytest.raises(httpx.ProxyError):
        http.get("https://api.github.com/user")


def test_addons_see_every_flow_decided_and_done(fakes: FakeUpstreams, tmp_path: Path) -> None:
    class Watcher:
        def __init__(self) -> None:
            self.seen: list[tuple[str, str, int]] = []

        def decided(self, flow: Flow) -> None:
            assert flow.decision is not None
            self.seen.append(("decided", flow.decision.outcome, flow.status))

        def done(self, flow: Flow) -> None:
            self.seen.append(("done", flow.parsed.spec.type if flow.parsed else "-", flow.status))

    watcher = Watcher()
    snap = snapshot(GITHUB_RULES, connectors=[connector("github")])
    running, _ = start_gateway(tmp_path, fakes, snap, addons=[watcher])
    try:
        with client(running) as http:
            http.get("http://api.github.com/user")
            http.delete("http://api.github.com/repos/acme/api")
    finally:
        running.stop()
    assert watcher.seen == [
        ("decided", "allow", 0), ("done", "github.user.get", 200),
        ("decided", "deny", 0), ("done", "github.repo.delete", 403),
    ]  # fmt: skip


def test_kill_switch_holds_at_monitor_level(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    kill = [{"scope": "agent", "target": "Bot", "reason": "incident"}]
    running, _ = start(snapshot(GITHUB_RULES, connectors=[connector("github")],
                                      level="monitor", kill_switches=kill))  # fmt: skip
    with client(running) as http:
        answer = http.get("http://api.github.com/user")
    assert answer.status_code == 403
    assert answer.headers["x-tameflare-kill-switch"] == "active"
    assert fakes["github"].received() == []


def _on_one_tunnel(http: httpx.Client) -> bool:
    """Whether every request so far went over one kept-alive CONNECT tunnel."""
    pools = [t._pool for t in http._mounts.values() if t is not None]  # type: ignore[attr-defined]
    return sum(len(pool.connections) for pool in pools) == 1


def _until(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_open_tunnel_follows_level_changes_and_suspension(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    """A CONNECT tunnel kept alive across a config change gets the new level, connector and
    status on its next request: an agent cannot keep monitor mode, a removed connector or a
    suspended agent keep working, by never closing its connection."""
    running, control = start(snapshot(GITHUB_RULES, connectors=[connector("github")],
                                      level="monitor"))  # fmt: skip
    repo = "https://api.github.com/repos/acme/api"
    with client(running) as http:
        assert http.delete(repo).status_code != 403  # monitor: the deny is only recorded
        assert _on_one_tunnel(http)
        assert len(fakes["github"].received("DELETE")) == 1
        control.update(snapshot(GITHUB_RULES, connectors=[connector("github")]))
        assert _until(lambda: http.delete(repo).status_code == 403)  # within the reload
        sent = len(fakes["github"].received("DELETE"))
        assert http.delete(repo).status_code == 403
        assert len(fakes["github"].received("DELETE")) == sent  # nothing more went upstream
        assert http.get("https://api.github.com/user").status_code == 200
        control.update(snapshot(GITHUB_RULES, connectors=[connector("stripe")]))
        assert _until(lambda: http.get("https://api.github.com/user").status_code == 403)
        suspended = snapshot(GITHUB_RULES, connectors=[connector("github")])
        suspended["agents"][0]["status"] = "suspended"
        control.update(suspended)
        assert _until(lambda: http.get("https://api.github.com/user").status_code == 407)
        assert _on_one_tunnel(http)
    assert len(fakes["github"].received("DELETE")) == sent
