"""Signed audit checkpoints, and verifying the chain against them.

A checkpoint is an ES256 JWS (the decision-token key, named by its ``kid``) over the chain
head: ``{"seq": last event id, "head": its hash, "time": unix seconds}``. The server keeps
each one in the ``audit_checkpoints`` table, in the append-only file
``<data dir>/audit-checkpoints.jsonl``, in every JSON Lines export and, when configured, at
an external anchor (`checkpointer.py`). Deleting audit rows does not delete checkpoints, so
a log that ends before the newest checkpoint, or differs from it, fails verification.

A restore record (`restore_line`) is a line of the checkpoint files shaped like a
checkpoint's but signed as another kind (``typ``): `tf restore --discard-newer-audit` rolled
the log back to that head. Verify passes over it (the rollback stays reported); the server
holds its log to it instead of the checkpoints signed before it (`checkpointer.newest_kept`).

This module is pure: `tf audit verify --file` uses it offline with only the public keys.
"""

from __future__ import annotations

import json
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
    "SigningKeyError",
    "check_signing_key",
    "checkpoint_line",
    "parse_checkpoint",
    "public_keys",
    "read_checkpoint_lines",
    "restore_line",
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


def parse_checkpoint(
    token: str, keys: Mapping[str, ec.EllipticCurvePublicKey], source: str, typ: str = TYP
) -> Checkpoint:
    """The checkpoint (of kind `typ`) `token` signs, or `CheckpointError`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise CheckpointError(f"{source}: a checkpoint is not a JWS") from None
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        shown = str(kid)[:60]
        raise CheckpointError(
            f"{source}: a checkpoint is signed by unknown key `{shown}` (a previous signing "
            "key? give its public key)"
        )
    try:
        claims = jwt.decode(
            token, key, algorithms=["ES256"], options={"require": ["seq", "head", "time"]}
        )
    except jwt.PyJWTError:
        raise CheckpointError(f"{source}: a checkpoint's signature does not verify") from None
    if header.get("typ") != typ:  # a restore record is no checkpoint, nor the reverse
        raise CheckpointError(f"{source}: a checkpoint is signed as another kind of record")
    seq, head, time = claims["seq"], claims["head"], claims["time"]
    if not (isinstance(seq, int) and isinstance(head, str) and isinstance(time, int | float)):
        raise CheckpointError(f"{source}: a checkpoint has malformed claims")
    return Checkpoint(seq, head, float(time), str(kid), token, source)


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
            problem = check_row(row, expected, prev)
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


def verify_export(
    lines: Iterable[str],
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    more: list[Checkpoint] | None = None,
) -> VerifyResult:
    """An export (JSON Lines: events, then checkpoints) verified offline.

    `more` are checkpoints from elsewhere (an anchor file). An export holding no signed
    checkpoint fails: without one the end of the log cannot be checked.
    """
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    cps, bad = read_checkpoint_lines(
        (line for line in _split(lines, events, problems)), keys, "export"
    )
    checkpoints = [*cps, *(more or [])]
    problems += bad
    if not checkpoints:
        problems.append("the export holds no signed checkpoint: its end cannot be verified")
    elif events and int(events[-1]["id"]) > max(cp.seq for cp in checkpoints):
        covered = max(cp.seq for cp in checkpoints)
        problems.append(
            f"events after event {covered} are covered by no signed checkpoint (an export "
            "ends on its own): appended to the export"
        )
    return verify_rows(events, checkpoints, problems)


def _split(
    lines: Iterable[str], events: list[dict[str, Any]], problems: list[str]
) -> Iterable[str]:
    """Yield checkpoint lines; collect events (stored form) and unreadable lines."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            problems.append(f"export line {n} is not JSON")
            continue
        if isinstance(record, dict) and record.get("record") == "checkpoint":
            yield line
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
