"""An ordinary text upload is read as the parts it is, never as "unreadable".

The review's case (a false positive): a 36 KB mysqldump uploaded as a multipart file, under
a policy whose only content rule is ``content.pii contains email``, was refused 403
``unreadable_encoding at multipart+0``. Two readings took what the file holds for the
multipart's structure: ``mimeparse.message_parts`` counted every line starting with ``--``
(SQL, Lua and Haskell comments, Markdown rules) as a part and gave up past ``MAX_PARTS``,
and the reading that follows then refused the body because the word ``charset`` appeared
anywhere in it (``DEFAULT CHARSET=utf8mb4``). Now only the delimiter lines of a boundary a
``Content-Type`` declares count against the bounds (RFC 2046: ``--`` and the boundary at a
line's start, ``--`` after it or not, then only spaces), and only a part's header names a
charset, wherever readers may cut one.

The evasions stay closed: a part whose header names a charset no reader here knows is
refused however many comment lines it holds (the property below), and a multipart readers
may cut otherwise is still read whole with every decoding (``test_content_bodies``). The
table :data:`UPLOADS` holds ordinary text files: extend it with the next false positive.
Through a real gateway: ``test_content_multipart_text_gateway.py``.
"""

from __future__ import annotations

import email
import re
from collections.abc import Callable
from email.policy import compat32

import httpx
import pytest
from aiohttp.multipart import parse_content_disposition
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.content import (
    PII,
    SECRETS,
    Scanner,
    body_pieces,
    content_attributes,
    default_scanner,
    scan_pieces,
)
from agentfirewall.content.locate import UNREADABLE
from agentfirewall.content.mimeparse import MAX_PARTS, message_parts
from tests.core.test_content_bodies import CHARSETS, written_in
from tests.fuzzscale import examples

AWS = "AKIA" + "Q3V7WZ2MXK4PLRTY"
EMAIL = "ada.lovelace@example.org"
URL = "http://files.example.org/upload"
PII_SCANNER = Scanner(PII)


def upload(name: str, content: bytes, media: str) -> tuple[bytes, str]:
    """`content` uploaded as a file the way a client sends one (httpx's ``files=``, beside a
    form field): the body, its ``Content-Type``."""
    files = {"file": (name, content, media)}
    request = httpx.Request("POST", URL, data={"title": "nightly"}, files=files)
    return request.read(), request.headers["content-type"]


def unreadable(body: bytes, content_type: str) -> set[str]:
    """Where a scanner of personal data finds it could not read the body."""
    findings = scan_pieces(PII_SCANNER, body_pieces(body, content_type))
    return {f.location for f in findings if f.detector == UNREADABLE}


def _unstructured(body: bytes, content_type: str) -> bool:
    """Whether the body was read whole (beyond the bounds, or cut otherwise by readers)."""
    return any(at.startswith("multipart.parts") for at, _ in body_pieces(body, content_type))


# -- ordinary text files ------------------------------------------------------------------


def mysqldump(tables: int = 300, row: str = "'nightly','done'") -> bytes:
    """What ``mysqldump`` writes: ``--`` comment lines (five a table, past ``MAX_PARTS``),
    ``DEFAULT CHARSET=utf8mb4`` and ``SET NAMES``."""
    head = ("-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)\n--\n-- Host: localhost"
            "    Database: shop\n-- ------------------------------------------------------\n"
            "/*!40101 SET NAMES utf8mb4 */;\n"
            "/*!40101 SET character_set_client = utf8 */;\n")  # fmt: skip
    table = ("\n--\n-- Table structure for table `t{0}`\n--\n\nDROP TABLE IF EXISTS `t{0}`;\n"
             "CREATE TABLE `t{0}` (\n  `id` int NOT NULL AUTO_INCREMENT,\n  `note` varchar(64),\n"
             "  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 "
             "COLLATE=utf8mb4_0900_ai_ci;\n\n--\n-- Dumping data for table `t{0}`\n--\n\n"
             "INSERT INTO `t{0}` VALUES (1,{1});\n")  # fmt: skip
    return (head + "".join(table.format(i, row) for i in range(tables))).encode()


def lua_source() -> bytes:
    """A Lua module: ``--`` comments, ``--[[ ]]`` blocks, ``---`` doc comments."""
    fn = ("--- Encode field {0} (the charset is UTF-8 throughout).\n-- @param s string\n"
          "--[[ keep in step with the C side ]]\nlocal function encode{0}(s)\n"
          "  -- escape the separator\n"
          "  return (s:gsub('%-%-', '\\\\-\\\\-'))\nend\n\n")  # fmt: skip
    return ("-- codec.lua\n" + "".join(fn.format(i) for i in range(400))).encode()


def haskell_source() -> bytes:
    """A Haskell module: ``-- |`` Haddock comments, ``------`` rules, a pragma."""
    fn = ("-- | Decode record {0}; the input charset is fixed by the caller.\n"
          "-- >>> decode{0} \"x\"\n----------------------------------------------------\n"
          "decode{0} :: Text -> Either String Int\ndecode{0} = parse  -- total\n\n")  # fmt: skip
    return ("{-# LANGUAGE OverloadedStrings #-}\nmodule Codec where\n\n"
            + "".join(fn.format(i) for i in range(400))).encode()  # fmt: skip


def csv_export() -> bytes:
    """A CSV export: ``--`` for a missing value at a line's start, a ``charset`` column."""
    rows = "".join(f"--,item {i},utf-8,-{i}.50,--\n" for i in range(1500))
    return ("sku,name,charset,delta,notes\n" + rows).encode()


def markdown_notes() -> bytes:
    """Markdown: front matter, ``---`` rules, an HTML snippet naming a charset, and a
    section about multipart that says ``boundary`` on every line."""
    section = ("\n---\n\n## Step {0}\n\nSet `<meta charset=\"utf-8\">` first; the boundary "
               "line of step {0} is not a delimiter.\n\n")  # fmt: skip
    return ("---\ntitle: Upload guide\n---\n" + "".join(section.format(i) for i in range(1100))
            ).encode()  # fmt: skip


def saved_request() -> bytes:
    """A file that holds another multipart (a request saved as a test fixture): its own
    boundary's lines, part headers naming charsets, and prose saying ``boundary``."""
    part = ("------WebKitFormBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; "
            "name=\"field{0}\"\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nvalue {0}"
            "\r\n")  # fmt: skip
    return ("POST /submit HTTP/1.1\r\nContent-Type: multipart/form-data; "
            "boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW\r\n\r\n"
            + "".join(part.format(i) for i in range(40))
            + "------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\n"
            + "-- each boundary above is the fixture's, not the upload's boundary\n" * 1100
            ).encode()  # fmt: skip


#: Ordinary text files: (what, the file, its media type).
UPLOADS: list[tuple[str, Callable[[], bytes], str]] = [
    ("a mysqldump of 300 tables", mysqldump, "application/sql"),
    ("a Lua module", lua_source, "text/x-lua"),
    ("a Haskell module", haskell_source, "text/x-haskell"),
    ("a CSV export", csv_export, "text/csv"),
    ("Markdown notes", markdown_notes, "text/markdown"),
    ("a saved multipart request", saved_request, "application/octet-stream"),
]  # fmt: skip
IDS = [row[0] for row in UPLOADS]


@pytest.mark.parametrize(("make", "media"), [row[1:] for row in UPLOADS], ids=IDS)
def test_an_ordinary_text_upload_is_read_as_its_parts_and_holds_nothing(
    make: Callable[[], bytes], media: str
) -> None:
    """Before: ``unreadable_encoding at multipart`` (the file's ``--`` lines taken for
    parts, then the word ``charset`` anywhere for a charset no reading applies)."""
    content = make()
    assert content.count(b"\n--") > MAX_PARTS  # (the review's shape: past the old bound)
    body, ctype = upload("upload.txt", content, media)
    assert unreadable(body, ctype) == set()
    assert not _unstructured(body, ctype)  # (parsed: two parts, not beyond the bounds)
    assert scan_pieces(default_scanner(), body_pieces(body, ctype)) == []


@pytest.mark.parametrize(("make", "media"), [row[1:] for row in UPLOADS], ids=IDS)
def test_the_parser_reads_the_upload_as_the_two_parts_a_server_reads(
    make: Callable[[], bytes], media: str
) -> None:
    body, ctype = upload("upload.txt", make(), media)
    parts = message_parts(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    assert parts is not None
    names = [part.get_param("name", header="content-disposition") for part in parts[1:]]
    assert names == ["title", "file"]


def test_an_email_in_a_dump_is_found_where_it_is() -> None:
    """The dump is read, so the rule it was refused by decides on what it holds."""
    body, ctype = upload("dump.sql", mysqldump(row=f"'{EMAIL}','done'"), "application/sql")
    findings = scan_pieces(PII_SCANNER, body_pieces(body, ctype))
    assert {(f.detector, f.location) for f in findings} == {("email", "body")}
    assert content_attributes(findings) == {"content.pii": ["email"]}


# -- the bounds still hold: the delimiters of a boundary however it is declared ------------

#: How a boundary may be declared (the parser reads each: ``Message.get_boundary``).
DECLARED = ["boundary=b", 'boundary="b"', 'boundary="b  "', "BOUNDARY = b",
            "boundary*0=b; boundary*1=c", "boundary*=''b%41", 'boundary="b\\"c"',
            'boundary=""', "boundary=-- b"]  # fmt: skip


def _declared(declared: str, parts: int, comments: int) -> bytes:
    """A multipart whose boundary is `declared`, of `parts` parts, the last holding
    `comments` comment lines (``-- …``, ``--`` and a space: no delimiter of any)."""
    head = f"Content-Type: multipart/mixed; {declared}\r\n\r\n"
    boundary = email.message_from_string(head, policy=compat32).get_boundary()
    assert boundary is not None
    one = f"--{boundary}\r\nContent-Type: text/plain\r\n\r\npart\r\n"
    lines = "-- select 1; -- another comment\r\n" * comments
    return (head + one * parts + f"--{boundary}\r\n\r\n{lines}--{boundary}--\r\n").encode()


@settings(max_examples=examples(40), deadline=None)
@given(st.sampled_from(DECLARED), st.integers(0, 3), st.integers(0, 3 * MAX_PARTS))
@example("boundary=b", 0, 2 * MAX_PARTS)
@example('boundary=""', 0, 2 * MAX_PARTS)
def test_only_delimiter_lines_of_the_declared_boundary_count_as_parts(
    declared: str, extra: int, comments: int
) -> None:
    """More than ``MAX_PARTS`` delimiters, however the boundary is declared (quoted, in RFC
    2231's form, empty: every ``--`` line then), is beyond the bounds before the parser
    runs; comment lines are never parts, however many."""
    parsed: list[int] = []
    parse = email.message_from_bytes

    def counted(data: bytes, *args: object, **kw: object) -> object:
        parsed.append(len(data))
        return parse(data, *args, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(email, "message_from_bytes", counted)
        assert message_parts(_declared(declared, MAX_PARTS + extra, comments)) is None
    assert parsed == []  # (the parser never ran on them)
    few = message_parts(_declared(declared, 8, comments))
    assert few is not None
    assert len(few) == 1 + 8 + 1


def test_encoded_words_a_part_holds_are_no_words_of_its_headers() -> None:
    """``WHERE id=?`` in a file is no encoded word (``MAX_WORDS`` counts the headers')."""
    statement = "UPDATE t SET a=?, b=? WHERE id=? -- {}\n"  # (a file's text, never run)
    statements = "".join(statement.format(i) for i in range(2000))
    body, ctype = upload("queries.sql", statements.encode(), "application/sql")
    assert unreadable(body, ctype) == set()
    assert not _unstructured(body, ctype)


# -- where a charset is named: a part's header, however readers cut the body ----------------

FORM_DATA = "multipart/form-data; boundary=XX"


def _part(name: str, headers: list[str], lines: list[str]) -> str:
    head = "\r\n".join([f'Content-Disposition: form-data; name="{name}"', *headers])
    return f"--XX\r\n{head}\r\n\r\n" + "".join(line + "\n" for line in lines) + "\r\n"


#: How the body is cut: closed (parsed), never closed, or a line in another part that starts
#: with the delimiter and goes on (readers may cut either otherwise: read whole too).
ENDINGS = {"closed": ("", "--XX--\r\n"), "never closed": ("", ""),
           "cut otherwise": ("--XX-not-a-delimiter", "--XX--\r\n")}  # fmt: skip
#: A part's own headers that leave it readable, the first naming no charset.
READABLE_HEADERS = [[], ["Content-Type: text/plain"], ["Content-Type: text/plain; charset=utf-8"],
                    ['Content-Type: text/plain; charset="US-ASCII"'],
                    ['Content-Type: text/plain; charset="utf-8"; x="=?utf-8?q?CV?="']]  # fmt: skip
#: What a dump, a source file or a comment holds: the word charset, `--` lines.
_WORDS = st.sampled_from([
    "DEFAULT CHARSET=utf8mb4", "charset", "-- client charset: latin1", "SET NAMES utf8 -- charset",
    '<meta charset="utf-16">', "CHARACTER SET utf16", "--", "----------", "-- =?utf-16?q?x?=",
])  # fmt: skip
_COMMENTS = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(
    lambda text: "--" + text
)
_LINES = (_WORDS | _COMMENTS).filter(lambda line: not line.startswith("--XX"))


def _body(headers: list[str], lines: list[str], ending: str) -> bytes:
    other, close = ENDINGS[ending]
    note = _part("note", [], ["plain words", other] if other else ["plain words"])
    return (note + _part("file", headers, lines) + close).encode()


@settings(max_examples=examples(120), deadline=None)
@given(
    st.sampled_from([*READABLE_HEADERS, ["Content-Type: text/plain; charset=utf-16"]]),
    st.sampled_from(sorted(ENDINGS)),
    st.lists(st.sampled_from(["select 1;", "end", "x = 1"]), max_size=6),
    st.lists(st.tuples(st.integers(0, 6), _LINES, st.integers(1, 3)), max_size=6),
    st.integers(0, 2 * MAX_PARTS),
    st.sampled_from(["x-unknown", "x-unknown-7", "base64", "undefined"]),
)
@example(["Content-Type: text/plain; charset=utf-8"], "never closed", ["end"],
         [(0, "DEFAULT CHARSET=utf8mb4", 1)], MAX_PARTS + 1, "x-unknown")  # fmt: skip
def test_comment_lines_and_the_word_charset_in_a_part_never_change_whether_it_is_readable(
    headers: list[str],
    ending: str,
    lines: list[str],
    inserted: list[tuple[int, str, int]],
    comments: int,
    unknown: str,
) -> None:
    """Lines starting with ``--`` (none the boundary's) and the word charset, inserted into a
    part's content, many times over: readable before, readable after, and the other way
    round, however the body is cut. A header of the part naming a charset no reader here
    knows makes it unreadable, whatever its content holds."""
    grown = list(lines)
    for at, line, times in inserted:
        grown[at:at] = [line] * times
    grown += ["-- --"] * comments
    before = unreadable(_body(headers, lines, ending), FORM_DATA)
    assert unreadable(_body(headers, grown, ending), FORM_DATA) == before
    named = [f"Content-Type: text/plain; charset={unknown}"]
    assert unreadable(_body(named, grown, ending), FORM_DATA)
    assert unreadable(_body(named, lines, ending), FORM_DATA)


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("headers", READABLE_HEADERS,
                         ids=["none", "type", "utf-8", "ascii", "utf-8 and a word"])  # fmt: skip
def test_a_part_in_utf8_is_readable_however_the_body_is_cut(
    headers: list[str], ending: str
) -> None:
    """A part naming UTF-8 or US-ASCII is read by the UTF-8 reading the whole body gets."""
    assert unreadable(_body(headers, ["DEFAULT CHARSET=latin1"], ending), FORM_DATA) == set()


FIELD = "Content-Disposition: form-data; "
#: A part's header naming a charset other than UTF-8, as some reader reads it: each is read
#: in it when the body is parsed, and refused when it is read whole (no charset applied).
NAMED_OTHERWISE = [
    ("a charset parameter", "Content-Type: text/plain; charset=utf-16"),
    ("quoted", 'Content-Type: text/plain; charset="utf-16"'),
    ("with a quoted-pair", 'Content-Type: text/plain; charset="utf\\-16"'),
    ("in RFC 2231's form", "Content-Type: text/plain; charset*=''utf-16"),
    ("split in RFC 2231's form", "Content-Type: text/plain; charset*0=utf-; charset*1=16"),
    ("a second one after UTF-8", "Content-Type: text/plain; charset=utf-8; charset=utf-16"),
    ("on a continuation line", "Content-Type: text/plain;\r\n charset=utf-16"),
    ("after a bare LF (a reader of CRLF lines reads it on)",
     "Content-Type: text/plain;\ncharset=utf-16"),
    ("after a bare CR", "Content-Type: text/plain;\rcharset=utf-16"),
    ("the charset field's name", f'{FIELD}name="_charset_"'),
    ("its name with a quoted-pair", f'{FIELD}name="_\\charset_"'),
    ("its name %-escaped", f'{FIELD}name="%5Fcharset%5F"'),
    ("its name in an encoded word", f'{FIELD}name="=?utf-8?b?X2NoYXJzZXRf?="'),
    ("its name split in RFC 2231's form", f"{FIELD}name*0=_char; name*1=set_"),
]  # fmt: skip


@pytest.mark.parametrize("header", [row[1] for row in NAMED_OTHERWISE],
                         ids=[row[0] for row in NAMED_OTHERWISE])  # fmt: skip
def test_a_header_naming_another_charset_in_a_body_read_whole_is_refused(header: str) -> None:
    body = _body([header], ["plain words"], "never closed")
    assert "multipart" in unreadable(body, FORM_DATA)  # (and the parts the parser cut)


#: How a part may be named ``_charset_`` (RFC 7578: it names every other part's charset),
#: as some reader reads its disposition (aiohttp drops a quoted-pair, a leading ``\\``).
WIDE = ("utf-16-le", "cp500")  # (charsets that write a key's ASCII otherwise)
CHARSET_FIELDS = ['"_charset_"', '"_\\charset_"', '"\\_charset_"', '"/_charset_"', "_charset_"]


@pytest.mark.parametrize("name", CHARSET_FIELDS)
@pytest.mark.parametrize(("label", "codec"), [c for c in CHARSETS if c[1] in WIDE])
def test_the_charset_field_however_its_name_is_written_names_every_parts_charset(
    name: str, label: str, codec: str
) -> None:
    """Before: ``name="_\\charset_"`` (which aiohttp reads as ``_charset_``) was no charset
    field: a key in UTF-16 in the next part went unread."""
    disposition = f"form-data; name={name}"
    assert parse_content_disposition(disposition)[1]["name"] == "_charset_"  # (the oracle)
    field = f"--XX\r\nContent-Disposition: {disposition}\r\n\r\n{label}\r\n".encode()
    note = b'--XX\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
    body = field + note + written_in(f"key {AWS}", codec) + b"\r\n--XX--\r\n"
    found = scan_pieces(Scanner(SECRETS), body_pieces(body, FORM_DATA))
    assert "aws_access_key" in {f.detector for f in found}
    open_ended = re.sub(rb"--XX--\r\n$", b"", body)  # (never closed: read whole, refused)
    assert unreadable(open_ended, FORM_DATA) == {"multipart"}
