"""The `tf up` of test_docs_commands.py's scripts (the quickstart's, README's) starts on the
default ports only while it holds `default_ports()`, and does not keep the lock once up: a
`tf up` that inherited it would hold it until stopped, and the next script's would wait."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import cast

import pytest

from tests.cli.test_docs_commands import _script
from tests.fakes import FakeUpstreams

# a `tf up` that writes what it found of the lock when it started, then runs on
FAKE_TF = """#!/bin/sh
state=held
flock --nonblock "$PORTS_LOCK" true && state=free
echo "$state" > lock-at-start
mkdir -p .tf && echo '{}' > .tf/up.json
exec sleep 60
"""


class _NoFakes:
    """What `_script` reads of the fakes, for a `tf up` that reaches no upstream."""

    ca_path = Path("ca.pem")

    def resolve_entries(self) -> list[str]:
        return []


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux)")
def test_the_scripts_tf_up_starts_under_the_ports_lock_and_leaves_it(tmp_path: Path) -> None:
    bin_dir, project, lock = tmp_path / "bin", tmp_path / "project", tmp_path / "ports.lock"
    bin_dir.mkdir()
    project.mkdir()
    (bin_dir / "tf").write_text(FAKE_TF)
    (bin_dir / "tf").chmod(0o755)
    script = _script(["tf up\n"], cast(FakeUpstreams, _NoFakes()), "ghp_x", ports_lock=lock)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], cwd=project, env={**env, "PORTS_LOCK": str(lock)},
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert (project / "lock-at-start").read_text() == "held\n"
        with open(lock, "a") as handle:  # `tf up` still runs, and holds nothing
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.kill(int((project / "tf-up.pid").read_text()), signal.SIGKILL)
