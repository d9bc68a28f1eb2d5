"""Fields that carry text base64-encoded (``agentfirewall.content.encoded``): decoded as the
upstreams' decoders read them, scanned at ``<field>(base64)``, redacted inside and
re-encoded in their own alphabet, everything else byte for byte."""

from __future__ import annotations

import base64
import codecs
import json
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec
from agentfirewall.content import (
    decoded_pieces,
    default_scanner,
    encoded_body_pieces,
    redact_encoded,
    redact_encoded_value,
    scan_pieces,
)
from agentfirewall.content.encoded import decode_base64
from agentfirewall.policy import load_policy
from agentfirewall.policy.guard import action_findings, guard_plan
from tests.fuzzscale import examples

AWS = "AKIA" + "Q3V7WZ2MXK4PLRTY"
PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "-----END PRIVATE KEY-----")  # fmt: skip
FILE = f"# deploy\nkey_id = {AWS}\n{PEM}\nthe end\n".encode()
SECRETS = frozenset({"aws_access_key", "private_key", "generic_secret"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _wrapped(text: str, width: int, newline: str = "\n") -> str:
    return newline.join(text[i : i + width] for i in range(0, len(text), width))


# (name, the field's text, the bytes an upstream decodes from it)
DECODINGS = [
    ("standard", _b64(FILE), FILE),
    ("unpadded", _b64(b"AKIA!").rstrip("="), b"AKIA!"),
    ("URL-safe", base64.urlsafe_b64encode(b"\xfb\xff?>" * 9).decode(), b"\xfb\xff?>" * 9),
    ("URL-safe unpadded", base64.urlsafe_b64encode(b"\xfb\xff").decode().rstrip("="), b"\xfb\xff"),
    ("lines of 60 (GitHub)", _wrapped(_b64(FILE), 60), FILE),
    ("lines of 76, CRLF (MIME)", _wrapped(_b64(FILE), 76, "\r\n"), FILE),
    ("spaces and tabs", " \t".join(_b64(FILE)[i : i + 8] for i in range(0, 80, 8)),
     base64.b64decode(_b64(FILE)[:80])),
    ("junk between (skipped as Ruby's unpack1('m') skips it)",
     "!".join(_b64(FILE)[i : i + 3] for i in range(0, 120, 3)), base64.b64decode(_b64(FILE)[:120])),
    ("non-ASCII between", "é".join(_b64(FILE)[i : i + 4] for i in range(0, 40, 4)),
     base64.b64decode(_b64(FILE)[:40])),
    ("two runs (concatenated base64)", _b64(b"AKIA") + _b64(b"Q3V7WZ2MXK4PLRTY"),
     AWS.encode()),
    ("a dangling character", _b64(b"abc") + "Q", b"abc"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "data"), DECODINGS, ids=[d[0] for d in DECODINGS])
def test_a_field_is_decoded_as_lenient_upstream_decoders_read_it(
    name: str, text: str, data: bytes
) -> None:
    decoded = decode_base64(text)
    assert decoded is not None
    assert decoded.data == data


@pytest.mark.parametrize("text", ["", "=", "==", "Q", "Q===", "!!!", "é", "\x00\ud800"])
def test_text_with_no_whole_byte_decodes_to_nothing(text: str) -> None:
    assert decode_base64(text) is None


@settings(max_examples=examples(200), deadline=None)
@given(data=st.binary(min_size=1, max_size=200), url=st.booleans(), padded=st.booleans(),
       width=st.integers(4, 80))  # fmt: skip
def test_any_bytes_decode_back_and_re_encode_in_their_own_alphabet(
    data: bytes, url: bool, padded: bool, width: int
) -> None:
    encoded = (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()
    if not padded:
        encoded = encoded.rstrip("=")
    decoded = decode_base64(_wrapped(encoded, width))
    assert decoded is not None
    assert decoded.data == data
    again = decoded.encode(data)
    if url and set(encoded) & set("-_"):  # (no `-` or `_`: the text reads as either alphabet)
        assert again.rstrip("=") == encoded.rstrip("=")
    else:
        assert base64.b64decode(again + "==") == data


def test_decoded_text_is_scanned_at_its_field_and_only_declared_fields_are_decoded() -> None:
    body = {"message": "m", "note": _b64(AWS.encode()),
            "attachments": [{"content": _b64(b"hello")},
                            {"Content": _b64(json.dumps({"k": AWS}).replace("Q", "\\u0051")
                                             .encode())}]}  # fmt: skip
    raw = json.dumps(body).encode()
    pieces = encoded_body_pieces(raw, "application/json", ("body.attachments.*.content",))
    assert [location for location, _ in pieces] == [
        "body.attachments.1.Content(base64)",  # (names compared case-insensitively)
        "body.attachments.1.Content(base64).unescaped",  # its JSON escapes decoded too
        "body.attachments.0.content(base64)",
    ]
    found = scan_pieces(default_scanner(), pieces)
    assert [(f.detector, f.location) for f in found] == [
        ("aws_access_key", "body.attachments.1.Content(base64).unescaped")]  # fmt: skip
    # `note` is base64 of a key too, but no connector says it carries base64
    assert decoded_pieces([("body.note", body["note"]), ("body.note#name", "note")],
                          ("body.content",)) == []  # fmt: skip


def test_a_body_of_another_type_is_read_as_its_connector_reads_it() -> None:
    """GitHub reads a JSON body, AWS a query form, whatever the `Content-Type` says."""
    json_body = json.dumps({"content": _b64(FILE)}).encode()
    form_body = f"Action=SendRawEmail&RawMessage.Data={_b64(FILE)}".encode()
    for body, where in ((json_body, "body.content"), (form_body, "form.RawMessage.Data")):
        for ctype in ("", "text/plain", "application/x-amz-json-1.1"):
            pieces = encoded_body_pieces(body, ctype, (where,))
            assert pieces[0] == (where + "(base64)", FILE.decode()), (where, ctype)


# (a byte order mark, the encoding it announces)
MARKS = [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
         (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be")]  # fmt: skip


@pytest.mark.parametrize(("mark", "encoding"), MARKS, ids=[m[1] for m in MARKS])
def test_a_file_in_utf16_or_utf32_is_read_in_the_encoding_its_mark_announces(
    mark: bytes, encoding: str
) -> None:
    """A text file saved in UTF-16 (Windows' "Unicode") has a NUL beside each ASCII
    character: its UTF-8 reading hides a key, an editor or an agent reading it does not."""
    body = json.dumps({"content": _b64(mark + FILE.decode().encode(encoding))}).encode()
    pieces = encoded_body_pieces(body, "application/json", ("body.content",))
    assert "body.content(base64)" in dict(pieces)  # (its UTF-8 reading too)
    found = scan_pieces(default_scanner(), pieces)
    assert {(f.detector, f.location) for f in found} == {
        ("aws_access_key", f"body.content(base64).{encoding}"),
        ("private_key", f"body.content(base64).{encoding}"),
    }
    # not rewritten in place: left as it is, the rescan of the answer or request refuses
    assert redact_encoded(default_scanner(), body, SECRETS, found) == (body, 0)


def test_a_utf16_json_file_is_read_once() -> None:
    data = codecs.BOM_UTF16_LE + json.dumps({"key": AWS}).encode("utf-16-le")
    pieces = decoded_pieces([("body.content", _b64(data))], ("body.content",))
    assert [loc for loc, text in pieces if AWS in text] == ["body.content(base64)"]


def _redacted(body: bytes, ctype: str, where: str) -> tuple[bytes, int]:
    scanner = default_scanner()
    found = scan_pieces(scanner, encoded_body_pieces(body, ctype, (where,)))
    assert found, "the detection is in the decoded field"
    return redact_encoded(scanner, body, SECRETS, found)


def test_redaction_re_encodes_the_field_and_keeps_every_other_byte() -> None:
    urlsafe = base64.urlsafe_b64encode(b"\xfb" + FILE).decode().rstrip("=")
    raw = ('{"a": 1.10, "attachments": [{"content": "aGk="}, '
           f'{{"filename": "k.txt", "content": "{urlsafe}"}}], "x": "\\u00e9"}}')  # fmt: skip
    new, count = _redacted(raw.encode(), "application/json", "body.attachments.*.content")
    assert count == 2
    field = json.loads(new)["attachments"][1]["content"]
    assert "=" not in field
    assert set(field) & set("-_")
    text = base64.urlsafe_b64decode(field + "==")
    redacted = b"key_id = [REDACTED:aws_access_key]\n[REDACTED:private_key]\n"
    assert text == b"\xfb# deploy\n" + redacted + b"the end\n"
    assert new.decode().replace(field, urlsafe) == raw  # nothing else changed


def test_redaction_inside_a_form_field_and_duplicate_members() -> None:
    form = f"Action=SendRawEmail&RawMessage.Data={_b64(FILE).replace('+', '%2B')}&X=1"
    new, count = _redacted(form.encode(), "application/x-www-form-urlencoded",
                           "form.RawMessage.Data")  # fmt: skip
    fields = dict(parse_qsl(new.decode()))
    assert b"[REDACTED:private_key]" in base64.b64decode(fields["RawMessage.Data"])
    assert (fields["Action"], fields["X"], count) == ("SendRawEmail", "1", 2)
    twice = '{{"content": "{}", "content": "{}"}}'.format(_b64(b"fine"), _b64(FILE))
    new, count = _redacted(twice.encode(), "application/json", "body.content")
    first, second = json.loads(new, object_pairs_hook=list)
    assert first[1] == _b64(b"fine")  # (a member without a detection is kept)
    assert b"[REDACTED:aws_access_key]" in base64.b64decode(second[1])


def test_a_body_without_encoded_findings_is_returned_as_it_is() -> None:
    body = json.dumps({"content": _b64(FILE), "text": f"plain {AWS}"}).encode()
    plain = scan_pieces(default_scanner(), [("body.text", f"plain {AWS}")])
    assert redact_encoded(default_scanner(), body, SECRETS, plain)[0] is body
    assert redact_encoded(default_scanner(), body, SECRETS, [])[0] is body


def test_an_action_spec_is_shown_with_its_encoded_parameters_redacted_inside() -> None:
    spec = {"type": "github.file.update", "parameters": {"message": _b64(FILE),
            "file_changes": {"additions": [{"path": "a", "contents": _b64(FILE)}]}}}  # fmt: skip
    shown = redact_encoded_value(default_scanner(), spec, SECRETS,
                                 ("parameters.file_changes.additions.*.contents",))  # fmt: skip
    assert isinstance(shown, dict)
    contents = shown["parameters"]["file_changes"]["additions"][0]["contents"]
    assert AWS.encode() not in base64.b64decode(contents)
    assert b"[REDACTED:private_key]" in base64.b64decode(contents)
    assert shown["parameters"]["message"] == _b64(FILE)  # not declared: as it was


def test_an_sdk_action_is_scanned_in_the_parameters_its_connector_declares() -> None:
    policy = load_policy({"name": "p", "rules": [{"name": "no", "decision": "deny",
        "conditions": [{"field": "content.secrets", "operator": "exists"}]}]})  # fmt: skip
    plan = guard_plan((policy,))
    spec = ActionSpec(type="github.file.create", resource={"provider": "github"},
                      parameters={"path": "a", "content": _b64(FILE)})  # fmt: skip
    assert action_findings(plan, spec) == []  # base64 as it is: nothing readable
    found = action_findings(plan, spec, ("parameters.content",))
    assert {(f.detector, f.location) for f in found} == {
        ("aws_access_key", "parameters.content(base64)"),
        ("private_key", "parameters.content(base64)"),
    }
