"""No form of an injected secret that an upstream plausibly echoes reaches the agent.

The class (security review): a random secret, sent as a header value, its token or its
``Basic`` password; echoed in every form an encoder writes (as is; hex in either case;
base64 standard or URL-safe, padded or not, at any offset of a longer stream; any of its
bytes percent-encoded or JSON-escaped; any of its ``&"'<>`` written as an HTML character
reference), the whole possibly written again by a JSON encoder (``\\\\``, ``\\"``, and
PHP's ``\\/``); streamed in any chunks. The reader of that form (a hex, base64, URL, JSON or
HTML decoder) recovers no secret from what the agent gets. A
response head likewise: a header *name* holding a secret is dropped in any case of its
letters (a hop may lower or capitalise a name), and counted like a value.
"""

from __future__ import annotations

import base64
import html
import json
import re
import string
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote, unquote_to_bytes
from xml.sax.saxutils import escape as xml_escape

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.scrubbing import Scrubber, scrubber_for
from tests.fuzzscale import examples

#: Token characters, what encoders escape (`/ + = ? %`, a space, a backslash, a quote, HTML's
#: `& ' < >`, and `#;` of a character reference) and `?`: the one printable byte whose base64
#: can hold a `/` (what PHP writes `\/`).
_ALPHABET = (string.ascii_letters + string.digits + "-_.~+/=:?<% \\\"&'>#;").encode()
SECRETS = st.binary(min_size=8, max_size=40).map(
    lambda raw: bytes(_ALPHABET[b % len(_ALPHABET)] for b in raw).strip()
).filter(lambda s: len(s) >= 8)  # fmt: skip
KINDS = ["as-is", "hex", "HEX", "base64", "base64-bare", "url64", "url64-bare"]
KINDS += ["percent", "json", "html"]  # (any of its bytes escaped: `ways` picks how)
#: How HTML and XML escapers write a byte (way 0: `html.escape`, 1: decimal as Go's
#: `html.EscapeString` or PHP's `&#039;`, 2: hex, 3: as is, as `html.escape(quote=False)`).
_REFERENCES = {
    ord("&"): [b"&amp;", b"&#38;", b"&#x26;", b"&"],
    ord('"'): [b"&quot;", b"&#34;", b"&#X22;", b'"'],
    ord("'"): [b"&#x27;", b"&#039;", b"&apos;", b"'"],
    ord("<"): [b"&lt;", b"&#60;", b"&#x3C;", b"<"],
    ord(">"): [b"&gt;", b"&#062;", b"&#x3e;", b">"],
}
_T = TypeVar("_T")
_JSON_ESCAPE = re.compile(rb'\\u00([0-7][0-9a-fA-F])|\\([/\\"])')


def scrubber(value: bytes) -> Scrubber:
    found = scrubber_for([value])
    assert found is not None
    return found


def json_read(data: bytes) -> bytes:
    """What a JSON reader makes of the escapes a form may be written with."""
    return _JSON_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]) if m[1] else m[2], data)


def html_read(data: bytes) -> bytes:
    """What an HTML reader makes of `data` (an ASCII secret: in it, or not in the text)."""
    return html.unescape(data.decode("latin-1")).encode()


def base64_read(data: bytes, url_safe: bool) -> list[bytes]:
    """`data`'s base64 characters decoded from each of the first four (the others skipped)."""
    letters = re.sub(rb"[^A-Za-z0-9\-_]" if url_safe else rb"[^A-Za-z0-9+/]", b"", data)
    parts = [letters[shift:][: (len(letters) - shift) // 4 * 4] for shift in range(4)]
    return [base64.b64decode(p, altchars=b"-_" if url_safe else None) for p in parts]


def recovered(kind: str, data: bytes, secret: bytes) -> bool:
    """Whether the reader of a `kind` form finds `secret` in `data`."""
    if kind in ("hex", "HEX"):
        return secret.hex() in data.lower().decode("latin-1")
    if kind.startswith(("base64", "url64")):
        return any(secret in d for d in base64_read(data, kind.startswith("url")))
    if kind == "percent":
        return secret in unquote_to_bytes(data)
    if kind == "html":
        return secret in html_read(data)
    return secret in (json_read(data) if kind == "json" else data)


def written(kind: str, secret: bytes, stream: bytes, ways: list[int]) -> bytes:
    """`secret` written as a `kind` form: `stream` (bytes around it) is what an encoding of a
    longer stream encodes with it; `ways[i]` picks how byte i is escaped (percent, json)."""
    if kind.startswith(("hex", "HEX", "base64", "url64")):
        whole = stream[:3] + secret + stream[3:]
        encode = {"hex": bytes.hex, "HEX": lambda b: b.hex().upper()}.get(kind)
        if encode is not None:
            return encode(whole).encode()
        data = (base64.urlsafe_b64encode if kind.startswith("url") else base64.b64encode)(whole)
        return data.rstrip(b"=") if kind.endswith("bare") else data
    out = b""
    for index, byte in enumerate(secret):
        way = ways[index % len(ways)]
        if kind == "percent" and (way or byte in b'\\"'):  # (every URL encoder escapes those)
            out += (b"%%%02x" if way == 1 else b"%%%02X") % byte
        elif kind == "json" and (way or byte in b'\\"'):
            two = b"\\" + bytes([byte]) if byte in b'/\\"' else None
            out += two if two is not None and way != 1 else b"\\u%04x" % byte
        elif kind == "html" and byte in _REFERENCES:
            out += _REFERENCES[byte][way]
        else:
            out += bytes([byte])
    return out


def json_written(form: bytes, slash: bool) -> bytes:
    """`form` in a JSON string: backslash and quote escaped, `/` too when `slash` (PHP)."""
    out = form.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return out.replace(b"/", b"\\/") if slash else out


def streamed(scrub: Scrubber, body: bytes, cuts: list[int]) -> tuple[bytes, int]:
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    stream = scrub.stream()
    out = b"".join(stream.feed(p) for p in pieces) + stream.finish()
    return out, stream.count


def injected(secret: bytes, scheme: bytes) -> tuple[bytes, list[bytes]]:
    """The header value a connector injects, and what of it is a secret an echo may carry."""
    if scheme == b"Basic ":
        token = base64.b64encode(b"user:" + secret)
        return scheme + token, [scheme + token, token, secret]
    return scheme + secret, [scheme + secret, secret]


def regression(secret: bytes, kind: str, **drawn: object) -> Callable[[_T], _T]:
    """An example of the property below: what a review found, the rest drawn plain."""
    plain = {"scheme": b"", "which": 0, "stream": b"", "ways": [0], "json_string": None}
    plain |= {"before": b"", "after": b"", "cuts": []}
    return example(secret=secret, kind=kind, **{**plain, **drawn})


@settings(max_examples=examples(200), deadline=None)
@given(
    secret=SECRETS,
    scheme=st.sampled_from([b"", b"Bearer ", b"token ", b"Basic "]),
    which=st.integers(0, 2),
    kind=st.sampled_from(KINDS),
    stream=st.binary(max_size=8),
    ways=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    json_string=st.sampled_from([None, False, True]),
    before=st.binary(max_size=16),
    after=st.binary(max_size=16),
    cuts=st.lists(st.integers(0, 300), max_size=6),
)
# a value whose word after its space is too short to be searched alone, in base64 at offset 1
@regression(b"aaaaaaaa a", "base64", stream=b"\0")
# base64 holding a `/`, which PHP's json_encode writes `\/`
@regression(b"ab?cdefghijklm", "base64", scheme=b"Bearer ", which=1, json_string=True)
# a secret holding a backslash: a JSON encoder writes `\\`, Go `<` as `\u003c`, cut after `\\`
@regression(b"ab<cd\\efghijk", "json", ways=[0, 0, 1, 0, 0, 0], cuts=[14])
# ... and a byte of it percent-encoded
@regression(b"abcdef\\ghij", "percent", ways=[0, 0, 0, 0, 0, 0, 0, 1])
# a URL-encoded form left a `/` as is, which PHP's json_encode writes `\/`
@regression(b"aaaaaaaaaaaaaaaaaa?", "percent", scheme=b"Basic ", ways=[1, 0], json_string=True)
# a backslash as is before a letter (`\b`: escapes no byte of a form), cut after the next one
@regression(b"a\\b\\cdefgh", "as-is", cuts=[13])
# a Basic password an HTML error page echoes escaped (`html.escape`: `&amp;`, `&quot;`, `&lt;`)
@regression(b'pa&ss"wo<rd>2024', "html", scheme=b"Basic ", which=2, cuts=[3, 8])
# ... in a JSON string (PHP), its `/` written `\/`, its `"` `&#34;`, cut inside that
@regression(b'p/w"d&x\\yz', "html", which=1, ways=[1], json_string=True, cuts=[14])
# ... its `"` left as is, then written `\"`, cut after the backslash
@regression(b'a&b"cdefgh', "html", ways=[0, 0, 0, 3], json_string=False, cuts=[17])
# a secret beginning with `<`, cut inside its reference (`&l`)
@regression(b"<abcdefgh", "html", cuts=[11])
def test_no_form_of_a_secret_reaches_the_agent_however_chunked(
    secret: bytes, scheme: bytes, which: int, kind: str, stream: bytes, ways: list[int],
    json_string: bool | None, before: bytes, after: bytes, cuts: list[int],
) -> None:  # fmt: skip
    value, secrets = injected(secret, scheme)
    echoed = secrets[which % len(secrets)]
    form = written(kind, echoed, stream, ways)
    if json_string is not None and kind != "json":  # the form written again in a JSON string
        form = json_written(form, slash=json_string)
    body = before + b'{"echo":"' + form + b'"}' + after
    out, count = streamed(scrubber(value), body, cuts)
    assert len(out) == len(body)
    assert count >= 1
    read = json_read(out) if json_string is not None and kind != "json" else out
    assert not recovered(kind, read, echoed)


# A token whose base64 holds a `/` (from its `?`) and a password with a backslash and a quote.
_TOKEN = b"sk-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789?>?>?>"
_PASSWORD = b'pa\\ss"word<1234'


@pytest.mark.parametrize("lead", [b"", b"x", b"xy"])
def test_base64_with_slashes_written_by_php_json_encode_is_scrubbed(lead: bytes) -> None:
    """PHP's json_encode writes every `/` as `\\/`: a JSON reader hands the agent the
    base64, a base64 decoder the token. Split at every point."""
    encoded = base64.b64encode(lead + _TOKEN)
    assert b"/" in encoded
    body = b'{"echo":"' + encoded.replace(b"/", b"\\/") + b'"}'
    scrub = scrubber(b"Bearer " + _TOKEN)
    for cut in range(len(body) + 1):
        out, count = streamed(scrub, body, [cut])
        assert count == 1
        assert not recovered("base64", json_read(out), _TOKEN)


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: json.dumps({"pw": s.decode()}).encode(),  # `\\` and `\"`
        lambda s: json.dumps({"pw": s.decode()}).replace("<", "\\u003c").encode(),  # Go
        lambda s: quote(s.decode(), safe="").encode(),
        lambda s: s.replace(b"w", b"%77"),  # one byte percent-encoded, the backslash as is
    ],
    ids=["json", "go-json", "percent", "percent-one-byte"],
)
def test_a_password_with_a_backslash_or_a_quote_is_scrubbed_in_any_encoding(
    encode: Callable[[bytes], bytes],
) -> None:
    """A JSON encoder escapes a backslash and a quote: those forms were never searched for,
    nor any percent-encoding of a secret holding a backslash. Split at every point."""
    body = b"echo=" + encode(_PASSWORD) + b"&end=1"
    scrub = scrubber(b"Basic " + base64.b64encode(b"user:" + _PASSWORD))
    for cut in range(len(body) + 1):
        out, count = streamed(scrub, body, [cut])
        assert count >= 1
        assert _PASSWORD not in json_read(unquote_to_bytes(out))
        assert _PASSWORD not in unquote_to_bytes(out)


def test_a_url_encoded_token_in_php_json_is_scrubbed() -> None:
    """``quote()`` leaves a ``/`` as is, PHP's json_encode then writes it ``\\/``: a JSON
    reader and a URL decoder hand the agent the token. Split at every point."""
    token = "ghp_realGithubToken0000000000000000000/+x"
    url = b"https://api.example/cb?t=" + quote(token).encode()
    body = b'{"next":"' + url.replace(b"/", b"\\/") + b'"}'
    assert b"0000\\/%2Bx" in body
    scrub = scrubber(b"token " + token.encode())
    for cut in range(len(body) + 1):
        out, count = streamed(scrub, body, [cut])
        assert count == 1
        assert token.encode() not in unquote_to_bytes(json_read(out))


_HTML_PASSWORD = "p&ss\"w'o<r>d/1\\2"
#: How an upstream writes a password in a page: each escaper's own references, a page in a
#: JSON string and JSON in a page (`\&quot;`).
HTML_ESCAPERS = {
    "html.escape": html.escape,
    "html.escape-quote-false": lambda s: html.escape(s, quote=False),
    "go-html-escapestring": lambda s: (
        html.escape(s).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")
    ),
    "php-htmlspecialchars": lambda s: html.escape(s).replace("&#x27;", "&#039;"),
    "xml-apos": lambda s: xml_escape(s, {'"': "&quot;", "'": "&apos;"}),
    "decimal": lambda s: "".join(f"&#{ord(c)};" if c in "&\"'<>" else c for c in s),
    "hex-upper": lambda s: "".join(f"&#X{ord(c):X};" if c in "&\"'<>" else c for c in s),
    "json-in-page": lambda s: html.escape(json.dumps(s)),
    "page-in-json": lambda s: json.dumps(html.escape(s)),
    "page-in-php-json": lambda s: json.dumps(html.escape(s)).replace("/", "\\/"),
}


@pytest.mark.parametrize("escape", HTML_ESCAPERS.values(), ids=HTML_ESCAPERS.keys())
def test_a_password_an_error_page_echoes_html_escaped_is_scrubbed(
    escape: Callable[[str], str],
) -> None:
    """An upstream's error page echoes the injected password with its ``&"'<>`` written as
    character references: a browser, an HTML parser or the agent reads the password. Split
    at every point."""
    body = b"<html><body><p>Unauthorized: " + escape(_HTML_PASSWORD).encode() + b"</p></html>"
    password = _HTML_PASSWORD.encode()
    scrub = scrubber(b"Basic " + base64.b64encode(b"deploy:" + password))
    for cut in range(len(body) + 1):
        out, count = streamed(scrub, body, [cut])
        assert (len(out), count) == (len(body), 1)
        for read in (out, html_read(out), json_read(html_read(out)), html_read(json_read(out))):
            assert password not in read


def test_an_event_stream_is_not_held_back_by_the_html_search() -> None:
    """An event ends in a newline, which no spelling of a secret ends in: sent at once, even
    when it holds references and the secret a ``&``."""
    stream = scrubber(b"Basic " + base64.b64encode(b"deploy:" + _HTML_PASSWORD.encode())).stream()
    event = b'data: {"text": "p&amp;ss &quot;w&#x27;o p&ss\\"}\n\n'
    assert stream.feed(event) == event


def _go_canonical(name: bytes) -> bytes:
    """Go's CanonicalMIMEHeaderKey: each word capitalised, the rest lowered."""
    return b"-".join(w[:1].upper() + w[1:].lower() for w in name.split(b"-"))


_SECRET = b"AKIAIOSFODNN7EXAMPLEkey0/+="
#: How a hop or an upstream may write a header name holding the secret.
NAMES = {
    "as-is": b"X-" + _SECRET,
    "the-token": _SECRET,
    "http2-lowered": (b"X-" + _SECRET).lower(),
    "uppercased": (b"X-" + _SECRET).upper(),
    "go-canonical": _go_canonical(b"x-debug-" + _SECRET),
    "hex-uppercased": b"X-" + _SECRET.hex().upper().encode(),
    "base64-lowered": b"x-" + base64.b64encode(_SECRET).lower(),
    "percent-lowered": b"x-" + quote(_SECRET.decode(), safe="").lower().encode(),
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_a_header_name_holding_the_secret_in_any_case_never_reaches_the_agent(
    name: bytes,
) -> None:
    headers = [(b"Content-Type", b"text/plain"), (name, b"1"), (b"X-Other", b"ok")]
    reason, out, count = scrubber(b"Bearer " + _SECRET).response_head(b"OK", headers)
    assert (reason, out) == (b"OK", [(b"Content-Type", b"text/plain"), (b"X-Other", b"ok")])
    assert count == 1  # a finding, as a header value holding it is


@settings(max_examples=examples(150), deadline=None)
@given(
    secret=SECRETS.filter(lambda s: not re.search(rb'[ "\\]', s)),  # (a name holds none)
    kind=st.sampled_from(["as-is", "hex", "HEX", "base64", "url64-bare", "percent"]),
    where=st.sampled_from(["reason", "name", "value"]),
    case=st.sampled_from([bytes.lower, bytes.upper, _go_canonical, lambda b: b]),
    ways=st.lists(st.integers(0, 2), min_size=1, max_size=40),
)
def test_no_part_of_a_response_head_carries_a_secret(
    secret: bytes, kind: str, where: str, case: Callable[[bytes], bytes], ways: list[int]
) -> None:
    """Status reason, header names (in any case), header values: the head the agent gets
    holds no form of the secret, and each one found is counted."""
    form = written(kind, secret, b"", ways)
    name = case(b"X-" + form) if where == "name" else b"X-Echo"
    value = b"v=" + form if where == "value" else b"1"
    reason = b"Not " + form if where == "reason" else b"OK"
    headers = [(b"Date", b"today"), (name, value)]
    reason, out, count = scrubber(b"Bearer " + secret).response_head(reason, headers)
    assert count >= 1
    assert not recovered(kind, b"\n".join([reason, *(b"%b: %b" % pair for pair in out)]), secret)
    if where == "name":  # dropped, whatever the case of its letters
        assert out == [(b"Date", b"today")]
