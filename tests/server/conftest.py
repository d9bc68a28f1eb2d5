"""Server test fixtures: every store-backed test runs on SQLite and on PostgreSQL.

PostgreSQL tests need ``AGENTFIREWALL_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts a
server and exports it; CI always sets it). Each test gets a fresh database.
"""

from __future__ import annotations

import contextlib
import gc
import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agentfirewall_server.app import create_app
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import normalize_url

PG_ENV = "AGENTFIREWALL_TEST_POSTGRES_URL"
ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def _admin_url(base: str) -> str:
    return normalize_url(base).replace("postgresql+psycopg://", "postgresql://")


@contextlib.contextmanager
def fresh_pg_databases(count: int) -> Iterator[list[str]]:
    """`count` fresh, empty PostgreSQL databases (skips when there is no server), their
    URLs; dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV} (run `source .ci/postgres.sh`)")
    import psycopg

    names = [f"af_{secrets.token_hex(6)}" for _ in range(count)]
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    head = base.rpartition("/")[0]
    try:
        yield [f"{head}/{name}" for name in names]
    finally:
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            for name in names:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on the engine of the parameter."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with fresh_pg_databases(1) as (url,):
        yield url


@pytest.fixture
def two_pg_databases() -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases (a backup's source and a restore's target)."""
    with fresh_pg_databases(2) as (first, second):
        yield first, second


class Harness:
    """An in-process app (TestClient) with the admin and gateway tokens at hand."""

    def __init__(self, client: TestClient, data_dir: Path) -> None:
        self.client = client
        self.data_dir = data_dir
        self.admin_token = (data_dir / "admin.token").read_text().strip()
        self.gateway_token = (data_dir / "gateway.token").read_text().strip()

    @property
    def state(self) -> Any:
        return self.client.app.state.af  # type: ignore[attr-defined]

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if not path.startswith(("/api", "/.well-known", "/metrics", "/dashboard")):
            path = "/api" + path
        return self.client.request(method, path, headers=headers, **kw)

    def admin(self, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        return self.call(method, path, self.admin_token, json=json, **kw)

    def gateway(self, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        return self.call(method, path, self.gateway_token, json=json, **kw)

    def agent(self, key: str, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        return self.call(method, path, key, json=json, **kw)

    def create_agent(self, name: str, **fields: Any) -> str:
        response = self.admin("POST", "/v1/agents", json={"name": name, **fields})
        assert response.status_code == 201, response.text
        key: str = response.json()["api_key"]
        return key

    def audit_count(self) -> int:
        events = self.admin("GET", "/v1/audit?limit=1000").json()["events"]
        return len(events)


def make_settings(data_dir: Path, database_url: str | None = None, **extra: Any) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, **extra)


@pytest.fixture
def harness_factory(tmp_path: Path, database_url: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(name: str = "data", **extra: Any) -> Harness:
        settings = make_settings(tmp_path / name, database_url, **extra)
        client = TestClient(create_app(settings), base_url="http://127.0.0.1:3000")
        client.__enter__()
        clients.append(client)
        return Harness(client, settings.data_dir)

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)
    # Pool connections of a stopped app that psycopg finalises later would warn inside
    # __del__ (an unraisable error under -W error); collect them here, deliberately.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def harness(harness_factory: Any) -> Harness:
    h: Harness = harness_factory()
    return h


SPEC = {
    "type": "github.pr.merge",
    "resource": {
        "provider": "github",
        "account": "acme",
        "target": "acme/api",
        "environment": "production",
    },
    "parameters": {"pull_number": 42},
}


from tests.fakes.fixtures import fakes  # noqa: E402  (re-exported fixture)

__all__ = ["SPEC", "Harness", "fakes", "make_settings"]


@pytest.fixture(autouse=True, scope="session")
def _collect_stray_connections() -> Iterator[None]:
    """Finalise leftover driver connections of stopped apps before pytest checks for them."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
