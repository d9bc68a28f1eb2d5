"""A secret echoed in wrapped base64, or in a UTF-16 or UTF-32 text, never reaches the agent.

The attack (security review): the upstream echoes the injected credential in a form every
reader decodes but the scrubber did not search for:

- base64 wrapped in lines, as MIME, PEM and ``base64.encodebytes`` write it (76 or 64
  columns) and GitHub's contents API (60, in a JSON string: ``\\n``): a line break inside
  the secret's base64 hid it, and ``base64.decodebytes`` (which skips the breaks) handed it
  over;
- JSON sent as UTF-16 or UTF-32 (RFC 4627 allowed it; .NET and Windows services still send
  it): each character two or four bytes, none of the searched forms as is.

Any secret, at any offset of the encoded stream, wrapped at any width a writer uses (59 and
more) starting at any column, or cut by one break anywhere; any break (LF, CRLF, JSON's
``\\n`` and ``\\r\\n``); any encoding and byte order; streamed in any chunks: no reading of
what the agent gets yields the secret, and the body keeps its length (and its encoding).
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.scrubbing import scrubber_for
from tests.core.test_scrubbing_forms import (
    SECRETS,
    injected,
    json_read,
    recovered,
    streamed,
    written,
)
from tests.fuzzscale import examples

BREAKS = [b"\n", b"\r\n", b"\\n", b"\\r\\n"]
_BREAK = re.compile(rb"\r|\n|\\r|\\n")


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


@settings(max_examples=examples(60), deadline=None)
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
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
# the review's probe: `encodebytes(b"X" * 23 + b"Authorization: Bearer " + secret)`
@example(secret=b"tfsecret_probe_0123456789abcdef", scheme=b"Bearer ", which=0, url_safe=False,
         lead=b"X" * 23 + b"Authorization: ", after=b"", width=76, column=0, brk=b"\n",
         cuts=[])  # fmt: skip
# GitHub's contents API: 60 columns in a JSON string, cut in the middle of a `\n`
@example(secret=b"ghp_realGithubToken0000000000000000000/+x", scheme=b"token ", which=1,
         url_safe=False, lead=b"token=", after=b"\n", width=60, column=0, brk=b"\\n",
         cuts=[61])  # fmt: skip
# one break right after the secret's first base64 character, in a CRLF cut between CR and LF
@example(secret=b"sk-live-abcdefghij", scheme=b"", which=0, url_safe=True, lead=b"", after=b"",
         width=None, column=1, brk=b"\r\n", cuts=[2])  # fmt: skip
def test_a_secret_in_wrapped_base64_never_reaches_the_agent(
    secret: bytes, scheme: bytes, which: int, url_safe: bool, lead: bytes, after: bytes,
    width: int | None, column: int, brk: bytes, cuts: list[int],
) -> None:  # fmt: skip
    value, secrets = injected(secret, scheme)
    echoed = secrets[which % len(secrets)]
    encode = base64.urlsafe_b64encode if url_safe else base64.b64encode
    lines = wrap(encode(lead + echoed + after), width, column, brk)
    body = b'{"content":"' + lines + b'"}' if brk.startswith(b"\\") else lines + b"\n"
    scrubber = scrubber_for([value])
    assert scrubber is not None
    assert any(echoed in d for d in agent_reads(body, url_safe))  # (what the test hides)
    out, count = streamed(scrubber, body, cuts)
    assert len(out) == len(body)
    assert count >= 1
    assert not any(echoed in d for d in agent_reads(out, url_safe))


ENCODINGS = ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]


@settings(max_examples=examples(60), deadline=None)
@given(
    secret=SECRETS,
    scheme=st.sampled_from([b"", b"Bearer ", b"Basic "]),
    which=st.integers(0, 2),
    kind=st.sampled_from(["as-is", "hex", "HEX", "base64", "url64-bare"]),
    stream=st.binary(max_size=8),
    encoding=st.sampled_from(ENCODINGS),
    before=st.text(st.characters(max_codepoint=0x7F), max_size=8),
    cuts=st.lists(st.integers(0, 900), max_size=6),
)
# the review's probe: `json.dumps({"auth": "Bearer " + secret}).encode("utf-16-le")`
@example(secret=b"tfsecret_probe_0123456789abcdef", scheme=b"Bearer ", which=0, kind="as-is",
         stream=b"", encoding="utf-16-le", before="", cuts=[])  # fmt: skip
def test_a_secret_in_a_utf16_or_utf32_text_never_reaches_the_agent(
    secret: bytes, scheme: bytes, which: int, kind: str, stream: bytes, encoding: str,
    before: str, cuts: list[int],
) -> None:  # fmt: skip
    value, secrets = injected(secret, scheme)
    echoed = secrets[which % len(secrets)]
    form = written(kind, echoed, stream, [0]).decode("latin-1")
    body = (before + json.dumps({"auth": form})).encode(encoding)
    scrubber = scrubber_for([value])
    assert scrubber is not None
    out, count = streamed(scrubber, body, cuts)
    assert len(out) == len(body)
    assert count >= 1
    text = out.decode(encoding)  # (still a text in its encoding: each filler encoded alike)
    assert not recovered(kind, json_read(text.encode("latin-1")), echoed)


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
}


@pytest.mark.parametrize("body", PROBES.values(), ids=PROBES.keys())
def test_the_reviews_forms_are_scrubbed_at_every_split_point(body: bytes) -> None:
    scrubber = scrubber_for([b"Bearer " + SECRET])
    assert scrubber is not None
    for cut in range(len(body) + 1):
        out, count = streamed(scrubber, body, [cut])
        assert (len(out), count) == (len(body), 1)
        for encoding in ENCODINGS:  # (as each reader reads it)
            assert SECRET not in out.decode(encoding, "replace").encode("utf-8", "replace")
        assert not any(SECRET in d for d in agent_reads(out, False))


def test_an_event_stream_is_not_held_back_by_the_wrapped_search() -> None:
    """An event ends in an empty line: sent at once, even when its text ends as the secret's
    base64 begins (a wrapped form never holds an empty line)."""
    scrubber = scrubber_for([b"Bearer " + SECRET])
    assert scrubber is not None
    begins = base64.b64encode(SECRET)[:6]
    for event in (b"data: " + begins + b"\n\n", b'data: {"t": "' + begins + b'\\n\\n"}\n\n'):
        assert scrubber.stream().feed(event) == event
