"""The Node.js SDK's own suite (packages/sdk-node, ``node --test``), run under pytest.

One pytest test per Node test file, so a failure names its file and shows the Node
runner's report. The integration files start the real server themselves with
``$AAF_TEST_PYTHON -m agentfirewall_server``; this wrapper passes the interpreter running
pytest. The package's devDependencies are installed when missing or stale
(tests/node/support.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.node.support import INSTALL_SECONDS, PACKAGE, install_dev_dependencies

MIN_NODE = 18
# below pytest's own 120 s timeout, so a stuck run fails with the Node report attached
RUN_SECONDS = 110

# the first test also waits for `npm ci` (module fixture) on a fresh checkout
pytestmark = [pytest.mark.node, pytest.mark.timeout(RUN_SECONDS + INSTALL_SECONDS + 30)]


def _params() -> list[object]:
    files = sorted((PACKAGE / "test").glob("*/*.test.mjs"))
    return [
        pytest.param(
            path.relative_to(PACKAGE).as_posix(),
            marks=[pytest.mark.slow] if path.parent.name == "integration" else [],
            id=path.relative_to(PACKAGE / "test").as_posix(),
        )
        for path in files
    ]


def _node_major(node: str) -> int:
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found = re.match(r"v(\d+)\.", version.strip())
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def node() -> str:
    """Node's path, with the package's devDependencies installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs Node.js and npm on PATH (Debian: apt-get install nodejs npm)")
    if _node_major(node) < MIN_NODE:
        pytest.skip(f"needs Node.js {MIN_NODE} or later")
    install_dev_dependencies(npm)
    return node


def _run(node: str, test_file: str) -> tuple[int, str]:
    """Run one Node test file in its own process group; on timeout kill the whole group,
    so no server it started outlives it."""
    env = {**os.environ, "AAF_TEST_PYTHON": sys.executable}
    with subprocess.Popen(
        [node, "--test", "--test-reporter=tap", test_file],
        cwd=PACKAGE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"node --test {test_file} took over {RUN_SECONDS} s:\n{output}")
        return process.returncode, output


@pytest.mark.parametrize("test_file", _params())
def test_node_suite(node: str, test_file: str) -> None:
    code, report = _run(node, test_file)
    assert code == 0, f"node --test {test_file} failed:\n{report}"
    assert re.search(r"^# pass [1-9]", report, re.MULTILINE), f"no Node test passed:\n{report}"
    assert re.search(r"^# fail 0$", report, re.MULTILINE), report
