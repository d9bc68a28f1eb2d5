"""`tf audit export|verify`: the tamper-evident audit log (each event hashes the previous).

`verify` holds the chain against the newest signed checkpoint (so a truncated log fails);
`verify --file export.jsonl --key jwks.json` checks an export offline with the public key
(`--key` again for each retired signing key whose checkpoints the export holds). A filtered
export (`?agent=`, `event_type`, `since`, `until`) verifies too: the events its filter left
out are stubs that link the chain, counted apart as "left out by the export's filter".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_ERROR, EXIT_OK, CliError

__all__ = ["register"]


def audit_export(ctx: Context) -> int:
    with ctx.client() as client:  # JSON Lines: the events, then the signed checkpoints
        content = client.download("/v1/audit/export", format=ctx.args.format)
    if ctx.args.output in (None, "-"):
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        try:
            Path(ctx.args.output).write_bytes(content)
        except OSError as exc:
            raise CliError(f"cannot write `{ctx.args.output}`: {exc.strerror}") from None
        written = {"output": ctx.args.output, "format": ctx.args.format, "bytes": len(content)}
        ctx.out.result(
            written,
            lambda: ctx.out.success(
                f"audit log written to {ctx.args.output} ({len(content)} bytes)"
            ),
        )
    return EXIT_OK


def _offline(ctx: Context) -> dict[str, Any]:
    from agentfirewall_server.checkpoints import (
        CheckpointError,
        public_keys,
        read_checkpoint_lines,
        verify_export,
    )

    key_paths = ctx.args.key or []
    if not key_paths and ctx.project is not None:
        key_paths = [str(ctx.project.state_dir / "signing-key.pem")]
    if not key_paths:
        raise CliError(
            "no public key to check the checkpoints with",
            hint="pass --key jwks.json (save the server's /.well-known/jwks.json)",
        )
    reading = key_paths[0]  # the file being read, for a message
    try:
        keys: dict[str, Any] = {}
        for reading in key_paths:
            keys.update(public_keys(Path(reading).read_text(encoding="utf-8")))
        more = []
        for reading in ctx.args.checkpoints or []:
            # a file named here must exist: a mistyped anchor must not pass as "no checkpoint"
            with Path(reading).open(encoding="utf-8") as lines:
                found, bad = read_checkpoint_lines(lines, keys, reading)
            if bad:
                raise CheckpointError(bad[0])
            more += found
        reading = ctx.args.file
        with Path(reading).open(encoding="utf-8") as handle:
            result = verify_export(handle, keys, more)
    except OSError as exc:  # the export, a key or a checkpoints file: name the one
        raise CliError(f"cannot read `{exc.filename}`: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read `{reading}`: it is not UTF-8 text") from None
    except CheckpointError as exc:
        raise CliError(f"cannot verify {ctx.args.file}: {exc}") from None
    return result.to_dict()


def audit_verify(ctx: Context) -> int:
    if ctx.args.file:
        data = _offline(ctx)
    else:
        with ctx.client(offline=True) as client:
            data = client.get("/v1/audit/verify")

    def render() -> None:
        cp = data.get("checkpoint") or {}
        signed = f"; newest checkpoint: event {cp['seq']} at {cp['time']}" if cp else ""
        if data.get("ok"):
            ctx.out.success(f"audit chain intact ({data.get('events_checked')} events{signed})")
            if data.get("filter") is not None:
                ctx.out.info(_left_out(data))
        elif data.get("first_bad_event") is None:  # no event to name: a checkpoint's problem
            ctx.out.error(f"audit log not verified: {data.get('problem')}")
        else:
            ctx.out.error(
                f"audit chain broken at event {data.get('first_bad_event')}: {data.get('problem')}"
            )
            if data.get("events_missing"):
                ctx.out.error(f"{data['events_missing']} event(s) missing{signed}")

    ctx.out.result(data, render)
    return EXIT_OK if data.get("ok") else EXIT_ERROR


def _left_out(data: dict[str, Any]) -> str:
    """What a verified filtered export did not show, and the filter that left it out."""
    named = ", ".join(f"{k}={json.dumps(v, ensure_ascii=True)}" for k, v in data["filter"].items())
    count = data.get("events_left_out", 0)
    return (
        f"{count} event{'' if count == 1 else 's'} left out by the export's filter "
        f"(linked, not shown): {named or 'no filter named'}"
    )


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
    export.add_argument(
        "--format",
        choices=["csv", "jsonl"],
        default="jsonl",
        help="jsonl (default: verifies offline with `tf audit verify`) or csv (a spreadsheet)",
    )
    export.add_argument("--output", "-o", metavar="FILE", help="default: standard output")
    verify = add_command(
        verbs,
        "verify",
        help="check the hash chain and its signed end (exit 1 when broken)",
        description="Check the audit hash chain against the newest signed checkpoint: an "
        "edited, reordered, inserted or deleted event, and events missing at the end, fail. "
        "With --file, check an export offline with only the public key.",
        examples="  tf audit verify\n"
        "  tf audit verify --file audit.jsonl --key jwks.json\n"
        "  tf audit verify --file audit.jsonl --key jwks.json --checkpoints /anchor/cps.jsonl\n"
        "  tf audit verify --file audit.jsonl --key jwks.json --key retired-key.pub.pem",
        common=common,
        handler=audit_verify,
    )
    verify.add_argument("--file", metavar="EXPORT", help="a `tf audit export` JSON Lines file")
    verify.add_argument(
        "--key",
        metavar="FILE",
        action="append",
        help="JWKS or PEM public key (default: this project's key); again for each retired "
        "signing key",
    )
    verify.add_argument(
        "--checkpoints",
        metavar="FILE",
        action="append",
        help="more checkpoints (the anchor file, the data directory's audit-checkpoints.jsonl)",
    )
