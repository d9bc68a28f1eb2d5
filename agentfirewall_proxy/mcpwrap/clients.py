"""MCP client config files: put each stdio server under `tf mcp wrap`, and take it back out.

Claude Desktop and Cursor keep ``{"mcpServers": {NAME: {"command", "args", "env"}}}``;
VS Code keeps ``{"servers": {NAME: {"type": "stdio", "command", "args", "env"}}}``. A server
with a ``url`` (or a ``type`` other than ``stdio``) is remote: the gateway governs it over
HTTP, so it is left alone. Wrapping rewrites an entry to::

    {"command": TF, "args": ["mcp", "wrap", "--name", AGENT, "--server-name", NAME,
                             "--project", DIR, "--", ORIGINAL_COMMAND, *ORIGINAL_ARGS], ...}

so unwrapping is exact: everything after ``--`` is the original. The file is written
atomically with the permissions it had (a new one 0600), and before the first change a copy
of the original is kept beside it (``<file>.tameflare-backup``, 0600, never overwritten).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLIENTS",
    "WrapEntry",
    "backup_path",
    "config_path",
    "entries",
    "load",
    "save",
    "unwrap_all",
    "wrap_all",
]

CLIENTS = ("claude-desktop", "cursor", "vscode")
_MARK = ["mcp", "wrap"]


@dataclass(frozen=True)
class WrapEntry:
    name: str
    wrapped: bool
    agent: str | None
    command: list[str]
    remote: bool


def config_path(client: str, env: Mapping[str, str], cwd: Path) -> Path:
    """Where `client` keeps its MCP servers (user-wide; VS Code: this workspace)."""
    home = Path(env.get("HOME") or Path.home())
    if client == "claude-desktop":
        if sys.platform == "darwin":
            base = home / "Library" / "Application Support"
        elif sys.platform == "win32":
            base = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        else:
            base = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        return base / "Claude" / "claude_desktop_config.json"
    if client == "cursor":
        return home / ".cursor" / "mcp.json"
    if client == "vscode":
        return cwd / ".vscode" / "mcp.json"
    raise ValueError(f"unknown client `{client}`: one of {', '.join(CLIENTS)}")


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".tameflare-backup")


def _servers_key(client: str) -> str:
    return "servers" if client == "vscode" else "mcpServers"


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"`{path}` is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"`{path}` must hold a JSON object")
    return data


def save(path: Path, data: dict[str, Any], original: bytes | None) -> None:
    """Write `data` atomically; keep `original` as the backup if there is none yet.

    These files hold the servers' secrets (their ``env``): the new file keeps the old one's
    permissions (a new file is 0600), and the backup and the temporary file are created
    0600, exclusively (never through a link someone left at their name).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode) & 0o777
    except FileNotFoundError:
        mode = 0o600
    if original is not None:
        _write_backup(backup_path(path), original)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write((json.dumps(data, indent=2) + "\n").encode("utf-8"))
            handle.flush()
            _set_mode(handle.fileno(), tmp, mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_backup(backup: Path, original: bytes) -> None:
    """`original` at `backup`, 0600, unless a backup is there already (never overwritten)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(backup, flags, 0o600)
    except FileExistsError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            _set_mode(handle.fileno(), str(backup), 0o600)  # whatever the umask
            handle.write(original)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(backup)  # a partial backup would never be replaced
        raise


def _set_mode(fd: int, path: str, mode: int) -> None:
    if os.chmod in os.supports_fd:
        os.chmod(fd, mode)
    else:  # Windows before 3.13: only the read-only bit, by name
        os.chmod(path, mode)


def _servers(data: dict[str, Any], client: str) -> dict[str, Any]:
    servers = data.get(_servers_key(client))
    return servers if isinstance(servers, dict) else {}


def _is_remote(entry: Mapping[str, Any]) -> bool:
    kind = entry.get("type")
    return "url" in entry or (kind is not None and kind != "stdio") or "command" not in entry


def _args(entry: Mapping[str, Any]) -> list[str]:
    args = entry.get("args") or []
    return [str(a) for a in args] if isinstance(args, list) else []


def _split(args: list[str]) -> tuple[list[str], list[str]] | None:
    """(wrap flags, original command) of a wrapped entry's args, else None."""
    if "--" not in args:
        return None
    end = args.index("--")
    head = args[:end]
    if not any(head[i : i + 2] == _MARK for i in range(len(head) - 1)):
        return None
    return head, args[end + 1 :]


def _wrapped(entry: Mapping[str, Any]) -> bool:
    return _split(_args(entry)) is not None


def entries(data: dict[str, Any], client: str) -> list[WrapEntry]:
    out = []
    for name, entry in _servers(data, client).items():
        if not isinstance(entry, dict):
            continue
        args = _args(entry)
        split = _split(args)
        if split is not None:
            head, rest = split
            agent = head[head.index("--name") + 1] if "--name" in head[:-1] else None
            out.append(WrapEntry(name, True, agent, rest, False))
        else:
            command = [str(entry.get("command", "")), *args]
            out.append(WrapEntry(name, False, None, command, _is_remote(entry)))
    return out


def wrap_all(
    data: dict[str, Any], client: str, *, agent: str, tf: list[str], project: Path | None
) -> list[str]:
    """Wrap every stdio server not yet wrapped; the names wrapped."""
    done = []
    for name, entry in _servers(data, client).items():
        if not isinstance(entry, dict) or _is_remote(entry) or _wrapped(entry):
            continue
        original = [str(entry["command"]), *_args(entry)]
        flags = ["--name", agent, "--server-name", name]
        if project is not None:
            flags += ["--project", str(project)]
        entry["command"] = tf[0]
        entry["args"] = [*tf[1:], *_MARK, *flags, "--", *original]
        done.append(name)
    return done


def unwrap_all(data: dict[str, Any], client: str) -> list[str]:
    """Put every wrapped server back as it was; the names unwrapped."""
    done = []
    for name, entry in _servers(data, client).items():
        if not isinstance(entry, dict):
            continue
        split = _split(_args(entry))
        if split is None or not split[1]:
            continue
        original = split[1]
        entry["command"] = original[0]
        entry["args"] = original[1:]
        done.append(name)
    return done
