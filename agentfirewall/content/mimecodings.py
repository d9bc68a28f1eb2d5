"""A MIME part's transfer encodings, read as MIME readers read them and written again.

:func:`read_base64` and :func:`read_uuencode` decode as lenient readers do (every character
outside base64's alphabet skipped; a uuencoded file anywhere among other lines);
:func:`written_as` writes redacted bytes back in the part's encoding, with its line breaks
(``mime.redact_mime``).
"""

from __future__ import annotations

import binascii
import contextlib
import re

__all__ = ["NOT_BASE64", "read_base64", "read_uuencode", "written_as"]

_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: Bytes a MIME reader skips in base64 (every one outside its alphabet and ``=``).
NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64 + b"=")))
_UU_BEGIN = re.compile(rb"begin [0-7]")  # (a line that starts a uuencoded file)


def read_base64(raw: bytes) -> bytes:
    """`raw` decoded as MIME readers decode base64 (RFC 2045): every character outside its
    alphabet skipped, padding optional, and a ``=`` ends a run the next one continues after
    (concatenated base64); a dangling character (not a whole byte) dropped."""
    data = raw.translate(None, NOT_BASE64).rstrip(b"=")
    out = bytearray()
    for run in data.split(b"=") if b"=" in data else (data,):
        run = run[: len(run) - (len(run) % 4 == 1)]
        if run:
            out += binascii.a2b_base64(run + b"=" * (-len(run) % 4))
    return bytes(out)


def read_uuencode(data: bytes) -> bytes:
    """Each uuencoded file in `data` (a ``begin 644 name`` line, to an ``end`` line) decoded
    and joined, as Python's reader decodes one (a line longer than its length says cut to
    it); empty lines, and lines that are no uuencode, skipped."""
    out = bytearray()
    inside = False
    for line in data.splitlines():
        if not inside:
            inside = _UU_BEGIN.match(line) is not None
        elif line.strip() == b"end":
            inside = False
        elif line.strip():
            with contextlib.suppress(binascii.Error):
                out += _uu_line(line)
    return bytes(out)


def _uu_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:  # (longer than its length says: cut, as Python's reader does)
        return binascii.a2b_uu(line[: (((line[0] - 32) & 63) * 4 + 5) // 3])


def written_as(encoding: str, raw: str, data: bytes) -> str | None:
    """`data` written as the part's content `raw` was (its transfer encoding, its line
    breaks, base64 in lines as long as its first); None for another encoding."""
    eol = "\r\n" if "\r\n" in raw else "\n"
    if encoding == "base64":
        width = len(raw.lstrip().split("\n", 1)[0].rstrip()) // 4 * 4 or 76
        line = binascii.b2a_base64(data, newline=False).decode("ascii")
        out = eol.join([line[i : i + width] for i in range(0, len(line), width)])
    elif encoding == "quoted-printable":
        out = binascii.b2a_qp(data, istext=True).decode("ascii")
        out = out.replace("\r\n", "\n").replace("\n", eol)
    else:
        return None
    return out + eol if raw.endswith("\n") and not out.endswith("\n") else out
