"""End to end: two control-plane processes on one PostgreSQL, a gateway attached to each.

Replica A and replica B are ``python -m agentfirewall_server`` processes on their own
ports and data directories, sharing the database and the signing and vault keys. Gateway
GA lists ``A,B`` (attached to A), gateway GB lists ``B,A`` (attached to B). The tests run
in file order on one cluster; the last one SIGKILLs replica A.
"""

from __future__ import annotations

import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from agentfirewall.tokens import generate_signing_key
from agentfirewall_proxy.control import HttpControl
from tests.fakes import FakeUpstreams, start_fakes
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, RunningGateway, ca_bundle, gateway_options
from tests.scale.conftest import wait_for
from tests.server.conftest import PG_ENV, _admin_url

pytestmark = pytest.mark.postgres

MERGE = "https://api.github.com/repos/acme/api/pulls/{}/merge"
SPEC = {"type": "github.pr.merge", "resource": {"provider": "github", "target": "acme/api"},
        "parameters": {"pull_number": 1}}  # fmt: skip


@dataclass
class Cluster:
    a: LiveServer
    b: LiveServer
    ga: RunningGateway
    gb: RunningGateway
    key: str
    fakes: FakeUpstreams

    def client(self, gateway: RunningGateway, timeout: float = 60) -> httpx.Client:
        bundle = ca_bundle(gateway.ca_path, gateway.options.ca_dir / "bundle.pem")
        return httpx.Client(proxy=gateway.proxy_url(self.key), trust_env=False, timeout=timeout,
                            verify=ssl.create_default_context(cafile=str(bundle)))  # fmt: skip

    def pending(self, server: LiveServer) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = server.admin(
            "GET", "/v1/approvals", params={"status": "pending"}
        ).json()["approvals"]
        return found


def _database() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV} (run `source .ci/postgres.sh`)")
    name = f"af_e2e_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _gateway(tmp: Path, fakes: FakeUpstreams, urls: list[str], token: str) -> RunningGateway:
    return RunningGateway(gateway_options(tmp, fakes), HttpControl(urls, token)).start()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    database = _database()
    url = next(database)
    env = {"AGENTFIREWALL_DATABASE_URL": url,
           "SIGNING_KEY_PRIVATE": generate_signing_key().to_pem().decode(),
           "SETTINGS_ENCRYPTION_KEY": secrets.token_hex(32)}  # fmt: skip
    fakes = start_fakes(["github"])
    a, b = LiveServer(tmp / "a", env=env), LiveServer(tmp / "b", env=env)
    a.launch(port=0)  # A first: it migrates the empty database
    b.launch(port=0)
    gateways: list[RunningGateway] = []
    try:
        key = a.create_agent("Bot")
        made = a.admin("POST", "/v1/connectors",
                       json={"type": "github", "token": CREDENTIALS["github"]})  # fmt: skip
        assert made.status_code == 201, made.text
        for pattern, decision in (("github.*", "allow"), ("github.pr.merge", "require_approval")):
            rule = {"agent": "Bot", "connector": "github", "action_pattern": pattern,
                    "decision": decision}  # fmt: skip
            assert a.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
        token = a.gateway_token  # A's bootstrap token: B reads it from the shared store
        gateways.append(_gateway(tmp / "ga", fakes, [a.url, b.url], token))
        gateways.append(_gateway(tmp / "gb", fakes, [b.url, a.url], token))
        yield Cluster(a, b, gateways[0], gateways[1], key, fakes)
    finally:
        for gateway in gateways:
            gateway.stop()
        a.stop()
        b.stop()
        fakes.stop()
        next(database, None)


def _in_thread(fn: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # reported by the assertion on `out`
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_an_approval_on_a_releases_a_request_held_by_bs_gateway(cluster: Cluster) -> None:
    with cluster.client(cluster.gb) as http:
        thread, out = _in_thread(lambda: http.put(MERGE.format(101), json={}))
        (held,) = wait_for(lambda: cluster.pending(cluster.a), what="the held request on A")
        assert held["request"]["path"] == "/repos/acme/api/pulls/101/merge"
        approved = cluster.a.admin("POST", f"/v1/approvals/{held['id']}/approve", json={})
        assert approved.status_code == 200, approved.text
        thread.join(60)
    assert out, "the held request never answered"
    assert isinstance(out[0], httpx.Response), out
    assert out[0].status_code == 200
    merged = [r.path for r in cluster.fakes["github"].received("PUT")]
    assert merged.count("/repos/acme/api/pulls/101/merge") == 1
    # each replica's status lists both gateways, wherever they report
    wait_for(lambda: len(_proxies(cluster.a)) == 2, what="both gateways in A's status")
    wait_for(lambda: len(_proxies(cluster.b)) == 2, what="both gateways in B's status")


def _proxies(server: LiveServer) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.admin("GET", "/v1/status").json()["gateway"]["proxies"]
    return found


def _refused(http: httpx.Client) -> bool:
    try:
        answer = http.get("http://api.github.com/user")
    except httpx.TransportError:
        return False  # an in-flight request cut by the switch: ask again
    return answer.status_code == 403 and answer.headers.get("x-tameflare-kill-switch") == "active"


def test_the_kill_switch_set_on_b_cuts_traffic_on_as_gateway(cluster: Cluster) -> None:
    with cluster.client(cluster.ga) as http:
        assert http.get("http://api.github.com/user").status_code == 200
        on = cluster.b.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "all"})
        assert on.status_code == 200, on.text
        wait_for(lambda: _refused(http), what="A's gateway refusing under B's kill switch")
        off = cluster.b.admin("POST", "/v1/kill-switch", json={"active": False})
        assert off.status_code == 200, off.text
        wait_for(lambda: http.get("http://api.github.com/user").status_code == 200,
                 what="A's gateway serving again")  # fmt: skip


def test_the_rate_limit_is_shared_the_61st_is_refused_wherever_it_lands(cluster: Cluster) -> None:
    key = cluster.a.create_agent("Counter", sdk_default="allow")  # the default: 60 a minute
    wait_for(lambda: cluster.b.agent(key, "GET", "/v1/actions/none").status_code == 404,
             what="B knows the agent")  # fmt: skip
    answers: list[tuple[str, int]] = []
    lock = threading.Lock()
    clients = {s.data_dir.name: httpx.Client(base_url=s.api_url, timeout=60,
                                             headers={"Authorization": f"Bearer {key}"})
               for s in (cluster.a, cluster.b)}  # fmt: skip

    def send(name: str, n: int) -> None:
        spec = {**SPEC, "parameters": {"pull_number": n}}
        code = clients[name].post("/v1/actions", json={"action_spec": spec}).status_code
        with lock:
            answers.append((name, code))

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=("ab"[n % 2], n)) for n in range(80)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for n in range(80, 90):  # then one at a time, each replica in turn
        send("ab"[n % 2], n)
    elapsed = time.monotonic() - started
    for client in clients.values():
        client.close()
    allowed = [name for name, code in answers if code == 200]
    refused = {name for name, code in answers if code == 429}
    assert len(answers) == 90
    # one bucket of 60, refilled at 1 a second meanwhile; two buckets would allow all 90
    assert 60 <= len(allowed) <= 60 + int(elapsed) + 1
    assert refused == {"a", "b"}
    tail = answers[80:]
    assert {name for name, code in tail if code == 429} == {"a", "b"}


def test_a_sigkilled_replica_loses_no_acknowledged_record_and_its_gateway_fails_over(
    cluster: Cluster,
) -> None:
    key = cluster.a.create_agent("Writer", sdk_default="allow", rate_limit_per_minute=100_000)
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        with httpx.Client(base_url=cluster.a.api_url, timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as http:  # fmt: skip
            n = 0
            while not stop.is_set():
                n += 1
                spec = {**SPEC, "parameters": {"pull_number": n}}
                try:
                    answer = http.post("/v1/actions", json={"action_spec": spec})
                except httpx.TransportError:
                    return  # A is gone: whatever was not answered was not acknowledged
                if answer.status_code == 200:
                    acknowledged.append(answer.json()["action_request_id"])

    with cluster.client(cluster.ga) as http:
        held_thread, held = _in_thread(lambda: http.put(MERGE.format(202), json={}))
        wait_for(lambda: cluster.pending(cluster.b), what="the held request")
        writer = threading.Thread(target=write)
        writer.start()
        wait_for(lambda: len(acknowledged) >= 20, what="20 acknowledged actions")
        cluster.a.kill()  # SIGKILL, mid-stream
        stop.set()
        writer.join(30)
        # every acknowledged record is in the store (read through B)
        for action_id in acknowledged:
            found = cluster.b.agent(key, "GET", f"/v1/actions/{action_id}")
            assert found.status_code == 200, action_id
        verified = cluster.b.admin("GET", "/v1/audit/verify").json()
        assert verified["ok"] is True, verified
        # A's gateway moved to B: new requests pass, and the held one is still held
        assert http.get("http://api.github.com/user").status_code == 200
        control = cluster.ga.control
        assert isinstance(control, HttpControl)
        assert control.url == cluster.b.api_url
        assert control.failovers >= 1
        wait_for(lambda: any(p["stats"].get("control_plane") == cluster.b.api_url
                             for p in _proxies(cluster.b)),
                 what="B's status shows A's gateway now reporting to B")  # fmt: skip
        assert held_thread.is_alive()
        (approval,) = cluster.pending(cluster.b)
        assert cluster.b.admin("POST", f"/v1/approvals/{approval['id']}/approve").status_code == 200
        held_thread.join(60)
    assert held, "the held request never answered"
    assert isinstance(held[0], httpx.Response), held
    assert held[0].status_code == 200
    merged = [r.path for r in cluster.fakes["github"].received("PUT")]
    assert merged.count("/repos/acme/api/pulls/202/merge") == 1
