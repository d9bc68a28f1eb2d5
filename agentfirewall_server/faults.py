"""Fault injection for the crash tests: ``AGENTFIREWALL_FAULT_KILL_AT=N`` kills the process
(SIGKILL) at the N-th step boundary that `fault_point` marks (key rotation, key install).

Unset (always, outside the tests) `fault_point` only reads the environment and returns.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["FAULT_ENV", "fault_point"]

FAULT_ENV = "AGENTFIREWALL_FAULT_KILL_AT"
_steps = 0


def fault_point(name: str) -> None:
    """A step boundary: with `AGENTFIREWALL_FAULT_KILL_AT=N`, the N-th one kills the process."""
    global _steps
    target = os.environ.get(FAULT_ENV)
    if not target:
        return
    _steps += 1
    if _steps == int(target):
        print(f"fault injection: killed at step {_steps} ({name})", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
