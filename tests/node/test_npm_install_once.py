"""Two test files asking for the Node package's devDependencies at once (two pytest-xdist
workers) get one `npm ci`: a second one would delete node_modules under the first's tests."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tests.node.support import install_dev_dependencies

# what `npm ci` does here, slowly enough that two unlocked callers would both run it
FAKE_NPM = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
rm -rf node_modules
sleep 0.3
mkdir node_modules && touch node_modules/.package-lock.json
"""


def test_npm_ci_runs_once_for_callers_at_once_and_not_again(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    (package / "package-lock.json").write_text("{}")
    os.utime(package / "package-lock.json", (1, 1))  # the lockfile predates any install
    npm = tmp_path / "npm"
    npm.write_text(FAKE_NPM)
    npm.chmod(0o755)
    start = threading.Barrier(2)
    failed: list[BaseException] = []

    def ask() -> None:
        start.wait()
        try:
            install_dev_dependencies(str(npm), package)
        except BaseException as exc:  # (reported by the test's own thread)
            failed.append(exc)

    callers = [threading.Thread(target=ask) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(30)
    assert failed == [], failed
    assert (tmp_path / "calls").read_text().splitlines() == ["ci --no-audit --no-fund"]
    install_dev_dependencies(str(npm), package)  # installed and fresh: nothing to do
    assert (tmp_path / "calls").read_text().splitlines() == ["ci --no-audit --no-fund"]
    # a newer lockfile makes the install stale: installed again
    os.utime(package / "package-lock.json")
    os.utime(package / "node_modules" / ".package-lock.json", (2, 2))
    install_dev_dependencies(str(npm), package)
    assert len((tmp_path / "calls").read_text().splitlines()) == 2
