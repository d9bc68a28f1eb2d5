"""A MIME header's encoded text: RFC 2047 encoded words, RFC 2231 parameters, quoted-pairs.

:func:`header_pieces` reads a part's headers as a mail reader shows them: each run of
encoded words (``=?utf-8?b?…?=``) decoded as lenient readers decode it (either encoding,
adjacent words of one charset joined, in their charset too where it is not UTF-8: UTF-16,
ISO-2022-JP, EBCDIC…),
a ``Content-Type``'s or ``Content-Disposition``'s RFC 2231 parameters (``filename*=utf-8''…``,
continuations joined) as Python's parser reads them, and each quoted string holding a
quoted-pair (``filename="x\\y"``) unescaped as RFC 5322 reads it (``\\x`` is ``x``, as
Python's ``email`` header parser reads it; its ``compat32`` parser keeps ``\\x``).
:func:`redact_words` rewrites a run of encoded words holding a detection as one base64 word.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from email.message import Message
from email.utils import collapse_rfc2231_value
from itertools import groupby

from agentfirewall.content.locate import Piece, redact_body, shown
from agentfirewall.content.mimecodings import read_base64
from agentfirewall.content.reading import charset_readings, decode_body
from agentfirewall.content.scanner import Scanner

__all__ = [
    "PARAMETERED",
    "header_pieces",
    "quoted_pairs",
    "redact_words",
    "unquoted",
    "words_decoded",
]

_WORD = r"=\?([^?]*)\?([bBqQ])\?([^?]*)\?="
_WORD_RE = re.compile(_WORD)
_RUN_RE = re.compile(rf"{_WORD}(?:\s*{_WORD})*")  # adjacent words: the space between dropped
_PARAMETERS = frozenset({"content-type", "content-disposition"})
# (a quoted string, its closing quote optional: possessive, so that a search is linear)
_QUOTED = re.compile(r'"((?:[^"\\]++|\\.)*+)"?', re.S)
_PAIR = re.compile(r"\\(.)", re.S)
#: A header whose parameters the parser reads, found in lower-case bytes wherever it is, its
#: continuation lines too.
PARAMETERED = re.compile(
    rb"content-(?:type|disposition)[ \t]*:(?:[^\r\n]*+(?:\r\n|\r|\n)[ \t])*+[^\r\n]*+"
)


def unquoted(value: str) -> str:
    """A parameter's value as RFC 5322 reads it: a quoted string without its quotes, each
    quoted-pair its character (``"a\\"b"`` is ``a"b``); a token as it is."""
    match = _QUOTED.match(value)
    return value if match is None else _PAIR.sub(r"\1", match.group(1))


def quoted_pairs(text: str) -> str:
    """Each quoted string of `text` that holds a quoted-pair, unescaped (:func:`unquoted`),
    one a line; ``""`` when none does."""
    found = [_PAIR.sub(r"\1", quoted.group(1)) for quoted in _QUOTED.finditer(text)
             if "\\" in quoted.group(1)]  # fmt: skip
    return "\n".join(found)


def _word_bytes(word: re.Match[str]) -> bytes:
    _, kind, text = word.groups()
    raw = text.encode("ascii", "surrogateescape")
    return read_base64(raw) if kind in "bB" else binascii.a2b_qp(raw, header=True)


def _runs(value: str) -> Iterator[tuple[int, int, bytes, str, str]]:
    """Each run of adjacent encoded words in a header's value: (start, end, its bytes, the
    first word's charset, its text: adjacent words of one charset joined and read as a text
    body is, and first in their charset where it is not UTF-8, or in the encoding a byte
    order mark says: ``reading.charset_readings``)."""
    for run in _RUN_RE.finditer(value):
        words = [(word.group(1), _word_bytes(word)) for word in _WORD_RE.finditer(run.group())]
        texts: list[str] = []
        for charset, same in groupby(words, lambda word: word[0].lower()):
            data = b"".join([found for _, found in same])
            plain = decode_body(data).text
            read = [text for _, text in charset_readings(data, charset) if text != plain]
            texts.append("\n".join([*read, plain]))
        yield (run.start(), run.end(), b"".join([found for _, found in words]), words[0][0],
               "".join(texts))  # fmt: skip


def words_decoded(value: str) -> str:
    """A header's value with each run of encoded words decoded (:func:`_runs`)."""
    out: list[str] = []
    at = 0
    for start, end, _, _, decoded in _runs(value):
        out += [value[at:start], decoded]
        at = end
    out.append(value[at:])
    return "".join(out)


def header_pieces(part: Message, where: str) -> list[Piece]:
    """The part's headers whose encoded words, RFC 2231 parameters or quoted-pairs decode to
    another text, at ``where.header.<name>``."""
    pieces: list[Piece] = []
    for name, value in part.raw_items():
        if not isinstance(value, str):
            continue
        params = name.strip().lower() in _PARAMETERS and ("*" in value or "\\" in value)
        if "=?" not in value and not params:
            continue
        out = [words_decoded(value)]
        if params:  # (continuations joined, each value in its charset; this header's own)
            alone = Message()
            alone[name] = value
            found = alone.get_params(header=name, failobj=[])[1:]
            out += ["\n", "; ".join(f"{k}={collapse_rfc2231_value(v)}" for k, v in found)]
            pairs = quoted_pairs(value)  # (as RFC 5322 reads them; compat32 keeps `\x`)
            out += ["\n", pairs] if pairs else []
        text = "".join(out)
        if text != value:
            pieces.append((f"{where}.header.{shown(name.strip().lower())}", text))
    return pieces


def redact_words(scanner: Scanner, value: str, names: frozenset[str]) -> tuple[str, int]:
    """A header's value with each run of encoded words holding a detection redacted and
    written as one base64 word in its first word's charset; (value, replacements)."""
    out: list[str] = []
    at = count = 0
    for start, end, data, charset, _ in _runs(value):
        new, replaced = redact_body(scanner, data, "text/plain", names)
        if replaced:
            word = binascii.b2a_base64(new, newline=False).decode("ascii")
            out += [value[at:start], f"=?{charset}?b?{word}?="]
            at = end
            count += replaced
    out.append(value[at:])
    return "".join(out), count
