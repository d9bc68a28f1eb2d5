"""A long secret's scrubber is built in milliseconds, and still finds every spelling.

The defect (security review): the scrubber of a JWT access token (1-4 KB, as Azure AD or
Okta mint them) compiled a regex of every form with each byte an alternation of its
spellings (JSON-escaped, percent-encoded, HTML-escaped): seconds per token refresh, on the
gateway's event loop, and on every SDK execute. Those searches are now compiled only for the
forms a text may hold (their core, which every spelling holds once read, is there), in the
same order: the spans found are exactly those one regex of every form finds, which the
property below checks on texts built to hold spelled forms and to confuse a reader (an
escape begun before a form, a backslash or ``%`` of its own). Building the scrubber compiles
nothing per byte of a form (measured as the regex text compiled, not as time).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall import scrubbing
from agentfirewall.scrubbing import MARKER, Scrubber, scrubber_for
from tests.fuzzscale import examples

_SECRET_BYTES = b"abcXYZ019-_.~+/=%\\\" &<>'u"
SECRETS = st.lists(st.sampled_from(_SECRET_BYTES), min_size=6, max_size=24).map(bytes)
#: What a text around a form may hold: escapes begun or whole, references, blanks.
NOISE = st.sampled_from(
    [b"\\", b"\\\\", b"\\u00", b"\\u005", b"\\u0061", b"%", b"%2", b"%25", b"&", b"&#3", b"&amp;",
     b"u0061", b"x", b" ", b"+", b"\\/", b'\\"', b"%2F", b"%2f"]
)  # fmt: skip


def _json_byte(byte: int, way: int) -> bytes:
    if way == 0 or not 0x20 <= byte < 0x7F:
        return bytes([byte])
    if way == 1 and byte in b'/"\\':
        return b"\\" + bytes([byte])
    return (b"\\u%04x" if way % 2 else b"\\u%04X") % byte


def _percent_byte(byte: int, way: int) -> bytes:
    if way == 0:
        return bytes([byte])
    if byte == 0x20 and way == 1:
        return b"+"
    return (b"%%%02x" if way % 2 else b"%%%02X") % byte


def _html_byte(byte: int, way: int) -> bytes:
    names = {0x26: b"&amp;", 0x22: b"&quot;", 0x27: b"&#39;", 0x3C: b"&lt;", 0x3E: b"&#x3E;"}
    return names[byte] if way and byte in names else bytes([byte])


SPELLERS = [_json_byte, _percent_byte, _html_byte]


def _everything(scrubber: Scrubber) -> Scrubber:
    """The same scrubber with each spelled search one regex of every form (cores that every
    text holds: compiled whole), as it was before the searches were compiled lazily."""
    full = Scrubber(scrubber.forms, scrubber.wrapped)
    for name in ("_escaped", "_percent", "_html"):
        lazy = getattr(scrubber, name)
        if lazy is not None:
            forms = lazy._forms
            whole = scrubbing._Spelled(forms, [b""] * len(forms), lazy._spell)
            setattr(full, name, whole)
    return full


@settings(max_examples=examples(30), deadline=None)
@given(
    secret=SECRETS,
    scheme=st.sampled_from([b"", b"Bearer ", b"Basic "]),
    which=st.integers(0, 50),
    speller=st.integers(0, len(SPELLERS) - 1),
    ways=st.lists(st.integers(0, 3), min_size=1, max_size=30),
    before=st.lists(NOISE, max_size=3),
    after=st.lists(NOISE, max_size=3),
    twice=st.booleans(),
)
def test_the_lazy_searches_find_what_one_regex_of_every_form_finds(
    secret: bytes, scheme: bytes, which: int, speller: int, ways: list[int],
    before: list[bytes], after: list[bytes], twice: bool,
) -> None:  # fmt: skip
    value = scheme + (base64.b64encode(b"user:" + secret) if scheme == b"Basic " else secret)
    lazy = scrubber_for([value])
    assert lazy is not None
    form = lazy.forms[which % len(lazy.forms)]
    spell = SPELLERS[speller]
    written = b"".join(spell(b, ways[i % len(ways)]) for i, b in enumerate(form))
    body = b"".join(before) + written + b"".join(after) + (written if twice else b"")
    full = _everything(lazy)
    for search in ("_escaped_spans", "_percent_spans", "_html_spans"):
        assert getattr(lazy, search)(body) == getattr(full, search)(body), search
    assert lazy.scrub(body) == full.scrub(body)


@pytest.mark.parametrize(
    ("secret", "body"),
    [
        # a form beginning `u00hh`: an escape the text begins before it reads those bytes
        (b"u0061x/yzabcdefg", b"\\u0061x\\u002fyzabcdefg"),
        (b"u0061x/yzabcdefg", b"\\\\u0061x\\/yzabcdefg"),
        # a backslash of its own, which begins an escape as the text is read
        (b"ab\\u0041cdefghij", b"ab\\u0041cd\\u0065fghij"),
        # a `%` of its own, written as is and escaped
        (b"ab%41cdefghij", b"ab%2541cd%65fghij"),
        (b"ab%41cdefghij", b"ab%41cd%65fghij"),
    ],
)
def test_a_form_a_reader_would_read_otherwise_is_found_alike(secret: bytes, body: bytes) -> None:
    lazy = scrubber_for([secret])
    assert lazy is not None
    full = _everything(lazy)
    assert lazy._escaped_spans(body) == full._escaped_spans(body)
    assert lazy._percent_spans(body) == full._percent_spans(body)
    assert lazy.scrub(body) == full.scrub(body)
    assert lazy.scrub(body)[1] >= 1


def _jwt(length: int) -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(secrets.token_bytes(length)).rstrip(b"=").decode()
    return f"{head}.{body[: length - 350]}.{body[length - 350 : length - 30]}"


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The regex texts the scrubber compiles from now on (re's cache cleared)."""
    texts: list[bytes] = []
    compile_ = re.compile

    def recording(pattern: bytes, flags: int = 0) -> re.Pattern[bytes]:
        texts.append(pattern)
        return compile_(pattern, flags)

    re.purge()
    monkeypatch.setattr(re, "compile", recording)
    return texts


def test_a_long_tokens_scrubber_compiles_nothing_per_byte_of_its_forms(
    compiled: list[bytes],
) -> None:
    token = _jwt(4000)
    scrubber = scrubber_for([f"Bearer {token}".encode()])
    assert scrubber is not None
    forms = sum(map(len, scrubber.forms))
    assert forms > 40_000  # (a dozen forms of a 4 KB token)
    assert sum(map(len, compiled)) < forms // 10  # (was about 20 bytes of regex per byte)
    page = json.dumps({"url": "https://x.example/a%2Fb", "q": "\\u00e9 \\/"}).encode() * 50
    assert scrubber.scrub(page) == (page, 0)  # nothing spelled there: nothing compiled
    assert sum(map(len, compiled)) < forms // 10


@pytest.mark.parametrize(
    "spelled",
    [
        lambda t: json.dumps(t, ensure_ascii=True).encode().replace(b"-", b"\\u002d"),
        lambda t: quote(t, safe="").replace("_", "%5F").encode(),
        lambda t: json.dumps({"a": quote(t, safe="/")}).encode(),
    ],
    ids=["json-escaped", "percent-encoded", "percent-encoded-in-json"],
)
def test_a_long_token_echoed_spelled_is_still_scrubbed(spelled: object) -> None:
    token = _jwt(3000)
    scrubber = scrubber_for([f"Bearer {token}".encode()])
    assert scrubber is not None
    assert callable(spelled)
    body = b'{"log": [' + spelled(token) + b"]}"
    out, count = scrubber.scrub(body)
    assert count >= 1
    assert len(out) == len(body)
    assert MARKER in out
    assert token.encode() not in out
    assert token[40:80].encode() not in out  # (no part of it left either)
