"""Scale-out fixtures: replicas of the control plane sharing one fresh PostgreSQL database.

Every test here needs ``AGENTFIREWALL_TEST_POSTGRES_URL`` (CI sets it; ``source
.ci/postgres.sh`` locally) and is skipped without it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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


def replica_keys() -> dict[str, str]:
    """`shared_keys` as the settings of a replica (its data directory would make its own:
    a replica with another key is refused at start)."""
    keys = shared_keys()
    return {
        "signing_key": keys["SIGNING_KEY_PRIVATE"],
        "encryption_key": keys["SETTINGS_ENCRYPTION_KEY"],
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


class Replicas:
    """Replicas started in-process (one app and event loop each), stopped by `stop` or at
    the end: each with its own data directory under `tmp`, all with the same keys."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.keys = replica_keys()
        self.clients: dict[Path, TestClient] = {}

    def settings(self, name: str, database_url: str, **extra: Any) -> Settings:
        return Settings(data_dir=self.tmp / name, database_url=database_url, **self.keys, **extra)

    def start(self, name: str, database_url: str, **extra: Any) -> Harness:
        settings = self.settings(name, database_url, **extra)
        client = TestClient(create_app(settings), base_url="http://127.0.0.1:3000")
        client.__enter__()
        self.clients[settings.data_dir] = client
        return Harness(client, settings.data_dir)

    def stop(self, harness: Harness) -> None:
        self.clients.pop(harness.data_dir).__exit__(None, None, None)

    def stop_all(self) -> None:
        for client in reversed(list(self.clients.values())):
            client.__exit__(None, None, None)
        self.clients.clear()
        with warnings.catch_warnings():  # as tests/server/conftest.py: pool connections
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    started = Replicas(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, module_database: str) -> Iterator[Pair]:
    """Shared by a module's tests: each test names its own agents."""
    started = Replicas(tmp_path_factory.mktemp("pair"))
    try:
        a, b = started.start("a", module_database), started.start("b", module_database)
        wait_for(lambda: listening(a) and listening(b), what="both replicas listening")
        yield Pair(a, b, module_database)
    finally:
        started.stop_all()


class Link:
    """A TCP relay on 127.0.0.1 to the PostgreSQL server of `url`: one replica's path to the
    database (`via`), which `cut` breaks (every connection closed, new ones refused) until
    `restore`."""

    def __init__(self, url: str) -> None:
        self.target = urllib.parse.urlsplit(url).port
        self.open = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self.loop
        ).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def via(self, url: str) -> str:
        return url.replace(f":{self.target}/", f":{self.port}/")

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers |= {writer, up_writer}
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    def cut(self) -> None:
        def close_all() -> None:
            self.open = False
            for writer in self.writers:
                writer.transport.abort()
            self.writers.clear()

        self.loop.call_soon_threadsafe(close_all)

    def restore(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self, "open", True)

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            for writer in self.writers:
                writer.transport.abort()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        dst.close()


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
