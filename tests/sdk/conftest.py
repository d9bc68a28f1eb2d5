"""SDK tests: each gets its own agent on the shared live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.livesrv import LiveServer
from tests.sdk.liveagent import ExecutingServer, LiveAgent, executing_server, new_agent


@pytest.fixture
def agent(shared_live_server: LiveServer) -> Iterator[LiveAgent]:
    """A new agent on the session's live server; its clients are closed after the test."""
    made = new_agent(shared_live_server)
    yield made
    made.close()


@pytest.fixture(scope="module")
def mode_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecutingServer]:
    """A server that can execute actions (Mode A) against fake upstreams."""
    with executing_server(tmp_path_factory.mktemp("mode-a") / "tf") as running:
        yield running


@pytest.fixture(scope="module")
def crew_mode_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecutingServer]:
    """Mode A for the CrewAI environment: a fake SendGrid only (plain threads)."""
    path = tmp_path_factory.mktemp("crew-mode-a") / "tf"
    with executing_server(path, sendgrid_only=True) as running:
        yield running
