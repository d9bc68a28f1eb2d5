"""The audit log: append-only, hash-chained, verifiable.

Each event's ``hash`` is ``SHA-256("<id>:<previous hash>:<content digest>")`` where the
content digest is the SHA-256 of the canonical JSON of what the event says; ids are
consecutive. The content digest is computed by the caller, off the writer thread.
``verify`` walks the chain and names the first
event that was edited, deleted or inserted. Appends run only in the store's writer
transaction (one writer per process; an advisory lock on PostgreSQL), so the chain is linear.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from agentfirewall.actions import canonical_json
from agentfirewall_server.clock import rfc3339
from agentfirewall_server.store.chain import GENESIS, link_events, link_hash
from agentfirewall_server.store.schema import audit_events

__all__ = [
    "GENESIS",
    "VerifyResult",
    "append_event",
    "append_events",
    "canonical_text",
    "chain_rows",
    "check_row",
    "content_digest",
    "event_to_dict",
    "export_csv",
    "export_jsonl",
    "iter_rows",
    "link_events",
    "link_hash",
    "prepare_event",
    "prepare_events",
    "scalar_text",
    "stub_line",
    "verify_chain",
]

_encode_str: Callable[[str], str] = (
    json.encoder.encode_basestring
)  # what json.dumps(ensure_ascii=False) uses


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events_checked: int
    first_bad_event: int | None
    problem: str | None
    events_missing: int = 0  # after the log's end, by the newest checkpoint
    checkpoint: dict[str, Any] | None = None  # the newest signed checkpoint found
    checkpoints_checked: int = 0
    #: a filtered export's filter (its signed selection record), None for a whole log
    export_filter: dict[str, str] | None = None
    events_left_out: int = 0  # of `events_checked`: stubs a filtered export linked, not shown

    def to_dict(self) -> dict[str, Any]:
        result = {
            "ok": self.ok,
            "events_checked": self.events_checked,
            "first_bad_event": self.first_bad_event,
            "problem": self.problem,
            "events_missing": self.events_missing,
            "checkpoint": self.checkpoint,
            "checkpoints_checked": self.checkpoints_checked,
        }
        if self.export_filter is not None:  # (a filtered export's offline verify only)
            result["filter"] = self.export_filter
            result["events_left_out"] = self.events_left_out
        return result


def content_digest(row: Mapping[str, Any]) -> str:
    """SHA-256 of what an event says (everything but its place in the chain).

    The hashed bytes are the canonical JSON (`canonical_json`) of the six content fields,
    ``data`` being the stored canonical JSON text; they are written here key by key in
    sorted order, which gives the same bytes at a fraction of the cost.
    """
    actor, agent, data, kind, subject = (
        row["actor"],
        row["agent"],
        row["data"],
        row["event_type"],
        row["subject"],
    )
    text = (
        f'{{"actor":{_encode_str(actor) if type(actor) is str else _scalar(actor)},'
        f'"agent":{_encode_str(agent) if type(agent) is str else _scalar(agent)},'
        f'"created_at":{_scalar(row["created_at"])},'
        f'"data":{_encode_str(data) if type(data) is str else _scalar(data)},'
        f'"event_type":{_encode_str(kind) if type(kind) is str else _scalar(kind)},'
        f'"subject":{_encode_str(subject) if type(subject) is str else _scalar(subject)}}}'
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_text(data: dict[str, Any]) -> str:
    """`canonical_json(data)` as text; a flat object of scalars is written directly."""
    parts = []
    for key in sorted(data):
        value = data[key]
        if not isinstance(key, str) or isinstance(value, dict | list | tuple):
            return canonical_json(data).decode("utf-8")
        parts.append(f"{_encode_str(key)}:{_scalar(value)}")
    return "{" + ",".join(parts) + "}"


def _scalar(value: object) -> str:
    """`canonical_json(value)` as text, fast for the types events hold."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return _encode_str(value)
    if isinstance(value, float) and math.isfinite(value):
        return float.__repr__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__repr__(value)
    return canonical_json(value).decode("utf-8")


scalar_text = _scalar  # for callers that write an event's canonical data text themselves


def prepare_event(
    event_type: str,
    *,
    actor: str,
    now: float,
    agent: str | None = None,
    subject: str | None = None,
    data: dict[str, Any] | None = None,
    data_text: str | None = None,
) -> dict[str, Any]:
    """An event's row without its place in the chain (computable off the writer thread).

    `data_text`, when given, is ``canonical_text(data)`` already written by the caller
    (the hot path writes its two events' data together); `data` is then not read.
    """
    row: dict[str, Any] = {
        "event_type": event_type,
        "actor": actor,
        "agent": agent,
        "subject": subject,
        "data": canonical_text(data or {}) if data_text is None else data_text,
        "created_at": round(now, 6),
    }
    row["_digest"] = content_digest(row)
    return row


def prepare_events(
    events: Sequence[tuple[str, str, str]],
    *,
    now: float,
    agent: str | None,
    subject: str | None,
) -> list[dict[str, Any]]:
    """`prepare_event` for several events of one agent and subject at one time, each given
    as (event type, actor, data text): the same rows, with the fields they share (agent,
    subject, time) written into the digested text once."""
    created = round(now, 6)
    shared = (
        f',"agent":{_encode_str(agent) if type(agent) is str else _scalar(agent)},'
        f'"created_at":{_scalar(created)},"data":'
    )
    end = f',"subject":{_encode_str(subject) if type(subject) is str else _scalar(subject)}}}'
    rows = []
    for event_type, actor, data in events:
        text = (
            f'{{"actor":{_encode_str(actor)}{shared}{_encode_str(data)},'
            f'"event_type":{_encode_str(event_type)}{end}'
        )
        rows.append(
            {
                "event_type": event_type,
                "actor": actor,
                "agent": agent,
                "subject": subject,
                "data": data,
                "created_at": created,
                "_digest": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            }
        )
    return rows


def chain_rows(conn: Connection, prepared: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give prepared events their ids and hashes after the current head (not inserted)."""
    head = conn.execute(
        select(audit_events.c.id, audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1)
    ).first()
    return link_events((head.id, head.hash) if head else None, prepared)


def append_events(conn: Connection, prepared: list[dict[str, Any]]) -> None:
    """Append prepared events (see `prepare_event`) with one insert."""
    if prepared:
        conn.execute(audit_events.insert(), chain_rows(conn, prepared))


def append_event(
    conn: Connection,
    event_type: str,
    *,
    actor: str,
    now: float,
    agent: str | None = None,
    subject: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one event after the current head of the chain (inside the writer's transaction)."""
    prepared = prepare_event(
        event_type, actor=actor, now=now, agent=agent, subject=subject, data=data
    )
    row = chain_rows(conn, [prepared])[0]
    conn.execute(audit_events.insert().values(**row))
    return row


def iter_rows(conn: Connection, batch: int = 5000) -> Iterator[Any]:
    """Every event in id order, stored form, read in batches."""
    last_id = 0
    while True:
        rows = (
            conn.execute(
                select(audit_events)
                .where(audit_events.c.id > last_id)
                .order_by(audit_events.c.id)
                .limit(batch)
            )
            .mappings()
            .all()
        )
        if not rows:
            return
        yield from rows
        last_id = rows[-1]["id"]


def verify_chain(conn: Connection, batch: int = 5000) -> VerifyResult:
    """Recompute every hash and link; report the first event that does not fit.

    This checks the chain alone; `checkpointer.verify_log` also holds it against the
    signed checkpoints (which is what detects a truncated log).
    """
    prev_hash, expected_id, checked = GENESIS, 1, 0
    for row in iter_rows(conn, batch):
        problem = check_row(row, expected_id, prev_hash)
        if problem:
            return VerifyResult(False, checked, int(row["id"]), problem)
        checked += 1
        prev_hash, expected_id = row["hash"], row["id"] + 1
    return VerifyResult(True, checked, None, None)


def check_row(
    row: Mapping[str, Any], expected_id: int, prev_hash: str, digest: str | None = None
) -> str | None:
    """What is wrong with `row` as the event after `prev_hash`, or None.

    `digest`, when given, is the content digest a stub line carries (`stub_line`) in place
    of the content it is computed from.
    """
    if row["id"] != expected_id:
        return f"events {expected_id}..{row['id'] - 1} are missing (deleted)"
    if row["prev_hash"] != prev_hash:
        return "prev_hash does not match the previous event (an event was deleted or replaced)"
    if digest is not None:
        if link_hash(row["id"], prev_hash, digest) != row["hash"]:
            return "hash does not match the content digest of the stub (edited)"
    elif link_hash(row["id"], prev_hash, content_digest(row)) != row["hash"]:
        return "hash does not match the event's content (edited)"
    return None


def event_to_dict(row: Any) -> dict[str, Any]:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return {
        "id": m["id"],
        "event_type": m["event_type"],
        "actor": m["actor"],
        "agent": m["agent"],
        "subject": m["subject"],
        "data": json.loads(m["data"]),
        "created_at": rfc3339(m["created_at"]),
        "prev_hash": m["prev_hash"],
        "hash": m["hash"],
    }


def export_jsonl(events: list[dict[str, Any]]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event, sort_keys=True) + "\n"


def stub_line(row: Mapping[str, Any]) -> str:
    """The line a filtered export writes for an event its filter leaves out (stored form):
    what links it in the chain and nothing it says. Its hash is `link_hash` of its id, its
    prev_hash and its content digest, so the chain verifies through it; the digest is a
    one-way hash of the event's content (it confirms a guess of every field, time to the
    microsecond included, and shows nothing else)."""
    stub = {
        "record": "stub",
        "id": row["id"],
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
        "content_digest": content_digest(row),
    }
    return json.dumps(stub, sort_keys=True) + "\n"


#: Where a spreadsheet may start a cell that runs as a formula (OWASP, CSV injection):
#: `=`, `+`, `-` or `@` at the start of the value, or after a separator it may split the
#: line on (`,`, `;`, `|`, a tab, a line break: Excel splits on its locale's list separator,
#: a paste on tabs), spaces or quotes between. A `'` goes before that character.
_FORMULA = re.compile(r'(^|[,;|\t\r\n])([ "]*)(?=[=+\-@])')
#: What a spreadsheet may drop from a cell's start (then reading what follows): a cell
#: starting with one is written behind a `'` too.
_BLANK_STARTS = ("\t", "\r", "\n")


def _cell(value: Any) -> Any:
    """A CSV cell Excel, LibreOffice and Google Sheets show as text, never run, whatever
    separator they split it on: anyone can put text in the log (a failed sign-in records
    the email typed), and an admin opens the export."""
    if not isinstance(value, str):
        return value
    value = _FORMULA.sub(r"\1\2'", value)
    return "'" + value if value.startswith(_BLANK_STARTS) else value


def export_csv(events: list[dict[str, Any]]) -> str:
    """The events as CSV for a spreadsheet: every cell quoted (one cell whatever the reader
    splits on), and a `'` wherever a cell could start a formula (the JSON Lines export
    carries every value as stored: verify that one). The header is the fixed column names,
    unquoted as before."""
    out = io.StringIO()
    fields = [
        "id",
        "created_at",
        "event_type",
        "actor",
        "agent",
        "subject",
        "data",
        "prev_hash",
        "hash",
    ]
    csv.writer(out).writerow(fields)
    writer = csv.DictWriter(out, fieldnames=fields, quoting=csv.QUOTE_ALL)
    for event in events:
        row = {**event, "data": json.dumps(event["data"], sort_keys=True)}
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()
