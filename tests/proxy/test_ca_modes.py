"""The gateway's CA cannot be swapped by another local user: the directories `--ca-dir` makes
are 0700 and ``ca.crt`` / ``ca.key`` 0600, whatever the umask (``umask 000`` made them 0777
and ``ca.crt`` 0666: anyone could have put their own CA there for agents to trust)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfirewall_proxy.certs import load_or_create_ca

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def _modes(*paths: Path) -> list[str]:
    return [oct(stat.S_IMODE(p.stat().st_mode)) for p in paths]


@pytest.fixture
def umask_000() -> Iterator[None]:
    before = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(before)


def test_the_ca_is_private_whatever_the_umask(tmp_path: Path, umask_000: None) -> None:
    tmp_path.chmod(0o755)
    directory = tmp_path / "state" / "ca"
    load_or_create_ca(directory)
    assert _modes(tmp_path / "state", directory) == ["0o700", "0o700"]
    assert _modes(directory / "ca.crt", directory / "ca.key") == ["0o600", "0o600"]
    assert _modes(tmp_path) == ["0o755"]  # a directory it did not make is left alone
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "ca.key"]  # no temp file


def test_the_standalone_gateway_makes_its_ca_dir_private(tmp_path: Path) -> None:
    """As the report ran it: `umask 000; python -m agentfirewall_proxy --config-file
    gateway.yaml --ca-dir DIR/sub`."""
    (tmp_path / "gateway.yaml").write_text("agents: []\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["--config-file", "gateway.yaml", "--listen", "127.0.0.1:0", "--ca-dir", "DIR/sub"]
    gateway = subprocess.Popen(
        [sys.executable, "-m", "agentfirewall_proxy", *args],
        cwd=tmp_path, env=env, umask=0o000, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert gateway.stderr is not None
        said = ""
        for _ in range(50):  # its first lines, until it says it listens (or ends)
            line = gateway.stderr.readline()
            said += line
            if not line or "listening on" in line:
                break
        assert "listening on 127.0.0.1:" in said, said
    finally:
        gateway.terminate()
        gateway.communicate(timeout=30)
    ca = tmp_path / "DIR" / "sub"
    assert _modes(tmp_path / "DIR", ca) == ["0o700", "0o700"]
    assert _modes(ca / "ca.crt", ca / "ca.key") == ["0o600", "0o600"]
