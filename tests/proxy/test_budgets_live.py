"""Budgets end to end: stripe-python through real gateways and control plane(s).

These runs take a minute or more each: they run with ``AGENTFIREWALL_TEST_BUDGETS=1``
(``nox -s budgets``). The default run covers atomicity across two apps on both engines at
the store level (``tests/server/test_budgets_api.py``) and the gateway's reserve and settle
with the openai client (``test_llm_budgets_live.py``).

64 concurrent $25 transfers against a $1,000 day budget (exactly 40 fit): on SQLite (one
server) and on PostgreSQL (two server replicas sharing one database, one gateway each).
The sum executed never exceeds the limit; when the upstream fails mid-way the failed
transfers' reservations are released, so the whole budget can still be spent, and the
budget's usage equals what the upstream executed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import stripe

from agentfirewall_proxy.control import HttpControl
from agentfirewall_server.store.db import normalize_url
from tests.conftest import StartServer
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import (
    CREDENTIALS,
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    gateway_options,
)

PG_ENV = "AGENTFIREWALL_TEST_POSTGRES_URL"
LONG_ENV = "AGENTFIREWALL_TEST_BUDGETS"
AMOUNT = 2500  # $25.00
LIMIT = 100_000  # $1,000.00: 40 transfers
WORKERS = 64


def _pg_admin(base: str) -> str:
    return normalize_url(base).replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def servers(
    request: pytest.FixtureRequest, live_server_factory: StartServer, fakes: FakeUpstreams
) -> Iterator[tuple[list[LiveServer], str]]:
    """SQLite: one server. PostgreSQL: two replicas (a copy of the first one's data
    directory: same secrets and tokens; one database). The agent's key with them."""
    if not os.environ.get(LONG_ENV):  # a minute or more: out of the default run
        pytest.skip(f"64 concurrent transfers: `nox -s budgets` (sets {LONG_ENV}=1)")
    fakes["stripe"].clear()
    fakes["stripe"].settings.clear()
    if request.param == "sqlite":
        first = live_server_factory()
        yield [first], _setup(first)
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV}")
    import psycopg

    name = f"af_{secrets.token_hex(6)}"
    with psycopg.connect(_pg_admin(base), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    env = {"AGENTFIREWALL_DATABASE_URL": f"{base.rpartition('/')[0]}/{name}"}
    started: list[LiveServer] = []
    try:
        started.append(live_server_factory(env=env, name="a"))
        key = _setup(started[0])
        shutil.copytree(started[0].data_dir, started[0].data_dir.parent / "b",
                        ignore=shutil.ignore_patterns("server.lock"))  # fmt: skip
        started.append(live_server_factory(env=env, name="b"))
        yield started, key
    finally:
        for server in started:
            server.stop()
        with psycopg.connect(_pg_admin(base), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def gateways(
    servers: tuple[list[LiveServer], str], fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[list[RunningGateway]]:
    started: list[RunningGateway] = []
    for index, server in enumerate(servers[0]):
        control = HttpControl(server.url, server.gateway_token)
        # 64 TLS handshakes at once on a loaded 2-core machine: no handshake deadline here
        options = gateway_options(tmp_path / f"gw{index}", fakes, header_timeout=120.0,
                                  connect_timeout=60.0)  # fmt: skip
        started.append(RunningGateway(options, control).start())
    yield started
    for running in started:
        running.stop()


def _setup(server: LiveServer) -> str:
    key = server.create_agent("Finance-Bot")
    answer = server.admin(
        "POST", "/v1/connectors", json={"type": "stripe", "token": CREDENTIALS["stripe"]}
    )
    assert answer.status_code == 201, answer.text
    rule = {"agent": "Finance-Bot", "connector": "stripe", "action_pattern": "stripe.*",
            "decision": "allow"}  # fmt: skip
    assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    budget = {"agents": ["Finance-Bot"], "connector": "stripe",
              "action": "stripe.transfer.create", "measure": "sum", "currency": "usd",
              "window": "calendar_day", "timezone": "Europe/Paris", "limit": LIMIT}  # fmt: skip
    answer = server.admin("PUT", "/v1/budgets/stripe-daily", json=budget)
    assert answer.status_code == 201, answer.text
    return key


def _wait_config(gateways: list[RunningGateway]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        configs = [g.gateway.config if g.gateway else None for g in gateways]
        if all(c is not None and c.budgets and c.connectors for c in configs):
            return
        time.sleep(0.05)
    raise AssertionError("the gateways never got the budget")


def _client(running: RunningGateway, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        PLACEHOLDER,
        http_client=stripe.RequestsClient(proxy=running.proxy_url(key, "Finance-Bot")),
        max_network_retries=0,
    )


def _transfer(client: stripe.StripeClient, amount: int = AMOUNT) -> str:
    try:
        client.v1.transfers.create(params={"amount": amount, "currency": "usd",
                                        "destination": "acct_1"})  # fmt: skip
    except stripe.StripeError as exc:
        body: Any = exc.json_body or {}
        error = body.get("error") or {}
        if error.get("message") == "fake outage":
            return "failed"  # the upstream's 500
        return str(error.get("code") or f"{type(exc).__name__}: {exc.http_status}: {exc}")
    return "ok"


def _burst(clients: list[stripe.StripeClient]) -> list[str]:
    barrier = threading.Barrier(WORKERS)

    def one(index: int) -> str:
        barrier.wait(30)
        return _transfer(clients[index % len(clients)])

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, range(WORKERS)))


def _state(server: LiveServer) -> dict[str, Any]:
    answer = server.admin("GET", "/v1/budgets/stripe-daily")
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()["state"]
    return state


def _settled(server: LiveServer) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = _state(server)
        if state["in_flight"] == 0:
            return state
        time.sleep(0.05)
    raise AssertionError("reservations never settled")


def _executed(fakes: FakeUpstreams) -> list[int]:
    return [int(r.form()["amount"]) for r in fakes["stripe"].received("POST", "/v1/transfers")]


@pytest.fixture
def prepared(
    servers: tuple[list[LiveServer], str], gateways: list[RunningGateway], fakes: FakeUpstreams,
    tmp_path: Path,
) -> Iterator[tuple[list[stripe.StripeClient], LiveServer]]:  # fmt: skip
    running, key = servers
    _wait_config(gateways)
    bundle = ca_bundle(gateways[0].ca_path, tmp_path / "bundle.pem")
    if len(gateways) > 1:  # every gateway's CA in one bundle
        extra = ca_bundle(gateways[1].ca_path, tmp_path / "b.pem").read_bytes()
        bundle.write_bytes(bundle.read_bytes() + b"\n" + extra)
    saved = stripe.ca_bundle_path
    stripe.ca_bundle_path = str(bundle)
    try:
        yield [_client(g, key) for g in gateways], running[-1]
    finally:
        stripe.ca_bundle_path = saved
        fakes["stripe"].settings.clear()


def _refusals_name_the_budget(client: stripe.StripeClient, server: LiveServer) -> None:
    with pytest.raises(stripe.StripeError) as caught:
        client.v1.transfers.create(params={"amount": LIMIT + 1, "currency": "usd",
                                           "destination": "acct_1"})  # fmt: skip
    body: Any = caught.value.json_body
    assert body["error"]["code"] == "budget_exceeded"
    assert "budget `stripe-daily` exceeded" in body["error"]["message"]
    # another currency is not this budget's
    client.v1.transfers.create(params={"amount": LIMIT * 3, "currency": "eur",
                                       "destination": "acct_1"})  # fmt: skip
    # a covered request that does not say how much is refused (fail closed)
    with pytest.raises(stripe.StripeError) as missing:
        client.v1.transfers.create(params={"currency": "usd", "destination": "acct_1"})
    body = missing.value.json_body
    assert "parameter `amount` is not a number" in body["error"]["message"]
    assert _settled(server)["used"] == 0
    # logged as what it was: a refusal (`tf logs` showed `allow | 403`)
    deadline = time.monotonic() + 15
    refused: list[dict[str, Any]] = []
    while not refused and time.monotonic() < deadline:
        rows = server.admin("GET", "/v1/traffic").json()["traffic"]
        refused = [r for r in rows if "budget `stripe-daily` exceeded" in (r["reason"] or "")]
        time.sleep(0.05)
    assert refused
    assert {(r["decision"], r["status_code"]) for r in refused} == {("deny", 403)}


def _never_overspend(clients: list[stripe.StripeClient], server: LiveServer,
                     fakes: FakeUpstreams) -> None:  # fmt: skip
    fakes["stripe"].clear()
    outcomes = _burst(clients)
    assert outcomes.count("ok") == LIMIT // AMOUNT, outcomes
    assert outcomes.count("budget_exceeded") == WORKERS - LIMIT // AMOUNT, set(outcomes)
    assert sum(_executed(fakes)) == LIMIT
    state = _settled(server)
    assert (state["used"], state["remaining"]) == (LIMIT, 0)
    assert state["by_agent"] == {"Finance-Bot": LIMIT}


def _failing_mid_way_loses_nothing(clients: list[stripe.StripeClient], server: LiveServer,
                                   fakes: FakeUpstreams) -> None:  # fmt: skip
    fakes["stripe"].clear()
    fakes["stripe"].settings.update(fail_transfers=(10, 25), transfers_seen=0)
    first = _burst(clients)  # the 11th to 25th transfers the upstream receives fail (500)
    assert first.count("failed") >= 1
    assert first.count("ok") * AMOUNT <= LIMIT
    assert _settled(server)["used"] == first.count("ok") * AMOUNT  # failures released
    fakes["stripe"].settings.pop("fail_transfers")
    second = _burst(clients)  # the upstream is back: the rest of the budget is usable
    assert "failed" not in second
    assert (first.count("ok") + second.count("ok")) * AMOUNT == LIMIT
    assert _settled(server)["used"] == LIMIT
    assert sum(_executed(fakes)) - first.count("failed") * AMOUNT == LIMIT


LOW_BUDGET = """\
name: hold-large-when-low
rules:
  - name: large-when-low
    conditions:
      all:
        - {field: budget.stripe-daily.remaining, operator: lt, value: 90000}
        - {field: action_spec.parameters.amount, operator: gt, value: 20000}
    decision: deny
    reason: large transfers wait for tomorrow when the day's budget is low
"""


def _condition_on_budget_state(client: stripe.StripeClient, server: LiveServer) -> None:
    """`budget.<name>.remaining` in a policy: decided before the budget itself."""
    assert _transfer(client, 25_000) == "budget_exceeded"  # nothing left: the budget says no
    answer = server.admin("POST", "/v1/policies", json={"document": LOW_BUDGET})
    assert answer.status_code == 201, answer.text
    deadline = time.monotonic() + 20
    while _transfer(client, 25_000) != "denied":  # the policy, once the gateway has it
        assert time.monotonic() < deadline, "the policy never applied"
        time.sleep(0.1)
    assert _transfer(client, 10_000) == "budget_exceeded"  # small: the policy lets it be


def _reset(server: LiveServer) -> None:
    """The same budget again, with no usage (removing a budget removes its usage)."""
    body = server.admin("GET", "/v1/budgets/stripe-daily").json()
    assert server.admin("DELETE", "/v1/budgets/stripe-daily").status_code == 200
    definition = {k: v for k, v in body.items() if k not in ("id", "name", "state")}
    assert server.admin("PUT", "/v1/budgets/stripe-daily", json=definition).status_code == 201


def test_concurrent_transfers_against_a_budget(
    prepared: tuple[list[stripe.StripeClient], LiveServer], fakes: FakeUpstreams
) -> None:
    clients, server = prepared
    _refusals_name_the_budget(clients[0], server)
    _never_overspend(clients, server, fakes)
    _reset(server)
    _failing_mid_way_loses_nothing(clients, server, fakes)
    _condition_on_budget_state(clients[0], server)
