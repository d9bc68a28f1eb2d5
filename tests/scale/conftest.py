"""Scale-out fixtures: replicas of the control plane sharing one fresh PostgreSQL database.

Every test here needs ``AGENTFIREWALL_TEST_POSTGRES_URL`` (CI sets it; ``source
.ci/postgres.sh`` locally) and is skipped without it.
"""

from __future__ import annotations

import gc
import os
import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from agentfirewall.tokens import generate_signing_key
from agentfirewall_server.app import create_app
from agentfirewall_server.settings import Settings
from tests.livesrv import LiveServer
from tests.server.conftest import PG_ENV, Harness, _admin_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped after the test)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV} (run `source .ci/postgres.sh`)")
    name = f"af_scale_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    head, _, _ = base.rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def shared_keys() -> dict[str, str]:
    """The secrets every replica shares: the signing key and the vault key."""
    return {
        "SIGNING_KEY_PRIVATE": generate_signing_key().to_pem().decode(),
        "SETTINGS_ENCRYPTION_KEY": secrets.token_hex(32),
    }


@pytest.fixture
def replicas(
    tmp_path: Path, pg_url: str, shared_keys: dict[str, str]
) -> Iterator[Callable[[str], Harness]]:
    """In-process replicas (one app and event loop each) on the one database."""
    clients: list[TestClient] = []

    def make(name: str) -> Harness:
        settings = Settings(
            data_dir=tmp_path / name,
            database_url=pg_url,
            signing_key=shared_keys["SIGNING_KEY_PRIVATE"],
            encryption_key=shared_keys["SETTINGS_ENCRYPTION_KEY"],
        )
        client = TestClient(create_app(settings), base_url="http://127.0.0.1:3000")
        client.__enter__()
        clients.append(client)
        return Harness(client, settings.data_dir)

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)
    with warnings.catch_warnings():  # as tests/server/conftest.py: pool connections
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def live_replicas(
    tmp_path: Path, pg_url: str, shared_keys: dict[str, str]
) -> Iterator[Callable[[str], LiveServer]]:
    """`python -m agentfirewall_server` processes on the one database, own ports and dirs."""
    started: list[LiveServer] = []

    def start(name: str, **env: str) -> LiveServer:
        server = LiveServer.start(
            tmp_path / name,
            env={"AGENTFIREWALL_DATABASE_URL": pg_url, **shared_keys, **env},
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def wait_for(fn: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `fn` until it returns something truthy (a bound on waiting, not on speed)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = fn()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(0.02)
