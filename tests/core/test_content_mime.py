"""A raw e-mail a field carries base64-encoded (``agentfirewall.content.mime``): what its MIME
parts carry encoded (a base64 attachment, a quoted-printable text, an RFC 2047 header) is
decoded and scanned at ``<field>(base64).part<N>``, redacted inside and re-encoded as it
was, everything else byte for byte; beyond the bounds, or where the parser fails, the
message is read unstructured (fail closed), and no input crashes the reading.

:data:`HIDDEN` is the table of ways a mail hides a secret from a reader of its raw text:
extend it with the next one."""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import encodings.aliases
import pkgutil
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import SMTP, compat32, default
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors.build import BuildAlias
from agentfirewall.connectors.routes import Route
from agentfirewall.connectors.table import RouteConnector
from agentfirewall.content import (
    decoded_pieces,
    default_scanner,
    mime,
    mimeflat,
    mimeheaders,
    mimeparse,
    redact_encoded,
    redact_encoded_value,
    scan_pieces,
)
from agentfirewall.content.encoded import encoded_fields
from agentfirewall.content.mime import mime_pieces
from agentfirewall.content.mimeparse import MAX_NESTED, MAX_PARAMETERS, MAX_PARTS
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.replay import evaluate_sdk, verdict, with_findings
from tests.fuzzscale import examples

AWS_ID = "AKIA" + "Q3V7WZ2MXK4PLRTY"
AWS_SECRET = "Zq3mT8vW1xY4bN6cR9dF2gH5jK7lP0sA3eU8iO1w"
KEY_LINE = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_LINE}\n-----END PRIVATE KEY-----\n"
SECRETS = (AWS_ID, AWS_SECRET, KEY_LINE)
FIELD = "form.RawMessage.Data"
NAMES = frozenset({"aws_access_key", "private_key", "generic_secret"})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def as_sent(message: Message) -> bytes:
    """`message` as bytes, each multipart cut at a boundary of its own fixed here: Python's
    are random (``===============`` and 19 digits), and one in eight of those digit runs is a
    valid card number, which the card detector rightly finds (not what these tests ask)."""
    for number, part in enumerate(message.walk()):
        if part.get_content_maintype() == "multipart":
            part.set_boundary(f"part-{number}")
    return message.as_bytes()


def _mail(text: str = "see attached", cte: str | None = None) -> EmailMessage:
    message = EmailMessage(policy=SMTP)  # (CRLF, as SES reads it)
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hi"
    message.set_content(text, cte=cte)
    return message


def _attached(data: bytes, message: EmailMessage | None = None, **kw: str) -> bytes:
    message = message or _mail()
    message.add_attachment(data, maintype="application", subtype="octet-stream", **kw)
    return as_sent(message)


def _raw(*lines: str) -> bytes:
    return "\r\n".join(lines).encode()


def _with_word(header: str, words: str) -> bytes:
    """A mail whose `header` is given as written (encoded words)."""
    return (
        _mail()
        .as_bytes()
        .replace(
            b"Subject: hi" if header == "Subject" else b"From: a@example.com",
            f"{header}: {words}".encode(),
        )
    )


def _forwarded() -> bytes:
    inner = email.message_from_bytes(_attached(PEM.encode(), filename="id_rsa"), policy=SMTP)
    outer = _mail("forwarding")
    outer.add_attachment(inner)  # message/rfc822: the inner mail's own parts
    return as_sent(outer)


def _skipped_characters() -> bytes:
    """Base64 with `-` and `_` between its characters: MIME readers skip both (RFC 2045)."""
    encoded = b64(PEM.encode())
    spelled = "".join(c + ("-" if i % 5 else "_") for i, c in enumerate(encoded))
    return _raw("Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64",
                "", spelled)  # fmt: skip


def _many(count: int, nested: int = 0, data: bytes = PEM.encode()) -> bytes:
    """A key (`data`) in base64 in the last of `count` parts, inside `nested` multiparts."""
    opened = [f"Content-Type: multipart/mixed; boundary=n{i}\r\n\r\n--n{i}" for i in range(nested)]
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(count))
    last = f"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64(data)}\r\n--b--\r\n"
    return ("\r\n".join(opened) + "\r\n" if nested else "").encode() + _raw(
        "Content-Type: multipart/mixed; boundary=b", "", parts + last
    )


def _uu_lines(data: bytes) -> list[str]:
    lines = [binascii.b2a_uu(data[i : i + 45]).decode().rstrip("\n")
             for i in range(0, len(data), 45)]  # fmt: skip
    return ["begin 644 id_rsa", *lines, "`", "end"]


def _uuencoded(data: bytes) -> bytes:
    return _raw("Content-Transfer-Encoding: x-uuencode", "", *_uu_lines(data), "")


def _encoding_written(cte: str) -> bytes:
    return _raw("Content-Type: text/plain", f"Content-Transfer-Encoding: {cte}", "",
                b64(PEM.encode()))  # fmt: skip


def _wide(charset: str, data: bytes, cte: str = "base64") -> bytes:
    """A text part in `charset` (`data`: its bytes, a byte order mark first or not)."""
    head = _raw(f"Content-Type: text/plain; charset={charset}", f"Content-Transfer-Encoding: {cte}",
                "", "")  # fmt: skip
    return head + (b64(data).encode() if cte == "base64" else data)


def _many_parameters(count: int) -> bytes:
    """A key id in an RFC 2231 file name, its pieces in reverse order, in a header of
    `count` parameters after its value (`count` ``;``)."""
    spelled = "".join(f"%{ord(c):02X}" for c in AWS_ID)
    pieces = ["x=1"] * (count - 2) + [f"name*1*={spelled[30:]}", f"name*0*=utf-8''{spelled[:30]}"]
    return _raw("Content-Type: text/plain", "Content-Disposition: attachment; " + "; ".join(pieces),
                "", "hi", "")  # fmt: skip


def _encoded_message() -> bytes:
    """A message/rfc822 part in base64: RFC 2046 forbids it, some readers decode it."""
    inner = f"Subject: x\r\n\r\nkey {AWS_ID}\r\n".encode()
    return _raw("Content-Type: multipart/mixed; boundary=b", "", "--b",
                "Content-Type: message/rfc822", "Content-Transfer-Encoding: base64", "",
                b64(inner), "--b--", "")  # fmt: skip


_PEM64 = b64(PEM.encode())
_SPLIT_ID = (f"id {AWS_ID[:9]}=", f"{AWS_ID[9:]} end")  # (a quoted-printable soft line break)
_KEY_PART = ("Content-Transfer-Encoding: base64", "", _PEM64)
_KEY_MAIL = _attached(PEM.encode(), filename="id_rsa")  # (the key in its ``part2``)


def _outside(preamble: tuple[str, ...] = (), epilogue: tuple[str, ...] = ()) -> bytes:
    """A multipart whose text before its first delimiter and after its last is given."""
    return _raw("Content-Type: multipart/mixed; boundary=b", "", *preamble, "--b",
                "Content-Type: text/plain", "", "hi", "--b--", *epilogue, "")  # fmt: skip


def _inner_outside(*preamble: str) -> bytes:
    """A multipart nested in another, its preamble given (the third part: ``part2``)."""
    return _raw("Content-Type: multipart/mixed; boundary=o", "", "--o", "", "hi", "--o",
                "Content-Type: multipart/alternative; boundary=i", "", *preamble, "--i", "",
                "hi", "--i--", "--o--", "")  # fmt: skip


def _two_cuts(boundary: str, first: str = "a", second: str = "b") -> bytes:
    """A multipart of the `boundary` parameters given: cut at ``--first``, one text part; at
    ``--second`` (another reader's boundary), a part holding a key in base64."""
    return _raw(f"Content-Type: multipart/mixed; {boundary}", "", f"--{first}",
                "Content-Type: text/plain", "", f"--{second}", *_KEY_PART, f"--{second}--",
                f"--{first}--", "")  # fmt: skip


def _two_types(text_first: bool) -> bytes:
    """Two ``Content-Type`` headers, ``text/plain`` and a multipart holding a key in base64."""
    types = ["Content-Type: text/plain", "Content-Type: multipart/mixed; boundary=b"]
    return _raw(*(types if text_first else types[::-1]), "", "--b", *_KEY_PART, "--b--", "")


def _cut_at(delimiter: str, boundary: str = "b") -> bytes:
    """A text part holding a line that starts with the delimiter and goes on, a key in base64
    after it (a reader that matches delimiters by their start cuts a part there)."""
    return _raw(f"Content-Type: multipart/mixed; boundary={boundary}", "", f"--{boundary}",
                "Content-Type: text/plain", "", delimiter, *_KEY_PART, f"--{boundary}--",
                "")  # fmt: skip


def _quoted_boundary(written: str, delimiter: str) -> bytes:
    """A boundary `written` (quoted) and parts cut at `delimiter`, a key in base64 in one."""
    return _raw(f"Content-Type: multipart/mixed; boundary={written}", "", f"--{delimiter}",
                "Content-Type: text/plain", "", "hi", f"--{delimiter}", *_KEY_PART,
                f"--{delimiter}--", "")  # fmt: skip


def _rfc822_marked() -> bytes:
    """A message/rfc822 part (not encoded) whose message starts with a UTF-8 byte order mark."""
    head = _raw("Content-Type: multipart/mixed; boundary=o", "", "--o",
                "Content-Type: message/rfc822", "", "")  # fmt: skip
    return head + codecs.BOM_UTF8 + _KEY_MAIL + b"\r\n--o--\r\n"


def _wide_message(encoding: str, mark: bytes) -> bytes:
    return mark + _KEY_MAIL.decode().encode(encoding)


def _quoted_name(count: int = 0) -> bytes:
    """A key id in a file name quoted with a quoted-pair (``\\Q`` is ``Q``), after `count` other
    parameters."""
    name = f'filename="{AWS_ID[:4]}\\{AWS_ID[4:]}.txt"'
    return _raw("Content-Type: text/plain",
                "Content-Disposition: attachment; " + "; ".join(["x=1"] * count + [name]), "",
                "hi", "")  # fmt: skip


#: Text no part holds, and messages readers read otherwise than the parser (a type or a
#: boundary given twice, a byte order mark, a quoted-pair): rows of :data:`HIDDEN`.
READ_OTHERWISE: list[tuple[str, bytes, str, str, bool]] = [
    ("a key in base64 in a multipart's preamble (read as the unstructured reading reads)",
     _outside(preamble=(_PEM64,)), "private_key", ".part0.preamble", False),
    ("a key in base64 in a multipart's epilogue", _outside(epilogue=(_PEM64,)), "private_key",
     ".part0.epilogue", False),
    ("a key id split by a soft line break in a nested multipart's preamble",
     _inner_outside(*_SPLIT_ID), "aws_access_key", ".part2.preamble", False),
    ("a boundary given twice, the parser's first (read unstructured too)",
     _two_cuts("boundary=a; boundary=b"), "private_key", ".parts", False),
    ("two Content-Type headers, text/plain first (read unstructured too)", _two_types(True),
     "private_key", ".parts", False),
    ("a line that starts with the delimiter and goes on (read unstructured too)",
     _cut_at("--bX"), "private_key", ".parts", False),
    ("a nested multipart's boundary the outer's is a prefix of (read unstructured too)",
     _raw("Content-Type: multipart/mixed; boundary=b", "", "--b",
          "Content-Type: multipart/mixed; boundary=bc", "", "--bc", *_KEY_PART, "--bc--",
          "--b--", ""), "private_key", ".parts", True),
    ("a multipart never closed (read unstructured too)",
     _raw("Content-Type: multipart/mixed; boundary=b", "", "--b", *_KEY_PART),
     "private_key", ".parts", True),
    ("a line that is no header among a part's headers (read unstructured too)",
     _raw("Content-Type: multipart/mixed; boundary=b", "", "--b", "X-Note", *_KEY_PART, "--b--",
          ""), "private_key", ".parts", False),
    ("a message starting with a UTF-8 byte order mark (skipped, as readers skip it)",
     codecs.BOM_UTF8 + _KEY_MAIL, "private_key", ".part2", True),
    ("a message in UTF-16 (a byte order mark: read in it)",
     _wide_message("utf-16-le", codecs.BOM_UTF16_LE), "private_key", ".part2", False),
    ("a message in UTF-32 big-endian (a byte order mark: read in it)",
     _wide_message("utf-32-be", codecs.BOM_UTF32_BE), "private_key", ".part2", False),
    ("an .eml attached in base64 starting with a UTF-8 byte order mark",
     _attached(codecs.BOM_UTF8 + _KEY_MAIL, filename="fwd.eml"), "private_key",
     ".part2.part2", True),
    ("a message/rfc822 part starting with a UTF-8 byte order mark (read unstructured too)",
     _rfc822_marked(), "private_key", ".parts", False),
    ("a key id in a quoted file name, a quoted-pair inside (RFC 5322 unescapes it)",
     _quoted_name(), "aws_access_key", ".part0.header.content-disposition", False),
    (f"a quoted-pair in a quoted file name among more than {MAX_PARAMETERS} parameters",
     _quoted_name(MAX_PARAMETERS), "aws_access_key", ".parts.parameters", False),
    ("a boundary quoted with a quoted-pair (found as the parser finds it)",
     _quoted_boundary('"a\\"b"', 'a"b'), "private_key", ".part2", True),
    ("a boundary quoted with a quoted-pair readers read otherwise, a\\b or ab (read "
     "unstructured too)", _two_cuts('boundary="a\\b"', "a\\b", "ab"), "private_key", ".parts",
     False),
]  # fmt: skip
_ESCAPED = "\x1b(B".join(AWS_ID)  # (ISO-2022-JP's switch to ASCII, a no-op, between each)


def _forwarded_as_eml(data: bytes, depth: int, cte: str = "base64") -> bytes:
    """The mail `data` attached as an ``.eml`` file (in `cte`), in one another `depth` times."""
    for _ in range(depth):
        data = _attached(data, filename="fwd.eml", cte=cte)
    return data


def _eml_without_encoding() -> bytes:
    """An ``.eml`` attached in base64 whose message has no Content-Transfer-Encoding header,
    a key id in its subject's encoded word."""
    subject = f"=?utf-8?b?{b64(f'key {AWS_ID}'.encode())}?="
    inner = _raw("From: x@example.com", "To: y@example.com", f"Subject: {subject}",
                 "MIME-Version: 1.0", "Content-Type: text/plain", "", "hello", "")  # fmt: skip
    return _attached(inner, filename="fwd.eml")


#: Text in a charset other than UTF-8, and e-mails attached deeper than the parser reads
#: (past the depth read: refused): rows of :data:`HIDDEN`.
READ_FURTHER: list[tuple[str, bytes, str, str, bool]] = [
    ("a text part in ISO-2022-JP, an escape between each character of a key id",
     _wide("iso-2022-jp", f"key {_ESCAPED}\r\n".encode(), "7bit"), "aws_access_key",
     ".part0.iso2022_jp", False),
    ("a key id in an encoded word in ISO-2022-JP, an escape between each character",
     _with_word("Subject", f"=?iso-2022-jp?b?{b64(_ESCAPED.encode())}?="), "aws_access_key",
     ".part0.header.subject", False),
    ("a text part in EBCDIC (cp500)", _wide("cp500", PEM.encode("cp500")), "private_key",
     ".part0.cp500", False),
    ("a text part in HZ, a `~` line break inside a key id",
     _wide("hz-gb-2312", f"key {AWS_ID[:4]}~\n{AWS_ID[4:]}\n".encode()), "aws_access_key",
     ".part0.hz", False),
    ("an .eml attached in base64 without a Content-Transfer-Encoding header (its subject)",
     _eml_without_encoding(), "aws_access_key", ".part2.part0.header.subject", True),
    (f"a key in an .eml attached {mime.MAX_DEPTH} deep", _forwarded_as_eml(_KEY_MAIL, 3),
     "private_key", ".part2.part2.part2.part2", True),
    (f"a key in an .eml attached {mime.MAX_DEPTH + 1} deep (not read: refused)",
     _forwarded_as_eml(_KEY_MAIL, mime.MAX_DEPTH + 1), "mime_too_deep",
     ".part2.part2.part2.part2", False),
    (f"an .eml attached in base64 in a message of more than {MAX_PARTS} parts (read "
     "unstructured, the .eml too)", _many(MAX_PARTS, data=_KEY_MAIL), "private_key", ".parts",
     False),
]  # fmt: skip
_TAIL = b64(AWS_ID[10:].encode())
# (name, the raw mail, the detector, where the guard finds it after `(base64)`, whether a
# redact rule can rewrite it in place)
HIDDEN: list[tuple[str, bytes, str, str, bool]] = [
    ("(a) a private key in a base64 attachment",
     _attached(PEM.encode(), filename="id_rsa"), "private_key", ".part2", True),
    ("(b) an aws secret key in a quoted-printable text",
     _mail(f"aws_secret_access_key = {AWS_SECRET}\n", cte="quoted-printable").as_bytes(),
     "generic_secret", ".part0", True),
    ("(c) a key id in an encoded-word subject",
     _with_word("Subject", f"=?utf-8?b?{b64(f'key {AWS_ID}'.encode())}?="), "aws_access_key",
     ".part0.header.subject", True),
    ("a key id split by a quoted-printable soft line break",
     _raw("Content-Transfer-Encoding: quoted-printable", "", f"id {AWS_ID[:9]}=",
          f"{AWS_ID[9:]} end"), "aws_access_key", ".part0", True),
    ("a key id over two encoded words, q then b (the space between is dropped)",
     _with_word("Subject", f"=?utf-8?q?{AWS_ID[:10]}?=\r\n =?utf-8?b?{_TAIL}?="),
     "aws_access_key", ".part0.header.subject", True),
    ("a key id in a sender's display name",
     _with_word("From", f"=?iso-8859-1?q?{AWS_ID.replace('Q', '=51')}?= <a@example.com>"),
     "aws_access_key",
     ".part0.header.from", True),
    ("a key in a forwarded mail's attachment (message/rfc822)", _forwarded(), "private_key",
     ".part5", True),
    ("a key in the attachment of an e-mail attached in base64 (an .eml file)",
     _attached(_attached(PEM.encode(), filename="id_rsa"), filename="fwd.eml"), "private_key",
     ".part2.part2", True),
    ("base64 with characters MIME readers skip", _skipped_characters(), "private_key", ".part0",
     True),
    ("a key id in an attachment's RFC 2231 file name",
     _attached(b"x").replace(b"attachment", "attachment; filename*=utf-8''{}.txt".format(
         AWS_ID.replace("Q", "%51")).encode()), "aws_access_key",
     ".part2.header.content-disposition", False),
    ("a uuencoded attachment", _uuencoded(PEM.encode()), "private_key", ".part0", False),
    *[(f"a transfer encoding written {cte!r} (a comment, a parameter: RFC readers decode it)",
       _encoding_written(cte), "private_key", ".part0", True)
      for cte in ("base64 (id_rsa)", "Base64;", "base64\t(x)")],
    ("a quoted-printable text whose transfer encoding has a comment",
     _raw("Content-Transfer-Encoding: quoted-printable (text)", "", f"id {AWS_ID[:9]}=",
          f"{AWS_ID[9:]} end"), "aws_access_key", ".part0", True),
    *[(f"a transfer encoding no reader names as written, {cte!r} (read unstructured too)",
       _encoding_written(cte), "private_key", ".parts", False)
      for cte in ('"base64"', "base-64", "(x) base64")],
    ("a file uuencoded in a plain text part's text (mail readers show it attached)",
     _raw("Content-Type: text/plain", "", "see the file", "", *_uu_lines(PEM.encode()), ""),
     "private_key", ".part0.uuencoded", False),
    ("a text file in UTF-16 (a byte order mark) attached in base64",
     _attached(codecs.BOM_UTF16_LE + PEM.encode("utf-16-le")), "private_key",
     ".part2.utf-16-le", False),
    ("a text file in UTF-32 big-endian (a byte order mark) attached in base64",
     _attached(codecs.BOM_UTF32_BE + PEM.encode("utf-32-be")), "private_key",
     ".part2.utf-32-be", False),
    ("a part in its declared charset utf-16, no byte order mark (big-endian)",
     _wide("utf-16", PEM.encode("utf-16-be")), "private_key", ".part0.utf-16-be", False),
    ("a binary part in its declared charset UTF-16LE (no transfer encoding)",
     _wide("UTF-16LE", PEM.encode("utf-16-le"), "binary"), "private_key", ".part0.utf-16-le",
     False),
    ("a key id in an encoded word in UTF-16",
     _with_word("From", f"=?utf-16le?b?{b64(AWS_ID.encode('utf-16-le'))}?= <a@example.com>"),
     "aws_access_key", ".part0.header.from", False),
    ("a key id in an encoded word in UTF-16 after one in UTF-8",
     _with_word("Subject", f"=?utf-8?q?id_?= =?utf-16le?b?{b64(AWS_ID.encode('utf-16-le'))}?="),
     "aws_access_key", ".part0.header.subject", False),
    (f"an RFC 2231 file name in a header of more than {MAX_PARAMETERS} parameters (read "
     "unstructured, its parameters read too)", _many_parameters(MAX_PARAMETERS + 1),
     "aws_access_key", ".parts.parameters", False),
    ("a base64 message/rfc822 part (read unstructured too)", _encoded_message(),
     "aws_access_key", ".parts", False),
    ("a transfer encoding named twice (read unstructured too)",
     _raw("Content-Transfer-Encoding: 7bit", "Content-Transfer-Encoding: base64", "",
          b64(PEM.encode())), "private_key", ".parts", False),
    (f"more than {MAX_PARTS} parts (read unstructured)", _many(MAX_PARTS), "private_key",
     ".parts", False),
    (f"more than {MAX_NESTED} multiparts (read unstructured)", _many(1, MAX_NESTED),
     "private_key", ".parts", False),
    *READ_OTHERWISE,
    *READ_FURTHER,
]  # fmt: skip
IDS = [h[0] for h in HIDDEN]


def _found(raw: bytes, where: str = FIELD + ":mime") -> set[tuple[str, str]]:
    pieces = decoded_pieces([(FIELD, b64(raw))], (where,))
    return {(f.detector, f.location) for f in scan_pieces(default_scanner(), pieces)}


@pytest.mark.parametrize(("name", "raw", "detector", "where", "rewritable"), HIDDEN, ids=IDS)
def test_what_a_mime_part_carries_encoded_is_found_where_it_is(
    name: str, raw: bytes, detector: str, where: str, rewritable: bool
) -> None:
    found = _found(raw)
    located = {location for d, location in found if d == detector}
    assert any(loc.startswith(f"{FIELD}(base64){where}") for loc in located), found
    # the raw message hides it: a field read as base64 only finds none of it
    assert detector not in {d for d, _ in _found(raw, FIELD)}


def _form(raw: bytes) -> bytes:
    return f"Action=SendRawEmail&RawMessage.Data={quote(b64(raw), safe='')}&Source=a".encode()


def _redacted(raw: bytes) -> tuple[bytes, int]:
    """The mail as a redact rule sends it on (the body's field decoded), and replacements."""
    body = _form(raw)
    scanner = default_scanner()
    findings = scan_pieces(scanner, decoded_pieces(parse_form(body), (FIELD + ":mime",)))
    assert encoded_fields(findings) == {FIELD.lower() + ":mime"}  # (the rescan reads parts)
    new, count = redact_encoded(scanner, body, NAMES, findings)
    fields = dict(parse_qsl(new.decode()))
    assert (fields["Action"], fields["Source"]) == ("SendRawEmail", "a")
    return base64.b64decode(fields["RawMessage.Data"], validate=True), count


def parse_form(body: bytes) -> list[tuple[str, str]]:
    return [(f"form.{k}", v) for k, v in parse_qsl(body.decode())]


def _changes(old: bytes, new: bytes) -> list[tuple[str, str]]:
    """(old, new) for each raw header value and part content two messages differ in."""
    read = (m.removeprefix(codecs.BOM_UTF8) for m in (old, new))  # (as readers skip it)
    before, after = (list(email.message_from_bytes(m, policy=compat32).walk()) for m in read)
    assert len(before) == len(after)
    changed: list[tuple[str, str]] = []
    for a, b in zip(before, after, strict=True):
        changed += [(v, w) for (_, v), (_, w) in zip(a.raw_items(), b.raw_items(), strict=True)
                    if v != w]  # fmt: skip
        if not a.is_multipart() and a.get_payload() != b.get_payload():
            changed.append((a.get_payload(), b.get_payload()))
    return changed


REWRITABLE = [h for h in HIDDEN if h[4]]


@pytest.mark.parametrize(("name", "raw", "detector", "where", "rewritable"), REWRITABLE,
                         ids=[h[0] for h in REWRITABLE])  # fmt: skip
def test_redact_rewrites_the_part_in_its_encoding_and_nothing_else(
    name: str, raw: bytes, detector: str, where: str, rewritable: bool
) -> None:
    sent, count = _redacted(raw)
    assert count >= 1
    assert not {d for d, _ in _found(sent)} & NAMES
    (change,) = _changes(raw, sent)  # the one part or header, re-encoded in its encoding
    assert sent.replace(change[1].encode(), change[0].encode()) == raw  # the rest as it was
    assert f"[REDACTED:{detector}]".encode() not in raw
    pieces = dict(mime_pieces(sent, "m"))
    assert any(f"[REDACTED:{detector}]" in text for text in pieces.values()), pieces


@pytest.mark.parametrize(
    ("name", "raw", "detector", "where", "rewritable"),
    [h for h in HIDDEN if not h[4]],
    ids=[h[0] for h in HIDDEN if not h[4]],
)
def test_what_cannot_be_re_encoded_as_it_was_is_left_for_the_rescan_to_refuse(
    name: str, raw: bytes, detector: str, where: str, rewritable: bool
) -> None:
    sent, _ = _redacted(raw)
    assert detector in {d for d, _ in _found(sent)}  # the caller's rescan: refused


def _clean() -> bytes:
    message = _mail("caf\u00e9 at 10, see the plan =\n" * 3, cte="quoted-printable")
    message.add_alternative("<p>caf\u00e9 at 10</p>", subtype="html")
    message.add_attachment(bytes(range(256)) * 4, maintype="image", subtype="png",
                           filename="caf\u00e9.png")  # fmt: skip
    del message["Subject"]
    message["Subject"] = "r\u00e9union \u2013 plan"  # (an encoded word)
    return as_sent(message)


def test_a_clean_mail_is_read_and_left_byte_for_byte() -> None:
    raw = _clean()
    assert b"=?utf-8?" in raw
    assert b"Content-Transfer-Encoding: base64" in raw
    pieces = mime_pieces(raw, "m")
    assert "m.part0.header.subject" in dict(pieces)  # (decoded: nothing found there)
    assert not [f for f in scan_pieces(default_scanner(), pieces) if f.detector in NAMES]
    assert mime.redact_mime(default_scanner(), raw, NAMES) == (raw, 0)
    assert mime.redact_mime(default_scanner(), raw, NAMES)[0] is raw


def test_when_the_parser_fails_the_message_is_read_unstructured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(data: bytes, **_: object) -> Message:
        raise IndexError("a parser bug")

    raw = HIDDEN[0][1]
    monkeypatch.setattr("email.message_from_bytes", fail)
    assert any(loc.startswith(f"{FIELD}(base64).parts") for d, loc in _found(raw)
               if d == "private_key")  # fmt: skip
    assert mime.redact_mime(default_scanner(), raw, NAMES) == (raw, 0)  # (the rescan refuses)


#: Malformed MIME (fail closed: the key is still found): (name, raw mail)
MALFORMED = [
    ("a multipart never closed", _raw("Content-Type: multipart/mixed; boundary=b", "", "--b",
                                      "Content-Transfer-Encoding: base64", "", _PEM64)),
    ("no blank line after a part's headers", _raw(
        "Content-Type: multipart/mixed; boundary=b", "", "--b",
        "Content-Transfer-Encoding: base64", _PEM64, "--b--")),
    ("a multipart without its boundary", _raw(
        "Content-Type: multipart/mixed", "", "--b", "Content-Transfer-Encoding: base64", "",
        _PEM64, "--b--")),
    ("a boundary that is never found", _raw(
        "Content-Type: multipart/mixed; boundary=zz", "", "--b",
        "Content-Transfer-Encoding: base64", "", _PEM64, "--b--")),
    ("line breaks of a lone CR", HIDDEN[0][1].replace(b"\r\n", b"\r")),
    ("an encoded word in an unknown charset",
     _with_word("Subject", f"=?x-unknown?b?{b64(PEM.encode())}?=")),
    ("base64 cut in the middle of a character", _raw(
        "Content-Transfer-Encoding: base64", "", _PEM64[:-3] + "Q")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "raw"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_mime_still_shows_what_it_carries(name: str, raw: bytes) -> None:
    assert "private_key" not in {d for d, _ in _found(raw, FIELD)}  # (hidden in the raw text)
    assert "private_key" in {d for d, _ in _found(raw)}


_PAIR = ';"'
_KEYED = ("Content-Transfer-Encoding: base64", "", _PEM64, "")
#: Headers the parser reads parameters from, of `pairs` `;"`: (name, mail of `pairs`)
BOMBS: list[tuple[str, Callable[[int], bytes]]] = [
    ("a multipart's boundary among them (read while parsing)", lambda pairs: _raw(
        f"Content-Type: multipart/mixed; boundary=b; a={_PAIR * pairs}", "", "--b", *_KEYED[:-1],
        "--b--", "")),
    ("RFC 2231 parameters in a Content-Type", lambda pairs: _raw(
        f"Content-Type: text/plain; a*={_PAIR * pairs}", *_KEYED)),
    ("RFC 2231 parameters in a Content-Disposition over continuation lines", lambda pairs: _raw(
        "Content-Disposition: attachment; a*=" + f"\r\n {_PAIR * 8}" * (pairs // 8), *_KEYED)),
    ("lone CR line breaks, the header's name in capitals", lambda pairs: _raw(
        f"CONTENT-TYPE: text/plain; a*={_PAIR * pairs}", *_KEYED).replace(b"\r\n", b"\r")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "bomb"), BOMBS, ids=[b[0] for b in BOMBS])
def test_a_header_the_parser_reads_in_quadratic_time_is_read_in_linear_work(
    monkeypatch: pytest.MonkeyPatch, name: str, bomb: Callable[[int], bytes]
) -> None:
    """``email.message._parseparam`` counts a header's quotes again at each ``;`` and copies
    the rest of the value for each parameter: 780 KiB of ``;"`` took 4 s of the gateway's
    CPU. Beyond MAX_PARAMETERS ``;`` the message is read unstructured (fail closed): the key
    after the header is found, and the parser's work stays within a multiple of the size."""
    parse: Callable[[str], list[str]] = vars(email.message)["_parseparam"]
    work: list[int] = []

    def counted(value: str) -> list[str]:
        work.append(len(value) * (value.count(";") + 1))  # (what a call costs, at most)
        return parse(value)

    monkeypatch.setattr("email.message._parseparam", counted)
    for pairs in (25_000, 200_000):  # (50 KiB, 400 KiB)
        raw = bomb(pairs)
        work.clear()
        found = _found(raw)
        assert any(d == "private_key" and ".parts" in loc for d, loc in found), found
        assert sum(work) <= (MAX_PARAMETERS + 1) * len(raw)


def test_a_header_within_the_bounds_is_read_as_the_parser_reads_it() -> None:
    raw = _many_parameters(MAX_PARAMETERS)
    assert {d for d, loc in _found(raw) if loc.endswith("part0.header.content-disposition")} == {
        "aws_access_key"}  # fmt: skip
    assert not [loc for _, loc in _found(raw) if ".parts" in loc]


#: Where a secret sits in `_placed`, and the secret: its detector, its transfer encoding in a
#: part, its lines.
_PLACES = ("preamble", "epilogue", "part", "inner preamble", "inner epilogue", "inner part")
_SECRETS = {"private_key": ("base64", (_PEM64,)),
            "aws_access_key": ("quoted-printable", _SPLIT_ID)}  # fmt: skip
#: The message's type, given once or in ways readers read otherwise (`{}`: its boundary).
_TYPES = (
    ("Content-Type: multipart/mixed; boundary={}",),
    ("Content-Type: text/plain", "Content-Type: multipart/mixed; boundary={}"),
    ("Content-Type: multipart/mixed; boundary={}", "Content-Type: text/plain"),
    ("Content-Type: multipart/mixed; boundary=decoy; boundary={}",),
    ("Content-Type: multipart/mixed; boundary={}; boundary=decoy",),
)
#: (the boundary as written, its delimiter)
_BOUNDARIES = (("o", "o"), ('"o\\"q"', 'o"q'), ('"o\\\\q"', "o\\q"))
_MARKS = ((b"", "utf-8"), (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
          (codecs.BOM_UTF32_BE, "utf-32-be"))  # fmt: skip


def _placed(place: str, detector: str, types: tuple[str, ...], boundary: tuple[str, str],
            mark: tuple[bytes, str]) -> bytes:  # fmt: skip
    """A multipart holding a multipart, the secret of `detector` at `place`."""
    cte, lines = _SECRETS[detector]

    def text(where: str) -> tuple[str, ...]:
        return lines if place == where else ()

    def part(where: str) -> tuple[str, ...]:
        return (f"Content-Transfer-Encoding: {cte}", "", *(text(where) or ("hi",)))

    written, delimiter = boundary
    raw = "\r\n".join([
        *(header.format(written) for header in types), "", *text("preamble"), f"--{delimiter}",
        *part("part"), f"--{delimiter}", "Content-Type: multipart/alternative; boundary=i", "",
        *text("inner preamble"), "--i", *part("inner part"), "--i--", *text("inner epilogue"),
        f"--{delimiter}--", *text("epilogue"), ""])  # fmt: skip
    return mark[0] + raw.encode(mark[1])


@settings(max_examples=examples(100), deadline=None)
@given(place=st.sampled_from(_PLACES), detector=st.sampled_from(sorted(_SECRETS)),
       types=st.sampled_from(_TYPES), boundary=st.sampled_from(_BOUNDARIES),
       mark=st.sampled_from(_MARKS))  # fmt: skip
def test_a_secret_is_found_wherever_it_sits_in_a_message_however_readers_cut_it(
    place: str,
    detector: str,
    types: tuple[str, ...],
    boundary: tuple[str, str],
    mark: tuple[bytes, str],
) -> None:
    """Preamble, epilogue, each part, nested or not; a type or a boundary given twice (in
    either order), a boundary quoted with quoted-pairs, a byte order mark: whatever a reader
    picks, what it shows has been read, and the field is read as a message again by a
    redact rule's rescan (a location in its parts)."""
    raw = _placed(place, detector, types, boundary, mark)
    assert detector not in {d for d, _ in _found(raw, FIELD)}  # (the raw text hides it)
    found = [loc for d, loc in _found(raw) if d == detector]
    assert any(loc.startswith(f"{FIELD}(base64).part") for loc in found), found


def _charsets() -> list[str]:
    """Every codec Python's ``email`` reads a text part in that writes a key id."""
    names = {module.name for module in pkgutil.iter_modules(encodings.__path__)}
    found: set[str] = set()
    for name in names | set(encodings.aliases.aliases.values()):
        try:
            codec = codecs.lookup(name).name
            shown = email.message_from_bytes(_wide(codec, AWS_ID.encode(codec)), policy=default)
            if AWS_ID in shown.get_content():
                found.add(codec)
        except (LookupError, UnicodeError):  # (no text encoding, or none that writes it)
            continue
    return sorted(found)


CHARSETS = _charsets()


def _spelled_out(charset: str, text: str) -> bytes:
    """`text` in `charset` as no reader of its UTF-8 reading sees it: a switch to ASCII (a
    no-op) between each character in ISO-2022, a line continuation in HZ, each character
    an escape in ``unicode-escape``, or a base64 run in UTF-7."""
    if charset.startswith("iso2022"):
        return b"\x1b(B".join(c.encode(charset) for c in text)
    if charset == "hz":
        return b"~\n".join(c.encode(charset) for c in text)
    if charset.endswith("unicode-escape"):
        return "".join(f"\\u{ord(c):04x}" for c in text).encode()
    if charset == "utf-7":
        return b"".join(b"+" + base64.b64encode(c.encode("utf-16-be")).rstrip(b"=") + b"-"
                        for c in text)  # fmt: skip
    return text.encode(charset)


_SPELLINGS: tuple[Callable[[str], str], ...] = (str, str.upper, lambda n: n.replace("_", "-"))


@settings(max_examples=examples(200), deadline=None)
@given(charset=st.sampled_from(CHARSETS), spelled=st.sampled_from(_SPELLINGS),
       place=st.sampled_from(("base64", "8bit", "word")), split=st.booleans())  # fmt: skip
@example("iso2022_jp", str, "8bit", True)
@example("iso2022_jp", str.upper, "word", True)
@example("cp500", str, "base64", False)
@example("hz", str, "base64", True)
def test_a_key_in_any_charset_a_reader_decodes_is_found(
    charset: str, spelled: Callable[[str], str], place: str, split: bool
) -> None:
    """A text part (base64, or as it is) or an encoded word in any charset Python's ``email``
    decodes (ISO-2022-JP, EBCDIC, HZ, UTF-7…, named as it is or otherwise spelled), the key
    written in it as it is or spelled out so that its UTF-8 reading does not show it:
    wherever a reader shows the key, the guard finds it."""
    text = f"key {AWS_ID}"
    written = _spelled_out(charset, text) if split else text.encode(charset)
    name = spelled(charset)
    if place == "word":
        raw = _with_word("Subject", f"=?{name}?b?{b64(written)}?=")
        shown = str(email.message_from_bytes(raw, policy=default)["Subject"])
    else:
        raw = _wide(name, written, place)
        shown = email.message_from_bytes(raw, policy=default).get_content()
    assume(AWS_ID in shown)
    assert "aws_access_key" in {d for d, _ in _found(raw)}


def test_a_charset_python_does_not_know_is_never_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lookup tries an import for each new name (and keeps its failure for good): a mail of
    many unknown charsets costs neither, and is still read as it is."""
    asked: list[str] = []
    lookup = codecs.lookup

    def counted(name: str) -> codecs.CodecInfo:
        asked.append(name)
        return lookup(name)

    monkeypatch.setattr(codecs, "lookup", counted)
    words = " ".join(f"=?x-unknown-{i}?b?{b64(f' {AWS_ID} '.encode())}?=" for i in range(200))
    assert "aws_access_key" in {d for d, _ in _found(_with_word("Subject", words))}
    assert not [name for name in asked if "unknown" in name]


def _nested_preambles(count: int) -> bytes:
    """Multiparts nested as deep as the bounds let them, each a preamble of `count` lines."""
    lines = f"{_PEM64}\r\n" * count
    opened = [f"Content-Type: multipart/mixed; boundary=n{i}\r\n\r\n{lines}--n{i}"
              for i in range(MAX_NESTED)]  # fmt: skip
    return ("\r\n".join(opened) + "\r\n\r\nhi\r\n").encode()


def _padded(count: int) -> bytes:
    """A part of lines that start with its delimiter, spaces and a letter after them."""
    return _cut_at(f"--b{' ' * count}X\r\n" * (MAX_PARTS - 8))


def _charset_names(count: int) -> list[str]:
    """`count` charset names: known ones spelled otherwise, and unknown ones."""
    return [f"x-unknown-{i}" if i % 2 else ("ISO-2022-JP", "cp500", "hz-gb-2312")[i % 3]
            for i in range(count)]  # fmt: skip


def _in_every_alignment(data: bytes, depth: int) -> bytes:
    """`data` in base64 at each of the four alignments of a message read unstructured (two
    Content-Type headers), which is in that of another `depth` times."""
    for _ in range(depth):
        blobs = ["x" * shift + b64(data) for shift in range(4)]  # (each shift moves the next)
        data = _raw("Content-Type: text/plain", "Content-Type: text/plain",
                    "Content-Transfer-Encoding: 7bit", "", *blobs, "")  # fmt: skip
    return data


#: New shapes of a large message, each of about `count` times a few bytes: (name, mail)
LARGE: list[tuple[str, Callable[[int], bytes]]] = [
    ("a preamble", lambda count: _outside(preamble=(_PEM64,) * count)),
    ("an epilogue", lambda count: _outside(epilogue=("=4" * 40,) * count)),
    ("preambles of nested multiparts", lambda count: _nested_preambles(count // MAX_NESTED)),
    ("lines starting with a delimiter, padded", lambda count: _padded(count // 10)),
    ("a Content-Type given many times", lambda count: _raw(
        *["Content-Type: text/plain"] * count, "", _PEM64)),
    ("a message in UTF-32", lambda count: codecs.BOM_UTF32_LE + _outside(
        preamble=(_PEM64,) * count).decode().encode("utf-32-le")),
    ("quoted-pairs in a header read unstructured", lambda count: _raw(
        "Content-Type: text/plain", 'Content-Disposition: attachment; filename="'
        + '\\"\\\\"' * (count * 4), "", _PEM64)),
    ("a text in ISO-2022-JP, an escape between each character", lambda count: _wide(
        "iso-2022-jp", f"{_ESCAPED}\r\n".encode() * count, "7bit")),
    ("encoded words in charsets of many names, most unknown", lambda count: _raw(
        "Subject: " + "\r\n ".join(f"=?{name}?b?{b64(AWS_ID.encode())}?=" for name in
                                    _charset_names(count // 4)), "", "hi")),
    ("e-mails attached in quoted-printable, one in the next, deeper than read",
     lambda count: _forwarded_as_eml(_outside(preamble=(_PEM64,) * (count // 4)),
                                     mime.MAX_DEPTH + 1, "quoted-printable")),
    ("e-mails attached in base64 at every alignment of messages read unstructured",
     lambda count: _in_every_alignment(_raw(*_KEY_PART[:2], _PEM64 * (count // 100)), 2)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "large"), LARGE, ids=[shape[0] for shape in LARGE])
def test_each_new_shape_of_a_large_message_is_read_in_linear_work(
    monkeypatch: pytest.MonkeyPatch, name: str, large: Callable[[int], bytes]
) -> None:
    """What the readings added for the preamble and epilogue, a byte order mark, quoted-pairs
    and readers that cut a message otherwise do per byte: the bytes decoded or parsed, the
    text searched for delimiters and quoted-pairs, stay within one multiple of the size."""
    work: list[int] = []

    def counted(read: Callable[..., object]) -> Callable[..., object]:
        def call(data: bytes | str, *args: object, **kw: object) -> object:
            work.append(len(data))
            return read(data, *args, **kw)

        return call

    readers = ((binascii, "a2b_qp"), (binascii, "a2b_base64"), (email, "message_from_bytes"),
               (mimeparse, "_delimited"), (mimeflat, "quoted_pairs"),
               (mimeheaders, "quoted_pairs"), (mime, "charset_readings"),
               (mimeheaders, "charset_readings"))  # fmt: skip
    for module, attribute in readers:
        monkeypatch.setattr(module, attribute, counted(getattr(module, attribute)))
    for count in (1_000, 8_000):
        raw = large(count)
        work.clear()
        mime_pieces(raw, "m")
        mime.redact_mime(default_scanner(), raw, NAMES)
        # (a search for delimiters per multipart; each byte decoded a few times at most)
        assert sum(work) <= (MAX_NESTED + 12) * len(raw), (len(raw), sum(work))


_TOKENS = [
    b"--b",
    b"--b--",
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b":",
    b";",
    b"Content-Type: ",
    b"multipart/mixed; boundary=b",
    b"message/rfc822",
    b"text/plain; charset=utf-16",
    b"Content-Transfer-Encoding: ",
    b"base64",
    b"quoted-printable",
    b"x-uuencode",
    b"begin 644 x",
    b"=?",
    b"?=",
    b"=?x-unknown?b?",
    b"=?utf-8?q?",
    b"=3D",
    b"=\r\n",
    b"QUtJQQ==",
    b"filename*0*=utf-8''%41",
    b"filename*1=KIA",
    b"\xff\xfe",
    b"\\u0041",
    b"\xef\xbb\xbf",
    b"; boundary=c",
    b'boundary="b\\"',
    b"--bX",
    b'filename="a\\Qb"',
]
_MAILS = st.lists(st.sampled_from(_TOKENS) | st.binary(max_size=6), max_size=48).map(b"".join)


@settings(max_examples=examples(300), deadline=None)
@given(
    raw=_MAILS
    | st.tuples(st.sampled_from([h[1] for h in HIDDEN[:8]]), st.integers(0, 4000), _MAILS).map(
        lambda m: m[0][: m[1]] + m[2] + m[0][m[1] :]
    )
)
def test_any_bytes_are_read_and_redacted_without_a_crash(raw: bytes) -> None:
    """Malformed MIME (an unclosed boundary, a missing blank line, bad base64, an unknown
    charset, a part cut anywhere) is read as the parser reads it, or unstructured."""
    scanner = default_scanner()
    pieces = mime_pieces(raw, "m")
    new, count = mime.redact_mime(scanner, raw, scanner.names)
    assert (new is raw) == (count == 0)
    scan_pieces(scanner, pieces)


def test_an_sdk_parameter_declared_mime_is_read_the_same_way() -> None:
    policy = load_policy({"name": "p", "rules": [{"name": "no", "decision": "deny",
        "conditions": [{"field": "content.secrets", "operator": "exists"}]}]})  # fmt: skip
    raw = HIDDEN[0][1]
    spec = ActionSpec(type="demo.mail.send", resource={"provider": "demo"},
                      parameters={"raw": b64(raw)})  # fmt: skip
    plan = guard_plan((policy,))
    assert action_findings(plan, spec, ("parameters.raw",)) == []  # base64 only: hidden
    found = action_findings(plan, spec, ("parameters.raw:mime",))
    assert [(f.detector, f.location) for f in found] == [
        ("private_key", "parameters.raw(base64).part2")]  # fmt: skip
    shown = redact_encoded_value(default_scanner(), {"parameters": {"raw": b64(raw)}}, NAMES,
                                 ("parameters.raw:mime",))  # (what an approver sees)  # fmt: skip
    assert isinstance(shown, dict)
    again = base64.b64decode(shown["parameters"]["raw"])
    assert KEY_LINE not in dict(mime_pieces(again, "m"))["m.part2"]


@pytest.mark.parametrize("decision", ["deny", "redact"])
def test_an_sdk_action_carrying_an_eml_too_deep_to_read_is_refused(decision: str) -> None:
    """In SDK mode too, an e-mail attached past the depth read is a detection a rule reading
    ``content.secrets`` acts on: denied by a deny rule, and by a redact rule (the SDK cannot
    rewrite what the agent sends)."""
    engine = Engine(policies=[load_policy({"name": "p", "rules": [{"name": "r",
        "decision": decision, "conditions": [{"field": "content.secrets",
                                              "operator": "exists"}]}]})])  # fmt: skip
    plan = guard_plan(engine.policies)
    _, raw, detector, where, _ = next(row for row in READ_FURTHER if row[2] == "mime_too_deep")
    spec = ActionSpec(type="demo.mail.send", resource={"provider": "demo"},
                      parameters={"raw": b64(raw)})  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="sdk", now=datetime.now(UTC), connector="demo")
    ctx, found = with_findings(ctx, plan, action_findings(plan, spec, ("parameters.raw:mime",)))
    assert [(f.detector, f.location) for f in found] == [
        (detector, f"parameters.raw(base64){where}")]  # fmt: skip
    assert ctx.attributes["content.secrets"] == [detector]
    assert verdict(evaluate_sdk(engine, spec, ctx, plan=plan, findings=found)) == "deny"


def test_a_route_declares_a_mime_field_with_its_kind_under_every_name() -> None:
    table = RouteConnector(
        name="demo", description="mail", body_format="json",
        routes=(Route("POST", "/send", "demo.mail.send", "medium", params=("to",),
                      encoded=("raw:mime", "attachments.*.content")),),
        build_aliases={"demo.send": BuildAlias("demo.mail.send", renames={"message": "raw"})},
    )  # fmt: skip
    assert table.encoded_parameters("demo.mail.send") == (
        "parameters.attachments.*.content", "parameters.raw:mime")  # fmt: skip
    assert table.encoded_parameters("demo.send") == (
        "parameters.attachments.*.content", "parameters.message:mime")  # fmt: skip
