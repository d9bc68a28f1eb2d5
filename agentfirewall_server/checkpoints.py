"""Signed audit checkpoints, and verifying the chain against them.

A checkpoint is an ES256 JWS (the decision-token key, named by its ``kid``) over the chain
head: ``{"seq": last event id, "head": its hash, "time": unix seconds}``. The server keeps
each one in the ``audit_checkpoints`` table, in the append-only file
``<data dir>/audit-checkpoints.jsonl``, in every JSON Lines export and, when configured, at
an external anchor (`checkpointer.py`). Deleting audit rows does not delete checkpoints, so
a log that ends before the newest checkpoint, or differs from it, fails verification.

A filtered export (``?event_type=``, ``agent``, ``since``, ``until``) writes a stub line
(`audit.stub_line`: id, prev_hash, hash, content digest) for each event its filter leaves
out, and a selection record (`selection_line`, signed like a checkpoint) naming the filter
and which events it shows, so the chain verifies through the stubs and no event can be
turned into a stub (hidden) after the server wrote the file.

A restore record (`restore_line`) is a line of the checkpoint files shaped like a
checkpoint's but signed as another kind (``typ``): `tf restore --discard-newer-audit` rolled
the log back to that head. Verify passes over it (the rollback stays reported); the server
holds its log to it instead of the checkpoints signed before it (`checkpointer.newest_kept`).

This module is pure: `tf audit verify --file` uses it offline with only the public keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agentfirewall.errors import AgentFirewallError, TokenError
from agentfirewall.tokens import DEFAULT_ISSUER, SigningKey, jwks_from_keys, public_key_from_jwk
from agentfirewall_server.audit import GENESIS, VerifyResult, canonical_text, check_row
from agentfirewall_server.clock import rfc3339

__all__ = [
    "CHECKPOINT_FILE",
    "Checkpoint",
    "CheckpointError",
    "Selected",
    "Selection",
    "SigningKeyError",
    "check_signing_key",
    "checkpoint_line",
    "parse_checkpoint",
    "public_keys",
    "read_checkpoint_lines",
    "restore_line",
    "selection_line",
    "sign_checkpoint",
    "verify_export",
    "verify_rows",
]

CHECKPOINT_FILE = "audit-checkpoints.jsonl"
TYP = "tf-audit-checkpoint"
#: the kinds of line the checkpoint files hold (`record`), each with its token's `typ`
_TYPS = {"checkpoint": TYP, "restore": "tf-audit-restore"}


class CheckpointError(ValueError):
    """A checkpoint that is not one this server signed (forged, edited or unknown key)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    head: str
    time: float
    kid: str
    token: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "head": self.head,
            "time": rfc3339(self.time),
            "kid": self.kid,
            "source": self.source,
        }


def sign_checkpoint(key: SigningKey, seq: int, head: str, time: float, typ: str = TYP) -> str:
    claims = {"iss": DEFAULT_ISSUER, "seq": seq, "head": head, "time": time}
    return jwt.encode(
        claims, key.private_key, algorithm="ES256", headers={"kid": key.kid, "typ": typ}
    )


def _signed_claims(
    token: str,
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    what: str,
    typ: str,
    require: list[str],
) -> tuple[dict[str, Any], str]:
    """The claims `token` signs as a record of kind `typ`, and its key id, or
    `CheckpointError` naming `what` (e.g. "export: a checkpoint")."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise CheckpointError(f"{what} is not a JWS") from None
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        shown = str(kid)[:60]
        raise CheckpointError(
            f"{what} is signed by unknown key `{shown}` (a previous signing key? give its "
            "public key)"
        )
    try:
        claims = jwt.decode(token, key, algorithms=["ES256"], options={"require": require})
    except jwt.PyJWTError:
        raise CheckpointError(f"{what}'s signature does not verify") from None
    if header.get("typ") != typ:  # a restore record is no checkpoint, nor the reverse
        raise CheckpointError(f"{what} is signed as another kind of record")
    return claims, str(kid)


def parse_checkpoint(
    token: str, keys: Mapping[str, ec.EllipticCurvePublicKey], source: str, typ: str = TYP
) -> Checkpoint:
    """The checkpoint (of kind `typ`) `token` signs, or `CheckpointError`."""
    what = f"{source}: a checkpoint"
    claims, kid = _signed_claims(token, keys, what, typ, ["seq", "head", "time"])
    seq, head, time = claims["seq"], claims["head"], claims["time"]
    if not (isinstance(seq, int) and isinstance(head, str) and isinstance(time, int | float)):
        raise CheckpointError(f"{source}: a checkpoint has malformed claims")
    return Checkpoint(seq, head, float(time), kid, token, source)


#: the fields of a checkpoint line (`checkpoint_line`)
_CHECKPOINT_FIELDS = frozenset({"record", "seq", "head", "time", "kid", "token"})


class SigningKeyError(AgentFirewallError):
    """The server's signing key is not the one the stored checkpoints were signed with."""


def check_signing_key(
    signed: Iterable[str | None], keys: Mapping[str, ec.EllipticCurvePublicKey], current: str
) -> None:
    """At start: each key id the database's servers signed with (`signed`: its newest stored
    checkpoint's, the one recorded; None: none yet) must be the server's signing key
    (`current`) or a retired one it knows (`keys`), else `SigningKeyError`: a replica with
    another key would sign checkpoints the others cannot verify (every verify then reports
    a break) and decision tokens they refuse."""
    unknown = next((kid for kid in signed if kid is not None and kid not in keys), None)
    if unknown is None:
        return
    raise SigningKeyError(
        f"audit: this database's audit checkpoints and decision tokens are signed with key "
        f"`{unknown}`, but this server signs with key `{current}` and "
        "AGENTFIREWALL_SIGNING_KEYS_PREVIOUS holds no such key: give every replica the same "
        "SIGNING_KEY_PRIVATE; after a deliberate change of signing key, put the old key's "
        'public half in AGENTFIREWALL_SIGNING_KEYS_PREVIOUS (docs/deploy.md, "Audit evidence")'
    )


def checkpoint_line(cp: Checkpoint, kind: str = "checkpoint") -> str:
    """One line of the checkpoint file and of an export (`kind`: a `_TYPS` key)."""
    record = {"record": kind, "seq": cp.seq, "head": cp.head, "time": cp.time}
    return json.dumps({**record, "kid": cp.kid, "token": cp.token}, sort_keys=True) + "\n"


def restore_line(key: SigningKey, seq: int, head: str, time: float) -> str:
    """The restore record of a log rolled back (`tf restore --discard-newer-audit`) to the
    head event `seq` with hash `head`, at `time`."""
    token = sign_checkpoint(key, seq, head, time, _TYPS["restore"])
    return checkpoint_line(Checkpoint(seq, head, time, key.kid, token, "restore"), "restore")


class Selected:
    """What a filtered export shows of events 1..n, tallied in id order: how many it shows,
    how many it leaves out, and a SHA-256 of the shown ids (what its selection record signs)."""

    def __init__(self) -> None:
        self.shown = 0
        self.left_out = 0
        self._ids = hashlib.sha256()

    def add(self, event_id: int, *, shown: bool) -> None:
        if shown:
            self.shown += 1
            self._ids.update(b"%d\n" % event_id)
        else:
            self.left_out += 1

    @property
    def shown_ids_sha256(self) -> str:
        return self._ids.hexdigest()


@dataclass(frozen=True, slots=True)
class Selection:
    """A filtered export's selection record: the filter (query names to the values given),
    the export's last event `seq`, and which of events 1..seq it shows (`Selected`)."""

    seq: int
    filter_by: dict[str, str]
    shown: int
    left_out: int
    shown_ids_sha256: str

    def claims(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "filter": self.filter_by,
            "shown": self.shown,
            "left_out": self.left_out,
            "shown_ids_sha256": self.shown_ids_sha256,
        }


SELECTION_TYP = "tf-audit-selection"
_SELECTION_CLAIMS = ["seq", "filter", "shown", "left_out", "shown_ids_sha256"]


def selection_line(key: SigningKey, selection: Selection) -> str:
    """The signed line a filtered export ends its events with (before its checkpoints)."""
    claims = selection.claims()
    token = jwt.encode(
        {"iss": DEFAULT_ISSUER, **claims},
        key.private_key,
        algorithm="ES256",
        headers={"kid": key.kid, "typ": SELECTION_TYP},
    )
    record = {"record": "selection", **claims, "kid": key.kid, "token": token}
    return json.dumps(record, sort_keys=True) + "\n"


def parse_selection(
    record: Mapping[str, Any], keys: Mapping[str, ec.EllipticCurvePublicKey]
) -> Selection:
    """The selection a selection line signs, or `CheckpointError`: the line must show
    exactly what its token signs."""
    what = "export: the filter record"
    token = str(record.get("token"))
    claims, kid = _signed_claims(token, keys, what, SELECTION_TYP, _SELECTION_CLAIMS)
    selection = Selection(
        seq=claims["seq"],
        filter_by=claims["filter"],
        shown=claims["shown"],
        left_out=claims["left_out"],
        shown_ids_sha256=claims["shown_ids_sha256"],
    )
    counts = (selection.seq, selection.shown, selection.left_out)
    if not (
        all(type(n) is int and n >= 0 for n in counts)
        and selection.shown + selection.left_out == selection.seq
        and isinstance(selection.filter_by, dict)
        and all(isinstance(v, str) for v in selection.filter_by.values())
        and isinstance(selection.shown_ids_sha256, str)
    ):
        raise CheckpointError(f"{what} has malformed claims")
    if {**record} != {"record": "selection", **selection.claims(), "kid": kid, "token": token}:
        raise CheckpointError(f"{what} shows other values than its signed token (edited)")
    return selection


def read_checkpoint_lines(
    lines: Iterable[str],
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    source: str,
    kind: str = "checkpoint",
) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints (or the records of another `kind`) of JSON lines, and a problem for
    each line of that kind that is not valid; lines of other kinds are passed over.

    A line cut short (a crash while appending; the next append starts a line after it) is
    not a problem: a checkpoint line holds one `}`, its last character, so a line cut short
    never ends with one.
    """
    found: list[Checkpoint] = []
    problems: list[str] = []
    items = [line for line in lines if line.strip()]
    for n, line in enumerate(items):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            if line.rstrip().endswith("}"):
                problems.append(f"{source}: line {n + 1} is not JSON")
            continue
        if not isinstance(record, dict) or record.get("record") != kind:
            continue
        try:
            cp = parse_checkpoint(str(record.get("token")), keys, source, _TYPS[kind])
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        shown = {k: record.get(k) for k in ("seq", "head", "time", "kid")}
        if shown != {"seq": cp.seq, "head": cp.head, "time": cp.time, "kid": cp.kid}:
            problems.append(f"{source}: line {n + 1} shows other values than its signed token")
            continue
        if set(record) != _CHECKPOINT_FIELDS:  # what a reader sees is what was signed
            problems.append(f"{source}: line {n + 1} has fields no checkpoint line writes")
            continue
        found.append(cp)
    return found, problems


def read_checkpoint_file(
    path: Path, keys: Mapping[str, ec.EllipticCurvePublicKey], source: str
) -> tuple[list[Checkpoint], list[str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            return read_checkpoint_lines(handle, keys, source)
    except FileNotFoundError:
        return [], []


def verify_rows(
    rows: Iterable[Mapping[str, Any]], checkpoints: list[Checkpoint], problems: list[str]
) -> VerifyResult:
    """Walk the chain (rows in id order, stored form) and hold it against every checkpoint."""
    by_seq: dict[int, Checkpoint] = {}
    for cp in checkpoints:
        other = by_seq.get(cp.seq)
        if other is not None and other.head != cp.head:
            problems.append(f"two signed checkpoints disagree about event {cp.seq}")
        by_seq[cp.seq] = cp
    newest = max(checkpoints, key=lambda c: (c.seq, c.time)) if checkpoints else None
    extra: dict[str, Any] = {
        "checkpoint": newest.to_dict() if newest else None,
        "checkpoints_checked": len(by_seq),
    }
    prev, expected, checked = GENESIS, 1, 0
    for row in rows:
        try:
            problem = check_row(row, expected, prev, row.get("_digest"))
        except ValueError:  # text UTF-8 cannot encode (a lone surrogate): never stored
            problem = "the event's content cannot be hashed (edited)"
        signed = by_seq.get(row["id"])
        if problem is None and signed is not None and signed.head != row["hash"]:
            problem = (
                f"event {signed.seq} differs from the checkpoint signed at "
                f"{rfc3339(signed.time)} (history rewritten)"
            )
        if problem:
            return VerifyResult(False, checked, int(row["id"]), problem, **extra)
        checked += 1
        prev, expected = str(row["hash"]), int(row["id"]) + 1
    last = expected - 1
    if problems:
        return VerifyResult(False, checked, None, problems[0], **extra)
    if newest is not None and newest.seq > last:
        missing = newest.seq - last
        return VerifyResult(
            False,
            checked,
            last + 1,
            f"{missing} event(s) missing after event {last}: the checkpoint signed at "
            f"{rfc3339(newest.time)} covers events 1..{newest.seq} (log truncated or rolled back)",
            events_missing=missing,
            **extra,
        )
    return VerifyResult(True, checked, None, None, **extra)


def public_keys(text: str) -> dict[str, ec.EllipticCurvePublicKey]:
    """Key id -> public key, from a JWKS document or a PEM public (or private) key."""
    text = text.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
            jwks = doc["keys"] if isinstance(doc, dict) and "keys" in doc else [doc]
            return {str(k["kid"]): public_key_from_jwk(k) for k in jwks}
        except (ValueError, KeyError, TypeError, TokenError) as exc:
            raise CheckpointError(f"not a JWKS document: {exc}") from None
    raw = text.encode()
    try:
        if b"PRIVATE KEY" in raw:
            private = serialization.load_pem_private_key(raw, password=None)
            pub = private.public_key()
        else:
            pub = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError):
        raise CheckpointError("not a JWKS document or a PEM key") from None
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise CheckpointError("the key is not an EC P-256 key")
    (jwk,) = jwks_from_keys([pub])["keys"]
    return {str(jwk["kid"]): pub}


#: The fields of an exported event line: its hash covers all but `created_at`, the
#: readable form of `created_ts`, which must say the same.
_EVENT_FIELDS = frozenset({"id", "event_type", "actor", "agent", "subject", "data",
                           "created_at", "created_ts", "prev_hash", "hash"})  # fmt: skip


def _stored(event: Mapping[str, Any]) -> dict[str, Any]:
    """An exported event in the stored form its hash was computed over. A field the export
    does not write, or a `created_at` that is not `created_ts`'s, is refused: everything a
    reader sees of an event is covered. Each refusal is a `CheckpointError`."""
    ident = event.get("id")
    if type(ident) is not int:  # (not a bool either)
        raise CheckpointError(f"an event's id `{json.dumps(ident)[:40]}` is not an integer "
                              "(edited)")  # fmt: skip
    if "created_ts" not in event:
        raise CheckpointError(
            f"event {ident} has no `created_ts`: export it again with this version"
        )
    unknown = sorted(set(event) - _EVENT_FIELDS)
    if unknown:
        raise CheckpointError(f"event {ident} has a field `{unknown[0][:40]}` "
                              "no export writes (edited)")  # fmt: skip
    stamp, data = event["created_ts"], event.get("data")
    try:  # NaN, infinities and times past the year 9999 are no time
        shown = rfc3339(stamp) if type(stamp) in (int, float) else None
    except (ValueError, OverflowError, OSError):
        shown = None
    if shown is None:
        raise CheckpointError(f"event {ident}: `created_ts` is not a time (edited)")
    if event.get("created_at") != shown:
        raise CheckpointError(f"event {ident}: `created_at` is not the time its "
                              "hash covers (`created_ts`): edited")  # fmt: skip
    if not isinstance(data, dict):
        raise CheckpointError(f"event {ident}: `data` is not an object (edited)")
    return {
        "id": event["id"],
        "event_type": event["event_type"],
        "actor": event["actor"],
        "agent": event["agent"],
        "subject": event["subject"],
        "data": canonical_text(event["data"]),
        "created_at": event["created_ts"],
        "prev_hash": event["prev_hash"],
        "hash": event["hash"],
    }


_HEX64 = re.compile(r"[0-9a-f]{64}")
#: the fields of a stub line (`audit.stub_line`)
_STUB_FIELDS = frozenset({"record", "id", "prev_hash", "hash", "content_digest"})


def _stub(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stub line as a row `verify_rows` links with its digest (`_digest`), or
    `CheckpointError`."""
    ident = record.get("id")
    if type(ident) is not int:
        raise CheckpointError(f"a stub's id `{json.dumps(ident)[:40]}` is not an integer "
                              "(edited)")  # fmt: skip
    if set(record) != _STUB_FIELDS:
        raise CheckpointError(f"the stub of event {ident} has other fields than a stub's "
                              "(id, prev_hash, hash, content_digest): edited")  # fmt: skip
    values = [record[name] for name in ("prev_hash", "hash", "content_digest")]
    if not all(isinstance(v, str) and _HEX64.fullmatch(v) for v in values):
        raise CheckpointError(f"the stub of event {ident} holds a hash that is not 64 hex "
                              "digits (edited)")  # fmt: skip
    prev_hash, link, digest = values
    return {"id": ident, "prev_hash": prev_hash, "hash": link, "_digest": digest}


def _selection_problem(events: list[dict[str, Any]], selection: Selection | None) -> str | None:
    """Why the events and stubs of an export are not the ones its filter selected, or None.

    Only the server's filter leaves an event out: a stub with no signed selection record,
    or other stubs than it signs, is an event hidden after the export was written.
    """
    if selection is None:
        first = next((e["id"] for e in events if "_digest" in e), None)
        if first is None:
            return None
        return (
            f"event {first} is left out (a stub line) but the export holds no signed filter "
            "record that left it out: an event was hidden, or the record removed (edited)"
        )
    last = int(events[-1]["id"]) if events else 0
    if last != selection.seq:
        return (
            f"the export's signed filter record covers events 1..{selection.seq}, but its "
            f"events end at event {last} (cut short or added to)"
        )
    tally = Selected()
    for event in events:
        tally.add(int(event["id"]), shown=("_digest" not in event))
    if tally.shown_ids_sha256 == selection.shown_ids_sha256:
        return None
    return (
        f"the export shows {tally.shown} events and leaves out {tally.left_out}, not the ones "
        f"its signed filter record selected ({selection.shown} shown, {selection.left_out} "
        "left out): an event was hidden or shown instead of its stub (edited)"
    )


def verify_export(
    lines: Iterable[str],
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    more: list[Checkpoint] | None = None,
) -> VerifyResult:
    """An export (JSON Lines: events, then checkpoints) verified offline.

    `more` are checkpoints from elsewhere (an anchor file). An export holding no signed
    checkpoint fails: without one the end of the log cannot be checked. A filtered export's
    stubs link like events; its selection record says which events it shows.
    """
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    selections: list[Mapping[str, Any]] = []
    cps, bad = read_checkpoint_lines(
        (line for line in _split(lines, events, problems, selections)), keys, "export"
    )
    checkpoints = [*cps, *(more or [])]
    problems += bad
    selection = _read_selection(selections, keys, problems)
    if not checkpoints:
        problems.append("the export holds no signed checkpoint: its end cannot be verified")
    elif events and int(events[-1]["id"]) > max(cp.seq for cp in checkpoints):
        covered = max(cp.seq for cp in checkpoints)
        problems.append(
            f"events after event {covered} are covered by no signed checkpoint (an export "
            "ends on its own): appended to the export"
        )
    if (problem := _selection_problem(events, selection)) is not None:
        problems.append(problem)
    result = verify_rows(events, checkpoints, problems)
    if selection is None:
        return result
    left_out = sum(1 for e in events if "_digest" in e)
    return dataclasses.replace(result, export_filter=selection.filter_by, events_left_out=left_out)


def _read_selection(
    records: list[Mapping[str, Any]],
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    problems: list[str],
) -> Selection | None:
    """The export's one selection record (None: an unfiltered export); each problem with
    them goes to `problems`."""
    if len(records) > 1:
        problems.append("the export holds more than one filter record (edited)")
    try:
        return parse_selection(records[0], keys) if records else None
    except CheckpointError as exc:
        problems.append(str(exc))
        return None


def _split(
    lines: Iterable[str],
    events: list[dict[str, Any]],
    problems: list[str],
    selections: list[Mapping[str, Any]],
) -> Iterable[str]:
    """Yield checkpoint lines; collect events and stubs (stored form), selection records
    and unreadable lines. Events and stubs come first, in id order, as the export writes
    them: one after a record line was moved."""
    records_began = False
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            problems.append(f"export line {n} is not JSON")
            continue
        kind = record.get("record") if isinstance(record, dict) else None
        if kind in ("checkpoint", "selection"):
            records_began = True
            if kind == "selection":
                selections.append(record)
            else:
                yield line
            continue
        if records_began and isinstance(record, dict) and "id" in record:
            problems.append(f"export line {n}: an event after the checkpoint lines (moved)")
        if kind == "stub":
            try:
                events.append(_stub(record))
            except CheckpointError as exc:
                problems.append(f"export line {n}: {exc}")
        elif isinstance(record, dict) and "event_type" in record:
            try:
                events.append(_stored(record))
            except CheckpointError as exc:
                problems.append(f"export line {n}: {exc}")
            except KeyError as exc:
                problems.append(f"export line {n}: event {record['id']} lacks `{exc.args[0]}`")
            except (TypeError, ValueError, RecursionError):  # NaN, a depth no hash was over
                problems.append(f"export line {n}: event {record['id']} cannot be hashed")
        else:
            problems.append(f"export line {n} is neither an event nor a checkpoint")
