"""Refresh leases (refreshleases.py): one gateway or replica at a time refreshes a connector's
rotating OAuth2 grant, on SQLite and PostgreSQL.

A real server (a subprocess) is asked over HTTP with the gateway token, as a gateway would.
Time is not waited out except where the expiry itself is the subject (a one-second lease,
polled until it is anyone's); no assertion depends on how long anything took. The
concurrency tests ask at once from many threads (and, on PostgreSQL, through two replicas
sharing the database), and take two writers' transactions by hand without the store's
advisory lock: the connector's row lock alone makes them take turns.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from agentfirewall.tokens import generate_signing_key
from agentfirewall_server.refreshleases import acquire
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Keyring, Vault, generate_key_text
from agentfirewall_server.web import ApiError
from tests.livesrv import LiveServer
from tests.scale.conftest import _create_database as create_database
from tests.server.conftest import ENGINES

SECRET = "cs-" + "s3cr3t" * 6
ROTATING = {"kind": "oauth2", "token_url": "https://auth.example.com/token", "client_id": "cid",
            "client_secret": SECRET, "grant": "refresh_token"}  # fmt: skip
#: Every refresh token a test hands the server: none may reach its log.
TOKENS: list[str] = []


def _token() -> str:
    token = f"rt-{secrets.token_hex(12)}"
    TOKENS.append(token)
    return token


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _create_database(engine: str, tmp: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{tmp / 'store.db'}"
        return
    yield from create_database("af_rl")


class Servers:
    """A server per engine (leases of 600 s: none expires during a test), and on
    PostgreSQL a second replica on the same database, started when a test needs it."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp = tmp
        self.url = url
        self.env = {"AGENTFIREWALL_DATABASE_URL": url, "AGENTFIREWALL_LOG_LEVEL": "debug",
                    "AGENTFIREWALL_REFRESH_LEASE_SECONDS": "600",
                    "SIGNING_KEY_PRIVATE": generate_signing_key().to_pem().decode(),
                    "SETTINGS_ENCRYPTION_KEY": secrets.token_hex(32)}  # fmt: skip
        self.a = LiveServer(tmp / "a", env=self.env)
        self.a.launch(port=0)  # A first: it migrates the empty database
        self._b: LiveServer | None = None

    @property
    def postgres(self) -> bool:
        return not self.url.startswith("sqlite")

    @property
    def b(self) -> LiveServer:
        if self._b is None:
            self._b = LiveServer(self.tmp / "b", env=self.env)
            self._b.launch(port=0)
        return self._b

    def stop(self) -> None:
        for server in (self.a, self._b):
            if server is not None:
                server.stop()


@pytest.fixture(scope="module", params=ENGINES)
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp(f"leases-{request.param}")
    database = _create_database(request.param, tmp)
    running = Servers(tmp, next(database))
    try:
        yield running
        for server in (running.a, running._b):  # the guarantee over every test's traffic
            if server is not None:
                log = server.log()
                assert log, "the server wrote no log"
                leaked = [t for t in TOKENS if t in log] + ([SECRET] if SECRET in log else [])
                assert not leaked, "a refresh token or secret reached the server's log"
    finally:
        running.stop()
        next(database, None)


@pytest.fixture
def server(servers: Servers) -> LiveServer:
    return servers.a


def _connector(server: LiveServer, refresh_token: str | None = None, **credential: Any) -> str:
    document = {**ROTATING, "refresh_token": refresh_token or _token(), **credential}
    made = server.admin("POST", "/v1/connectors", json={
        "type": "generic", "domains": ["api.example.com"], "auth_type": "oauth2",
        "token": json.dumps(document)})  # fmt: skip
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _ask(server: LiveServer, cid: str, holder: str) -> httpx.Response:
    return server.gateway("POST", f"/v1/gateway/connectors/{cid}/refresh-lease", {"holder": holder})


def _granted(server: LiveServer, cid: str, holder: str) -> dict[str, Any]:
    answer = _ask(server, cid, holder)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert set(body) == {"connector", "lease", "refresh_token", "expires_in"}
    assert body["connector"] == cid
    return body


def _busy(answer: httpx.Response) -> None:
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["error"] == "refresh_in_progress"
    assert "another gateway is refreshing" in body["message"]
    assert 0 < body["retry_after"] <= 600
    assert 1 <= int(answer.headers["Retry-After"]) <= 600
    assert not any(t in answer.text for t in TOKENS)


def _release(server: LiveServer, cid: str, lease: str) -> dict[str, Any]:
    answer = server.gateway("DELETE", f"/v1/gateway/connectors/{cid}/refresh-lease/{lease}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# -- the contract ----------------------------------------------------------------------------


def test_a_lease_names_the_vaults_refresh_token(server: LiveServer) -> None:
    vaulted = _token()
    cid = _connector(server, vaulted)
    lease = _granted(server, cid, "gw-a")
    assert lease["refresh_token"] == vaulted
    assert lease["expires_in"] == 600
    assert lease["lease"].startswith("rfl_")


def test_another_holder_waits_and_the_same_holder_keeps_its_lease(server: LiveServer) -> None:
    cid = _connector(server)
    first = _granted(server, cid, "gw-a")
    _busy(_ask(server, cid, "gw-b"))
    again = _granted(server, cid, "gw-a")  # the holder asking again: same lease, extended
    assert again["lease"] == first["lease"]
    _busy(_ask(server, cid, "gw-b"))


def test_a_released_lease_is_the_next_holders(server: LiveServer) -> None:
    cid = _connector(server)
    first = _granted(server, cid, "gw-a")
    assert _release(server, cid, "rfl_not_this_one") == {"connector": cid, "released": False}
    _busy(_ask(server, cid, "gw-b"))
    assert _release(server, cid, first["lease"]) == {"connector": cid, "released": True}
    assert _release(server, cid, first["lease"]) == {"connector": cid, "released": False}
    second = _granted(server, cid, "gw-b")
    assert second["lease"] != first["lease"]
    assert second["refresh_token"] == first["refresh_token"]
    other = _connector(server)  # a lease is one connector's: releasing it elsewhere is a no-op
    assert _release(server, other, second["lease"])["released"] is False
    _busy(_ask(server, cid, "gw-a"))


def test_storing_the_rotation_ends_the_lease(server: LiveServer) -> None:
    first_token, rotated = _token(), _token()
    cid = _connector(server, first_token)
    lease = _granted(server, cid, "gw-a")
    _busy(_ask(server, cid, "gw-b"))
    body = {"previous_sha256": _sha(first_token), "refresh_token": rotated, "lease": lease["lease"]}
    stored = server.gateway("POST", f"/v1/gateway/connectors/{cid}/refresh-token", body)
    assert stored.json() == {"connector": cid, "stored": True}, stored.text
    after = _granted(server, cid, "gw-b")  # at once: the holder's lease ended with the store
    assert after["refresh_token"] == rotated
    assert _release(server, cid, lease["lease"])["released"] is False
    # the same rotation sent again (a retry) changes nothing, nor ends the lease gw-b took
    # since (it refreshes with the rotated token: another holder must not, meanwhile)
    again = server.gateway("POST", f"/v1/gateway/connectors/{cid}/refresh-token", body)
    assert again.json() == {"connector": cid, "stored": False}, again.text
    _busy(_ask(server, cid, "gw-c"))
    assert _release(server, cid, after["lease"])["released"] is True
    third = _granted(server, cid, "gw-c")
    assert third["refresh_token"] == rotated
    assert third["lease"] != after["lease"]


def test_removing_the_connector_ends_its_lease(server: LiveServer) -> None:
    cid = _connector(server)
    lease = _granted(server, cid, "gw-a")
    assert server.admin("DELETE", f"/v1/connectors/{cid}").status_code == 204
    assert _ask(server, cid, "gw-b").status_code == 404
    assert _release(server, cid, lease["lease"])["released"] is False


def test_only_a_vaulted_refresh_token_grant_takes_a_lease(server: LiveServer) -> None:
    missing = _ask(server, "no-such-connector", "gw-a")
    assert missing.status_code == 404, missing.text
    machine = _connector(server, grant="client_credentials", refresh_token=None)
    static = server.admin("POST", "/v1/connectors", json={
        "type": "generic", "domains": ["static.example.com"], "token": SECRET})  # fmt: skip
    for cid in (machine, static.json()["id"]):
        answer = _ask(server, cid, "gw-a")
        assert answer.status_code == 409, answer.text
        assert answer.json()["field"] == "grant"
        assert "refresh_token" in answer.json()["message"]
        assert SECRET not in answer.text


def test_the_lease_routes_are_the_gateways_and_check_their_input(server: LiveServer) -> None:
    cid = _connector(server)
    path = f"/v1/gateway/connectors/{cid}/refresh-lease"
    assert server.admin("POST", path, {"holder": "gw-a"}).status_code == 403
    assert server.admin("DELETE", path + "/rfl_x").status_code == 403
    assert server.request("POST", path, json={"holder": "gw-a"}).status_code == 401
    for body in ({}, {"holder": ""}, {"holder": "h" * 201}, {"holder": "a", "extra": 1}):
        answer = server.gateway("POST", path, body)
        assert answer.status_code == 422, (body, answer.text)
    assert _release(server, cid, "x" * 300)["released"] is False
    rotation = {"previous_sha256": "0" * 64, "refresh_token": "rt", "lease": "l" * 41}
    bad = server.gateway("POST", f"/v1/gateway/connectors/{cid}/refresh-token", rotation)
    assert bad.status_code == 422, bad.text
    assert bad.json()["field"] == "lease"
    assert _granted(server, cid, "h" * 200)["lease"]  # nothing above took the lease


# -- one holder at a time ------------------------------------------------------------------


def _all_at_once(targets: list[tuple[LiveServer, str]], cid: str) -> list[httpx.Response]:
    barrier = threading.Barrier(len(targets))
    answers: list[Any] = [None] * len(targets)

    def ask(i: int, target: LiveServer, holder: str) -> None:
        barrier.wait()
        try:
            answers[i] = _ask(target, cid, holder)
        except Exception as exc:  # reported by the assertion below
            answers[i] = exc

    threads = [threading.Thread(target=ask, args=(i, s, h)) for i, (s, h) in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    return answers


def _exactly_one_granted(answers: list[httpx.Response]) -> None:
    granted = [a for a in answers if a.status_code == 200]
    assert len(granted) == 1, [(a.status_code, a.text) for a in answers]
    for answer in answers:
        if answer.status_code != 200:
            _busy(answer)


def test_many_holders_at_once_one_is_granted(server: LiveServer) -> None:
    cid = _connector(server)
    answers = _all_at_once([(server, f"gw-{i}") for i in range(16)], cid)
    _exactly_one_granted(answers)


def test_many_holders_through_two_replicas_one_is_granted(servers: Servers) -> None:
    if not servers.postgres:
        pytest.skip("replicas share a PostgreSQL database")
    cid = _connector(servers.a)
    targets = [(servers.a if i % 2 else servers.b, f"gw-{i}") for i in range(16)]
    _exactly_one_granted(_all_at_once(targets, cid))
    again = [(servers.a, "gw-x"), (servers.b, "gw-y")]  # the lease is the database's
    for answer in _all_at_once(again, cid):
        _busy(answer)


def test_two_writers_take_turns_on_one_connector(servers: Servers) -> None:
    """Without the writer's batching or PostgreSQL's advisory lock: two transactions by
    hand, the second asks while the first holds its grant uncommitted. It waits on the
    connector's row and then finds the lease taken: not a duplicate key (no lease row yet),
    not a second grant (an expired row both would replace)."""
    keyring = Keyring(Vault.from_text(generate_key_text()))
    cid = f"manual-{secrets.token_hex(4)}"
    document = json.dumps({**ROTATING, "refresh_token": _token()})
    one, two = Database(servers.url), Database(servers.url)
    try:
        with one.writer_engine.connect() as conn, conn.begin():
            conn.execute(insert(credentials).values(
                owner=cid, ciphertext=keyring.encrypt(document, owner=cid),
                created_at=time.time()))  # fmt: skip
        later = time.time() + 10_000  # the second round: the first round's lease expired
        for at in (time.time(), later):
            outcome: list[Any] = []

            def second(at: float = at, outcome: list[Any] = outcome) -> None:
                try:
                    with two.writer_engine.connect() as conn, conn.begin():
                        outcome.append(acquire(conn, cid, "writer-2", at, 600.0, keyring))
                except Exception as exc:
                    outcome.append(exc)

            with one.writer_engine.connect() as conn, conn.begin():
                first = acquire(conn, cid, "writer-1", at, 600.0, keyring)
                waiting = threading.Thread(target=second)
                waiting.start()
                waiting.join(0.5)
                assert waiting.is_alive(), outcome  # it waits for the first to commit
            waiting.join(60)
            assert first[0].startswith("rfl_")
            (refused,) = outcome
            assert isinstance(refused, ApiError), refused
            assert (refused.status, refused.code) == (409, "refresh_in_progress")
    finally:
        one.close()
        two.close()


# -- expiry --------------------------------------------------------------------------------


def test_an_expired_lease_is_anyones(tmp_path: Path, database_url: str) -> None:
    env = {"AGENTFIREWALL_DATABASE_URL": database_url, "AGENTFIREWALL_REFRESH_LEASE_SECONDS": "1"}
    server = LiveServer.start(tmp_path / "tf", env=env)
    try:
        vaulted = _token()
        cid = _connector(server, vaulted)
        first = _granted(server, cid, "gw-a")
        assert first["expires_in"] == 1
        deadline = time.monotonic() + 30
        while True:  # busy until the second is up: polled, whatever the clock's pace
            answer = _ask(server, cid, "gw-b")
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            _busy(answer)
            time.sleep(0.1)
        assert answer.status_code == 200, answer.text
        second = answer.json()
        assert second["lease"] != first["lease"]
        assert second["refresh_token"] == vaulted
        assert _release(server, cid, first["lease"])["released"] is False  # the dead holder's
        time.sleep(1.1)  # past gw-b's second too: its own expired lease is replaced
        third = _granted(server, cid, "gw-b")
        assert third["lease"] != second["lease"]
    finally:
        server.stop()
    assert vaulted not in server.log()
