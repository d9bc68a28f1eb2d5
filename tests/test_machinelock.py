"""`machine_lock` keeps every other process out while it is held, shells (`flock`) included."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from tests.machinelock import lock_file, machine_lock


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux)")
def test_a_held_lock_keeps_other_processes_out_until_released() -> None:
    resource = f"test {uuid.uuid4()}"
    probe = ["flock", "--nonblock", str(lock_file(resource)), "true"]
    with machine_lock(resource):
        assert subprocess.run(probe, check=False, timeout=30).returncode == 1
    assert subprocess.run(probe, check=False, timeout=30).returncode == 0
