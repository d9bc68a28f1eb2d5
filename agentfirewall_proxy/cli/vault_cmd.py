"""`tf vault status|rotate`: the credential vault's keys and online key rotation."""

from __future__ import annotations

import argparse
import time
from typing import Any

from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_ERROR, EXIT_OK

__all__ = ["register"]

_POLL_SECONDS = 0.2


def _render_status(ctx: Context, data: dict[str, Any]) -> None:
    ctx.out.fields(
        [
            ("current key", f"{data.get('current_key_id')} ({data.get('key_source')})"),
            ("credentials", data.get("credentials", 0)),
            ("not yet re-sealed", data.get("pending", 0)),
            ("keys read from", data.get("looked_in")),
        ]
    )
    ctx.out.table(
        ("key id", "current", "in keyring", "credentials"),
        [
            (
                k["key_id"],
                "yes" if k["current"] else "",
                "yes" if k["in_keyring"] else "NO",
                k["credentials"],
            )
            for k in data.get("keys") or []
        ],
    )
    rotation = data.get("rotation")
    if rotation:
        ctx.out.info(
            f"rotation {rotation['state']}: {rotation['resealed']}/{rotation['total']} "
            f"re-sealed under key {rotation['key_id']}"
            + (f" ({rotation['error']})" if rotation.get("error") else "")
        )
    for bad in data.get("unreadable") or []:
        ctx.out.error(f"credential of {bad['owner']} does not decrypt", bad.get("fix"))


def vault_status(ctx: Context) -> int:
    with ctx.client() as client:
        data = client.get("/v1/vault")
    ctx.out.result(data, lambda: _render_status(ctx, data))
    return EXIT_ERROR if data.get("unreadable") else EXIT_OK


def vault_rotate(ctx: Context) -> int:
    with ctx.client() as client:
        rotation = client.post("/v1/vault/rotate")["rotation"]
        if not ctx.args.no_wait:
            while rotation["state"] == "running":
                time.sleep(_POLL_SECONDS)
                rotation = client.get("/v1/vault")["rotation"]

    def render() -> None:
        if rotation["state"] == "running":
            ctx.out.info(
                f"rotation started (key {rotation['key_id']}); follow it with `tf vault status`"
            )
        elif rotation["state"] == "done":
            retired = ", ".join(rotation.get("retired_keys") or []) or "none"
            ctx.out.success(
                f"re-sealed {rotation['resealed']} credential(s) under key {rotation['key_id']} "
                f"in {rotation['batches']} batch(es); retired keys: {retired}"
            )
            for owner in rotation.get("unreadable") or []:
                ctx.out.error(
                    f"credential of {owner} does not decrypt: not re-sealed, its key is kept",
                    "`tf vault status` says how to fix it",
                )
        else:
            ctx.out.error(
                f"rotation failed: {rotation.get('error')}",
                "run `tf vault rotate` again: it resumes where it stopped",
            )

    ctx.out.result({"rotation": rotation}, render)
    failed = rotation["state"] == "failed" or rotation.get("unreadable")
    return EXIT_ERROR if failed else EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "vault",
        help="the credential vault: keys, rotation",
        description="Credentials are sealed with AES-256-GCM; each names its key id. "
        "Rotation runs in the server, in batches, and resumes after a crash.",
        examples="  tf vault status\n  tf vault rotate",
        common=common,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="status|rotate")
    add_command(
        verbs,
        "status",
        help="keys, credentials per key, rotation progress, unreadable credentials",
        description="Show the vault's keys and which credentials each one sealed.",
        examples="  tf vault status\n  tf vault status --json",
        common=common,
        handler=vault_status,
    )
    rotate = add_command(
        verbs,
        "rotate",
        help="new key, every credential re-sealed (online; resumable)",
        description="Install a new key and re-seal every credential with it, in the running "
        "server. Run it again after a crash: it finishes the interrupted rotation. With "
        "SETTINGS_ENCRYPTION_KEY, set the new key there first (the old one in "
        "AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS) and restart; rotate then re-seals.",
        examples="  tf vault rotate\n  tf vault rotate --no-wait --json",
        common=common,
        handler=vault_rotate,
    )
    rotate.add_argument("--no-wait", action="store_true", help="return once it started")
