"""A MIME message read whatever its structure: the reading that fails closed.

:func:`unstructured` reads a message the parser's reading cannot be trusted for (beyond the
bounds, a parser failure, a structure readers disagree on: ``mime``'s docstring): the whole
text quoted-printable decoded at ``<at>.parts`` (where that changes it), base64 decoded at
each of its four alignments (every other character skipped) at ``.parts.1`` to
``.parts.4``, and each ``Content-Type`` and ``Content-Disposition`` header's RFC 2231
parameters (each name's pieces in the order of their numbers, joined, quoted strings
unquoted, ``%XX`` decoded) and quoted-pairs (``mimeheaders.quoted_pairs``) at
``.parts.parameters``, in linear time: what base64, quoted-printable, encoded words and RFC
2231 parameters carry anywhere in it is found, whatever its structure; an e-mail attached
in base64 in it, decoded at one of those alignments, is read once more by the caller
(``mime``: as a message, ``.parts.2.part2``, within its bounds). :func:`flat_pieces` reads
text no part holds (a multipart's preamble and epilogue) with the same decodings.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable

from agentfirewall.content.locate import Piece
from agentfirewall.content.mimecodings import NOT_BASE64
from agentfirewall.content.mimeheaders import PARAMETERED, quoted_pairs, unquoted
from agentfirewall.content.reading import decode_body

__all__ = ["Inner", "flat_pieces", "read_parameters", "unstructured"]

#: What reads bytes decoded at a location once more (``mime``: an e-mail attached in them).
Inner = Callable[[bytes, str], list[Piece]]

_NOT_DIGITS = NOT_BASE64 + b"="  # (the unstructured reading skips padding too)
# (an RFC 2231 parameter, `name*2*=value`: its name, its number without leading zeros, its
# value; a name starts after a `;` or a space, so that no run is read from each character)
_CONTINUED = re.compile(
    r'(?<![^\s;])([^\s;=*"]++)\*0*+(\d*+)\*?[ \t]*=[ \t]*+("(?:[^"\\]++|\\.)*+"?|[^;\s"]*+)'
)


def flat_pieces(data: bytes, at: str, inner: Inner | None = None) -> list[Piece]:
    """`data` quoted-printable decoded at `at` where that changes it (the caller reads it as
    it is), and base64 decoded at each of its four alignments (every character outside
    base64's alphabet skipped) at ``at.1`` to ``at.4``, each read by `inner` too (an e-mail
    attached in it: read as a message)."""
    printable = binascii.a2b_qp(data)
    pieces = [(at, decode_body(printable).text)] if printable != data else []
    digits = data.translate(None, _NOT_DIGITS)
    for shift in range(4):
        run = digits[shift : shift + (len(digits) - shift) // 4 * 4]
        decoded = binascii.a2b_base64(run)
        pieces.append((f"{at}.{shift + 1}", decode_body(decoded).text))
        pieces += inner(decoded, f"{at}.{shift + 1}") if inner is not None else []
    return pieces


def unstructured(data: bytes, at: str, inner: Inner | None = None) -> list[Piece]:
    """The message read whatever its structure (module docstring; `inner`: as
    :func:`flat_pieces` reads each base64 decoding)."""
    pieces = flat_pieces(data, f"{at}.parts", inner)
    lowered = data.lower()
    found: list[bytes] = []
    for header in PARAMETERED.finditer(lowered):
        start, end = header.span()
        if lowered.find(b"*", start, end) >= 0 or lowered.find(b"\\", start, end) >= 0:
            found.append(read_parameters(data[start:end].decode("ascii", "surrogateescape")))
    if found:
        pieces.append((f"{at}.parts.parameters", decode_body(b"\n".join(found)).text))
    return pieces


def read_parameters(header: str) -> bytes:
    """The RFC 2231 parameters of `header` read leniently, in linear time: each name's pieces
    in the order of their numbers, joined (the names one after the other), quoted strings
    unquoted, ``%XX`` decoded; then its quoted strings that hold a quoted-pair, unescaped."""
    found = _CONTINUED.findall(header)
    ordered = sorted((name.lower(), len(number), number, value) for name, number, value in found)
    joined = "".join([unquoted(value) for *_, value in ordered])
    data = joined.encode("ascii", "surrogateescape").replace(b"=", b"=3D").replace(b"%", b"=")
    pairs = quoted_pairs(header).encode("ascii", "surrogateescape")
    return binascii.a2b_qp(data) + (b"\n" + pairs if pairs else b"")
