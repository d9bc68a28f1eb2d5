"""Concurrent SDK requests never overspend a budget: SQLite, and two PostgreSQL replicas.

Thirty `request_action` calls at once, from thirty SDK clients, against a $1,000 budget
of $50 transfers (on PostgreSQL split across two server replicas sharing one database):
exactly twenty are allowed, the others are denied naming the budget, and the budget's
usage is exactly its limit.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentfirewall import AgentFirewall
from agentfirewall.client import ActionResult
from tests.conftest import StartServer
from tests.livesrv import LiveServer
from tests.server.conftest import ENGINES, PG_ENV, _admin_url

CALLS = 30
AMOUNT = 5000
LIMIT = 100_000  # cents: $1,000, room for exactly 20 transfers


@pytest.fixture(params=ENGINES)
def replicas(
    request: pytest.FixtureRequest, live_server_factory: StartServer
) -> Iterator[list[LiveServer]]:
    """SQLite: one server. PostgreSQL: two replicas (the second a copy of the first's data
    directory: same keys and tokens) on one fresh database."""
    if request.param == "sqlite":
        yield [live_server_factory()]
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV}")
    import psycopg

    name = f"af_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    env = {"AGENTFIREWALL_DATABASE_URL": f"{base.rpartition('/')[0]}/{name}"}
    started: list[LiveServer] = []
    try:
        started.append(live_server_factory(env=env, name="a"))
        shutil.copytree(started[0].data_dir, started[0].data_dir.parent / "b",
                        ignore=shutil.ignore_patterns("server.lock"))  # fmt: skip
        started.append(live_server_factory(env=env, name="b"))
        yield started
    finally:
        for server in started:
            server.stop()
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_concurrent_requests_never_overspend(replicas: list[LiveServer]) -> None:
    first = replicas[0]
    key = first.create_agent("Finance-Bot", rate_limit_per_minute=100_000)
    budget = {"agents": ["Finance-Bot"], "connector": "stripe", "action": "stripe.transfer.*",
              "measure": "sum", "currency": "usd", "window": "day", "limit": LIMIT}  # fmt: skip
    assert first.admin("PUT", "/v1/budgets/daily", json=budget).status_code == 201
    for server in replicas[1:]:  # the other replica has the budget once it reloaded
        deadline = time.monotonic() + 30
        while server.admin("GET", "/v1/budgets/daily").status_code != 200:
            assert time.monotonic() < deadline, "the other replica never saw the budget"
            time.sleep(0.1)

    def call(index: int) -> ActionResult:
        server = replicas[index % len(replicas)]
        with AgentFirewall(api_key=key, base_url=server.api_url, max_retries=0) as tf:
            return tf.request_action(
                "stripe.transfer.create",
                provider="stripe",
                target="transfers",
                parameters={"amount": AMOUNT, "currency": "usd", "destination": "acct_1"},
            )

    with ThreadPoolExecutor(CALLS) as pool:
        results = list(pool.map(call, range(CALLS)))
    allowed = [r for r in results if r.status == "allowed"]
    denied = [r for r in results if r.status == "denied"]
    assert len(allowed) == LIMIT // AMOUNT
    assert len(denied) == CALLS - len(allowed)
    assert all("budget `daily` exceeded" in r.decision.reason for r in denied)
    state = first.admin("GET", "/v1/budgets/daily").json()["state"]
    assert state["used"] == LIMIT
    assert state["requests"] == len(allowed)
