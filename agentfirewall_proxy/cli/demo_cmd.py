"""`tf demo [--yes]`: the command's options (the tour itself, and what it loads, is in
``demo_run``, imported when the command runs)."""

from __future__ import annotations

import argparse
from typing import Any

from agentfirewall_proxy.cli.context import Context, add_command

__all__ = ["register"]


def demo(ctx: Context) -> int:
    from agentfirewall_proxy.cli.demo_run import demo as run_demo  # uvicorn, the fakes

    return run_demo(ctx)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "demo",
        help="a 60-second tour on a throwaway gateway (no account, key or network)",
        description="Starts a throwaway gateway (temporary state, free ports) with fake GitHub "
        "and Stripe, and runs a scripted agent through it: an allowed read, a denied delete, a "
        "merge held until you approve it, the kill switch, and the audit log verified. "
        "Exits 0 when every step did what it shows (a smoke test for CI with --yes).",
        examples="  tf demo\n  tf demo --yes          # approve the held merge without asking\n"
        "  tf demo --yes --json",
        common=common,
        handler=demo,
    )
    parser.add_argument("--yes", "-y", action="store_true", help="approve the held merge")
