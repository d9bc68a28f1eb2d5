"""Method overrides in bodies: every spelling a middleware reads as ``_method`` is refused.

Rack, Laravel (Symfony, on PHP's parsers), Spring and Express's ``method-override`` turn a
POST carrying a ``_method`` field into another method, Hono's ``methodOverride`` any
method's but a GET's (a form or multipart body). ``base.request_method`` refuses such
a field, read as each of them reads a body (``base.override_readable`` is the one predicate
for which bodies they read, shared by the connectors and the gateway): a type naming
``/json`` anywhere, a multipart field named in RFC 2231 / RFC 7578 forms (``name*=``,
continuations, escapes, any case, folded or broken header lines), a name PHP reads as
``_method`` (``.method``), a form in any bytes, and two ``Content-Type`` headers that
differ. The gateway side (raw sockets): ``tests/proxy/test_method_override_bodies.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import ConnectorError, HttpRequest, base, get_connector
from agentfirewall_proxy import exchange, pipeline
from tests.fuzzscale import examples

GENERIC = get_connector("generic")
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=b"


def _post(ctype: str | tuple[str, ...], body: bytes) -> HttpRequest:
    types = (ctype,) if isinstance(ctype, str) else ctype
    headers = tuple(("Content-Type", t) for t in types if t)
    return HttpRequest.from_url("POST", "https://app.example.org/x", headers=headers, body=body)


def _refused(request: HttpRequest, match: str = "_method") -> None:
    with pytest.raises(ConnectorError, match=match):
        GENERIC.parse(request)


def _part(disposition: bytes) -> bytes:
    """A multipart body whose second part's ``Content-Disposition`` is `disposition`."""
    return (b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
            b"--b\r\nContent-Disposition: form-data; " + disposition + b"\r\n\r\nDELETE\r\n"
            b"--b--\r\n")  # fmt: skip


def test_one_predicate_says_which_bodies_a_middleware_reads() -> None:
    """The connectors, the gateway's body reading and its decision share one function."""
    assert exchange.override_readable is base.override_readable
    assert pipeline.override_readable is base.override_readable


@pytest.mark.parametrize(
    ("ctype", "post", "other"),
    [
        ("", True, False),  # Rack reads an untyped POST as a form
        (FORM, True, True),  # Hono reads `_method` in any method's form but a GET's
        (f"{FORM}; charset=UTF-8", True, True),
        ("Application/X-WWW-Form-Urlencoded", True, True),
        (f"{FORM}x", True, True),  # Hono: a type that begins so
        (f"{FORM} x", True, True),  # PHP cuts the type at a space
        ("multipart/form-data; boundary=b", True, True),
        ("multipart/related; boundary=b", True, True),
        ("application/json", True, False),
        ("text/json", True, False),  # Laravel: `/json` or `+json` anywhere
        ("application/vnd.api+json", True, False),
        ("text/plain; profile=/json", True, False),
        ("text/plain, application/x-www-form-urlencoded", True, True),  # a list: read as each
        ("text/plain", False, False),
        ("application/octet-stream", False, False),
        ("application/x-ndjson", False, False),
    ],
)
def test_which_bodies_a_middleware_reads(ctype: str, post: bool, other: bool) -> None:
    assert base.override_readable("POST", ctype or None) is post
    assert base.override_readable("post", ctype or None) is post
    for method in ("PUT", "PATCH", "DELETE"):
        assert base.override_readable(method, ctype or None) is other
    assert base.override_readable("GET", ctype or None) is False


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("text/json", b'{"_method": "DELETE"}'),
        ("text/plain; profile=/json", b'{"_method": "DELETE"}'),
        (FORM, b".method=DELETE"),  # PHP registers `.method` as `_method`
        (FORM, b"[method=DELETE"),
        (FORM, b"+.method=DELETE"),  # a leading space dropped, then the dot
        (FORM, b"_method[]=DELETE"),
        (FORM, b"a=1;_method=DELETE"),  # older Rack splits on `;` too
        ("", b"\xff&_method=DELETE"),  # Rack reads a form in any bytes
        (FORM, b"x=\xe9&_method=DELETE"),
        ("text/plain, application/x-www-form-urlencoded", b"_method=DELETE"),
        (MULTIPART, _part(b"name*=UTF-8''_method")),
        (MULTIPART, _part(b"name*=utf-8'en'%5Fmethod")),
        (MULTIPART, _part(b"name*=UTF-16BE''%00_%00m%00e%00t%00h%00o%00d")),
        (MULTIPART, _part(b'name="%5Fmethod"')),
        (MULTIPART, _part(b"name=_method")),
        (MULTIPART, _part(b'NAME="_method"')),
        (MULTIPART, _part(b'name = "_method"')),
        (MULTIPART, _part(b'\r\n\tname="_method"')),  # folded
        (MULTIPART, _part(b'name="_me\r\nthod"')),  # PHP joins a line without a colon
        (MULTIPART, _part(b'na\r\nme="_method"')),
        (MULTIPART, _part(b'name*0="_me"; name*1="thod"')),
        (MULTIPART, _part(b"name*1=\"thod\"; name*0*=UTF-8''%5Fme")),
        (MULTIPART, _part(b'name*0="x"; name*0="_me"; name*1="thod"')),  # a number twice
        (MULTIPART, _part(b'name="_\\method"')),  # Rack and busboy undo the escape
        (MULTIPART, _part(b"name='_method'")),  # PHP reads single quotes
        (MULTIPART, _part(b'name=".method"')),
        (MULTIPART, _part(b'foo="a; name=_method"')),  # older Rack's regex reads it
        (MULTIPART, b'--b\nContent-Disposition: form-data; name="_method"\n\nDELETE\n--b--'),
        ("multipart/form-data; boundary=z; BOUNDARY=b", _part(b'name="_method"')),
        ("multipart/form-data; xboundary=b; boundary=z", _part(b'name="_method"')),  # PHP's
    ],
)
def test_every_spelling_a_middleware_reads_is_refused(ctype: str, body: bytes) -> None:
    _refused(_post(ctype, body))


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        (FORM, b"http_method=DELETE&method=DELETE&x=100%25"),
        (FORM, b"a.method=DELETE&method_=1&x_method=2"),
        ("text/plain", b"_method=DELETE"),
        ("application/json", b'{".method": 1, "x": "100%"}'),  # JSON names are not PHP's
        (MULTIPART, _part(b'name="method"')),
        (MULTIPART, _part(b'name="http_method"')),
        (MULTIPART, _part(b'filename="_method"; name="file"')),
        (MULTIPART, _part(b'name="_me thod"')),
        (MULTIPART, _part(b'name="a"') + b"--b\r\n_method=DELETE\r\n"),
    ],
)
def test_other_names_pass(ctype: str, body: bytes) -> None:
    assert GENERIC.parse(_post(ctype, body)).action_type == "http.post"


def test_two_content_types_that_differ_are_refused() -> None:
    """Checked as the first and read as the second (or both joined): refused, body or not,
    on every connector (an identical repeat is one type)."""
    for kind in ("generic", "github", "stripe", "openai"):
        connector = get_connector(kind)
        host = (connector.default_domains or ("api.example.com",))[0]
        for body in (b"", b"_method=DELETE"):
            headers = (("Content-Type", "text/plain"), ("content-type", FORM))
            request = HttpRequest.from_url("POST", f"https://{host}/v1/x", headers=headers,
                                           body=body)  # fmt: skip
            with pytest.raises(ConnectorError, match="`text/plain`, `application/x-www-"):
                connector.parse(request)
    assert GENERIC.parse(_post(("text/plain", "text/plain"), b"_method=1")).action_type


_LETTERS = "_method"


@st.composite
def _multipart_spelling(draw: st.DrawFn) -> bytes:
    """A ``Content-Disposition`` parameter list naming ``_method`` as some parser reads it:
    ``name`` in any case or RFC 2231 form, the value quoted or not, escaped (percent,
    backslash in quotes), in a charset, split in continuations, the line folded."""
    key = "".join(draw(st.sampled_from([c, c.upper()])) for c in "name").encode()
    value = "".join(draw(st.sampled_from([c, c.upper()])) for c in _LETTERS).encode()
    form = draw(st.sampled_from(["plain", "extended", "continued"]))
    if form == "extended":
        charset = draw(st.sampled_from([b"UTF-8", b"utf-8", b"iso-8859-1", b"us-ascii", b""]))
        escaped = bytes(draw(st.lists(st.booleans(), min_size=7, max_size=7)))
        text = b"".join(b"%%%02X" % c if e else bytes([c])
                        for c, e in zip(value, escaped, strict=True))  # fmt: skip
        language = draw(st.sampled_from([b"", b"en"]))
        params = [key + b"*=" + charset + b"'" + language + b"'" + text]
    elif form == "continued":
        cut = draw(st.integers(1, len(value) - 1))
        pieces = [key + b"*0=" + _quoted(draw, value[:cut]),
                  key + b"*1=" + _quoted(draw, value[cut:])]  # fmt: skip
        params = draw(st.permutations(pieces))
    else:
        params = [key + draw(st.sampled_from([b"=", b" =", b"= "])) + _quoted(draw, value)]
    fold = draw(st.sampled_from([b" ", b"\r\n ", b"\r\n\t"]))
    return b";" + fold + b"; ".join(params)


def _quoted(draw: st.DrawFn, value: bytes) -> bytes:
    """`value` as a token, or quoted (double or single quotes) with letters escaped."""
    quote = draw(st.sampled_from([b"", b'"', b"'"]))
    if not quote:
        return value
    escapes = draw(st.lists(st.booleans(), min_size=len(value), max_size=len(value)))
    inner = b"".join(b"\\" + bytes([c]) if e and quote == b'"' else bytes([c])
                     for c, e in zip(value, escapes, strict=True))  # fmt: skip
    return quote + inner + quote


@settings(max_examples=examples(200))
@given(_multipart_spelling(), st.sampled_from([b"\r\n", b"\n"]))
def test_a_multipart_field_named_in_any_rfc_form_is_refused(params: bytes, eol: bytes) -> None:
    body = (b"--b" + eol + b"Content-Disposition: form-data" + params + eol + eol + b"DELETE"
            + eol + b"--b--" + eol)  # fmt: skip
    _refused(_post(MULTIPART, body))


@settings(max_examples=examples(300))
@given(
    st.sampled_from(["", " ", "  "]),
    st.sampled_from(["_", "%5F", "%5f", ".", "%2E", "[", "+."]),
    st.lists(st.sampled_from(["lower", "upper", "escaped"]), min_size=6, max_size=6),
    st.sampled_from(["", "[]", "[x]"]),
    st.sampled_from(["&", ";"]),
    st.sampled_from([FORM, "", f"{FORM}; charset=utf-8"]),
)
def test_a_form_field_read_as_method_is_refused(
    lead: str, underscore: str, cases: list[str], array: str, sep: str, ctype: str
) -> None:
    """A leading space, ``_`` written, escaped or as PHP makes it (``.``, ``[``), any case,
    an array's name, after ``&`` or ``;``."""
    if "[" in underscore:
        array = ""  # (`[method[]` is an array without a name)
    letters = "".join({"lower": c, "upper": c.upper(), "escaped": f"%{ord(c):02X}"}[form]
                      for c, form in zip("method", cases, strict=True))  # fmt: skip
    body = f"a=1{sep}{lead}{underscore}{letters}{array}=DELETE".encode()
    assert base._may_name_a_method(body)  # the quick check lets it through to the full one
    _refused(_post(ctype, body))
