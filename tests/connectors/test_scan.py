"""The streaming JSON scanner against a second implementation (the :mod:`json` module).

Whatever the body, the scanner must accept exactly what strict JSON parsing accepts, and
give the same value for every member it keeps, wherever the member sits: a field found
by the small-body path is found in the large-body path too.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall.connectors.bodies import (
    multipart_boundary,
    parse_json,
    parse_json_prefix,
    parse_multipart,
)
from agentfirewall.connectors.scan import SCAN_THRESHOLD, read_json_object, scan_json_object
from agentfirewall.errors import ConnectorError
from tests.fuzzscale import examples

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)
_objects = st.dictionaries(st.text(max_size=8), _values, max_size=8)
_styles = st.sampled_from([
    {"separators": (",", ":")},
    {"separators": (", ", ": ")},
    {"indent": 2},
    {"indent": "\t", "ensure_ascii": False},
    {"ensure_ascii": False},
])  # fmt: skip


def _kept(value: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k in keep or not isinstance(v, list | dict)}


def _outcome(fn: Any, body: bytes) -> tuple[str, object]:
    try:
        return "ok", fn(body)
    except ConnectorError:
        return "error", None


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(_objects, _styles)
def test_every_member_kept_equals_json(data: dict[str, Any], style: dict[str, Any]) -> None:
    body = json.dumps(data, **style).encode()
    assert scan_json_object(body, keep=set(data)) == json.loads(body)


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(_objects, _styles, st.data())
def test_kept_members_and_small_scalars(
    data: dict[str, Any], style: dict[str, Any], draw: st.DataObject
) -> None:
    keep = draw.draw(st.sets(st.sampled_from(sorted(data))) if data else st.just(set()))
    body = json.dumps(data, **style).encode()
    assert scan_json_object(body, keep=keep) == _kept(json.loads(body), keep)


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(_objects, _styles, st.data())
def test_a_prefix_keeps_only_whole_members(
    data: dict[str, Any], style: dict[str, Any], draw: st.DataObject
) -> None:
    body = json.dumps(data, **style).encode()
    cut = draw.draw(st.integers(0, len(body)))
    found = scan_json_object(body[:cut], keep=set(data), complete=False)
    assert isinstance(found, dict)
    full = json.loads(body)
    for name, value in found.items():
        assert full[name] == value


_MUTATIONS = st.sampled_from(list(b'{}[]:,"\\ 0-.eE+tfnulx\x00\x7f\xc3\xa9'))


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(_objects, _styles, st.data())
def test_accepts_exactly_what_strict_json_accepts(
    data: dict[str, Any], style: dict[str, Any], draw: st.DataObject
) -> None:
    body = bytearray(json.dumps(data, **style).encode())
    for _ in range(draw.draw(st.integers(1, 3))):
        at = draw.draw(st.integers(0, len(body)))
        if draw.draw(st.booleans()) and at < len(body):
            body[at] = draw.draw(_MUTATIONS)
        else:
            body.insert(at, draw.draw(_MUTATIONS))
    mutated = bytes(body)
    expected, value = _outcome(lambda b: parse_json(b), mutated)
    got, scanned = _outcome(lambda b: scan_json_object(b, keep=set(data)), mutated)
    assert got == expected, mutated
    if expected == "ok" and isinstance(value, dict):
        assert scanned == _kept(value, set(data))
    elif expected == "ok":
        assert scanned in ([], None)


@pytest.mark.parametrize(
    "body",
    [b'{"a":NaN}', b'{"a":Infinity}', b'{"a":01}', b'{"a":1,}', b'{"a":[1,]}', b'{"a" 1}',
     b'{"a":"\\ud800"}', b'\xef\xbb\xbf{"a":1}', b'{"a":"\x01"}', b'{"a":1}{', b'{"a":tru}',
     b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}"],
)  # fmt: skip
def test_refuses_what_json_refuses(body: bytes) -> None:
    with pytest.raises(ConnectorError, match="invalid JSON body"):
        scan_json_object(body, keep={"a"})
    with pytest.raises(ConnectorError):
        parse_json(body)


def test_a_field_after_megabytes_is_found_without_building_the_rest() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "x" * 900}]}] * 4000
    body = json.dumps({"messages": messages, "model": "gpt-forbidden", "n": 2}).encode()
    assert len(body) > SCAN_THRESHOLD
    found = read_json_object(body, keep={"model"})
    assert found == {"model": "gpt-forbidden", "n": 2}  # `messages` never built


def test_the_connector_names_a_large_body_as_a_small_one() -> None:
    openai = get_connector("openai")

    def parameters(padding: int) -> dict[str, Any]:
        messages = [{"role": "user", "content": "x" * padding}]
        body = json.dumps({"messages": messages, "model": "gpt-4o", "stream": True}).encode()
        headers = (("content-type", "application/json"),)
        path = "/v1/chat/completions"
        request = HttpRequest("POST", "https", "api.openai.com", 443, path, "", headers, body)
        return dict(openai.parse(request).spec.parameters)

    assert parameters(10) == parameters(SCAN_THRESHOLD * 4)
    assert parameters(10)["model"] == "gpt-4o"


_names = st.text(
    st.characters(min_codepoint=0x20, blacklist_characters='"%\\\x7f', codec="utf-8"),
    min_size=1,
    max_size=8,
)


@settings(max_examples=examples(100), suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_names, st.text(max_size=30)), max_size=5),
    st.lists(st.binary(max_size=200), max_size=2),
)
def test_multipart_fields_as_httpx_encodes_them(
    fields: list[tuple[str, str]], blobs: list[bytes]
) -> None:
    """The text fields of a real client's multipart body, wherever they sit among files."""
    files = [(f"upload{i}", (f"f{i}.bin", blob)) for i, blob in enumerate(blobs)]
    parts: list[tuple[str, Any]] = [*files, *((n, (None, v.encode())) for n, v in fields)]
    if not parts:
        return  # no parts: httpx sends no multipart body at all
    request = httpx.Request("POST", "https://slack.com/api/chat.postMessage", files=parts)
    body = request.read()
    boundary = multipart_boundary(request.headers["content-type"])
    expected: dict[str, list[str]] = {}
    for name, value in fields:
        expected.setdefault(name, []).append(value)
    if {name for name, _ in files} & set(expected):
        return
    found = parse_multipart(body, boundary)
    assert found == {n: tuple(v) for n, v in expected.items()}
    for cut in range(0, len(body), max(1, len(body) // 7)):
        partial = parse_multipart(body[:cut], boundary, complete=False)
        assert all(found[n][: len(v)] == v for n, v in partial.items())


@pytest.mark.parametrize(
    "body",
    [b"preamble\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--",
     b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b",
     b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--b--",
     b"--b\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\n1\r\n--b--",
     b"--b\r\nContent-Disposition: form-data; name*=UTF-8''a\r\n\r\n1\r\n--b--",
     b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--b--",
     b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\nmore",
     b"--b\r\nContent-Disposition: form-data; name=\"a\"; filename=\"x\"\r\n\r\n1\r\n--b\r\n"
     b"Content-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--b--"],
    ids=["preamble", "unclosed", "not form-data", "two names", "encoded name", "not utf-8",
         "epilogue", "file and field"],
)  # fmt: skip
def test_multipart_ambiguities_are_refused(body: bytes) -> None:
    with pytest.raises(ConnectorError, match="multipart"):
        parse_multipart(body, b"b")


_HIDDEN = (b'--AAA\r\nContent-Disposition: form-data; name="channel"\r\n\r\nC_TEST\r\n'
           b'--AAA\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\n'
           b'\r\n--BBB\r\nContent-Disposition: form-data; name="channel"\r\n\r\nC_ALL\r\n'
           b'--BBB--\r\n--AAA--\r\n')  # fmt: skip


@pytest.mark.parametrize(
    "content_type",
    [f"multipart/form-data; {params}" for params in (
        "BOUNDARY=AAA; boundary=BBB", "boundary=AAA; boundary=BBB", "xboundary=AAA; boundary=BBB",
        "boundary=AAA;boundary=BBB", 'boundary="AAA"; Boundary=BBB', "charset=boundary=AAA",
        "boundary=AAA BBB ;x")] + ["multipart/form-data boundary=AAA"],
)  # fmt: skip
def test_a_boundary_parsers_could_read_otherwise_is_refused(content_type: str) -> None:
    """The first `boundary=` anywhere in the header was taken: with ``BOUNDARY=AAA;
    boundary=BBB`` Rack, PHP, werkzeug and python-multipart read the body by ``BBB``, and the
    file part hid a whole other message (another channel) from the connector."""
    with pytest.raises(ConnectorError, match="multipart"):
        multipart_boundary(content_type)
    assert multipart_boundary("multipart/form-data; boundary=AAA") == b"AAA"
    assert multipart_boundary('Multipart/Form-Data ; Boundary="A A"; charset=utf-8') == b"A A"


@pytest.mark.parametrize("ending", [b"\n", b"\r"])
def test_a_delimiter_line_without_crlf_is_refused(ending: bytes) -> None:
    """A delimiter ended by a bare LF is a delimiter to PHP's and werkzeug's parsers and
    was content here: a field hidden from the connector."""
    body = (b'--AAA\r\nContent-Disposition: form-data; name="channel"\r\n\r\nC_ALL\r\n'
            b'--AAA\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\n'
            b"x" + ending + b"--AAA" + ending + b'Content-Disposition: form-data; name="text"'
            + ending + ending + b"<!channel>" + ending + b"--AAA--\r\n--AAA--\r\n")  # fmt: skip
    with pytest.raises(ConnectorError, match="boundary inside a part"):
        parse_multipart(body, b"AAA")
    assert parse_multipart(_HIDDEN.replace(b"--BBB", b"--CCC"), b"AAA") == {"channel": ("C_TEST",)}


def test_a_part_in_another_charset_is_refused() -> None:
    body = (b'--b\r\nContent-Disposition: form-data; name="text"\r\n'
            b"Content-Type: text/plain; charset=utf-7\r\n\r\n+ACI-\r\n--b--\r\n")  # fmt: skip
    with pytest.raises(ConnectorError, match="charset"):
        parse_multipart(body, b"b")
    assert parse_multipart(body.replace(b"utf-7", b"UTF-8"), b"b") == {"text": ("+ACI-",)}


_SURROGATES = {
    "a lone high one in a skipped value": rb'{"m": {"x": "\ud800{\udc00"}, "model": "a"}',
    "a lone low one in a skipped value": rb'{"m": ["\udc00"], "model": "a"}',
    "a high one last in a skipped value": rb'{"m": ["a\ud800"]}',
    "a pair in a skipped value": rb'{"m": ["\ud83d\ude00"], "model": "a"}',
    "an escaped backslash before u": rb'{"m": ["\\ud800"], "model": "a"}',
    "a pair in a kept member": rb'{"model": "\ud83d\ude00"}',
}


@pytest.mark.parametrize("body", _SURROGATES.values(), ids=_SURROGATES.keys())
def test_surrogate_escapes_anywhere_are_judged_as_strict_json_judges_them(body: bytes) -> None:
    """Skipped values are never decoded: a lone surrogate in one was accepted (found by
    test_accepts_exactly_what_strict_json_accepts)."""
    expected, _ = _outcome(lambda b: parse_json(b), body)
    assert _outcome(lambda b: scan_json_object(b, keep={"model"}), body)[0] == expected
    for cut in range(len(body)):  # and no prefix of a valid body is refused for it
        if expected == "ok":
            scan_json_object(body[:cut], keep={"model"}, complete=False)


# -- numbers a skipped value may hold, and the runs that skip it ----------------------------
# Runs of scalars and small flat containers are matched by regular expressions, never
# decoded: a number there that json refuses (beyond a float, more digits than an int may
# have) was accepted. Numbers are drawn from both sides of each limit, and placed in every
# kind of position a value is skipped from.

_NUMBERS = st.sampled_from([
    "0", "-0", "1e2", "1E+99", "1e-999", "0e0001", "1.7976931348623157e308", "1e308",
    "1e309", "1.8e308", "-1e999", "1E+400", "9" * 199, "9" * 250 + "e99", "1" * 4300,
    "1" * 4301, "0." + "0" * 400 + "1", "-" + "9" * 309 + ".5",
])  # fmt: skip


def _shapes(number: str, padding: int) -> list[str]:
    """`number` as an element, a member, in a flat container, among container elements."""
    big = '"' + "x" * padding + '"'
    return [
        f"[{number}]",
        f'{{"x":{number}}}',
        f"[1,{number},2]",
        f'[{{}},{{"a":{number}}},[]]',
        f"[[{number}],[1]]",
        f'[{{"c":{big}}},{{"n":{number}}}]',
        f'[{{"c":{big}}},[[{number}]]]',
        f'{{"a":{{"b":[{number}]}}}}',
        f"{number}",
    ]


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(_NUMBERS, st.integers(0, 100), st.integers(0, 8), st.booleans())
def test_numbers_in_skipped_values_are_judged_as_json_judges_them(
    number: str, padding: int, shape: int, top_level: bool
) -> None:
    value = _shapes(number, padding)[shape]
    body = (value if top_level else f'{{"skipped":{value},"model":"m"}}').encode()
    expected, _ = _outcome(lambda b: parse_json(b), body)
    got, found = _outcome(lambda b: scan_json_object(b, keep={"model"}), body)
    assert got == expected, body[:200]
    if expected == "ok" and not top_level:
        full = json.loads(body)
        assert isinstance(found, dict)
        assert found["model"] == "m"
        assert all(full[name] == v for name, v in found.items())


@pytest.mark.parametrize("number", ["1e999", "1" * 4301, "-1E+400", "-" + "9" * 5000])
def test_a_top_level_number_json_refuses_is_refused_kept_or_not(number: str) -> None:
    """A top-level scalar over 4 KiB is not kept, but a number is still checked; and the
    answer says what is wrong."""
    body = f'{{"n":{number},"model":"m"}}'.encode()
    with pytest.raises(ConnectorError, match="number out of range"):
        scan_json_object(body, keep={"model"})
    with pytest.raises(ConnectorError):
        parse_json(body)


_ELEMENTS = st.sampled_from([
    "{}", "[]", '{"a":1}', '{"role":"user","content":"hi"}', "[1,2.5,null]", '[["x"]]',
    '{"a":{"b":[]}}', '{"c":"' + "y" * 70 + '"}', '"s"', "3", "true", '{"e":"\\u00e9\\n"}',
])  # fmt: skip


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ELEMENTS, max_size=30), _styles, st.data())
def test_runs_of_containers_are_skipped_as_json_reads_them(
    elements: list[str], style: dict[str, Any], draw: st.DataObject
) -> None:
    """Arrays and objects of many elements (flat runs, container runs, mixed), then
    mutated: the scanner accepts exactly what strict parsing accepts, whole or cut."""
    array = "[" + ",".join(elements) + "]"
    members = ",".join(f'"k{i}":{e}' for i, e in enumerate(elements))
    data = {"a": json.loads(array), "o": json.loads("{" + members + "}"), "model": "m"}
    body = bytearray(json.dumps(data, **style).encode())
    if draw.draw(st.booleans()):
        at = draw.draw(st.integers(0, len(body) - 1))
        body[at] = draw.draw(_MUTATIONS)
    mutated = bytes(body)
    expected, value = _outcome(lambda b: parse_json(b), mutated)
    got, scanned = _outcome(lambda b: scan_json_object(b, keep={"model"}), mutated)
    assert got == expected, mutated
    if expected == "ok" and isinstance(value, dict):
        assert scanned == _kept(value, {"model"})
        cut = draw.draw(st.integers(0, len(mutated)))
        partial = scan_json_object(mutated[:cut], keep={"model"}, complete=False)
        assert isinstance(partial, dict)
        assert all(value[k] == v for k, v in partial.items())


def test_a_prefix_cut_inside_a_surrogate_pair_near_the_start_is_not_refused() -> None:
    """A prefix shorter than an escape pair looked for its last backslash from a negative
    index (the end): the pair's cut half was read as a lone surrogate."""
    body = json.dumps({"\U00010000": None}).encode()
    for cut in range(len(body)):
        assert isinstance(scan_json_object(body[:cut], keep=set(), complete=False), dict)


@pytest.mark.parametrize(
    "body",
    [b'{"m":[' + b",".join([b"{}"] * 200_000) + b'],"model":"x"}',
     b'{"m":[' + b",".join([b'{"a":[1]}'] * 100_000) + b'],"model":"x"}',
     b'{"m":{' + b",".join(b'"k%d":[]' % i for i in range(100_000)) + b'},"model":"x"}',
     b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(100_000)) + b',"model":"x"}'],
    ids=["empty objects", "nested arrays", "members of empty arrays", "top-level members"],
)  # fmt: skip
def test_many_small_values_are_skipped_or_kept_whole(body: bytes) -> None:
    """Hundreds of thousands of tiny containers or top-level members (the scanner's worst
    case was a Python step each): the same answer as json."""
    full = json.loads(body)
    assert scan_json_object(body, keep={"model"}) == _kept(full, {"model"})


def _text_of(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    "value",
    ["a" * 680, "a" * 682, "a" * 683, "a" * 4094, "a" * 4095, "é" * 682, "é" * 683,
     float("0." + "1" * 20), int("9" * 200), int("9" * 201), "\\" * 2047, "\\" * 2048],
    ids=lambda v: f"{type(v).__name__}-{len(_text_of(v))}",
)  # fmt: skip
def test_top_level_scalars_are_kept_up_to_4_kib_of_text(value: object) -> None:
    """Small top-level scalars are kept in runs decoded together: the same ones (their JSON
    text at most 4,096 characters) and the same values as one at a time, around each limit
    of the run's patterns."""
    text = _text_of(value)
    body = f'{{"a":1,"s":{text},"b":[2],"c":true,"model":"m"}}'.encode()
    found = scan_json_object(body, keep={"model"})
    assert isinstance(found, dict)
    assert ("s" in found) == (len(text) <= 4096)
    if "s" in found:
        assert found["s"] == value
    assert list(found) == [k for k in ("a", "s", "c", "model") if k in found]


def test_a_name_given_twice_keeps_its_first_place_and_last_value() -> None:
    body = b'{"a":1,"b":[1],"a":2,"c":"x","a":3}' + b" " * SCAN_THRESHOLD
    found = scan_json_object(body, keep={"b"})
    assert isinstance(found, dict)
    assert list(found.items()) == list(json.loads(body).items())


@pytest.mark.parametrize(
    "body",
    [b'{"a": 1.5e', b'{"a": 1.5E+', b'{"a": 12.', b'{"a": -', b'{"a": 1.5e+1', b'{"a": 12',
     b'{"a": tr', b'{"a": "x', b'{"a": 1.5e,', b'{"a": 1, "b": 2.', b'{"b": [1], "a": 7e'],
)  # fmt: skip
def test_a_prefix_cut_inside_a_number_keeps_nothing_of_it(body: bytes) -> None:
    """A prefix ending in `1.5e` kept 1.5 (the number matched before the cut, then the cut
    was noticed): the scanner reads a prefix as the small-body path does."""
    expected = _outcome(lambda b: parse_json_prefix(b), body)
    assert _outcome(lambda b: scan_json_object(b, keep={"a", "b"}, complete=False), body) == (
        expected
    )
