"""The `tameflare` distribution: built as an sdist and a wheel, installed into fresh virtualenvs.

Dependencies come from the package index pip is configured with; nothing is mocked. Also the
integration guide's `pip install ./packages/sdk-python`, run in a clean clone.
"""

from __future__ import annotations

import email
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.cli.conftest import REPO, fresh_venv

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

_PACKAGES = ("agentfirewall", "agentfirewall_server", "agentfirewall_proxy")


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", *_PACKAGES], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [p for p in out if "/__pycache__/" not in p]


def test_wheel_and_sdist_are_tameflare_with_every_package_file(tameflare_dist: Path) -> None:
    [wheel] = tameflare_dist.glob("tameflare-*.whl")
    [sdist] = tameflare_dist.glob("tameflare-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [meta_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(meta_name))
        entry_points = archive.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert metadata["Name"] == "tameflare"
    requires = metadata.get_all("Requires-Dist") or []
    # `proxy` = `tameflare[server]` + its own: hatchling spells the self-reference out
    assert any(r.startswith("starlette") and "extra == 'proxy'" in r for r in requires)
    assert not any(r.startswith(("agentfirewall", "tameflare")) for r in requires)
    assert "tf = agentfirewall_proxy.cli:main" in entry_points
    missing = [p for p in _tracked() if p not in names]
    assert missing == []  # templates, static files, policy packs, node_preload.js, py.typed...
    with tarfile.open(sdist) as archive:
        in_sdist = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert [p for p in _tracked() if p not in in_sdist] == []


def test_the_wheel_installs_into_a_fresh_venv(tmp_path: Path, tameflare_dist: Path) -> None:
    [wheel] = tameflare_dist.glob("tameflare-*.whl")
    env = fresh_venv(tmp_path / "venv")
    _run(["pip", "install", str(wheel)], env)  # the core: the SDK, no server, no CLI extras
    sdk = "from agentfirewall import AgentFirewall; print(AgentFirewall.__name__)"
    assert _run(["python", "-c", sdk], env).strip() == "AgentFirewall"
    version = "import importlib.metadata as m; print(m.version('tameflare'))"
    assert _run(["python", "-c", version], env).strip() == "0.1.0"
    bare = subprocess.run(["tf", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 1
    assert "pip install 'tameflare[proxy]'" in bare.stderr
    assert "Traceback" not in bare.stderr
    _run(["pip", "install", f"{wheel}[proxy]"], env)
    helped = subprocess.run(["tf", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "usage: tf " in helped.stdout
    assert "doctor" in helped.stdout
    assert helped.stderr == ""  # no warning of any kind (StarletteDeprecationWarning...)
    assert "tf (tameflare) 0.1.0" in _run(["tf", "--version"], env)


def test_pip_install_packages_sdk_python_from_a_clean_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    env = fresh_venv(tmp_path / "venv")
    _run(["pip", "install", "./packages/sdk-python"], env, cwd=clone)  # the guide's line
    code = "from agentfirewall import AgentFirewall, AsyncAgentFirewall; print('ok')"
    assert _run(["python", "-c", code], env, cwd=tmp_path).strip() == "ok"
    listed = _run(["pip", "list", "--format", "freeze"], env)
    assert "tameflare==0.1.0" in listed
    assert "tameflare-sdk==0.1.0" in listed
