"""Built-in policy packs: YAML documents shipped as package data.

``list_packs()`` names them; ``load_pack(name)`` loads one as a :class:`Policy`. They
are read with importlib.resources, so they work from a wheel or a zip.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from agentfirewall.errors import PolicyError

if TYPE_CHECKING:
    from agentfirewall.policy.models import Policy

__all__ = ["PackInfo", "list_packs", "load_pack", "safe_default_packs"]

_SUFFIX = ".yaml"


@dataclass(frozen=True, slots=True)
class PackInfo:
    """A pack's name and one-line description."""

    name: str
    description: str


def _files() -> dict[str, str]:
    found = {}
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(_SUFFIX) and entry.is_file():
            found[entry.name.removesuffix(_SUFFIX)] = entry.name
    return found


def load_pack(name: str) -> Policy:
    """Load built-in pack `name`; PolicyError when there is no such pack."""
    return _load(name)


@functools.cache
def _load(name: str) -> Policy:  # packs are immutable data: parse each once
    files = _files()
    if name not in files:
        known = ", ".join(sorted(files))
        raise PolicyError(f"unknown policy pack `{name}`: expected one of {known}")
    from agentfirewall.policy.loader import load_policy  # pydantic: loaded when a pack is

    text = resources.files(__name__).joinpath(files[name]).read_text(encoding="utf-8")
    return load_policy(text, source=f"pack:{name}")


def list_packs() -> list[PackInfo]:
    """Every built-in pack, sorted by name."""
    return [PackInfo(name, load_pack(name).description) for name in sorted(_files())]


def safe_default_packs() -> tuple[str, ...]:
    """The packs meant for every installation (``<provider>-safe-defaults``), by name."""
    return tuple(sorted(name for name in _files() if name.endswith("-safe-defaults")))
