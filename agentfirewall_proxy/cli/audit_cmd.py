"""`tf audit export|verify`: the tamper-evident audit log (each event hashes the previous)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_ERROR, EXIT_OK

__all__ = ["register"]


def audit_export(ctx: Context) -> int:
    with ctx.client() as client:
        content = client.download("/v1/audit/export", format=ctx.args.format)
    if ctx.args.output in (None, "-"):
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        Path(ctx.args.output).write_bytes(content)
        ctx.out.success(f"audit log written to {ctx.args.output} ({len(content)} bytes)")
    return EXIT_OK


def audit_verify(ctx: Context) -> int:
    with ctx.client() as client:
        data = client.get("/v1/audit/verify")

    def render() -> None:
        if data.get("ok"):
            ctx.out.success(f"audit chain intact ({data.get('events_checked')} events)")
        else:
            ctx.out.error(
                f"audit chain broken at event {data.get('first_bad_event')}: {data.get('problem')}"
            )

    ctx.out.result(data, render)
    return EXIT_OK if data.get("ok") else EXIT_ERROR


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "audit",
        help="export or verify the tamper-evident audit log",
        description="Every event carries the hash of the one before; verify walks the chain.",
        examples="  tf audit verify\n  tf audit export --format csv -o audit.csv",
        common=common,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="export|verify")
    export = add_command(
        verbs,
        "export",
        help="download the log",
        description="Download the audit log.",
        examples="  tf audit export --format jsonl > audit.jsonl",
        common=common,
        handler=audit_export,
    )
    export.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
    export.add_argument("--output", "-o", metavar="FILE", help="default: standard output")
    add_command(
        verbs,
        "verify",
        help="check the hash chain (exit 1 when broken)",
        description="Check the audit hash chain.",
        examples="  tf audit verify",
        common=common,
        handler=audit_verify,
    )
