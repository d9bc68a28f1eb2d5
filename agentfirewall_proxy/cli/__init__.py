"""The `tf` command line: ``agentfirewall_proxy.cli:main`` (see docs/cli.md).

`tf` is installed with every `tameflare` install, but needs the `proxy` extra: without it,
``main`` says how to install it instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_EXTRA = "pip install 'tameflare[proxy]'"
_OURS = frozenset({"agentfirewall", "agentfirewall_server", "agentfirewall_proxy"})


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from agentfirewall_proxy.cli.app import main as run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in _OURS:  # a bug, not a missing extra
            raise
        sys.stderr.write(
            f"error: tf needs the `proxy` extra (module `{exc.name}` is not installed)\n"
            f"  → {_EXTRA}\n"
        )
        return 1
    return run(argv)
