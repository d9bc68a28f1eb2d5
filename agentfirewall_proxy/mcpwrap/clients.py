"""MCP client config files: put each stdio server under `tf mcp wrap`, and take it back out.

Claude Desktop and Cursor keep ``{"mcpServers": {NAME: {"command", "args", "env"}}}``;
VS Code keeps ``{"servers": {NAME: {"type": "stdio", "command", "args", "env"}}}``. A server
with a ``url`` (or a ``type`` other than ``stdio``) is remote: the gateway governs it over
HTTP, so it is left alone. Wrapping rewrites an entry to::

    {"command": TF, "args": ["mcp", "wrap", "--name", AGENT, "--server-name", NAME,
                             "--project", DIR, "--", ORIGINAL_COMMAND, *ORIGINAL_ARGS], ...}

so unwrapping is exact: everything after ``--`` is the original (an entry that had no
``args`` gets none back: the backup says so). NAME is the entry's key when ``tf mcp wrap``
accepts it as a server name, else a slug of it (:func:`server_names`). The file is written
atomically with the permissions it had (a new one 0600; a symbolic link's target is
rewritten, the link kept), and before the first change a copy of the original is kept
beside it (``<file>.tameflare-backup``, 0600, never overwritten): when uninstalling gives
back what it held, its bytes are written back (layout and comments included).

VS Code's ``mcp.json`` is JSONC: comments and trailing commas are read (:func:`load`), but
a rewritten file holds none (the backup keeps them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLIENTS",
    "SERVER_NAME",
    "WrapEntry",
    "backup_path",
    "config_path",
    "entries",
    "load",
    "parse",
    "plain_json",
    "read_backup",
    "save",
    "server_names",
    "unwrap_all",
    "wrap_all",
]

CLIENTS = ("claude-desktop", "cursor", "vscode")
_MARK = ["mcp", "wrap"]
#: A server name `tf mcp wrap --server-name` accepts.
SERVER_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: A JSON string, or what JSONC adds to JSON: a comment, a comma before `]` or `}`.
_STRING = r'"(?:[^"\\\n]|\\.)*"'
_COMMENT = re.compile(_STRING + r"|//[^\n]*|/\*[\s\S]*?\*/")
_TRAILING_COMMA = re.compile(_STRING + r"|,(?=\s*[\]}])")


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
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    return parse(raw, path)


def parse(raw: bytes, path: Path) -> dict[str, Any]:
    """A client's config: JSON, or JSONC (VS Code's: comments, trailing commas)."""
    try:
        text = raw.decode("utf-8")
        try:
            data = json.loads(text)
        except ValueError:
            data = json.loads(_strict(text))
    except ValueError as exc:
        raise ValueError(f"`{path}` is not valid JSON (nor JSONC): {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"`{path}` must hold a JSON object")
    return data


def plain_json(raw: bytes) -> bool:
    """Whether `raw` is JSON as is (a rewritten JSONC file loses its comments)."""
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _strict(text: str) -> str:
    """JSONC as JSON: comments and trailing commas blanked, strings left as they are."""

    def blank(found: re.Match[str]) -> str:
        return found[0] if found[0].startswith('"') else re.sub(r"[^\n]", " ", found[0])

    return _TRAILING_COMMA.sub(blank, _COMMENT.sub(blank, text))


def read_backup(path: Path) -> tuple[dict[str, Any], bytes] | None:
    """The config as it was before the first install (its backup) and its bytes; None
    when there is none, or it is no config."""
    try:
        raw = backup_path(path).read_bytes()
        return parse(raw, path), raw
    except (OSError, ValueError):
        return None


def save(path: Path, data: dict[str, Any] | bytes, original: bytes | None) -> None:
    """Write `data` (bytes: as they are) atomically; keep `original` as the backup if there
    is none yet. A symbolic link at `path` (dotfiles) stays one: its target is rewritten.

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
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if not isinstance(data, bytes):
        data = (json.dumps(data, indent=2) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            _set_mode(handle.fileno(), tmp, mode)
            os.fsync(handle.fileno())
        os.replace(tmp, target)
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


def _flag(head: list[str], flag: str) -> str | None:
    """The value of `flag` among a wrapped entry's wrap flags, if given."""
    return head[head.index(flag) + 1] if flag in head[:-1] else None


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
            out.append(WrapEntry(name, True, _flag(head, "--name"), rest, False))
        else:
            command = [str(entry.get("command", "")), *args]
            out.append(WrapEntry(name, False, None, command, _is_remote(entry)))
    return out


def server_names(data: dict[str, Any], client: str) -> dict[str, str]:
    """A server name for each entry not yet wrapped (by its key) that ``tf mcp wrap``
    accepts: its key when it is one, else the key with each run of other characters as
    ``-`` (never first: it would read as a flag), unique among the entries."""
    taken: set[str] = set()
    names = []
    for name, entry in _servers(data, client).items():
        split = _split(_args(entry)) if isinstance(entry, dict) else None
        if split is not None:
            taken.add(_flag(split[0], "--server-name") or name)
        elif isinstance(entry, dict):
            names.append(name)
    out = {name: name for name in names if SERVER_NAME.fullmatch(name) and name[0] != "-"}
    taken.update(out)
    for name in names:
        if name in out:
            continue
        base = _NOT_IN_NAME.sub("-", name).strip("-")[:90] or "mcp"
        slug, count = base, 1
        while slug in taken:
            count += 1
            slug = f"{base}-{count}"
        out[name] = slug
        taken.add(slug)
    return {name: out[name] for name in names}


def wrap_all(
    data: dict[str, Any], client: str, *, agent: str, tf: list[str], project: Path | None
) -> dict[str, str]:
    """Wrap every stdio server not yet wrapped; the names wrapped, each with its server
    name (:func:`server_names`)."""
    done = {}
    slugs = server_names(data, client)
    for name, entry in _servers(data, client).items():
        if not isinstance(entry, dict) or _is_remote(entry) or _wrapped(entry):
            continue
        original = [str(entry["command"]), *_args(entry)]
        flags = ["--name", agent, "--server-name", slugs[name]]
        if project is not None:
            flags += ["--project", str(project)]
        entry["command"] = tf[0]
        entry["args"] = [*tf[1:], *_MARK, *flags, "--", *original]
        done[name] = slugs[name]
    return done


def unwrap_all(
    data: dict[str, Any], client: str, before: dict[str, Any] | None = None
) -> list[str]:
    """Put every wrapped server back as it was; the names unwrapped. `before`: the config
    before the first install (the backup): an entry that had no ``args`` there gets none."""
    done = []
    earlier = _servers(before or {}, client)
    for name, entry in _servers(data, client).items():
        if not isinstance(entry, dict):
            continue
        split = _split(_args(entry))
        if split is None or not split[1]:
            continue
        original = split[1]
        entry["command"] = original[0]
        entry["args"] = original[1:]
        was = earlier.get(name)
        if not entry["args"] and isinstance(was, dict) and "args" not in was:
            del entry["args"]
        done.append(name)
    return done
