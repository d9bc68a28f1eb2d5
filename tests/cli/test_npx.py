"""`npx tf ...`: the npm package in packages/tf-cli runs the Python `tf` of this checkout.

The package is installed offline into a temporary project, then `npx --no-install tf` runs from
its node_modules/.bin exactly as the seed's commands do.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "packages" / "tf-cli"
PIP = "pip install 'tameflare[proxy]'"

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None or shutil.which("npx") is None,
        reason="needs node, npm and npx",
    ),
]


def _node_path() -> str:
    """PATH with only the directories of node/npm/npx: no Python `tf` of ours on it."""
    dirs = {str(Path(shutil.which(name) or "").parent) for name in ("node", "npm", "npx")}
    return os.pathsep.join(sorted(dirs))


def _env(project: Path, path: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TF_", "npm_", "NODE_OPTIONS"))
    }
    env.update(
        PATH=path,
        HOME=str(project),
        npm_config_update_notifier="false",
        npm_config_cache=str(project / ".npm-cache"),
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("npx-project")
    done = subprocess.run(
        ["npm", "install", str(PACKAGE), "--offline", "--no-audit", "--no-fund"],
        cwd=root,
        env=_env(root, os.environ.get("PATH", "")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (root / "node_modules" / ".bin" / "tf").exists()
    return root


def _npx(project: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = _env(project, extra.pop("PATH", _node_path()), **extra)
    return subprocess.run(
        ["npx", "--no-install", "tf", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _checkout(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`npx tf` with TF_PYTHON = this interpreter, importing this checkout."""
    return _npx(project, *args, TF_PYTHON=sys.executable, PYTHONPATH=str(REPO))


def test_help_is_the_python_cli(project: Path) -> None:
    done = _checkout(project, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tf ")
    assert "connector" in done.stdout
    assert "kill-switch" in done.stdout


def test_init_creates_state(project: Path) -> None:
    done = _checkout(project, "init")
    assert done.returncode == 0, done.stderr
    state = project / ".tf"
    for name in ("config.yaml", "admin.token", "gateway.token", "ca.crt"):
        assert (state / name).is_file(), name
    assert (state.stat().st_mode & 0o777) == 0o700


def test_usage_error_exit_code_propagates(project: Path) -> None:
    done = _checkout(project, "no-such-command")
    assert done.returncode == 2
    assert "invalid choice: 'no-such-command'" in done.stderr


def test_python_tf_on_path_is_used(project: Path, tmp_path: Path) -> None:
    """A pip console script named `tf` on PATH runs; its exit code comes back."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "tf"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from agentfirewall_proxy.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), _node_path()])
    done = _npx(project, "--version", PATH=path, TF_PYTHON="")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert _npx(project, "no-such-command", PATH=path).returncode == 2


def test_missing_python_names_the_pip_command(project: Path, tmp_path: Path) -> None:
    done = _npx(project, "--help", TF_PYTHON=str(tmp_path / "no-python"))
    assert done.returncode != 0
    assert PIP in done.stderr
    assert "usage: tf" not in done.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_reaches_tf_up(project: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """A signal sent to the node process stops `tf up` in order; its exit code comes back."""
    bin_script = project / "node_modules" / ".bin" / "tf"
    env = _env(tmp_path, _node_path(), TF_PYTHON=sys.executable, PYTHONPATH=str(REPO))
    log = tmp_path / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["node", str(bin_script), "up", "--port", "0", "--proxy-port", "0"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            up_file = tmp_path / ".tf" / "up.json"
            deadline = time.monotonic() + 60
            while not up_file.exists() and process.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert process.poll() is None, log.read_text()
            process.send_signal(sig)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == 0, log.read_text()
    assert not up_file.exists()
