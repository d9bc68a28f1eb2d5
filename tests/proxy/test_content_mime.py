"""Content rules see what a raw e-mail carries encoded, on every AWS way to send one.

SES's ``SendRawEmail``, SES v2's (and Pinpoint Email's) ``SendEmail`` with
``Content.Raw.Data``, and Pinpoint's ``SendMessages`` with a ``RawEmail`` carry a whole MIME
message base64-encoded, whose parts are encoded once more: (a) a private key in a base64
attachment, (b) an AWS secret key in a quoted-printable text and (c) a key id in an
encoded-word subject pass a reader of the raw message unseen. The AWS connector declares
those fields ``:mime``, and the gateway finds each where it is (``….part2``), decides it as
plain text (deny, hold), redacts it inside the part (re-encoded in its encoding, the message
re-encoded in base64) or, where the part cannot be re-encoded as it was, refuses. A clean
mail passes byte for byte; malformed MIME never crashes the decision.

The pure decision (``pipeline.decide``, then ``guarded.redact_request``) runs in process,
with the configurations of ``test_content_base64``.
"""

from __future__ import annotations

import base64
import contextlib
import email
from email.policy import compat32
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.flow import Refusal
from tests.core.test_content_mime import (
    AWS_SECRET,
    HIDDEN,
    KEY_LINE,
    READ_FURTHER,
    READ_OTHERWISE,
    _clean,
    _outside,
    _uuencoded,
)
from tests.fuzzscale import examples
from tests.proxy.test_content_base64 import (
    _AWS_AUTH,
    AWS_ID,
    PEM,
    Carrier,
    _decide,
    _field,
    _json,
    _redact,
)

_EMAIL = "email.us-east-1.amazonaws.com"
_PINPOINT = "pinpoint.us-east-1.amazonaws.com"


def _raw_email(data: str) -> dict[str, object]:
    return {"MessageConfiguration": {"EmailMessage": {"RawEmail": {"Data": data}}}}


CARRIERS = [
    Carrier("ses SendRawEmail (query form)", _EMAIL, "POST", "/",
            "application/x-www-form-urlencoded",
            lambda t: f"Action=SendRawEmail&RawMessage.Data={quote(t, safe='')}".encode(),
            "form.RawMessage.Data", _AWS_AUTH),
    Carrier("ses v2 SendEmail, Content.Raw.Data", _EMAIL, "POST", "/v2/email/outbound-emails",
            "application/json", lambda t: _json({"Content": {"Raw": {"Data": t}}}),
            "body.Content.Raw.Data", _AWS_AUTH),
    Carrier("pinpoint email SendEmail (v1)", _EMAIL, "POST", "/v1/email/outbound-emails",
            "application/json", lambda t: _json({"Content": {"Raw": {"Data": t}}}),
            "body.Content.Raw.Data", _AWS_AUTH),
    Carrier("pinpoint SendMessages, RawEmail", _PINPOINT, "POST", "/v1/apps/a1/messages",
            "application/json", lambda t: _json(_raw_email(t)),
            "body.MessageConfiguration.EmailMessage.RawEmail.Data"),
    Carrier("pinpoint SendUsersMessages, RawEmail", _PINPOINT, "POST",
            "/v1/apps/a1/users-messages", "application/json", lambda t: _json(_raw_email(t)),
            "body.MessageConfiguration.EmailMessage.RawEmail.Data"),
]  # fmt: skip
IDS = [c.name for c in CARRIERS]
#: (a), (b) and (c) of the module docstring: (name, raw mail, detector, where in the message)
MAILS = [(name, raw, detector, where) for name, raw, detector, where, _ in HIDDEN[:3]]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("decision", ["deny", "require_approval"])
@pytest.mark.parametrize(("mail", "raw", "detector", "where"), MAILS, ids=[m[0] for m in MAILS])
@pytest.mark.parametrize("carrier", CARRIERS, ids=IDS)
def test_a_secret_a_mime_part_hides_is_decided_as_plain_text_and_located(
    carrier: Carrier, mail: str, raw: bytes, detector: str, where: str, decision: str
) -> None:
    flow, decided = _decide(decision, carrier, carrier.body(b64(raw)))
    assert decided.outcome == decision, decided.reason
    assert [(f.detector, f.location) for f in flow.findings] == [
        (detector, f"{carrier.where}(base64){where}")]  # where, never what  # fmt: skip
    for secret in (AWS_ID, AWS_SECRET, KEY_LINE):
        assert secret not in decided.reason


@pytest.mark.parametrize("carrier", CARRIERS, ids=IDS)
def test_a_clean_mail_passes_byte_for_byte(carrier: Carrier) -> None:
    body = carrier.body(b64(_clean()))
    flow, decision = _decide("redact", carrier, body)
    assert (decision.outcome, flow.findings, flow.redact) == ("allow", (), frozenset())
    assert _redact(flow, carrier, body) is body


@pytest.mark.parametrize(("mail", "raw", "detector", "where"), MAILS, ids=[m[0] for m in MAILS])
@pytest.mark.parametrize("carrier", CARRIERS, ids=IDS)
def test_redact_rewrites_the_part_and_re_encodes_the_message(
    carrier: Carrier, mail: str, raw: bytes, detector: str, where: str
) -> None:
    body = carrier.body(b64(raw))
    flow, decision = _decide("redact", carrier, body)
    assert decision.outcome == "allow"
    sent = base64.b64decode(_field(carrier, _redact(flow, carrier, body)), validate=True)
    assert flow.redacted == 1
    parts = list(email.message_from_bytes(sent, policy=compat32).walk())
    assert len(parts) == len(list(email.message_from_bytes(raw, policy=compat32).walk()))
    _, again = _decide("deny", carrier, carrier.body(b64(sent)))  # nothing left to find
    assert again.outcome == "allow", again.reason


def test_redact_refuses_a_part_it_cannot_re_encode_as_it_was() -> None:
    carrier = CARRIERS[0]
    body = carrier.body(b64(_uuencoded(PEM.encode())))
    flow, decision = _decide("redact", carrier, body)
    assert decision.outcome == "allow"  # (a redact rule allows, once redacted)
    with pytest.raises(Refusal) as refused:
        _redact(flow, carrier, body)
    assert refused.value.status == 403
    assert refused.value.message == (
        "a redact rule cannot rewrite private_key at form.RawMessage.Data(base64).part0+0"
    )


#: A key id as it is in a multipart's preamble (the message's text: redacted in place), and
#: the rows of READ_OTHERWISE and READ_FURTHER (a charset other than UTF-8, an e-mail attached
#: deeper): (name, raw mail, detector, where, redacted in place)
OTHERWISE = [("a key id as it is in a preamble", _outside(preamble=(f"id {AWS_ID}",)),
              "aws_access_key", "", True), *READ_OTHERWISE, *READ_FURTHER]  # fmt: skip


@pytest.mark.parametrize(("mail", "raw", "detector", "where", "rewritable"), OTHERWISE,
                         ids=[m[0] for m in OTHERWISE])  # fmt: skip
def test_text_outside_the_parts_and_messages_read_otherwise_are_decided_and_redacted_or_refused(
    mail: str, raw: bytes, detector: str, where: str, rewritable: bool
) -> None:
    """Denied where it is; a redact rule rewrites it in place where it can (the part in its
    encoding, the message's own text), and refuses it (403) where it cannot: a preamble's or
    an epilogue's decoded text, the unstructured reading, a message read in UTF-16."""
    carrier = CARRIERS[0]
    body = carrier.body(b64(raw))
    flow, denied = _decide("deny", carrier, body)
    assert denied.outcome == "deny"
    located = [f.location for f in flow.findings if f.detector == detector]
    assert any(loc.startswith(f"{carrier.where}(base64){where}") for loc in located), located
    flow, decision = _decide("redact", carrier, body)
    assert decision.outcome == "allow"
    if not rewritable:
        with pytest.raises(Refusal) as refused:
            _redact(flow, carrier, body)
        assert refused.value.status == 403
        assert f"cannot rewrite {detector} at {carrier.where}(base64)" in refused.value.message
        return
    sent = base64.b64decode(_field(carrier, _redact(flow, carrier, body)), validate=True)
    assert flow.redacted >= 1
    _, again = _decide("deny", carrier, carrier.body(b64(sent)))  # nothing left to find
    assert again.outcome == "allow", again.reason


_TOO_DEEP = next(row for row in READ_FURTHER if row[2] == "mime_too_deep")


@pytest.mark.parametrize("decision", ["deny", "require_approval"])
def test_an_eml_attached_too_deep_to_read_is_decided_as_a_secret(decision: str) -> None:
    """Past the depth the guard reads, the attached e-mail is a ``mime_too_deep`` finding at
    its part: a rule reading ``content.secrets`` denies or holds it (fail closed)."""
    carrier = CARRIERS[1]
    _, raw, detector, where, _ = _TOO_DEEP
    flow, decided = _decide(decision, carrier, carrier.body(b64(raw)))
    assert decided.outcome == decision, decided.reason
    assert [(f.detector, f.location) for f in flow.findings] == [
        (detector, f"{carrier.where}(base64){where}")]  # fmt: skip


_BROKEN = st.binary(max_size=60) | st.sampled_from([
    b"--b", b"\r\n\r\n", b"Content-Transfer-Encoding: base64\r\n", b"=?utf-8?b?", b"?=",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"=3D", b"QUtJQQ=="])  # fmt: skip


@settings(max_examples=examples(60), deadline=None)
@given(at=st.integers(0, 2000), junk=st.lists(_BROKEN, max_size=6).map(b"".join),
       mail=st.sampled_from([h[1] for h in HIDDEN[:8]]))  # fmt: skip
def test_malformed_mime_is_decided_without_a_crash(at: int, junk: bytes, mail: bytes) -> None:
    carrier = CARRIERS[1]
    body = carrier.body(b64(mail[:at] + junk + mail[at:]))
    flow, decision = _decide("redact", carrier, body)
    assert decision.outcome == "allow"
    if flow.redact:
        with contextlib.suppress(Refusal):  # redacted, or refused (fail closed)
            _redact(flow, carrier, body)
