"""The server's side of audit checkpoints: sign the head, keep it in three places, verify.

Every ``audit_checkpoint_seconds`` (when the head moved), on shutdown and on request
(``POST /api/v1/audit/checkpoints``) the writer signs the chain head and stores it in the
``audit_checkpoints`` table in the same transaction; after the commit the checkpoint is
appended (and fsynced) to ``<data dir>/audit-checkpoints.jsonl`` and sent to the optional
anchors: ``audit_anchor_file`` (a path, e.g. on another volume) and ``audit_anchor_url``
(a webhook receiving the checkpoint as JSON). A failing anchor is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, select

from agentfirewall.tokens import SigningKey
from agentfirewall_server.audit import VerifyResult, iter_rows
from agentfirewall_server.checkpoints import (
    CHECKPOINT_FILE,
    Checkpoint,
    CheckpointError,
    checkpoint_line,
    parse_checkpoint,
    read_checkpoint_file,
    sign_checkpoint,
    verify_rows,
)
from agentfirewall_server.clock import now
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.schema import audit_checkpoints, audit_events

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = ["Checkpointer", "append_line", "collect", "verify_log"]

log = logging.getLogger("agentfirewall_server")


def append_line(path: Path, line: str) -> None:
    """Append `line` durably (O_APPEND, fsync; the file is created 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _table(
    conn: Connection, keys: dict[str, ec.EllipticCurvePublicKey]
) -> tuple[list[Checkpoint], list[str]]:
    found, problems = [], []
    for (token,) in conn.execute(select(audit_checkpoints.c.token)):
        try:
            found.append(parse_checkpoint(str(token), keys, "audit_checkpoints table"))
        except CheckpointError as exc:
            problems.append(str(exc))
    return found, problems


def collect(
    settings: Settings, key: SigningKey, conn: Connection | None = None
) -> tuple[list[Checkpoint], list[str]]:
    """Every checkpoint to be found: the data-dir file, the anchor file, then the table."""
    keys = {key.kid: key.public_key}
    found: list[Checkpoint] = []
    problems: list[str] = []
    files = [(settings.data_dir / CHECKPOINT_FILE, CHECKPOINT_FILE)]
    if settings.audit_anchor_file is not None:
        files.append((settings.audit_anchor_file, "anchor file"))
    for path, source in files:
        more, bad = read_checkpoint_file(path, keys, source)
        found += more
        problems += bad
    if conn is not None:
        more, bad = _table(conn, keys)
        found += more
        problems += bad
    return found, problems


def verify_log(settings: Settings, key: SigningKey, conn: Connection) -> VerifyResult:
    """The chain, held against the newest checkpoint of every place they are kept."""
    checkpoints, problems = collect(settings, key, conn)
    return verify_rows(iter_rows(conn), checkpoints, problems)


class Checkpointer:
    """Signs the chain head at an interval, on shutdown and on request."""

    def __init__(self, state: Services) -> None:
        self.state = state

    def _sign(self, conn: Connection, reason: str) -> dict[str, Any] | None:
        head = conn.execute(
            select(audit_events.c.id, audit_events.c.hash)
            .order_by(audit_events.c.id.desc())
            .limit(1)
        ).first()
        seq, digest = (int(head.id), str(head.hash)) if head else (0, "0" * 64)
        last = conn.execute(
            select(audit_checkpoints.c.seq, audit_checkpoints.c.head_hash)
            .order_by(audit_checkpoints.c.id.desc())
            .limit(1)
        ).first()
        if reason != "request" and (
            (last is not None and (last.seq, last.head_hash) == (seq, digest))
            or (last is None and seq == 0)
        ):
            return None  # nothing new since the last checkpoint
        key = self.state.signing_key
        stamp = now()
        token = sign_checkpoint(key, seq, digest, stamp)
        row = {
            "seq": seq,
            "head_hash": digest,
            "created_at": stamp,
            "kid": key.kid,
            "reason": reason,
            "token": token,
        }
        conn.execute(audit_checkpoints.insert().values(**row))
        return row

    async def checkpoint(self, reason: str = "interval") -> Checkpoint | None:
        """Sign and keep the current head (None when nothing changed since the last,
        unless `reason` is ``request``)."""
        row = await self.state.db.write(lambda c: self._sign(c, reason))
        if row is None:
            return None
        cp = Checkpoint(
            row["seq"], row["head_hash"], row["created_at"], row["kid"], row["token"], reason
        )
        line = checkpoint_line(cp)
        await asyncio.to_thread(append_line, self.state.settings.data_dir / CHECKPOINT_FILE, line)
        await self._anchor(cp, line)
        return cp

    async def _anchor(self, cp: Checkpoint, line: str) -> None:
        settings = self.state.settings
        if settings.audit_anchor_file is not None:
            try:
                await asyncio.to_thread(append_line, settings.audit_anchor_file, line)
            except OSError as exc:
                log.warning("audit anchor file %s: %s", settings.audit_anchor_file, exc)
        if settings.audit_anchor_url:
            body = {"seq": cp.seq, "head": cp.head, "time": cp.time, "kid": cp.kid}
            try:
                response = await self.state.http.post(
                    settings.audit_anchor_url, json={**body, "token": cp.token}, timeout=10
                )
                response.raise_for_status()
            except Exception as exc:  # an anchor that is down never stops the server
                log.warning("audit anchor webhook failed: %s", type(exc).__name__)

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.state.settings.audit_checkpoint_seconds)
            try:
                await self.checkpoint("interval")
            except Exception:
                log.warning("could not write an audit checkpoint", exc_info=True)
