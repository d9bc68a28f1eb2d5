"""A body is read as its reader reads it (``agentfirewall.content.bodies``).

Attacks from the security review, by name: a **multipart part encoded** — its
``Content-Transfer-Encoding`` base64 or quoted-printable (a soft line break inside the
key), its charset UTF-16, UTF-7 or EBCDIC, or every part's charset named by a ``_charset_``
field (RFC 7578) — which a server's multipart reader decodes; a **body in another
charset** (``text/plain; charset=utf-16``, a form in UTF-16); a **card number sent as a
JSON number** (``4242424242424242``, ``4.242424242424242e15``, ``…0.0``), on the gateway
and the SDK path; and a **WebSocket handshake's nonce** taken for a secret. What cannot be
read (a transfer encoding, a charset or a ``Content-Encoding`` no reader here knows) is a
finding of ``unreadable_encoding``, which a ``content.secrets`` rule decides as a secret.

The oracle for multipart is a real server's reader: aiohttp's ``request.post()``, in
process. :data:`UNREAD` is the table of parts that are refused: extend it with the next.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
from unittest import mock

import pytest
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec
from agentfirewall.content import (
    PII,
    SECRETS,
    Scanner,
    body_pieces,
    content_attributes,
    default_scanner,
    request_pieces,
    scan_pieces,
)
from agentfirewall.content.bodies import readable
from agentfirewall.content.locate import UNREADABLE
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.models import Policy
from tests.fuzzscale import examples

AWS = "AKIA" + "Q3V7WZ2MXK4PLRTY"
CARD = 4242424242424242
SECRET_SCANNER = Scanner(SECRETS)
PII_SCANNER = Scanner(PII)
FORM_DATA = "multipart/form-data; boundary=XX"


def _found(scanner: Scanner, body: bytes, ctype: str) -> dict[str, set[str]]:
    """Detector -> the locations where it fired in the body."""
    found: dict[str, set[str]] = {}
    for finding in scan_pieces(scanner, body_pieces(body, ctype)):
        found.setdefault(finding.detector, set()).add(finding.location)
    return found


def _part(name: str, headers: list[str], payload: bytes) -> bytes:
    head = [f'Content-Disposition: form-data; name="{name}"', *headers]
    return b"--XX\r\n" + "\r\n".join(head).encode() + b"\r\n\r\n" + payload + b"\r\n"


def _form(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--XX--\r\n"


def _server_reads(body: bytes, ctype: str = FORM_DATA) -> dict[str, str]:
    """What aiohttp's ``request.post()`` reads of a multipart body (a real server's reader)."""

    async def post() -> dict[str, str]:
        stream = StreamReader(mock.Mock(_reading_paused=False), 1 << 16,
                              loop=asyncio.get_running_loop())  # fmt: skip
        stream.feed_data(body)
        stream.feed_eof()
        headers = {"Content-Type": ctype, "Content-Length": str(len(body))}
        form = await make_mocked_request("POST", "/", headers=headers, payload=stream).post()
        return {k: v if isinstance(v, str) else repr(v) for k, v in form.items()}

    return asyncio.run(post())


# -- multipart: each part as a server reads it -------------------------------------------

#: Charsets a part may be written in (the name it is given, Python's codec), that write the
#: key's ASCII otherwise.
CHARSETS = [("utf-16", "utf-16"), ("UTF-16LE", "utf-16-le"), ("utf-16be", "utf-16-be"),
            ("utf-32", "utf-32"), ("utf-7", "utf-7"), ("cp500", "cp500"), ("ibm037", "cp037"),
            ("utf-8", "utf-8"), ("", "utf-8")]  # fmt: skip
ENCODINGS = ["", "7bit", "8bit", "binary", "base64", "Base64", "quoted-printable"]


def written_in(text: str, codec: str) -> bytes:
    """`text` in `codec`; in UTF-7 every character shifted (``+AEEASwBJAEE-``), as no ASCII
    reader reads it."""
    if codec != "utf-7":
        return text.encode(codec)
    return b"+" + base64.b64encode(text.encode("utf-16-be")).rstrip(b"=") + b"-"


def _encoded(data: bytes, encoding: str, cut: int, width: int) -> bytes:
    """`data` in the transfer encoding (base64 in lines of `width`; quoted-printable with a
    soft line break `cut` characters in)."""
    if encoding.lower() == "base64":
        text = base64.b64encode(data)
        return b"\r\n".join(text[i : i + width] for i in range(0, len(text), width))
    if encoding == "quoted-printable":
        text = binascii.b2a_qp(data)
        at = min(cut, len(text))
        while at and b"=" in text[max(0, at - 2) : at]:  # (never inside an `=XX`)
            at -= 1
        return text[:at] + b"=\r\n" + text[at:]
    return data


@settings(max_examples=examples(60), deadline=None)
@given(
    st.sampled_from(CHARSETS),
    st.sampled_from(ENCODINGS),
    st.integers(0, 60),
    st.sampled_from([4, 8, 76]),
)
@example(("utf-16", "utf-16"), "", 0, 76)  # (the review's three)
@example(("", "utf-8"), "base64", 0, 76)
@example(("", "utf-8"), "quoted-printable", 12, 76)
def test_a_key_in_a_part_is_found_however_the_part_is_encoded(
    charset: tuple[str, str], encoding: str, cut: int, width: int
) -> None:
    """Whatever the part's transfer encoding and charset, what aiohttp reads of it is
    scanned."""
    name, codec = charset
    payload = _encoded(written_in(f"the key {AWS} here", codec), encoding, cut, width)
    headers = [f"Content-Transfer-Encoding: {encoding}"] if encoding else []
    headers += [f"Content-Type: text/plain; charset={name}"] if name else []
    body = _form(_part("note", headers, payload), _part("other", [], b"plain"))
    assert AWS in _server_reads(body)["note"]  # (the attack is real)
    found = _found(SECRET_SCANNER, body, FORM_DATA)
    where = found.get("aws_access_key", set())
    as_written = encoding in ("", "7bit", "8bit", "binary") and codec == "utf-8"
    # (a part as written is found in the body's own text; any other, in the part read again)
    assert where, found
    assert as_written or any(at.startswith("multipart.note") for at in where), found


@pytest.mark.parametrize(("name", "codec"), [c for c in CHARSETS if c[1] != "utf-8"])
def test_a_charset_field_names_every_parts_charset(name: str, codec: str) -> None:
    """RFC 7578's ``_charset_`` field: the charset of every part that names none (aiohttp
    3.9+ reads it, as other servers do)."""
    note = _part("note", ["Content-Type: text/plain"], written_in(f"key {AWS}", codec))
    body = _form(_part("_charset_", [], name.encode()), note)
    assert "aws_access_key" in _found(SECRET_SCANNER, body, FORM_DATA)


def test_each_part_is_named_by_its_name_and_the_name_is_scanned_too() -> None:
    body = _form(_part("note", ["Content-Transfer-Encoding: base64"],
                       base64.b64encode(b"card 4242 4242 4242 4242")),
                 _part(AWS, [], b"x"), _part("api_key", [], b"q8Zr3Lw9Xk2Mv7Bn4Tp6"))  # fmt: skip
    findings = scan_pieces(default_scanner(), body_pieces(body, FORM_DATA))
    where = {(f.detector, f.location) for f in findings}
    assert ("card_number", "multipart.note") in where
    assert ("aws_access_key", "multipart.[REDACTED:aws_access_key]#name") in where
    assert ("generic_secret", "multipart.api_key") in where  # (as a form field's would be)
    assert AWS not in repr(findings)


#: Parts no reader here reads, each refused: (what, its headers, its content).
UNREAD = [
    ("a transfer encoding not known", ["Content-Transfer-Encoding: x-gzip"], b"x"),
    ("one no reader names so", ['Content-Transfer-Encoding: "base64"'], b"eA=="),
    ("a transfer encoding named twice", ["Content-Transfer-Encoding: 7bit",
                                         "Content-Transfer-Encoding: base64"], b"eA=="),
    ("a charset not known", ["Content-Type: text/plain; charset=x-unknown"], b"x"),
    ("a codec that is no charset", ["Content-Type: text/plain; charset=base64"], b"x"),
    ("a Content-Encoding", ["Content-Encoding: gzip"], b"x"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "content"), [u[1:] for u in UNREAD], ids=[u[0] for u in UNREAD]
)
def test_a_part_that_cannot_be_read_is_refused(headers: list[str], content: bytes) -> None:
    """As a secret, to a rule reading ``content.secrets`` (fail closed)."""
    body = _form(_part("note", headers, content))
    findings = scan_pieces(SECRET_SCANNER, body_pieces(body, FORM_DATA))
    assert [(f.detector, f.location) for f in findings] == [(UNREADABLE, "multipart.note")]
    assert content_attributes(findings) == {"content.secrets": [UNREADABLE]}


def test_parts_that_name_the_default_charset_differently_are_refused() -> None:
    body = _form(_part("_charset_", [], b"utf-16"), _part("_charset_", [], b"utf-8"),
                 _part("note", [], b"x"))  # fmt: skip
    assert _found(SECRET_SCANNER, body, FORM_DATA).get(UNREADABLE) == {"multipart"}


def test_a_multipart_readers_may_cut_otherwise_is_read_whole() -> None:
    """Never closed (readers differ on where its last part ends): every encoding applied
    anywhere; and refused when it names a charset, which that reading does not apply."""
    open_ended = b"".join([_part("note", ["Content-Transfer-Encoding: base64"],
                                 base64.b64encode(f"key {AWS}".encode()))])  # fmt: skip
    assert "aws_access_key" in _found(SECRET_SCANNER, open_ended, FORM_DATA)
    wide = _part("note", ["Content-Type: text/plain; charset=utf-16"], b"x")
    assert _found(SECRET_SCANNER, wide, FORM_DATA).get(UNREADABLE) == {"multipart"}


def test_an_ordinary_upload_has_no_detection() -> None:
    r = random.Random(5)
    png = b"\x89PNG\r\n\x1a\n" + bytes(r.randrange(256) for _ in range(4096))
    body = _form(_part("title", [], "Quarterly report, draft \u00e9t\u00e9".encode()),
                 _part("file", ["Content-Type: image/png"], png),
                 _part("notes", ["Content-Type: text/plain; charset=utf-8"],
                       b"Numbers attached, see page 4.\r\n--not a delimiter\r\n"))  # fmt: skip
    assert _found(default_scanner(), body, FORM_DATA) == {}


# -- a body in the charset its Content-Type names -----------------------------------------


@pytest.mark.parametrize(("name", "codec"), [c for c in CHARSETS if c[1] != "utf-8"])
@pytest.mark.parametrize("media", ["text/plain", "application/json", "text/html"])
def test_a_body_is_read_in_the_charset_its_type_names(name: str, codec: str, media: str) -> None:
    text = f"the key {AWS}" if media != "application/json" else f'"the key {AWS}"'
    data = written_in(text, codec)
    ctype = f"{media}; charset={name}"
    assert AWS in data.decode(codec)  # (as a client's `.text`, a server's decoder reads it)
    assert "aws_access_key" in _found(SECRET_SCANNER, data, ctype)
    assert readable(ctype)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_a_form_is_read_in_its_charset_then_its_escapes(codec: str) -> None:
    """As aiohttp's ``post()`` reads a form: decoded in its charset, then percent-decoded in
    it (``%00A%00K…``)."""
    written = f"note=the+key+{AWS}".encode(codec)
    escaped = b"note=" + "".join(f"%{b:02X}" for b in AWS.encode(codec)).encode()
    ctype = f"application/x-www-form-urlencoded; charset={codec}"
    for body in (written, escaped):
        assert "aws_access_key" in _found(SECRET_SCANNER, body, ctype)


@pytest.mark.parametrize("charset", ["x-unknown", "base64", "rot13", "undefined"])
def test_a_body_in_a_charset_not_known_is_refused(charset: str) -> None:
    ctype = f"text/plain; charset={charset}"
    assert not readable(ctype)
    assert _found(SECRET_SCANNER, b"plain words", ctype) == {UNREADABLE: {"body"}}


def test_a_body_in_utf8_is_read_once() -> None:
    body = f"the key {AWS}".encode()
    for ctype in ("text/plain; charset=utf-8", 'text/plain; charset="UTF8"', "text/plain"):
        assert body_pieces(body, ctype) == [("body", body.decode())]
        assert readable(ctype)


# -- a number is read as the number it is -------------------------------------------------


@st.composite
def _written(draw: st.DrawFn, value: int) -> str:
    """`value` written as JSON may write it: digits, a fraction of zeros, an exponent."""
    digits = str(value)
    zeros = "0" * draw(st.integers(0, 3))
    if not draw(st.booleans()):  # (digits, a fraction of zeros or none)
        return digits + ("." + zeros if zeros else "")
    point = draw(st.integers(1, len(digits)))
    fraction = digits[point:] + zeros
    mark = draw(st.sampled_from(["e", "E", "e+"]))
    return f"{digits[:point]}{'.' + fraction if fraction else ''}{mark}{len(digits) - point}"


@settings(max_examples=examples(60), deadline=None)
@given(st.data(), st.sampled_from([CARD, 4111111111111111, 5555555555554444, 378282246310005]))
@example(None, CARD)
def test_a_card_number_sent_as_a_json_number_is_found(
    data: st.DataObject | None, card: int
) -> None:
    written = data.draw(_written(card)) if data is not None else "4.242424242424242e15"
    body = f'{{"order": 7, "payment": [{{"card": {written}}}]}}'.encode()
    assert json.loads(body)["payment"][0]["card"] == card  # (the number its reader reads)
    assert _found(PII_SCANNER, body, "application/json") == {"card_number": {"body.payment.0.card"}}


@pytest.mark.parametrize("value", [CARD, float(CARD)], ids=["int", "float"])
def test_a_card_number_in_an_sdk_actions_numbers_is_found(value: float) -> None:
    plan = guard_plan((_policy("content.pii"),))
    spec = ActionSpec(type="stripe.charge.create", parameters={"card": value, "n": [1, value]})
    found = {(f.detector, f.location) for f in action_findings(plan, spec)}
    assert found == {("card_number", "parameters.card"), ("card_number", "parameters.n.1")}


NO_CARDS = ["0.4242424242424242", "4242424242424242.5", "1e400", "-0.0", "true", "1.10",
            "42424242424242424242424"]  # fmt: skip


@pytest.mark.parametrize("written", NO_CARDS)
def test_a_number_that_is_no_card_number_is_not_one(written: str) -> None:
    assert _found(PII_SCANNER, f'{{"n": {written}}}'.encode(), "application/json") == {}


# -- a protocol's nonce is no secret -------------------------------------------------------


@settings(max_examples=examples(50), deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=20, max_size=20))
def test_a_websocket_handshakes_nonces_are_no_secret(key: bytes, accept: bytes) -> None:
    headers = [("Sec-WebSocket-Key", base64.b64encode(key).decode()),
               ("Sec-WebSocket-Accept", base64.b64encode(accept).decode())]  # fmt: skip
    assert scan_pieces(default_scanner(), request_pieces("/ws", "", headers)) == []


@pytest.mark.parametrize(
    ("value", "detector"),
    [(AWS, "aws_access_key"), ("q8Zr3Lw9Xk2Mv7Bn4Tp6Yc1Hd5Jf0Gs", "generic_secret")],
)
def test_a_nonce_header_carrying_anything_else_is_scanned(value: str, detector: str) -> None:
    pieces = request_pieces("/ws", "", [("Sec-WebSocket-Key", value)])
    assert [f.detector for f in scan_pieces(SECRET_SCANNER, pieces)] == [detector]


def _policy(field: str) -> Policy:
    return Policy.model_validate(
        {
            "name": "p",
            "rules": [
                {
                    "name": "r",
                    "decision": "deny",
                    "conditions": [{"field": field, "operator": "exists"}],
                }
            ],
        }
    )
