"""A credential goes only where a connector serves now (DESIGN.md 7.5), on every path.

1. **After a wait.** A request decided waits before it is sent: for its approval (parked
   without its connection, or in its coroutine inside a tunnel), for a computed
   credential's token, for its upstream connection. An admin may remove its connector
   meanwhile, narrow the connector's domains, hand the host to a connector of another
   type, or rotate its credential (in place, or ``tf connector add --replace``: a new
   connector of the same type). What goes upstream is what the config in force says when
   the request is sent: nothing to a host no connector serves any more (403
   ``no_connector``), nothing when a connector of another type serves it now (403
   ``connector_changed``: it named and decided the request otherwise), the new credential
   after a rotation; never the credential of before.
2. **Through a tunnel, its port.** ``CONNECT host:PORT`` carries the credential only to the
   connector's TLS port (its ``https://`` base URL's port for the host, else 443), as a plain
   ``http://`` request keeps it on the declared port: 403 ``port_refused`` on any other,
   however the port is spelled, for every connector type that injects a credential.

Real gateways (in-process, real sockets) and real TLS fake upstreams on 127.0.0.1: a second
fake GitHub stands for another service on port 8443 of the same host (a shared or wildcard
certificate makes it valid there).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.fakes import FakeUpstream, FakeUpstreams, github
from tests.fakes.reflect import reflector
from tests.fakes.tokens import oauth_api, oauth_server
from tests.fuzzscale import examples
from tests.proxy.rawclient import auth_header, read_response, status_of
from tests.proxy.reflecting import SECRETS, TABLE, Case
from tests.proxy.support import (
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

OLD = "ghp_credentialBeforeTheChange000000000"
NEW = "ghp_credentialAfterTheChange0000000000"
HOSTS = ["api.github.com", "uploads.github.com"]
ISSUES = "/repos/acme/api/issues"
HELD = [rule("github.*", "require_approval"), rule("http.*", "require_approval")]
ALLOWED = [rule("github.*", "allow"), rule("http.*", "allow")]
#: The port of the other service on the connector's hosts (the second fake GitHub).
OTHER_PORT = 8443
Start = Callable[[list[dict[str, Any]], list[dict[str, Any]]], tuple[RunningGateway, StaticControl]]


def github_connector(credential: str = OLD, **changed: Any) -> dict[str, Any]:
    return {**connector("github", domains=HOSTS, credential=credential), **changed}


#: What an admin did while the request waited: the connectors in force when it is sent, and
#: the error it is refused with (None: it goes, with the new credential).
CHANGES: dict[str, tuple[list[dict[str, Any]], str | None]] = {
    "removed": ([], "no_connector"),
    "narrowed": ([github_connector(domains=["uploads.github.com"])], "no_connector"),
    "another type": ([connector("generic", domains=["api.github.com"], credential=NEW,
                                base_url="https://api.github.com")], "connector_changed"),
    "rotated": ([github_connector(NEW)], None),
    "replaced": ([github_connector(NEW, id="conn_github_2")], None),  # connector add --replace
}  # fmt: skip


@pytest.fixture(scope="module")
def world() -> Iterator[FakeUpstreams]:
    api, other = github(), github()
    other.name = "other"
    auth = oauth_server()
    running = FakeUpstreams([api, other, auth, oauth_api(auth)]).start()
    yield running
    running.stop()


def resolve_of(world: FakeUpstreams) -> dict[Any, Any]:
    """Every fake's hosts to its ports; port 8443 of the GitHub hosts to the other service."""
    entries = [e for f in world.fakes.values() if f.name != "other" for e in f.resolve_entries()]
    other = world["other"].tls_port
    entries += [f"{host}:{OTHER_PORT}=127.0.0.1:{other}" for host in HOSTS]
    return parse_resolve(entries)


@pytest.fixture
def start(world: FakeUpstreams, tmp_path: Path) -> Iterator[Start]:
    started: list[RunningGateway] = []

    def run(
        permissions: list[dict[str, Any]], connectors: list[dict[str, Any]]
    ) -> tuple[RunningGateway, StaticControl]:
        for fake in world.fakes.values():
            fake.clear()
        snap = snapshot(permissions, connectors=connectors)
        running, control = start_gateway(tmp_path, world, snap, resolve=resolve_of(world))
        started.append(running)
        return running, control

    yield run
    for running in started:
        running.stop()


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def change_to(
    running: RunningGateway,
    control: StaticControl,
    permissions: list[dict[str, Any]],
    connectors: list[dict[str, Any]],
) -> None:
    """Put `connectors` in force; return once the gateway applied them."""
    control.update(snapshot(permissions, connectors=connectors))
    gateway = running.gateway
    assert gateway is not None
    wait_until(lambda: gateway.config and gateway.config.version == control.snapshot["version"])


def record_of(control: StaticControl, path: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = wait_until(
        lambda: [r for r in list(control.traffic) if r["path"] == path and r["status_code"]]
    )
    return found[-1]


def authorizations(fake: FakeUpstream) -> list[str]:
    return [r.header("authorization") or "" for r in fake.received()]


Answer = Callable[[], tuple[int, str]]


def send_plain(running: RunningGateway, host: str, path: str) -> Answer:
    """A plain ``http://`` POST, read whole: held, it is parked without its connection."""
    body = b'{"title":"held"}'
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    sock.sendall(f"POST http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n".encode()
                 + auth_header() + f"Authorization: token {PLACEHOLDER}\r\n".encode()
                 + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body)  # fmt: skip

    def answer() -> tuple[int, str]:
        with sock:
            response = read_response(sock, timeout=15)
        return status_of(response), response.partition(b"\r\n\r\n")[2].decode()

    return answer


def send_tunnelled(running: RunningGateway, host: str, path: str) -> Answer:
    """An https POST inside a CONNECT tunnel: held, it waits in its coroutine."""
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    verify = ssl.create_default_context(cafile=str(bundle))
    out: list[httpx.Response | Exception] = []

    def post() -> None:
        with httpx.Client(proxy=running.proxy_url(), verify=verify, trust_env=False,
                          timeout=15) as http:  # fmt: skip
            headers = {"Authorization": f"token {PLACEHOLDER}"}
            try:
                out.append(http.post(f"https://{host}{path}", json={"title": "held"},
                                     headers=headers))  # fmt: skip
            except httpx.HTTPError as exc:
                out.append(exc)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()

    def answer() -> tuple[int, str]:
        thread.join(15)
        (response,) = out
        assert isinstance(response, httpx.Response), response
        return response.status_code, response.text

    return answer


SENDERS = {"parked": send_plain, "in its tunnel": send_tunnelled}


def assert_outcome(
    change: str, status: int, body: str, sent: list[str], control: StaticControl, path: str
) -> None:
    """What a request that waited through `change` must have got, and sent upstream."""
    assert not any(OLD in value for value in sent), "the credential of before went upstream"
    error = CHANGES[change][1]
    if error is None:
        assert status in (200, 201), body
        assert len(sent) == 1
        assert NEW in sent[0]  # the credential in force when it was sent
        return
    assert status == 403, body
    assert json.loads(body)["error"] == error
    assert sent == []  # nothing went upstream, not even its head
    record = record_of(control, path)
    assert record["status_code"] == 403
    assert "was not sent" in record["reason"]


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("path", list(SENDERS))
def test_a_held_request_is_sent_with_the_credential_its_host_has_when_approved(
    start: Start, world: FakeUpstreams, path: str, change: str
) -> None:
    """The approval comes after the change: the request goes as the config in force says."""
    running, control = start(HELD, [github_connector()])
    answer = SENDERS[path](running, "api.github.com", ISSUES)
    (approval,) = wait_until(control.pending)
    change_to(running, control, HELD, CHANGES[change][0])
    control.approve(approval["id"])
    status, body = answer()
    assert_outcome(change, status, body, authorizations(world["github"]), control, ISSUES)
    assert world["other"].received() == []


class Gate:
    """Holds the gateway's `method` of `owner` (its upstream pool's ``acquire``, its token
    broker's ``token``) until the test says `go`: `waiting` is set when a request is in it."""

    def __init__(self, owner: object, method: str) -> None:
        inner = getattr(owner, method)
        self.waiting = threading.Event()
        self.go = threading.Event()

        async def held(*args: Any) -> Any:
            self.waiting.set()
            await asyncio.to_thread(self.go.wait, 10)
            return await inner(*args)

        setattr(owner, method, held)


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_while_an_approved_request_waits_for_its_connection(
    start: Start, world: FakeUpstreams, change: str
) -> None:
    """Approved, then the config changes while its upstream connection opens."""
    running, control = start(HELD, [github_connector()])
    assert running.gateway is not None
    gate = Gate(running.gateway.pool, "acquire")
    answer = send_plain(running, "api.github.com", ISSUES)
    (approval,) = wait_until(control.pending)
    control.approve(approval["id"])
    assert gate.waiting.wait(10), "the approved request never went for its connection"
    change_to(running, control, HELD, CHANGES[change][0])
    gate.go.set()
    status, body = answer()
    assert_outcome(change, status, body, authorizations(world["github"]), control, ISSUES)


OAUTH = connector(
    "generic", id="conn_oauth_1", domains=["api.example.com"], auth_type="oauth2",
    base_url="https://api.example.com",
    credential=json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                           "client_id": "client-1", "client_secret": "cs_whileItWaits"}),
)  # fmt: skip
STATIC = "sk_static_afterTheTokenWait0000000000"
#: What the admin did while the request waited for its OAuth2 token (what goes upstream).
TOKEN_CHANGES: dict[str, tuple[list[dict[str, Any]], str | None]] = {
    "removed": ([], "no_connector"),
    "static credential": ([{**OAUTH, "auth_type": None, "credential": STATIC,
                            "id": "conn_static_2"}], None),
}  # fmt: skip


@pytest.mark.parametrize("change", list(TOKEN_CHANGES))
def test_a_change_while_a_request_waits_for_its_token(
    start: Start, world: FakeUpstreams, change: str
) -> None:
    """A computed credential's request waits for its token; the config changes meanwhile."""
    running, control = start(ALLOWED, [OAUTH])
    assert running.gateway is not None
    gate = Gate(running.gateway.tokens, "token")
    answer = send_plain(running, "api.example.com", "/v1/items")
    assert gate.waiting.wait(10), "the request never asked for its token"
    change_to(running, control, ALLOWED, TOKEN_CHANGES[change][0])
    gate.go.set()
    status, body = answer()
    sent = authorizations(world["oauth_api"])
    minted = world["oauth_server"].settings["minted"]
    assert not any(token in value for token in minted for value in sent)
    if TOKEN_CHANGES[change][1] is None:
        assert sent == [f"Bearer {STATIC}"]  # the credential in force, its scrubber too
        assert STATIC not in body
    else:
        assert status == 403, body
        assert json.loads(body)["error"] == "no_connector"
        assert sent == []


def test_held_requests_racing_a_removal_and_a_domains_change(
    start: Start, world: FakeUpstreams
) -> None:
    """Requests held on both hosts and both paths; the connector loses uploads.github.com,
    then is removed, while the approvals are given from other threads at the same time:
    whatever the order, no request to uploads.github.com goes once the first change is in
    force, and none at all once the second is."""
    running, control = start(HELD, [github_connector()])
    answers = [sender(running, host, f"{ISSUES}/{n}")
               for n, (sender, host) in enumerate((s, h) for s in SENDERS.values()
                                                   for h in HOSTS for _ in range(2))]  # fmt: skip
    pending = wait_until(lambda: len(control.pending()) == len(answers) and control.pending())
    change_to(running, control, HELD, [github_connector(domains=["api.github.com"])])
    with ThreadPoolExecutor(len(pending) + 1) as pool:
        approving = [pool.submit(control.approve, a["id"]) for a in pending]
        removing = pool.submit(change_to, running, control, HELD, [])
        for done in [*approving, removing]:
            done.result(15)
    results = [answer() for answer in answers]
    received = world["github"].received()
    assert not [r for r in received if (r.host or "").startswith("uploads.github.com")]
    assert all(status in (200, 201, 403) for status, _ in results)
    refused = [json.loads(body)["error"] for status, body in results if status == 403]
    assert set(refused) <= {"no_connector"}
    assert len(refused) + len(received) == len(answers)
    # once the removal is in force, nothing more goes
    answer = send_plain(running, "api.github.com", ISSUES)
    status, body = answer()
    assert status == 403, body
    assert json.loads(body)["error"] == "no_connector"
    assert len(world["github"].received()) == len(received)


# -- 2. CONNECT host:PORT: the credential goes to the connector's TLS port only -------------


def tunnel_get(
    port: int, ca: Path, authority: str, host: str, path: str, host_header: str
) -> tuple[int, str]:
    """`GET path` inside ``CONNECT authority`` (TLS with SNI `host`): (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n".encode()
                    + auth_header() + b"\r\n")  # fmt: skip
        opened = read_response(raw, timeout=10)
        assert status_of(opened) == 200, opened
        context = ssl.create_default_context(cafile=str(ca))
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
                        f"Authorization: Bearer {PLACEHOLDER}\r\n\r\n".encode())  # fmt: skip
            response = read_response(tls, timeout=10)
    return status_of(response), response.partition(b"\r\n\r\n")[2].decode()


#: (the connector's base URL, the CONNECT's port, whether its credential may go there)
PORTS = [
    (None, 443, True),
    (None, OTHER_PORT, False),
    (f"https://api.github.com:{OTHER_PORT}", OTHER_PORT, True),  # the port an admin declared
    (f"https://api.github.com:{OTHER_PORT}", 443, False),
]


@pytest.mark.parametrize(("base_url", "port", "carried"), PORTS)
@pytest.mark.parametrize("spelling", ["as is", "upper case", "leading zero"])
def test_a_tunnel_carries_the_credential_to_the_connector_s_port_only(
    start: Start, world: FakeUpstreams, base_url: str | None, port: int, carried: bool,
    spelling: str,
) -> None:  # fmt: skip
    running, _ = start(ALLOWED, [github_connector(base_url=base_url)])
    host = {"as is": "api.github.com", "upper case": "API.GitHub.COM"}.get(
        spelling, "api.github.com"
    )
    written = f"0{port}" if spelling == "leading zero" else str(port)
    status, body = tunnel_get(running.port, running.ca_path, f"{host}:{written}",
                              "api.github.com", "/user", f"api.github.com:{port}")  # fmt: skip
    service = world["github"] if port == 443 else world["other"]
    elsewhere = world["other"] if port == 443 else world["github"]
    assert elsewhere.received() == []
    if carried:
        assert status == 200, body
        assert authorizations(service) == [f"token {OLD}"]
        return
    assert status == 403, body
    answer = json.loads(body)
    assert answer["error"] == "port_refused"
    assert f"on port {443 if base_url is None else OTHER_PORT}" in answer["reason"]
    assert service.received() == []


@pytest.fixture(scope="module")
def reflecting(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningGateway, FakeUpstream]]:
    """Every connector type (``reflecting.TABLE``) before one reflecting upstream, which
    serves each host on every port (443, 8443, any other)."""
    hosts = tuple(dict.fromkeys(case.host for case in TABLE))
    fakes = FakeUpstreams([reflector(hosts)]).start()
    tls = fakes["reflect"].tls_port
    entries = [f"{host}=127.0.0.1:{tls}" for host in hosts]  # every port of each host
    rules = [rule(action, "allow") for action in dict.fromkeys(c.action for c in TABLE)]
    snap = snapshot(rules, connectors=[case.config() for case in TABLE])
    running, _ = start_gateway(tmp_path_factory.mktemp("ports"), fakes, snap,
                               resolve=parse_resolve(entries))  # fmt: skip
    yield running, fakes["reflect"]
    running.stop()
    fakes.stop()


def test_every_connector_type_keeps_its_credential_off_other_ports_concurrently(
    reflecting: tuple[RunningGateway, FakeUpstream],
) -> None:
    """Every connector type at once, on its TLS port and on another: only a connector that
    injects nothing reaches the other port; the TLS port still carries every credential."""
    running, upstream = reflecting
    upstream.clear()

    def through(case: Case, port: int) -> tuple[Case, int, int, str]:
        status, body = tunnel_get(running.port, running.ca_path, f"{case.host}:{port}",
                                  case.host, case.path, f"{case.host}:{port}")  # fmt: skip
        return case, port, status, body

    jobs = [(case, port) for case in TABLE for port in (OTHER_PORT, 443)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: through(*job), jobs))
    for case, port, status, body in results:
        if port == 443 or case.credential is None:
            assert status == 200, (case.name, port, body)
        else:
            assert status == 403, (case.name, body)
            error = json.loads(body)["error"]  # (stripe's clients read an object)
            assert (error["code"] if case.kind == "stripe" else error) == "port_refused"
    other = [r for r in upstream.received() if (r.host or "").endswith(f":{OTHER_PORT}")]
    assert [r.host for r in other] == ["open.example.org:8443"]  # the one without a credential
    assert not any(secret in r.raw_text() for r in other for secret in SECRETS)
    on_443 = {r.host for r in upstream.received() if r not in other}
    assert on_443 == {case.host for case in TABLE}


def test_any_other_port_of_a_connector_host_is_refused(
    reflecting: tuple[RunningGateway, FakeUpstream],
) -> None:
    """Any port but 443, however written: refused before anything reaches an upstream
    (the resolve map would send every port of the host to the reflector)."""
    running, upstream = reflecting
    case = TABLE[0]  # github

    @settings(max_examples=examples(25), deadline=None)
    @given(port=st.integers(1, 65535).filter(lambda p: p != 443), zeros=st.integers(0, 2))
    def refused(port: int, zeros: int) -> None:
        before = len(upstream.received())
        authority = f"{case.host}:{'0' * zeros}{port}"
        status, body = tunnel_get(running.port, running.ca_path, authority, case.host,
                                  case.path, f"{case.host}:{port}")  # fmt: skip
        assert status == 403, body
        assert json.loads(body)["error"] == "port_refused"
        assert len(upstream.received()) == before

    refused()
