"""A secret percent-encoded in any way (any subset of its bytes, either case of hex, a
space as ``+``) is scrubbed like the secret itself, wherever chunks split it: a URL decoder
would hand the agent the secret. The scrubber is the gateway's and ``tf mcp wrap``'s."""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.scrubbing import Scrubber, scrubber_for
from tests.fuzzscale import examples

#: An AWS-style secret: `/`, `+` and `=` are what encoders encode.
SECRET = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EXAMPLEKEY"


def scrubber(value: bytes = SECRET) -> Scrubber:
    found = scrubber_for([value])
    assert found is not None
    return found


def encoded(secret: bytes, which: list[bool], upper: bool) -> bytes:
    """`secret` with the bytes `which` marks written ``%XX``."""
    out = b""
    for index, byte in enumerate(secret):
        if which[index % len(which)]:
            escape = b"%%%02x" % byte
            out += escape.upper() if upper else escape
        else:
            out += bytes([byte])
    return out


def streamed(scrub: Scrubber, body: bytes, cuts: list[int]) -> tuple[bytes, int]:
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    stream = scrub.stream()
    out = b"".join(stream.feed(p) for p in pieces) + stream.finish()
    return out, stream.count


@pytest.mark.parametrize(
    "written",
    [
        quote(SECRET),  # Python's default: `/` left as is
        quote(SECRET, safe=""),
        re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(SECRET, safe="")),  # `%2f`
        quote_plus(SECRET),
        "".join(f"%{b:02x}" for b in SECRET),  # every byte
    ],
)
def test_common_percent_encodings_of_the_secret_are_scrubbed(written: str) -> None:
    body = b"GET https://api.example.com/v1?token=" + written.encode() + b" HTTP/1.1"
    out, count = scrubber().scrub(body)
    assert count == 1
    assert len(out) == len(body)
    assert SECRET not in unquote_to_bytes(out)


@settings(max_examples=examples(300), deadline=None)
@given(
    which=st.lists(st.booleans(), min_size=1, max_size=len(SECRET)),
    upper=st.booleans(),
    before=st.binary(max_size=40),
    after=st.binary(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
)
@example(which=[False] * 13 + [True], upper=False, before=b"", after=b"", cuts=[15])
def test_any_subset_percent_encoded_is_scrubbed_split_anywhere(
    which: list[bool], upper: bool, before: bytes, after: bytes, cuts: list[int]
) -> None:
    body = before + b"token=" + encoded(SECRET, which, upper) + after
    out, count = streamed(scrubber(), body, cuts)
    assert len(out) == len(body)
    assert count >= 1
    assert SECRET not in unquote_to_bytes(out)


def test_a_space_written_as_plus_in_a_password_is_scrubbed() -> None:
    secret = b"correct horse/battery staple"
    body = b"pw=" + quote_plus(secret).encode().replace(b"%2F", b"%2f") + b"&x=1"
    out, count = scrubber(secret).scrub(body)
    assert count == 1
    assert secret not in unquote_to_bytes(out.replace(b"+", b" "))


def test_a_stream_of_url_encoded_text_is_not_held_back_needlessly() -> None:
    stream = scrubber().stream()
    assert stream.feed(b"q=a%2Fb%2Bc\n") == b"q=a%2Fb%2Bc\n"  # an escape, no secret near
    assert stream.feed(b"t=wJalr%58") == b"t="  # may begin the secret: held
    assert stream.feed(b"nothing\n") == b"wJalr%58nothing\n"


@pytest.mark.parametrize(("mark", "width"), [(b"%2F", 3), (b"\\u002F", 6)], ids=["percent", "json"])
def test_a_form_near_the_end_of_another_escapes_window_is_found(mark: bytes, width: int) -> None:
    """An escape of a secret's byte starts a search as far as the widest form reaches
    (`width` bytes per byte of the longest form); a second escape inside that stretch
    extends it (the form after it may end past the first stretch)."""
    scrub = scrubber()
    secret = SECRET.replace(b"/", mark)
    body = mark + b"x" * (scrub.longest * width - 20) + secret + b"y" * 50
    out, count = scrub.scrub(body)
    assert count == 1
    assert SECRET not in unquote_to_bytes(out.replace(b"\\u002F", b"/"))
