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
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from agentfirewall.tokens import generate_signing_key
from agentfirewall_server.app import create_app
from agentfirewall_server.settings import Settings
from tests.server.conftest import PG_ENV, Harness, _admin_url


def _create_database(prefix: str) -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV} (run `source .ci/postgres.sh`)")
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def shared_keys() -> dict[str, str]:
    """The secrets every replica shares: the signing key and the vault key."""
    return {
        "SIGNING_KEY_PRIVATE": generate_signing_key().to_pem().decode(),
        "SETTINGS_ENCRYPTION_KEY": secrets.token_hex(32),
    }


@pytest.fixture(scope="module")
def module_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test module (dropped after it)."""
    yield from _create_database("af_scale")


@dataclass
class Pair:
    """Two in-process replicas (one app and event loop each) on one database."""

    a: Harness
    b: Harness
    url: str


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, module_database: str) -> Iterator[Pair]:
    """Shared by a module's tests: each test names its own agents."""
    keys = shared_keys()
    tmp = tmp_path_factory.mktemp("pair")
    clients: list[TestClient] = []

    def make(name: str) -> Harness:
        settings = Settings(
            data_dir=tmp / name,
            database_url=module_database,
            signing_key=keys["SIGNING_KEY_PRIVATE"],
            encryption_key=keys["SETTINGS_ENCRYPTION_KEY"],
        )
        client = TestClient(create_app(settings), base_url="http://127.0.0.1:3000")
        client.__enter__()
        clients.append(client)
        return Harness(client, settings.data_dir)

    try:
        a, b = make("a"), make("b")
        wait_for(lambda: listening(a) and listening(b), what="both replicas listening")
        yield Pair(a, b, module_database)
    finally:
        for client in reversed(clients):
            client.__exit__(None, None, None)
        with warnings.catch_warnings():  # as tests/server/conftest.py: pool connections
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def listening(harness: Harness) -> bool:
    return bool(harness.state.shared_events.listening.is_set())


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
