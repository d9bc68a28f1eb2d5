"""The server's side of audit checkpoints: sign the head, keep it in three places, verify.

Every ``audit_checkpoint_seconds`` (when the head moved), on shutdown and on request
(``POST /api/v1/audit/checkpoints``) the writer signs the chain head and stores it in the
``audit_checkpoints`` table in the same transaction; after the commit the checkpoint is
appended (and fsynced) to ``<data dir>/audit-checkpoints.jsonl`` and sent to the optional
anchors: ``audit_anchor_file`` (a path, e.g. on another volume) and ``audit_anchor_url``
(a webhook receiving the checkpoint as JSON). A failing anchor is logged, never fatal.

A head that does not extend the newest checkpoint kept (this data directory's file, the
anchor file, the table) is never signed: the log was truncated or rewritten under it. The
refusal is logged as an error at every attempt and recorded once as an
``audit.checkpoint_refused`` event. Only a restore record in the files (signed by `tf restore
--discard-newer-audit`, so never the database's word) sets the checkpoints signed before
it aside: the log extends the head it names instead (`newest_kept`). Checkpoints verify
with the signing key and the public halves of retired ones
(``AGENTFIREWALL_SIGNING_KEYS_PREVIOUS``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, select

from agentfirewall.tokens import SigningKey
from agentfirewall_server.audit import VerifyResult, append_event, iter_rows
from agentfirewall_server.bootstrap import write_all
from agentfirewall_server.checkpoints import (
    CHECKPOINT_FILE,
    Checkpoint,
    CheckpointError,
    checkpoint_line,
    parse_checkpoint,
    public_keys,
    read_checkpoint_file,
    read_checkpoint_lines,
    sign_checkpoint,
    verify_rows,
)
from agentfirewall_server.clock import now
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.schema import audit_checkpoints, audit_events
from agentfirewall_server.web import ApiError

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = [
    "Checkpointer",
    "append_line",
    "checkpoint_keys",
    "collect",
    "newest_kept",
    "verify_log",
]

log = logging.getLogger("agentfirewall_server")

#: how much of a checkpoint file's end `newest_kept` reads (a line is about 600 bytes)
_TAIL_BYTES = 64 * 1024
_UNANCHORED = (
    "audit: %s holds no signed checkpoint of the audit log's %d events and no anchor is set: "
    "if this data directory does not persist (an emptyDir), anyone holding the database can "
    "truncate the audit log undetected once the server restarts; keep it on persistent "
    "storage or set AGENTFIREWALL_AUDIT_ANCHOR_FILE / AGENTFIREWALL_AUDIT_ANCHOR_URL "
    "(docs/deploy.md)"
)


def append_line(path: Path, line: str) -> None:
    """Append `line` durably (O_APPEND, every byte, fsync; the file is created 0600).

    A file whose last line was cut short (a crash while appending) is ended first, so the
    new line stays a line of its own (`read_checkpoint_lines` passes over the cut one).
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        data = line.encode("utf-8")
        info = os.fstat(fd)
        regular = stat.S_ISREG(info.st_mode) and info.st_size > 0
        if regular and os.pread(fd, 1, info.st_size - 1) != b"\n":
            data = b"\n" + data
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_keys(settings: Settings, key: SigningKey) -> dict[str, ec.EllipticCurvePublicKey]:
    """What checkpoints verify with: the signing key and the retired keys' public halves."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for pem in settings.signing_keys_previous:
        keys.update(public_keys(pem))
    keys[key.kid] = key.public_key
    return keys


def _files(settings: Settings) -> list[tuple[Path, str]]:
    """The checkpoint files, with the name a problem gives each."""
    files = [(settings.data_dir / CHECKPOINT_FILE, CHECKPOINT_FILE)]
    if settings.audit_anchor_file is not None:
        files.append((settings.audit_anchor_file, "anchor file"))
    return files


def _tail(path: Path) -> list[str]:
    """The whole lines of the last `_TAIL_BYTES` of `path` (none when it does not exist)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL_BYTES))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []
    return lines[1:] if size > _TAIL_BYTES else lines


def newest_kept(
    settings: Settings, keys: dict[str, ec.EllipticCurvePublicKey]
) -> Checkpoint | None:
    """The newest checkpoint of the data directory's file and the anchor file that the log
    must extend, read from their ends (lines are appended as they are signed, give or take
    a concurrent one, and a restore record after the checkpoints it discards).

    After a restore record, the newest of its head and the checkpoints signed after it: the
    ones signed before it held the log the restore discarded. By time, not by place in a
    file, so a record copied to another file or again later discards nothing newer.
    """
    found: list[Checkpoint] = []
    restores: list[Checkpoint] = []
    for path, source in _files(settings):
        lines = _tail(path)
        found += read_checkpoint_lines(lines, keys, source)[0]
        restores += read_checkpoint_lines(lines, keys, source, "restore")[0]
    if restores:
        restored = max(restores, key=lambda c: c.time)
        found = [restored, *(cp for cp in found if cp.time > restored.time)]
    return max(found, key=lambda c: (c.seq, c.time), default=None)


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
    keys = checkpoint_keys(settings, key)
    found: list[Checkpoint] = []
    problems: list[str] = []
    for path, source in _files(settings):
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


def _head(conn: Connection) -> tuple[int, str]:
    head = conn.execute(
        select(audit_events.c.id, audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1)
    ).first()
    return (int(head.id), str(head.hash)) if head else (0, "0" * 64)


def _holds(conn: Connection, seq: int, digest: str) -> bool:
    """The log holds event `seq` with hash `digest` (every log holds the empty head)."""
    if seq == 0:
        return True
    row = conn.execute(select(audit_events.c.hash).where(audit_events.c.id == seq)).first()
    return row is not None and str(row.hash) == digest


class Checkpointer:
    """Signs the chain head at an interval, on shutdown and on request."""

    def __init__(self, state: Services) -> None:
        self.state = state
        #: the newest checkpoint of the data directory's file and the anchor file to extend
        self._kept: Checkpoint | None = None
        self._read = False
        self._reading = asyncio.Lock()
        self._recorded: set[tuple[int, str]] = set()  # refusals recorded in the log

    async def _read_kept(self) -> None:
        """Once: what the files keep, and a warning when only the table keeps the log's end."""
        async with self._reading:
            if self._read:
                return
            settings = self.state.settings
            keys = checkpoint_keys(settings, self.state.signing_key)
            kept = await asyncio.to_thread(newest_kept, settings, keys)
            if kept is None and not (settings.audit_anchor_file or settings.audit_anchor_url):
                events, _digest = await self.state.db.read(_head)
                if events:
                    log.warning(_UNANCHORED, settings.data_dir / CHECKPOINT_FILE, events)
            self._keep(kept)
            self._read = True

    def _keep(self, cp: Checkpoint | None) -> None:
        if cp is not None and (self._kept is None or cp.seq >= self._kept.seq):
            self._kept = cp

    def _refusal(self, conn: Connection, seq: int, digest: str) -> str | None:
        """Why the head (`seq`, `digest`) must not be signed: it does not extend the newest
        checkpoint of the table or of the files (`newest_kept`): a truncated or rewritten
        log. (No row of the database excuses one: the database is what may be tampered.)"""
        newest = conn.execute(
            select(audit_checkpoints.c.seq, audit_checkpoints.c.head_hash)
            .order_by(audit_checkpoints.c.seq.desc())
            .limit(1)
        ).first()
        kept = [(self._kept.seq, self._kept.head, self._kept.source)] if self._kept else []
        if newest is not None:
            kept.append((int(newest.seq), str(newest.head_hash), "the audit_checkpoints table"))
        for at, head, source in kept:
            if at <= seq and _holds(conn, at, head):
                continue
            if (at, head) not in self._recorded:
                self._recorded.add((at, head))
                data = {"head_seq": seq, "checkpoint_seq": at, "checkpoint_source": source}
                append_event(conn, "audit.checkpoint_refused", actor="server", now=now(),
                             subject="audit", data=data)  # fmt: skip
            if at > seq:
                return (
                    f"the audit log ends at event {seq}, before the checkpoint of {source} "
                    f"(events 1..{at}): truncated or rolled back"
                )
            return f"event {at} differs from the checkpoint of {source}: history rewritten"
        return None

    def _sign(self, conn: Connection, reason: str) -> dict[str, Any] | str | None:
        """The new checkpoint's row; None when nothing changed since the last one; the
        problem when the head must not be signed (`_refusal`)."""
        seq, digest = _head(conn)
        refused = self._refusal(conn, seq, digest)
        if refused is not None:
            return refused
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
        unless `reason` is ``request``; None too when the head must not be signed, which a
        ``request`` gets as a 409)."""
        await self._read_kept()
        row = await self.state.db.write(lambda c: self._sign(c, reason))
        if isinstance(row, str):
            log.error("audit checkpoint refused: %s: run `tf audit verify`", row)
            if reason == "request":
                raise ApiError(409, f"no checkpoint signed: {row}")
            return None
        if row is None:
            return None
        cp = Checkpoint(
            row["seq"], row["head_hash"], row["created_at"], row["kid"], row["token"], reason
        )
        line = checkpoint_line(cp)
        await asyncio.to_thread(append_line, self.state.settings.data_dir / CHECKPOINT_FILE, line)
        self._keep(dataclasses.replace(cp, source=CHECKPOINT_FILE))
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
        try:  # at start: what the files keep, and a warning when they keep nothing
            await self._read_kept()
        except Exception:
            log.warning("could not read the audit checkpoint files", exc_info=True)
        while True:
            await asyncio.sleep(self.state.settings.audit_checkpoint_seconds)
            try:
                await self.checkpoint("interval")
            except Exception:
                log.warning("could not write an audit checkpoint", exc_info=True)
