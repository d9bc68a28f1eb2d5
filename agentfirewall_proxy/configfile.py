"""The shape of a `--config-file`: every key known, every entry complete, said in one line.

A configuration written by hand fails in ways a control plane's snapshot does not: a key
misspelt (`api_key` for `api_keys`) would be ignored, an agent left without keys (every
request 407), a connector without `id` skipped, a `credential_env` naming a variable that is
not set would forward without a credential. :func:`check_file` refuses each of them, naming
the entry (`connectors[0]`) and the nearest known key, before the file is used: at start
the gateway does not start, on a reload the gateway refuses every request until the file
reads again (``control._unreadable_file``). A control plane's snapshots are not checked
here: a newer server may add keys an older gateway does not know.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any

from agentfirewall.connectors import connector_types

__all__ = ["check_file"]

_TOP = ("version", "settings", "agents", "connectors", "permissions", "policies",
        "kill_switches", "budgets")  # fmt: skip
_SETTINGS = ("approval_timeout_seconds", "default_enforcement_level")

#: section -> (required keys, optional keys); what `GET /api/v1/gateway/config` serves,
#: plus the file's conveniences (`api_keys`, `credential_env`).
_ENTRIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "agents": (
        ("name",),
        (
            "id",
            "status",
            "enforcement_level",
            "sdk_default",
            "key_hashes",
            "key_levels",
            "key_expires",
            "proxy_port",
            "api_keys",
        ),
    ),
    "connectors": (
        ("id", "type"),
        ("name", "domains", "base_url", "auth_type", "auth_header", "credential", "credential_env"),
    ),
    "permissions": (("agent", "connector", "action_pattern", "decision"), ("id",)),
    "policies": (("document",), ("id", "name")),
    "kill_switches": (("scope",), ("target", "reason", "unreadable")),
    "budgets": (
        ("name", "connector"),
        ("id", "agents", "action", "measure", "parameter", "currency"),
    ),
}
_LISTS_OF_TEXT = {("agents", "api_keys"), ("agents", "key_hashes"), ("connectors", "domains"),
                  ("budgets", "agents")}  # fmt: skip


def check_file(data: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first thing in `data` (a parsed file) that is wrong."""
    _known_keys("the file", data, _TOP)
    settings = data.get("settings")
    if settings is not None:
        _known_keys("settings", _mapping("settings", settings), _SETTINGS)
    for section, (required, optional) in _ENTRIES.items():
        entries = data.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ValueError(f"`{section}` must be a list (one `- ` item per entry)")
        for index, raw in enumerate(entries):
            where = f"{section}[{index}]"
            entry = _mapping(where, raw)
            _known_keys(where, entry, (*required, *optional))
            missing = [key for key in required if entry.get(key) in (None, "")]
            if missing:
                raise ValueError(f"{where}: `{missing[0]}` is required{_naming(entry)}")
            for key in entry:
                if (section, key) in _LISTS_OF_TEXT:
                    _texts(f"{where}.{key}", entry[key])
    for index, connector in enumerate(data.get("connectors") or ()):
        _check_connector(f"connectors[{index}]", connector)


def _check_connector(where: str, connector: Mapping[str, Any]) -> None:
    kind = str(connector["type"])
    known = connector_types()
    if kind not in known:
        raise ValueError(
            f"{where}: unknown connector type `{kind[:100]}`{_near(kind, known)}; "
            f"known types are {', '.join(known)}"
        )
    env = connector.get("credential_env")
    if env is not None and not connector.get("credential"):
        if not isinstance(env, str) or not env:
            raise ValueError(f"{where}.credential_env: the name of an environment variable")
        if not os.environ.get(env):
            raise ValueError(
                f"{where} (`{connector['id']}`): credential_env `{env}` is not set in the "
                f"gateway's environment; set it (`{env}=... python -m agentfirewall_proxy "
                "...`) or remove credential_env to forward without a credential"
            )


def _mapping(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping of keys, got {type(value).__name__}")
    return value


def _known_keys(where: str, entry: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in entry:
        if key not in known:
            raise ValueError(
                f"{where}: unknown key `{str(key)[:100]}`{_near(str(key), known)}; "
                f"known keys are {', '.join(known)}"
            )


def _texts(where: str, value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'{where}: expected a list of strings, e.g. ["..."]')


def _near(word: str, known: list[str] | tuple[str, ...]) -> str:
    found = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean `{found[0]}`?)" if found else ""


def _naming(entry: Mapping[str, Any]) -> str:
    for key in ("name", "id"):
        if isinstance(entry.get(key), str) and entry[key]:
            return f" (in `{entry[key][:100]}`)"
    return ""
