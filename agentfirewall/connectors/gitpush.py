"""git push over smart HTTP: the refs a ``git-receive-pack`` request updates.

The request body (gitprotocol-pack, "Reference Update Request") is pkt-lines, each four
hex digits giving its length (the four included), ended by a flush-pkt ``0000``, then the
packfile::

    shallow <oid>                                   (any number, first)
    <old-oid> <new-oid> <refname>\\0<capabilities>   (the first command)
    <old-oid> <new-oid> <refname>                   (each further command)
    0000
    PACK...

A signed push sends a ``push-cert`` block instead (``push-cert\\0<capabilities>``, the
certificate's header lines, an empty line, the commands, the signature,
``push-cert-end``); receive-pack runs the commands inside it, so they are read too. Only
the lines before the first flush-pkt are read, never the packfile. A command whose new
oid is all zeros deletes its ref. git's probe before a large push (a body of just
``0000``) updates nothing.

Strict, so that what is named is what receive-pack would run: a malformed length, a line
that is not a command, a non-hex oid, a NUL outside the first line, a ref name that is
not UTF-8, holds a control character or a space, or is not under ``refs/`` (receive-pack
refuses those as "funny refname"), and a whole body that ends before its flush-pkt are
refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentfirewall.errors import ConnectorError

__all__ = ["Push", "read_push"]

_FLUSH = b"0000"
_MAX_PKT = 65520  # git's LARGE_PACKET_MAX
_LENGTH_RE = re.compile(rb"[0-9a-fA-F]{4}")
_OID = rb"([0-9a-fA-F]{40}|[0-9a-fA-F]{64})"
_COMMAND_RE = re.compile(_OID + b" " + _OID + b" (.+)", re.DOTALL)
_SHALLOW_RE = re.compile(b"shallow " + _OID)
_BAD_REF_RE = re.compile(r"[\x00-\x20\x7f]")
# where a push certificate's commands end: its last line opening a signature (git's
# parse_signed_buffer)
_SIGNATURES = (
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN PGP MESSAGE-----",
    b"-----BEGIN SIGNED MESSAGE-----",
    b"-----BEGIN SSH SIGNATURE-----",
)


@dataclass(frozen=True, slots=True)
class Push:
    """The refs a push updates, in order and once each, and those it deletes."""

    refs: tuple[str, ...]
    deleted: tuple[str, ...]


def read_push(body: bytes, *, complete: bool, connector: str) -> Push | None:
    """The commands of a receive-pack request body; None when `body` is only a prefix
    (not `complete`) that ends before the flush-pkt, so not every command can be read.
    Raise ConnectorError for anything receive-pack would not run as read here."""
    payloads = _pkt_lines(body, complete, connector)
    if payloads is None:
        return None
    refs: dict[str, bool] = {}  # ref -> deleted
    cert: list[bytes] | None = None  # the lines of a push-cert block being read
    first = True
    for payload in payloads:
        if cert is not None:  # receive-pack keeps these lines as sent, LF included
            if payload == b"push-cert-end\n":
                for command in _cert_commands(b"".join(cert), connector):
                    _add(refs, command, connector)
                cert = None
            elif b"\0" in payload:
                raise _refuse("git push certificate holds a NUL", connector)
            else:
                cert.append(payload)
            continue
        line = payload[:-1] if payload.endswith(b"\n") else payload
        if _SHALLOW_RE.fullmatch(line):
            continue
        if first:
            line = line.split(b"\0", 1)[0]  # the capabilities follow the first line
        first = False
        if line == b"push-cert":
            cert = []
        else:
            _add(refs, line, connector)
    if cert is not None:
        raise _refuse("git push certificate has no `push-cert-end`", connector)
    return Push(tuple(refs), tuple(ref for ref, deleted in refs.items() if deleted))


def _pkt_lines(body: bytes, complete: bool, connector: str) -> list[bytes] | None:
    """The payloads of the pkt-lines before the first flush-pkt."""
    payloads: list[bytes] = []
    at = 0
    while True:
        head = body[at : at + 4]
        if len(head) < 4:
            if complete:
                raise _refuse("git push body ends before its flush-pkt `0000`", connector)
            return None
        if head == _FLUSH:
            return payloads
        if not _LENGTH_RE.fullmatch(head):
            raise _refuse(f"git push pkt-line length `{_shown(head)}` is not hex", connector)
        size = int(head, 16)
        if not 4 < size <= _MAX_PKT:
            raise _refuse(f"git push pkt-line length `{_shown(head)}` is invalid", connector)
        if at + size > len(body):
            if complete:
                raise _refuse("git push body ends inside a pkt-line", connector)
            return None
        payloads.append(body[at + 4 : at + size])
        at += size


def _cert_commands(cert: bytes, connector: str) -> list[bytes]:
    """The commands of a push certificate as receive-pack reads them: the lines after the
    header's first empty line, up to the last line that opens a signature."""
    start = cert.find(b"\n\n")
    if start < 0:
        raise _refuse("git push certificate has no empty line after its header", connector)
    starts = [0, *(newline.end() for newline in re.finditer(b"\n", cert))]
    end = max((at for at in starts if cert.startswith(_SIGNATURES, at)), default=len(cert))
    lines = cert[start + 2 : end].split(b"\n")
    return lines[:-1] if lines and not lines[-1] else lines


def _add(refs: dict[str, bool], line: bytes, connector: str) -> None:
    found = _COMMAND_RE.fullmatch(line)
    if found is None:
        raise _refuse(f"git push line `{_shown(line)}` is not a ref update command", connector)
    old, new, raw = found.groups()
    if len(old) != len(new):
        raise _refuse(f"git push oids of `{_shown(raw)}` differ in length", connector)
    try:
        ref = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(f"git push ref name `{_shown(raw)}` is not UTF-8", connector) from None
    if _BAD_REF_RE.search(ref) or not ref.startswith("refs/"):
        raise _refuse(f"git push ref name `{_shown(raw)}` is not a valid ref name", connector)
    refs[ref] = refs.get(ref, False) or new.strip(b"0") == b""


def _shown(data: bytes) -> str:
    """`data` for a message: at most 80 bytes, control and non-ASCII bytes escaped."""
    return repr(data[:80])[2:-1]


def _refuse(message: str, connector: str) -> ConnectorError:
    return ConnectorError(message, connector=connector)
