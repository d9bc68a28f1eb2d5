"""A package's public names, each imported from its module on first use (PEP 562).

Importing one light module of a package (``agentfirewall.errors``,
``agentfirewall.policy.globs``) runs the package's ``__init__`` first; with its names
lazy, that loads neither pydantic nor the network stack, which keeps ``tf`` and the SDK
quick to start.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of `package`, whose public names live in the
    submodules `homes` maps to them (``{"errors": ("PolicyError", ...)}``)."""
    where = {name: module for module, names in homes.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module `{package}` has no attribute `{name}`")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # found once: the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
