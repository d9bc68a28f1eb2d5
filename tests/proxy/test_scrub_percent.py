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
from tests.core.test_scrubbing_forms import streamed
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


def written(form: bytes, ways: list[int]) -> bytes:
    """`form` with byte i written as `ways[i]` says: 0 as is, 1 ``%xx``, 2 ``%XX``, 3 ``+``
    if a space and another byte is escaped (``+`` is promised in a body holding a ``%``)."""
    escaping = any(way in (1, 2) for way in ways)
    out = b""
    for byte, way in zip(form, ways, strict=True):
        if way in (1, 2):
            escape = b"%%%02x" % byte
            out += escape.upper() if way == 2 else escape
        elif way == 3 and byte == 0x20 and escaping:
            out += b"+"
        else:
            out += bytes([byte])
    return out


#: A hex-string API key, a secret holding `%` and hex (what a stray `%` can swallow), one
#: ending in a `%` or `%X` (what the bytes after it can complete), and a password with
#: spaces and what encoders encode.
_HEXES = "0123456789ABCDEFabcdef"
_SECRETS = st.one_of(
    st.text("0123456789abcdef", min_size=6, max_size=24),
    st.text(_HEXES + "%gx", min_size=6, max_size=24),
    st.tuples(
        st.text(_HEXES + "%g", min_size=5, max_size=20), st.sampled_from(["%", "%4", "%f"])
    ).map("".join),
    st.text("abcXYZ0189%/+= _-", min_size=6, max_size=24)
    .map(str.strip)
    .filter(lambda s: len(s) >= 6),
).map(str.encode)
#: Bytes beside a written secret: `%` (alone, doubled, before hex), hex digits, escapes,
#: `+` and a space.
_BESIDE = [*b"% %% %2 %4 %6 %25 %41 %6a 2 4 6 5 a F 46 61 + x =".split(), b" "]
_AROUND = st.lists(st.sampled_from(_BESIDE), max_size=10).map(b"".join)


@settings(max_examples=examples(300), deadline=None)
@given(
    secret=_SECRETS,
    bearer=st.booleans(),
    data=st.data(),
    before=_AROUND,
    after=_AROUND,
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_any_form_written_with_escapes_is_found_and_scrubbed_beside_any_percent(
    secret: bytes,
    bearer: bool,
    data: st.DataObject,
    before: bytes,
    after: bytes,
    cuts: list[int],
) -> None:
    """Whatever stands beside it (a literal `%`, hex digits, a half escape), a form of the
    secret written with any of its bytes percent-encoded is found, and no chunking of the
    body lets any form of the secret through the stream."""
    scrub = scrubber(b"Bearer " + secret if bearer else secret)
    forms = [f for f in scrub.forms if b"\\" not in f]  # (`\/`: JSON's, not a URL's)
    form = data.draw(st.sampled_from(forms), label="form")
    size = len(form)
    ways = data.draw(st.lists(st.integers(0, 3), min_size=size, max_size=size), label="ways")
    body = before + written(form, ways) + after
    assert scrub.found(body)
    out, _ = streamed(scrub, body, cuts)
    assert len(out) == len(body)
    assert not scrub.found(out)


_GITHUB = b"ghp_realGithubToken0000000000000000000"
_HEX_KEY = b"615c0d3e8a1f4b2c9d7e6f5a4b3c2d1e"


@pytest.mark.parametrize(
    ("value", "body"),
    [  # (decoding the body once reads the escape marked [ ], so the form is not there as is)
        # [%67]68705F…%30: the review's reproducer, the hex form with its last byte escaped
        (b"Bearer " + _GITHUB, b"x%" + _GITHUB.hex().upper().encode()[:-1] + b"%30"),
        (b"Bearer " + _HEX_KEY, b"x%" + _HEX_KEY[:-1] + b"%65"),  # [%61]5c0d…%65
        (b"Bearer " + _HEX_KEY, b"x%6" + _HEX_KEY[:-1] + b"%65"),  # [%66]15c0d…%65
        (b"abcdef%", b"%61bcdef%" + b"61"),  # a…bcdef[%61]
        (b"/:%6", b"%2F:%6" + b"1"),  # /:[%61]
        (b"xyz%61defgh", b"%78yz%61defgh"),  # x…yz[%61]defgh: the secret's own `%61`
        (b"ab%25cdefgh", b"%61b%25cdefgh"),  # a…b[%25]cdefgh: its `%25`, not a `%`
    ],
    ids=["github-hex-form", "hex-key", "hex-key-half-escape", "ends-in-percent",
         "ends-in-half-escape", "holds-an-escape", "holds-a-percent-escape"],
)  # fmt: skip
def test_a_percent_beside_or_inside_a_written_form_does_not_hide_it(
    value: bytes, body: bytes
) -> None:
    """A ``%`` before a form beginning with hex digits, a form ending in ``%`` or ``%X``
    before hex digits, a form holding a ``%XX`` as is: decoding the body once reads an escape
    there that the form written does not hold, and the quick test before the search for every
    spelling passed over the form. It is found, scrubbed, and held back split anywhere."""
    scrub = scrubber(value)
    assert scrub.found(body)
    out, count = scrub.scrub(body)
    assert count == 1
    assert not scrub.found(out)
    for cut in range(1, len(body)):
        out, _ = streamed(scrub, body, [cut])
        assert not scrub.found(out), cut


def test_a_space_written_as_plus_is_searched_around_the_plus() -> None:
    """A space written ``+`` starts the search as an escape does: a secret written with one
    of its spaces as ``+`` (neither its `quote_plus` form nor itself) and no escape near is
    found in a body holding a ``%``, and a stream cut after that ``+`` holds it back (the
    escape may come in the next chunk)."""
    scrub = scrubber(b"correct horse battery staple")
    far = b"q=%41&" + b"x" * scrub.longest * 4 + b"&pw="
    assert scrub.found(far + b"correct horse+battery staple")
    body = b"pw=correct horse+battery stapl%65&x=1"
    for cut in range(len(b"pw=correct horse+"), len(body) - len(b"%65&x=1") + 1):
        out, count = streamed(scrub, body, [cut])
        assert count == 1, cut
        assert not scrub.found(out)
