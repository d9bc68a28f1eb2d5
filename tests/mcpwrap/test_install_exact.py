"""`tf mcp install` then `uninstall` gives back exactly what was there: the same bytes
(layout, key order, an entry with no `args`, VS Code's JSONC comments and trailing commas),
a dotfiles symlink still a symlink; and every installed entry can start, whatever its name
(``My Files``, ``@scope/x``, non-ASCII: each runs under a server name `tf mcp wrap`
accepts, unique, its key kept)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.cli.app import main
from agentfirewall_proxy.mcpwrap import clients
from tests.fuzzscale import examples


def _tf(*args: str) -> int:
    return main([*args, "--json"])


def _server_names(path: Path, key: str) -> dict[str, str]:
    """Each wrapped entry's `--server-name`."""
    out = {}
    for name, entry in clients.parse(path.read_bytes(), path)[key].items():
        args = entry.get("args") or []
        if "--server-name" in args:
            out[name] = args[args.index("--server-name") + 1]
    return out


def _startable(slug: str) -> bool:
    """What `tf mcp wrap --server-name SLUG` accepts (a leading `-` reads as a flag)."""
    return bool(clients.SERVER_NAME.fullmatch(slug)) and not slug.startswith("-")


_WORDS = st.sampled_from(["npx", "-y", "@scope/server", "uvx", "--port", "8080", "é", ""])
_ARGS = st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=3)
_NAMES = st.one_of(
    st.sampled_from(["github", "My Files", "@scope/x", "-dash", "Größe", "My-Files", "a.b_c"]),
    st.text(max_size=12),
)


@st.composite
def _configs(draw: st.DrawFn) -> tuple[str, str]:
    """(client, the config file's text) in the shapes clients write."""
    client = draw(st.sampled_from(["cursor", "vscode"]))
    servers: dict[str, Any] = {}
    for name in draw(st.lists(_NAMES, max_size=5, unique=True)):
        entry: dict[str, Any] = {}
        if draw(st.booleans()):
            entry["url"] = "https://mcp.example.com/mcp"
        else:
            if client == "vscode" and draw(st.booleans()):
                entry["type"] = "stdio"
            entry["command"] = draw(_WORDS.filter(bool))
            if draw(st.booleans()):
                entry["args"] = draw(_ARGS)  # (none, or a list: maybe empty)
            if draw(st.booleans()):
                entry["env"] = {"TOKEN": draw(st.text(max_size=8))}
        servers[name] = entry
    data: dict[str, Any] = {"servers" if client == "vscode" else "mcpServers": servers}
    if draw(st.booleans()):
        data = {"globalShortcut": "Ctrl+Space", **data} if draw(st.booleans()) else data
    indent = draw(st.sampled_from([None, 2, 4, "\t"]))
    text = json.dumps(data, indent=indent, ensure_ascii=draw(st.booleans()))
    if client == "vscode" and draw(st.booleans()):  # JSONC, as VS Code writes it
        text = "// MCP servers\n" + text.rstrip()[:-1] + ",/* end */}\n"
    return client, text


@settings(max_examples=examples(20), deadline=None)
@given(_configs())
def test_uninstall_after_install_gives_back_the_same_bytes(config: tuple[str, str]) -> None:
    client, text = config
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mcp.json"
        path.write_text(text, encoding="utf-8")
        flags = ("--client", client, "--config-file", str(path))
        assert _tf("mcp", "install", *flags, "--name", "Bot") == 0
        key = "servers" if client == "vscode" else "mcpServers"
        slugs = list(_server_names(path, key).values())
        assert all(_startable(slug) for slug in slugs), slugs
        assert len(set(slugs)) == len(slugs)
        assert _tf("mcp", "uninstall", *flags) == 0
        assert path.read_text(encoding="utf-8") == text


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(_NAMES, max_size=8, unique=True))
def test_every_entry_gets_a_server_name_wrap_accepts(names: list[str]) -> None:
    data = {"mcpServers": {name: {"command": "npx"} for name in names}}
    slugs = clients.server_names(data, "cursor")
    assert list(slugs) == names  # (the keys are kept)
    assert all(_startable(slug) for slug in slugs.values())
    assert len(set(slugs.values())) == len(slugs)
    assert all(slug == name for name, slug in slugs.items() if _startable(name))


def test_ordinary_names_are_slugged_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mcp.json"
    servers = {name: {"command": "npx"} for name in ["My Files", "@scope/x", "Größe", "github"]}
    path.write_text(json.dumps({"mcpServers": {**servers, "My-Files": {"command": "uvx"}}}))
    capsys.readouterr()
    assert main(["mcp", "install", "--client", "cursor", "--config-file", str(path),
                 "--name", "Bot", "--json"]) == 0  # fmt: skip
    said = json.loads(capsys.readouterr().out)["server_names"]
    assert said == {"My Files": "My-Files-2", "@scope/x": "scope-x", "Größe": "Gr-e",
                    "github": "github", "My-Files": "My-Files"}  # fmt: skip
    assert _server_names(path, "mcpServers") == said


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_a_symlinked_config_stays_a_link_and_its_target_is_restored(tmp_path: Path) -> None:
    """Dotfiles: `~/.cursor/mcp.json` links to a file kept elsewhere. Replacing the link's
    name by a file cut the client's config off the dotfiles (and uninstall wrote the copy)."""
    target = tmp_path / "dotfiles" / "cursor-mcp.json"
    target.parent.mkdir()
    original = json.dumps({"mcpServers": {"github": {"command": "npx", "env": {"T": "x"}}}})
    target.write_text(original, encoding="utf-8")
    target.chmod(0o600)
    link = tmp_path / "home" / "mcp.json"
    link.parent.mkdir()
    link.symlink_to(target)
    flags = ("--client", "cursor", "--config-file", str(link))

    assert _tf("mcp", "install", *flags, "--name", "Bot") == 0
    assert link.is_symlink()
    assert "wrap" in target.read_text(encoding="utf-8")  # the target holds the change
    assert target.stat().st_mode & 0o777 == 0o600
    assert _tf("mcp", "uninstall", *flags) == 0
    assert link.is_symlink()
    assert target.read_text(encoding="utf-8") == original  # no `"args": []` added
    assert sorted(p.name for p in target.parent.iterdir()) == ["cursor-mcp.json"]  # no temp
