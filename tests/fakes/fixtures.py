"""pytest fixtures for the fakes: ``pytest_plugins = ["tests.fakes.fixtures"]``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeUpstreams, start_fakes


@pytest.fixture(scope="session")
def fakes() -> Iterator[FakeUpstreams]:
    """Every fake, started once per session; each test should ``clear()`` what it reads."""
    running = start_fakes()
    try:
        yield running
    finally:
        running.stop()
