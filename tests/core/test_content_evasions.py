"""The guard reads a body as its upstream's parser does, says where without saying what,
and redacts without leaving part of a secret or changing anything else.

Attacks from the security review, by name: a secret as a **name** (JSON key, form field,
query parameter, header, SDK parameter key) — never scanned, then echoed in the
location; **parser differentials** — a JSON key given twice (``json.loads`` keeps the last,
the guard read the first), UTF-16/UTF-32 JSON without a charset (``json.loads(bytes)``
detects it), ``\\u`` escapes in a body read as text; **partial redaction** — a private key
as a JSON array of its lines or with no END line, a ``password=`` longer than 256; and
**rewrites that change the body** — a Latin-1 byte (a crash), ``1e400`` forwarded as
``Infinity``, 23-digit integers and ``1.10`` re-serialized.
"""

from __future__ import annotations

import json
import random
import re
import string
from urllib.parse import quote_plus

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.content import (
    PII,
    SECRETS,
    Scanner,
    body_pieces,
    default_scanner,
    describe,
    marker,
    redact_body,
    request_pieces,
    scan_pieces,
    value_pieces,
)
from tests.fuzzscale import examples

AWS = "AKIA" + "Q3V7WZ2MXK4PLRTY"
_ESCAPES = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")


def _unescaped(text: str) -> str:
    """`text` with its JSON escapes decoded (a second, simpler reading than the guard's)."""
    return _ESCAPES.sub(lambda m: chr(int(m[1], 16)) if m[1] else json.loads(f'"\\{m[2]}"'),
                        text)  # fmt: skip


def _read(body: bytes) -> tuple[str, str]:
    """(the encoding a JSON reader detects, the text)."""
    encoding = json.detect_encoding(body)
    return encoding, body.decode(encoding, "surrogateescape")


CARD = "4242 4242 4242 4242"
GHP = "ghp_" + "aB3xY9kLmN" * 3 + "q1w2e3"
EMAIL = "bob.smith@example.com"
_R = random.Random(7)
PASSWORD = "".join(_R.choice(string.ascii_letters + string.digits) for _ in range(300))
KEY_BODY = "MIIEowIBAAKCAQEA" + "".join(_R.choice(string.ascii_letters) for _ in range(120))
ALL = default_scanner()
NAMES = ALL.names
FORM = "application/x-www-form-urlencoded"
SECRET_SCANNER = Scanner(SECRETS)

# -- names are scanned, and a location never shows a detection --------------------------

_PLACES = {
    "json key": lambda n: body_pieces(json.dumps({"a": {n: "card " + CARD}}).encode(),
                                      "application/json"),
    "duplicate json key": lambda n: body_pieces(f'{{"{n}":1,"{n}":"card {CARD}"}}'.encode(),
                                                "application/json"),
    "form field name": lambda n: body_pieces(f"{n}=card+{CARD.replace(' ', '+')}".encode(), FORM),
    "query parameter name": lambda n: request_pieces("/", f"{n}=card+4242424242424242", []),
    "header name": lambda n: request_pieces("/", "", [(f"{n}", "card " + CARD)]),
    "sdk parameter key": lambda n: value_pieces({"env": [{n: "card " + CARD}]}, "parameters"),
}  # fmt: skip


@pytest.mark.parametrize("place", sorted(_PLACES))
@pytest.mark.parametrize("secret", [AWS, GHP, EMAIL, "4111111111111111"])
@pytest.mark.parametrize("detectors", [SECRETS, PII, (*SECRETS, *PII)], ids=["s", "p", "all"])
def test_a_detection_in_a_name_is_found_and_never_shown(
    place: str, secret: str, detectors: tuple[object, ...]
) -> None:
    """Whatever the policy's scanner reads: a PII-only scanner still shows no AWS key."""
    scanner = Scanner(detectors)  # type: ignore[arg-type]
    found = scan_pieces(scanner, _PLACES[place](secret))
    said = describe(found, limit=100)
    assert secret not in said
    assert secret.lower() not in said
    kinds = {h.detector for h in scanner.scan(f" {secret} ")}
    assert kinds <= {f.detector for f in found if f.location.endswith("#name")}


def test_a_name_holding_a_key_id_between_separators_is_not_shown() -> None:
    """`X-AKIA…`, `x_AKIA…`: a key id glued to a word is one (``detectors``); such a name is
    shown as its marker."""
    pieces = request_pieces("/", f"x_{AWS}=card+{CARD}", [(f"X-{AWS}", "card " + CARD)])
    said = describe(scan_pieces(Scanner(PII), pieces))
    assert said.count("card_number at") == 2
    assert AWS not in said.upper()


_SECRET_MARKERS = frozenset(marker(d.name) for d in SECRETS)
_NAME_PARTS = st.sampled_from([AWS, GHP, "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", CARD,
                               EMAIL, "4242424242424242", "X", "x", "token", "api", "Key",
                               "-", "_", ".", "=", ":", " ", "Bearer ", "AKIA", "ghp_",
                               "q8Zr3Lw9Xk2Mv7Bn4Tp6"])  # fmt: skip


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(_NAME_PARTS, min_size=1, max_size=5).map("".join))
@example(f"X-{AWS}")
@example(f"token_{GHP}")
def test_a_name_is_masked_as_a_secret_exactly_when_the_scan_finds_one(name: str) -> None:
    """Scanning and masking agree: what a location shows as a secret's marker, a rule
    reading ``content.secrets`` finds in the name (header, JSON key, form field, SDK key),
    and what it finds there is never shown."""
    from agentfirewall.content.locate import shown

    shown_as = shown(name)
    places = [
        request_pieces("/", "", [(name, "v")]),
        body_pieces(json.dumps({name: "v"}).encode(), "application/json"),
        body_pieces(f"{quote_plus(name)}=v".encode(), FORM),
        value_pieces({name: "v"}, "parameters"),
    ]
    for pieces in places:
        found = [f for f in scan_pieces(SECRET_SCANNER, pieces) if f.location.endswith("#name")]
        if shown_as in _SECRET_MARKERS:
            assert found, (name, pieces)
        if found:
            assert shown_as != name
            assert name not in describe(found)


def test_a_name_is_shown_as_is_when_it_holds_nothing() -> None:
    found = scan_pieces(ALL, body_pieces(json.dumps({"messages": [{"content": CARD}]}).encode(),
                                         "application/json"))  # fmt: skip
    assert [(f.detector, f.location) for f in found] == [("card_number",
                                                          "body.messages.0.content")]  # fmt: skip
    from agentfirewall.content.locate import shown

    assert shown("content") == "content"
    assert shown(AWS) == "[REDACTED:aws_access_key]"


# -- the body as the upstream's parser reads it ------------------------------------------

ESCAPED = "AKIA\\u0051" + "3V7WZ2MXK4PLRTY"
_BODIES = [
    ("duplicate key, secret first", f'{{"t":"{AWS}","t":"hi"}}'.encode(), "application/json"),
    ("duplicate key in a nested object", f'{{"a":{{"t":"{AWS}","t":1}}}}'.encode(),
     "application/json"),
    *[(f"{e} JSON", json.dumps({"t": AWS}).encode(e), "application/json")
      for e in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")],
    ("UTF-16 JSON sent as text", json.dumps({"t": AWS}).encode("utf-16-le"), "text/plain"),
    ("UTF-8 mark + escape", b"\xef\xbb\xbf" + f'{{"t":"{ESCAPED}"}}'.encode(), "application/json"),
    ("text/json + escape", f'{{"t":"{ESCAPED}"}}'.encode(), "text/json"),
    ("no type + escape", f'{{"t":"{ESCAPED}"}}'.encode(), ""),
    ("text/plain + escape", f'{{"t":"{ESCAPED}"}}'.encode(), "text/plain"),
    ("nested too deep to parse + escape", ("[" * 5000 + f'"{ESCAPED}"' + "]" * 5000).encode(),
     "application/json"),
    ("surrogate pair escapes around it", f'{{"t":"\\ud83d\\ude00{ESCAPED}"}}'.encode(), ""),
]  # fmt: skip


@pytest.mark.parametrize(("body", "ctype"), [b[1:] for b in _BODIES], ids=[b[0] for b in _BODIES])
def test_what_a_json_reader_would_read_is_scanned_and_redacted(body: bytes, ctype: str) -> None:
    found = scan_pieces(ALL, body_pieces(body, ctype))
    assert "aws_access_key" in {f.detector for f in found}
    out, count = redact_body(ALL, body, ctype, NAMES)
    assert count >= 1
    encoding, text = _read(out)
    assert encoding == _read(body)[0]
    assert AWS not in text
    assert AWS not in _unescaped(text)
    assert "[REDACTED:aws_access_key]" in text


# -- redaction leaves no part of the secret ----------------------------------------------

_PEM = ["-----BEGIN RSA PRIVATE KEY-----", KEY_BODY[:64], KEY_BODY[64:],
        "-----END RSA PRIVATE KEY-----"]  # fmt: skip
_PARTIAL = [
    ("key lines as a JSON array", json.dumps({"lines": [*_PEM, "after"]}), "application/json"),
    ("key lines, no END", json.dumps({"lines": _PEM[:3]}), "application/json"),
    ("key without END", "\n".join(_PEM[:3]) + "\n", "text/plain"),
    ("key on one line, no END", " ".join(_PEM[:3]), "text/plain"),
    ("key with encryption headers", "\n".join([_PEM[0], "Proc-Type: 4,ENCRYPTED",
     "DEK-Info: AES-128-CBC,0123456789ABCDEF0123456789ABCDEF", "", *_PEM[1:]]), "text/plain"),
    ("key with escaped newlines", json.dumps({"k": "\n".join(_PEM)}), "text/plain"),
    ("300-character password", f"password={PASSWORD}\n", "text/plain"),
    ("300-character password in JSON text", json.dumps({"password": PASSWORD}), "text/plain"),
    ("300-character token in a form", f"x=1&token={PASSWORD}", FORM),
]  # fmt: skip


@pytest.mark.parametrize(("text", "ctype"), [p[1:] for p in _PARTIAL], ids=[p[0] for p in _PARTIAL])
def test_redaction_forwards_no_part_of_the_secret(text: str, ctype: str) -> None:
    out, count = redact_body(ALL, text.encode(), ctype, NAMES)
    assert count >= 1
    left = _unescaped(out.decode())
    for part in (KEY_BODY[:16], KEY_BODY[60:76], KEY_BODY[-16:], PASSWORD[:16], PASSWORD[-16:]):
        if part in text.replace("\\n", "\n") or part in text:
            assert part not in left, (part, out[:200])
    if ctype == "application/json":
        assert json.loads(out)


def test_a_key_header_elsewhere_does_not_swallow_the_next_array() -> None:
    body = json.dumps({"lines": [_PEM[0]], "other": ["plain words here", "abc"]}).encode()
    out, _ = redact_body(ALL, body, "application/json", NAMES)
    assert json.loads(out) == {"lines": ["[REDACTED:private_key]"],
                               "other": ["plain words here", "abc"]}  # fmt: skip


# -- redaction changes nothing else ------------------------------------------------------


def test_a_body_with_a_latin1_byte_is_rewritten_byte_for_byte() -> None:
    body = b'{"name":"Jos\xe9","t":"card ' + CARD.encode() + b'"}'
    out, count = redact_body(ALL, body, "application/json", NAMES)
    assert (out, count) == (body.replace(CARD.encode(), b"[REDACTED:card_number]"), 1)


def test_numbers_spacing_and_duplicates_stay_as_sent() -> None:
    body = (
        b'{ "amount": 1.10, "big": 1e400, "id": 12345678901234567890123,\n'
        b'  "t": "card ' + CARD.encode() + b'", "t": "\\u0041KIAQ3V7WZ2MXK4PLRTY \\u00e9" }'
    )
    out, count = redact_body(ALL, body, "application/json; charset=utf-8", NAMES)
    assert count == 2
    assert out == (b'{ "amount": 1.10, "big": 1e400, "id": 12345678901234567890123,\n'
                   b'  "t": "card [REDACTED:card_number]", "t": "[REDACTED:aws_access_key] '
                   b'\\u00e9" }')  # fmt: skip


def test_a_form_rewrites_only_the_fields_holding_a_detection() -> None:
    body = f"a=x%20y&{AWS}=1&flag&t=pay+{CARD.replace(' ', '+')}".encode()
    out, count = redact_body(ALL, body, FORM, NAMES)
    assert count == 2
    assert out == (b"a=x%20y&%5BREDACTED%3Aaws_access_key%5D=1&flag"
                   b"&t=pay+%5BREDACTED%3Acard_number%5D")  # fmt: skip


_STRING_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def _skeleton(raw: str) -> str:
    """The JSON text without the characters of its strings."""
    return _STRING_TOKEN.sub('""', raw)


_NUMBER = st.sampled_from(["1.10", "1e400", "-0.0", "12345678901234567890123", "3E-2", "0"])
_SECRET = st.sampled_from([AWS, CARD, GHP, EMAIL])
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters='\x00"\\'), max_size=12)
_STRING = st.one_of(_TEXT, st.builds(lambda a, s, b: f"{a} {s} {b}", _TEXT, _SECRET, _TEXT))


@st.composite
def _json_text(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["number", "string", "array", "object"] if depth < 3 else
                                ["number", "string"]))  # fmt: skip
    space = draw(st.sampled_from(["", " ", "\n  "]))
    if kind == "number":
        return draw(_NUMBER)
    if kind == "string":
        return json.dumps(draw(_STRING), ensure_ascii=draw(st.booleans()))
    items = draw(st.lists(_json_text(depth + 1), max_size=4))
    if kind == "array":
        return "[" + f",{space}".join(items) + "]"
    keys = draw(st.lists(_STRING, min_size=len(items), max_size=len(items)))
    members = [f"{json.dumps(k)}:{space}{v}" for k, v in zip(keys, items, strict=True)]
    return "{" + f",{space}".join(members) + "}"


@settings(max_examples=examples(80), deadline=None)
@given(_json_text())
@example('{"a":1.10,"a":"' + AWS + '","b":[1e400,"x"]}')
def test_a_redacted_json_body_differs_only_inside_its_strings(raw: str) -> None:
    out, count = redact_body(ALL, raw.encode(), "application/json", NAMES)
    text = out.decode()
    assert _skeleton(text) == _skeleton(raw)
    assert re.sub(r"\[REDACTED:[a-z_]+\]", "", text) == text or count
    rescanned = scan_pieces(ALL, body_pieces(out, "application/json"))
    assert [f for f in rescanned if f.detector != "generic_secret"] == []


def test_an_approvers_view_redacts_keys_too() -> None:
    from agentfirewall.content import redact_value

    spec = {"parameters": {AWS: {"note": "card " + CARD}, "ok": [1, "x"]}}
    assert redact_value(ALL, spec, NAMES) == {
        "parameters": {"[REDACTED:aws_access_key]": {"note": "card [REDACTED:card_number]"},
                       "ok": [1, "x"]}}  # fmt: skip
