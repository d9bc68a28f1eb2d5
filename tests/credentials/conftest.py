"""`tf` in a temporary project (tests/cli/conftest.py) with fake AWS and GitHub upstreams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Project, tf_bin
from tests.fakes import FakeUpstreams, start_fakes

__all__ = ["tf_bin"]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[FakeUpstreams]:
    running = start_fakes(["aws", "github"])
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def project(tmp_path: Path, tf_bin: Path, upstreams: FakeUpstreams) -> Iterator[Project]:
    root = tmp_path / "proj"
    root.mkdir()
    proj = Project(root, tf_bin, upstreams)
    try:
        yield proj
    finally:
        proj.stop_up()
