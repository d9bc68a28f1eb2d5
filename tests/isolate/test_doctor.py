"""`tf doctor --isolate`: whether `tf run --isolate` works here, answered by really setting up
a sandbox (the refusal side is in test_isolate_run.py and test_unprivileged.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.isolate.conftest import needs_isolation

REPO = Path(__file__).resolve().parents[2]


@needs_isolation
def test_doctor_says_isolation_works_and_how(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentfirewall_proxy.cli", "doctor", "--isolate", "--json"],
        cwd=tmp_path,  # no project needed
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [check] = json.loads(done.stdout)
    assert check["name"] == "isolation (--isolate)"
    assert check["ok"] is True
    mode = "as root: plain namespaces" if os.geteuid() == 0 else "unprivileged user namespace"
    assert check["detail"] == f"{mode}: network, mount and PID namespaces"
