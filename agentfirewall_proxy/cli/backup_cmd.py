"""`tf backup DIR` and `tf restore DIR`: the control plane's data (a running `tf up`'s
too), safely copied and restored.

Both run on the machine that holds the data directory (they read and write its files
and database directly, not through the API).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_OK, CliError

__all__ = ["register"]


def _settings(ctx: Context, data_dir: str | None) -> Any:
    from agentfirewall_server.settings import Settings

    overrides: dict[str, Any] = {}
    if data_dir:
        overrides["data_dir"] = Path(data_dir)
    elif ctx.project is not None:
        overrides["data_dir"] = ctx.project.state_dir
    if ctx.args.database_url:
        overrides["database_url"] = ctx.args.database_url
    try:
        return Settings(**overrides)
    except ValueError as exc:
        raise CliError(f"invalid settings: {exc}") from None


def backup_run(ctx: Context) -> int:
    from agentfirewall.errors import VaultError
    from agentfirewall_server.backup import BackupError, backup

    settings = _settings(ctx, ctx.args.data_dir)
    if not settings.data_dir.is_dir():
        raise CliError(f"no data directory at {settings.data_dir}", hint="pass --data-dir")
    try:
        manifest = backup(settings, Path(ctx.args.directory))
    except VaultError as exc:  # a damaged key file: named as `tf up` names it
        raise CliError(f"vault: {exc}") from None
    except (BackupError, OSError) as exc:
        raise CliError(f"backup failed: {exc}") from None

    def render() -> None:
        size = sum(f["bytes"] for f in manifest["files"].values())
        ctx.out.success(
            f"backed up {settings.data_dir} ({manifest['engine']}, {len(manifest['files'])} "
            f"files, {size} bytes) to {ctx.args.directory}"
        )
        if manifest["encryption_key"] == "environment":
            ctx.out.warn("the encryption key comes from SETTINGS_ENCRYPTION_KEY: keep it too")
        ctx.out.info("it holds the keys that open the credentials: store it apart, 0600")

    ctx.out.result(manifest, render)
    return EXIT_OK


def restore_run(ctx: Context) -> int:
    from agentfirewall_proxy.up import DataInUse, holding_up_lock
    from agentfirewall_server.backup import BackupError, restore
    from agentfirewall_server.datalock import DataBusy

    settings = _settings(ctx, ctx.args.data_dir)
    try:  # not under a `tf up` either, also one still starting (it holds server.lock later)
        with holding_up_lock(settings.data_dir):
            report = restore(
                Path(ctx.args.directory),
                settings,
                force=ctx.args.force,
                discard_newer_audit=ctx.args.discard_newer_audit,
            )
    except (BackupError, DataBusy, DataInUse, OSError) as exc:
        raise CliError(f"restore refused: {exc}") from None

    def render() -> None:
        audit = report["audit"]
        ctx.out.success(
            f"restored into {settings.data_dir}: audit chain intact ({audit['events_checked']} "
            f"events), {report['credentials']} credential(s) decrypt"
        )
        if report["discarded"] is not None:
            ctx.out.warn(
                f"the newer audit log was discarded ({report['discarded']['problem']}): an "
                "`audit.restored` event records it, and verify goes on reporting the rollback"
            )

    ctx.out.result(report, render)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "backup",
        help="copy the data directory and database while the server runs",
        description="Back up the control plane's data into a new directory: the database (SQLite "
        "online backup API, or pg_dump), the keys that open its credentials, the audit "
        "checkpoints and a manifest of checksums. Files are written 0600.",
        examples="  tf backup /backups/tf-$(date +%F)\n"
        "  tf backup --data-dir /srv/tf --database-url postgresql://... /backups/today",
        common=common,
        handler=backup_run,
    )
    parser.add_argument("directory", help="where to write the backup (new or empty)")
    parser.add_argument("--data-dir", help="the data directory (default: this project's .tf)")
    parser.add_argument("--database-url", help="default: AGENTFIREWALL_DATABASE_URL or SQLite")
    parser = add_command(
        sub,
        "restore",
        help="restore a backup into a data directory (verified before it switches)",
        description="Restore a `tf backup` into a data directory (and database). Refused "
        "while a server runs there, and when the target's audit checkpoints show a newer log "
        "(unless --discard-newer-audit); the audit chain and every credential are verified "
        "before the files are moved into place.",
        examples="  tf restore /backups/tf-2026-12-01 --data-dir /srv/tf-restored",
        common=common,
        handler=restore_run,
    )
    parser.add_argument("directory", help="a directory written by `tf backup`")
    parser.add_argument("--data-dir", required=True, help="the data directory to restore into")
    parser.add_argument("--database-url", help="PostgreSQL: the (empty) database to restore into")
    parser.add_argument("--force", action="store_true", help="replace the data already there")
    parser.add_argument(
        "--discard-newer-audit",
        action="store_true",
        help="restore even when the target's audit checkpoints show a newer log (it is "
        "rolled back; verify goes on reporting it)",
    )
