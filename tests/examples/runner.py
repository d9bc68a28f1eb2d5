"""Run an example file the way a user does: a subprocess with the seed's variables."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

__all__ = ["EXAMPLES", "load_example", "run_example"]


def run_example(
    name: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python examples/<name>` (or `bash` for .sh) with `env` added; must exit 0."""
    command = ["bash" if name.endswith(".sh") else sys.executable, str(EXAMPLES / name)]
    path = os.pathsep.join(p for p in (str(EXAMPLES.parent), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        command,
        env={**os.environ, "PYTHONPATH": path, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done


def load_example(name: str) -> dict[str, Any]:
    """Execute an example's module body (not its ``__main__`` part); return its globals."""
    return runpy.run_path(str(EXAMPLES / name), run_name=f"example_{Path(name).stem}")
