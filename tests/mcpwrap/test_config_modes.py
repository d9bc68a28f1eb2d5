"""MCP client configs hold the servers' secrets (their ``env``): `tf mcp install` and
`uninstall` never make one readable by more people than before, the backup is private, and
neither the backup nor the temporary file is written through a link left at its name."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfirewall_proxy.cli.app import main
from agentfirewall_proxy.mcpwrap import clients

SECRET = "ghp_SECRET_IN_MCP_CONFIG"
CONFIG = {
    "mcpServers": {
        "github": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-github"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": SECRET},
        }
    }
}

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    """The umask each test sets is undone after it."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def test_install_and_uninstall_keep_a_private_config_private(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    umask: None,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text(json.dumps(CONFIG), encoding="utf-8")
    path.chmod(0o600)
    os.umask(0o022)  # the common default: new files 0644

    assert main(["mcp", "install", "--client", "cursor", "--name", "Bot"]) == 0
    backup = clients.backup_path(path)
    assert SECRET in backup.read_text(encoding="utf-8")
    assert (_mode(path), _mode(backup)) == (0o600, 0o600)
    assert main(["mcp", "uninstall", "--client", "cursor"]) == 0
    assert _mode(path) == 0o600
    assert json.loads(path.read_text(encoding="utf-8")) == CONFIG
    # nothing else was left beside it (no temporary file)
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "mcp.json",
        "mcp.json.tameflare-backup",
    ]
    capsys.readouterr()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o400], ids=oct)
def test_a_rewritten_config_keeps_its_permissions(tmp_path: Path, umask: None, mode: int) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("{}", encoding="utf-8")
    path.chmod(mode)
    os.umask(0o000)
    clients.save(path, CONFIG, path.read_bytes())
    assert _mode(path) == mode
    assert _mode(clients.backup_path(path)) == 0o600


def test_a_new_config_is_private_whatever_the_umask(tmp_path: Path, umask: None) -> None:
    os.umask(0o000)
    path = tmp_path / ".vscode" / "mcp.json"
    clients.save(path, CONFIG, None)
    assert _mode(path) == 0o600
    assert json.loads(path.read_text(encoding="utf-8")) == CONFIG


def test_links_at_the_backup_and_temporary_names_are_never_written_through(
    tmp_path: Path,
) -> None:
    """Someone who can write the directory leaves links where the backup and the old fixed
    temporary name (`mcp.json.tmp`) go: the secrets must not land at their targets, and the
    config must stay a file of its own."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(CONFIG), encoding="utf-8")
    path.chmod(0o600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("backup", "tmp"):
        (elsewhere / name).write_text("untouched", encoding="utf-8")
    clients.backup_path(path).symlink_to(elsewhere / "backup")
    path.with_name("mcp.json.tmp").symlink_to(elsewhere / "tmp")

    clients.save(path, {"mcpServers": {}}, path.read_bytes())

    assert (elsewhere / "backup").read_text(encoding="utf-8") == "untouched"
    assert (elsewhere / "tmp").read_text(encoding="utf-8") == "untouched"
    assert not path.is_symlink()
    assert json.loads(path.read_text(encoding="utf-8")) == {"mcpServers": {}}
