"""The Node SDK package (packages/sdk-node) and its devDependencies (typescript, @types/node,
@octokit/rest, prettier), installed with ``npm ci`` from its committed lockfile.

More than one test file uses them, and two test files run at once (pytest-xdist workers).
``npm ci`` deletes ``node_modules`` before it installs, so it runs under a machine lock, and
only when ``node_modules`` is missing or older than the lockfile, as seen once the lock is
held: whichever file asks first installs, the others then find it installed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.machinelock import machine_lock

__all__ = ["INSTALL_SECONDS", "PACKAGE", "install_dev_dependencies"]

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "sdk-node"
INSTALL_SECONDS = 300


def _installed(package: Path) -> bool:
    marker = package / "node_modules" / ".package-lock.json"  # written by `npm ci`
    lock = package / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


def install_dev_dependencies(npm: str, package: Path = PACKAGE) -> None:
    """`npm ci` in `package` when its node_modules is missing or stale, once per machine."""
    with machine_lock(f"npm ci in {package}"):
        if _installed(package):
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=INSTALL_SECONDS,
            check=False,
        )
    assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
