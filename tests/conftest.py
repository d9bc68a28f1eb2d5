"""Shared fixtures for every test package: a real server in a subprocess, anyio backend."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import settings

from tests.fuzzscale import SCALE
from tests.livesrv import LiveServer

# No property test has a deadline: a deadline is a timing assertion, and on a shared 2-core
# machine an example that takes 200 ms is load, not a defect (nox -s deep: tests that name no
# count also get the scaled default).
if SCALE > 1:
    settings.register_profile("deep", max_examples=100 * SCALE, deadline=None)
    settings.load_profile("deep")
else:
    settings.register_profile("untimed", deadline=None)
    settings.load_profile("untimed")

StartServer = Callable[..., LiveServer]

if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker is told the terminal's size (80 x 24
    os.environ.pop("COLUMNS", None)  # when it is none): `tf` output in a worker is then as
    os.environ.pop("LINES", None)  # wide as in one process


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    """Between two test files, what outlives a collection (modules, caches, the session's
    fixtures) is frozen out of the collector's sight, as `settle_gc` does in the server.

    The fixtures that stop an app collect garbage (psycopg finalises a stopped pool's
    connections there, not in a later test): with the whole heap in sight, each of those
    collections took 0.5 s late in the suite (900,000 objects), a third of its run time.
    Only session fixtures are alive at a file's end, and none holds a database pool; before
    the session's last teardown everything is unfrozen, so its own collection sees all.
    A psycopg connection that a test left in a cycle warns when collected here; outside a
    test phase, pytest would report it against the next file's first test, so it is
    ignored, as the app fixtures ignore it.
    """
    if nextitem is None:
        gc.unfreeze()
    result = yield
    if nextitem is not None and nextitem.path != item.path:
        with warnings.catch_warnings():  # as the app fixtures' own collections do
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        gc.freeze()
    return result


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers with custom env/args: `start(env={...}, name="a")`; all stopped after."""
    started: list[LiveServer] = []

    def start(
        env: Mapping[str, str] | None = None, args: tuple[str, ...] = (), name: str = "tf"
    ) -> LiveServer:
        server = LiveServer.start(tmp_path / name, env=env, args=args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_server(live_server_factory: StartServer) -> LiveServer:
    """A fresh server (own data dir, own port) for one test."""
    return live_server_factory()


@pytest.fixture(scope="session")
def shared_live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for a whole session: faster, but tests must not assume an empty store."""
    server = LiveServer.start(tmp_path_factory.mktemp("shared") / "tf")
    yield server
    server.stop()
