"""The `tf` command line: ``agentfirewall_proxy.cli:main`` (see docs/cli.md).

`tf` is installed with every `tameflare` install, but needs the `proxy` extra: without it,
``main`` says how to install it instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.util import find_spec

__all__ = ["main"]

_EXTRA = "pip install 'tameflare[proxy]'"
_OURS = frozenset({"agentfirewall", "agentfirewall_server", "agentfirewall_proxy"})
#: What every command's output needs from the extra: looked for, not imported, as `tf
#: --version` and `tf --help` import no command (they answered the same before, when `tf`
#: imported every command to start).
_FROM_THE_EXTRA = ("rich",)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        for name in _FROM_THE_EXTRA:
            if find_spec(name) is None:
                raise ModuleNotFoundError(name=name)
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
