"""Examples run against a live server whose connectors point at fake upstreams."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.liveagent import ExecutingServer, LiveAgent, executing_server


@pytest.fixture(scope="module")
def mode_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecutingServer]:
    with executing_server(tmp_path_factory.mktemp("examples") / "tf") as running:
        yield running


@pytest.fixture
def agent(mode_a: ExecutingServer) -> LiveAgent:
    mode_a.clear()
    return mode_a.agent("example")


@pytest.fixture(scope="module")
def crew_mode_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecutingServer]:
    path = tmp_path_factory.mktemp("crew-examples") / "tf"
    with executing_server(path, sendgrid_only=True) as running:
        yield running
