"""The public API type-checks the way users write it (mypy --strict on sdk_usage.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.slow
def test_sdk_usage_passes_mypy_strict() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            "--config-file",
            str(HERE.parents[1] / "pyproject.toml"),
            str(HERE / "sdk_usage.py"),
        ],
        capture_output=True,
        text=True,
        cwd=HERE.parents[1],
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
