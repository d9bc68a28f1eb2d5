"""A secret echoed in wrapped base64, or in a UTF-16 or UTF-32 text, never reaches the agent.

The attack (security review): the upstream echoes the injected credential in a form every
reader decodes but the scrubber did not search for:

- base64 wrapped in lines, as MIME, PEM and ``base64.encodebytes`` write it (76 or 64
  columns) and GitHub's contents API (60, in a JSON string: ``\\n``): a line break inside
  the secret's base64 hid it, and ``base64.decodebytes`` (which skips the breaks) handed it
  over; then (second review) each line indented, as XML's base64Binary, a YAML block, a
  folded MIME header (``\\r\\n ``) or a JSON string (``\\n`` and spaces) write it, or
  with trailing blanks: a base64 reader skips blanks too;
- JSON sent as UTF-16 or UTF-32 (RFC 4627 allowed it; .NET and Windows services still send
  it): each character two or four bytes, none of the searched forms as is; then (second
  review) with any of the secret's characters escaped, as .NET's ``System.Text.Json``
  writes a ``+`` (``\\u002B``), percent-encoded or HTML-escaped, or wrapped in lines: only
  the plain forms were searched for in a wide text.

Any secret, at any offset of the encoded stream, wrapped at any width a writer uses (59 and
more) starting at any column, or cut by one break anywhere; any break (LF, CRLF, JSON's
``\\n`` and ``\\r\\n``, with any blanks around it, or blanks alone); any spelling of any
form, in any encoding and byte order, at any offset of the body; streamed in any chunks:
no reading of what the agent gets yields the secret, and the body keeps its length (and
its encoding).
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.scrubbing import scrubber_for
from tests.core.test_scrubbing_forms import (
    KINDS,
    SECRETS,
    injected,
    json_read,
    json_written,
    recovered,
    streamed,
    written,
)
from tests.fuzzscale import examples

BREAKS = [b"\n", b"\r\n", b"\\n", b"\\r\\n"]
#: A break with the blanks a writer puts around it (XML, YAML, a folded header, a JSON
#: string holding indented text), or blanks alone: a base64 reader skips them all.
BREAKS += [b"\n    ", b"\r\n\t", b"\r\n ", b"\\n  ", b"\\n\\t", b"  \n", b"\t\r\n  ", b" "]
BREAKS += [b"\\u000a"]  # (a JSON encoder escaping every control character so)
_BREAK = re.compile(rb"\r|\n|\\[rnt]|\\u000[9aAdD]")


def wrap(encoded: bytes, width: int | None, column: int, brk: bytes) -> bytes:
    """`encoded` in lines of `width` (the first `column` in already), or (None) cut once at
    `column`."""
    if width is None:
        at = column % (len(encoded) + 1)
        return encoded[:at] + brk + encoded[at:]
    first = width - column % width
    lines = [encoded[:first]]
    lines += [encoded[at : at + width] for at in range(first, len(encoded), width)]
    return brk.join(lines)


def agent_reads(out: bytes, url_safe: bool) -> list[bytes]:
    """What a base64 reader that skips line breaks (and anything else not base64) makes of
    `out`, from each of its first four characters, its last group too."""
    letters = re.sub(
        rb"[^A-Za-z0-9\-_]" if url_safe else rb"[^A-Za-z0-9+/]", b"", _BREAK.sub(b"", out)
    )
    parts = [letters[shift:] for shift in range(4)]
    parts = [p[: len(p) - 1] if len(p) % 4 == 1 else p for p in parts]  # (no byte in 6 bits)
    return [base64.b64decode(p + b"=" * (-len(p) % 4), altchars=b"-_" if url_safe else None)
            for p in parts]  # fmt: skip


ENCODINGS = ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]
#: How a body is sent (None: as it is; "utf-16" and "utf-32": with a byte order mark).
SENT = [None, *ENCODINGS, "utf-16", "utf-32"]


def sent(body: bytes, encoding: str | None, skew: int) -> bytes:
    """`body` (ASCII, or latin-1 bytes) as a text in `encoding`, after `skew` bytes of another
    part (a wide text need not begin the body)."""
    return b"-" * skew + (body.decode("latin-1").encode(encoding) if encoding else body)


def read(out: bytes, encoding: str | None, skew: int) -> bytes:
    """The text the agent reads in what it got (UTF-8): still a text in its encoding."""
    return out[skew:].decode(encoding).encode() if encoding else out[skew:]


@settings(max_examples=examples(100), deadline=None)
@given(
    secret=SECRETS,
    scheme=st.sampled_from([b"", b"Bearer ", b"Basic "]),
    which=st.integers(0, 2),
    url_safe=st.booleans(),
    lead=st.binary(max_size=5),
    after=st.binary(max_size=5),
    width=st.one_of(st.none(), st.integers(59, 100)),
    column=st.integers(0, 200),
    brk=st.sampled_from(BREAKS),
    encoding=st.sampled_from(SENT),
    skew=st.integers(0, 3),
    cuts=st.lists(st.integers(0, 1600), max_size=6),
)
# the review's probe: `encodebytes(b"X" * 23 + b"Authorization: Bearer " + secret)`
@example(secret=b"tfsecret_probe_0123456789abcdef", scheme=b"Bearer ", which=0, url_safe=False,
         lead=b"X" * 23 + b"Authorization: ", after=b"", width=76, column=0, brk=b"\n",
         encoding=None, skew=0, cuts=[])  # fmt: skip
# GitHub's contents API: 60 columns in a JSON string, cut in the middle of a `\n`
@example(secret=b"ghp_realGithubToken0000000000000000000/+x", scheme=b"token ", which=1,
         url_safe=False, lead=b"token=", after=b"\n", width=60, column=0, brk=b"\\n",
         encoding=None, skew=0, cuts=[61])  # fmt: skip
# one break right after the secret's first base64 character, in a CRLF cut between CR and LF
@example(secret=b"sk-live-abcdefghij", scheme=b"", which=0, url_safe=True, lead=b"", after=b"",
         width=None, column=1, brk=b"\r\n", encoding=None, skew=0, cuts=[2])  # fmt: skip
# the second review: XML's base64Binary, each line indented, in UTF-16 after an odd part
@example(secret=b"tfsecret_probe_0123456789abcdef", scheme=b"Bearer ", which=1, url_safe=False,
         lead=b"xx Authorization: ", after=b"", width=76, column=0, brk=b"\n    ",
         encoding="utf-16-le", skew=1, cuts=[155])  # fmt: skip
def test_a_secret_in_wrapped_base64_never_reaches_the_agent(
    secret: bytes, scheme: bytes, which: int, url_safe: bool, lead: bytes, after: bytes,
    width: int | None, column: int, brk: bytes, encoding: str | None, skew: int,
    cuts: list[int],
) -> None:  # fmt: skip
    value, secrets = injected(secret, scheme)
    echoed = secrets[which % len(secrets)]
    encode = base64.urlsafe_b64encode if url_safe else base64.b64encode
    lines = wrap(encode(lead + echoed + after), width, column, brk)
    text = b'{"content":"' + lines + b'"}' if brk.startswith(b"\\") else lines + b"\n"
    body = sent(text, encoding, skew)
    scrubber = scrubber_for([value])
    assert scrubber is not None
    assert any(echoed in d for d in agent_reads(text, url_safe))  # (what the test hides)
    out, count = streamed(scrubber, body, cuts)
    assert len(out) == len(body)
    assert count >= 1
    assert not any(echoed in d for d in agent_reads(read(out, encoding, skew), url_safe))


@settings(max_examples=examples(150), deadline=None)
@given(
    secret=SECRETS,
    scheme=st.sampled_from([b"", b"Bearer ", b"Basic "]),
    which=st.integers(0, 2),
    kind=st.sampled_from(KINDS),
    stream=st.binary(max_size=8),
    ways=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    json_string=st.sampled_from([None, False, True]),
    encoding=st.sampled_from(SENT[1:]),
    skew=st.integers(0, 3),
    before=st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
    cuts=st.lists(st.integers(0, 1200), max_size=6),
)
# the review's probe: `json.dumps({"auth": "Bearer " + secret}).encode("utf-16-le")`
@example(secret=b"tfsecret_probe_0123456789abcdef", scheme=b"Bearer ", which=0, kind="as-is",
         stream=b"", ways=[0], json_string=False, encoding="utf-16-le", skew=0, before="",
         cuts=[])  # fmt: skip
# the second review: a key's `+` escaped as .NET's System.Text.Json writes it, in UTF-16
@example(secret=b"AbC+dEf/GhI+jKl0123456789xyzXYZ+==", scheme=b"Bearer ", which=1, kind="json",
         stream=b"", ways=[0, 0, 0, 1], json_string=None, encoding="utf-16", skew=0,
         before="", cuts=[40])  # fmt: skip
# ... percent-encoded in UTF-32, cut inside an escape's character
@example(secret=b"tfsecret_probe_0123456789abcdef", scheme=b"", which=0, kind="percent",
         stream=b"", ways=[1, 0], json_string=None, encoding="utf-32-be", skew=3,
         before="\u00e9", cuts=[77])  # fmt: skip
def test_a_secret_in_a_utf16_or_utf32_text_never_reaches_the_agent(
    secret: bytes, scheme: bytes, which: int, kind: str, stream: bytes, ways: list[int],
    json_string: bool | None, encoding: str, skew: int, before: str, cuts: list[int],
) -> None:  # fmt: skip
    """Every form, spelled in every way the plain text's search finds (escaped, percent-
    encoded, HTML-escaped, in a JSON string), in a text of any width and byte order."""
    value, secrets = injected(secret, scheme)
    echoed = secrets[which % len(secrets)]
    form = written(kind, echoed, stream, ways)
    if json_string is not None and kind != "json":  # the form written again in a JSON string
        form = json_written(form, slash=json_string)
    text = before + '{"echo":"' + form.decode("latin-1") + '"}'
    body = b"-" * skew + text.encode(encoding)
    scrubber = scrubber_for([value])
    assert scrubber is not None
    out, count = streamed(scrubber, body, cuts)
    assert len(out) == len(body)
    assert count >= 1
    got = read(out, encoding, skew)  # (still a text in its encoding: each filler encoded alike)
    assert not recovered(kind, json_read(got) if json_string is not None else got, echoed)


SECRET = b"tfsecret_probe_0123456789abcdef"
PROBES = {
    "mime-76": base64.encodebytes(b"X" * 23 + b"Authorization: Bearer " + SECRET),
    "pem-64-crlf": b"-----BEGIN X-----\r\n"
    + b"\r\n".join(re.findall(rb".{1,64}", base64.b64encode(b"id=" + b"x" * 40 + SECRET)))
    + b"\r\n-----END X-----\r\n",
    "github-60-json": json.dumps(
        {
            "content": "\n".join(
                re.findall(".{1,60}", base64.b64encode(b"k=" + b"v" * 30 + SECRET).decode())
            )
        }
    ).encode(),
    "utf-16-le-json": json.dumps({"auth": "Bearer " + SECRET.decode()}).encode("utf-16-le"),
    "utf-32-be-json": json.dumps({"auth": "Bearer " + SECRET.decode()}).encode("utf-32-be"),
    # the second review: XML's base64Binary deep in a document, a folded MIME header, a JSON
    # string holding indented lines, and a wide text with its `_` percent-encoded
    "xml-indented": b"<a>\n  <r>\n"
    + b"".join(
        b" " * 40 + line + b"\n"
        for line in re.findall(
            rb".{1,76}", base64.b64encode(b"x" * 20 + b" Authorization: Bearer " + SECRET)
        )
    )
    + b"  </r>\n</a>\n",
    "mime-folded": b"X-Echo: "
    + b"\r\n ".join(re.findall(rb".{1,60}", base64.b64encode(b"k=v " * 10 + SECRET)))
    + b"\r\n\r\n",
    "json-indented": b'{"text": "'
    + b"\\n    ".join(re.findall(rb".{1,64}", base64.b64encode(b"a: " * 9 + SECRET)))
    + b'"}',
    "utf-16-percent": SECRET.replace(b"_", b"%5f").decode().encode("utf-16"),
    "utf-32-le-json-escaped": json.dumps({"auth": "Bearer " + SECRET.decode()})
    .replace("_", "\\u005F")
    .encode("utf-32-le"),
}


@pytest.mark.parametrize("body", PROBES.values(), ids=PROBES.keys())
def test_the_reviews_forms_are_scrubbed_at_every_split_point(body: bytes) -> None:
    scrubber = scrubber_for([b"Bearer " + SECRET])
    assert scrubber is not None
    for cut in range(len(body) + 1):
        out, count = streamed(scrubber, body, [cut])
        assert (len(out), count) == (len(body), 1)
        for encoding in ENCODINGS:  # (as each reader reads it)
            text = out.decode(encoding, "replace").encode("utf-8", "replace")
            assert SECRET not in text
            assert SECRET not in json_read(text)
        assert not any(SECRET in d for d in agent_reads(out, False))
        assert SECRET not in unquote_to_bytes(out.decode("utf-16", "replace").encode())


def test_an_event_stream_is_not_held_back_by_the_wrapped_search() -> None:
    """An event ends in an empty line: sent at once, even when its text ends as the secret's
    base64 begins (a wrapped form never holds an empty line)."""
    scrubber = scrubber_for([b"Bearer " + SECRET])
    assert scrubber is not None
    begins = base64.b64encode(SECRET)[:6]
    for event in (b"data: " + begins + b"\n\n", b'data: {"t": "' + begins + b'\\n\\n"}\n\n'):
        assert scrubber.stream().feed(event) == event


@pytest.mark.parametrize("encoding", [None, "utf-16-le", "utf-32-be"])
def test_a_stream_holds_back_a_bounded_tail(encoding: str | None) -> None:
    """Blanks after the beginning of the secret's base64 may be indentation before its rest:
    held back with it, but never past 1 KiB of blanks (4 times as many bytes in UTF-32), so
    an upstream cannot make the gateway hold its answer back."""
    scrubber = scrubber_for([b"Bearer " + SECRET])
    assert scrubber is not None
    body = sent(b"x " + base64.b64encode(SECRET)[:10] + b" " * 100_000, encoding, 0)
    stream = scrubber.stream()
    out, held = b"", []
    for at in range(0, len(body), 1000):
        out += stream.feed(body[at : at + 1000])
        held.append(len(stream.tail))
    assert out + stream.finish() == body
    assert 0 < max(held) <= 8192
    assert held[-1] == 0
