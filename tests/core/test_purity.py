"""The core is pure: importing it loads no network or server stack."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ["httpx", "anyio", "starlette", "uvicorn", "sqlalchemy", "socket"]
CORE = [
    "agentfirewall.actions",
    "agentfirewall.decisions",
    "agentfirewall.errors",
    "agentfirewall.tokens",
    "agentfirewall.policy",
    "agentfirewall.connectors",
    "agentfirewall.content",
]


def test_core_imports_no_io_stack() -> None:
    code = (
        "import sys, importlib\n"
        f"for m in {CORE!r}: importlib.import_module(m)\n"
        f"bad = [m for m in {FORBIDDEN[:-1]!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"core imported {out}"
