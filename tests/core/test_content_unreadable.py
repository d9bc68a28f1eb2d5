"""What the scanner could not read fails closed for every content rule that would have read it.

The review's case: a policy whose only content rule reads ``content.pii`` let a body in a
charset no reader here knows (``text/plain; charset=x-unknown``) through, as it did a
multipart part in an unknown transfer encoding: such a body is a finding of
``unreadable_encoding`` (an e-mail attached too deep, ``mime_too_deep``), and that finding
was made only by a scanner holding the secret detectors, as a secret. Now it is a finding
of each kind the scanner reads, so ``content.secrets``, ``content.pii`` and
``response.injection`` each hold it, and a rule reading any of them decides it as it would
a detection, at each enforcement level. :data:`CANNOT_READ` is the table of what cannot be
read: extend it with the next. Through a real gateway: ``test_content_unreadable_gateway.py``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import HttpRequest
from agentfirewall.content import (
    INJECTION,
    PII,
    SECRETS,
    Scanner,
    body_pieces,
    content_attributes,
    describe,
    scan_pieces,
)
from agentfirewall.content.locate import UNREAD as TOO_DEEP
from agentfirewall.content.locate import UNREADABLE, found_names
from agentfirewall.content.mime import MAX_DEPTH
from agentfirewall.decisions import apply_enforcement
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.replay import evaluate_sdk, verdict, with_findings
from agentfirewall_proxy import pipeline
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.core.test_content_mime import as_sent
from tests.fuzzscale import examples
from tests.proxy.support import KEY, connector, key_hash, rule, snapshot

FORM_DATA = "multipart/form-data; boundary=XX"
HOST = "api.example.org"
#: Every detector there is, each kind a policy's field reads: secrets, personal data,
#: injection markers (``agentfirewall.policy.guard``).
DETECTORS = (*SECRETS, *PII, *INJECTION)
KINDS = {"secret": "secrets", "pii": "pii", "injection": "injection"}


def _part(name: str, headers: list[str], payload: bytes) -> bytes:
    head = [f'Content-Disposition: form-data; name="{name}"', *headers]
    return b"--XX\r\n" + "\r\n".join(head).encode() + b"\r\n\r\n" + payload + b"\r\n"


#: Bodies no reader here reads, nothing found in them as written: (what, body, its
#: Content-Type, where it is refused). A whole body in another charset first:
WHOLE: list[tuple[str, bytes, str, str]] = [
    ("a body in a charset not known", b"plain words", "text/plain; charset=x-unknown", "body"),
    ("a form in a codec that is no charset", b"note=plain+words",
     "application/x-www-form-urlencoded; charset=base64", "body"),
    ("a JSON body in a charset that decodes nothing", b'{"note": "plain words"}',
     "application/json; charset=undefined", "body"),
]  # fmt: skip
#: ... then a multipart's parts (a connector reads no multipart body: only the scan does).
PARTS: list[tuple[str, bytes, str, str]] = [
    ("a part in a transfer encoding not known",
     _part("note", ["Content-Transfer-Encoding: x-gzip"], b"x") + b"--XX--\r\n", FORM_DATA,
     "multipart.note"),
    ("a part in a charset not known",
     _part("note", ["Content-Type: text/plain; charset=x-unknown"], b"x") + b"--XX--\r\n",
     FORM_DATA, "multipart.note"),
    ("a part with a Content-Encoding",
     _part("note", ["Content-Encoding: gzip"], b"x") + b"--XX--\r\n", FORM_DATA,
     "multipart.note"),
    ("parts that name the default charset differently",
     _part("_charset_", [], b"utf-16") + _part("_charset_", [], b"utf-8")
     + _part("note", [], b"x") + b"--XX--\r\n", FORM_DATA, "multipart"),
    ("a multipart never closed that names a charset",
     _part("note", ["Content-Type: text/plain; charset=utf-16"], b"x"), FORM_DATA, "multipart"),
]  # fmt: skip
CANNOT_READ = WHOLE + PARTS
IDS = [row[0] for row in CANNOT_READ]
PART_IDS = [row[0] for row in PARTS]


def _fields(findings: list[Any], side: str = "content") -> dict[str, object]:
    return content_attributes(findings, side)


@pytest.mark.parametrize(("body", "ctype", "where"), [r[1:] for r in CANNOT_READ], ids=IDS)
def test_what_cannot_be_read_is_a_finding_for_a_scanner_of_personal_data_alone(
    body: bytes, ctype: str, where: str
) -> None:
    """Before: nothing found, so a ``content.pii`` rule let it through."""
    findings = scan_pieces(Scanner(PII), body_pieces(body, ctype))
    assert [(f.detector, f.kind, f.location) for f in findings] == [(UNREADABLE, "pii", where)]
    assert _fields(findings) == {"content.pii": [UNREADABLE]}
    assert describe(findings) == f"{UNREADABLE} at {where}+0"


@pytest.mark.parametrize(("body", "ctype", "where"), [r[1:] for r in CANNOT_READ], ids=IDS)
def test_what_cannot_be_read_is_a_finding_for_a_scanner_of_injection_markers_alone(
    body: bytes, ctype: str, where: str
) -> None:
    """A response's multipart part no reader reads: ``response.injection`` holds it."""
    findings = scan_pieces(Scanner(INJECTION), body_pieces(body, ctype))
    assert _fields(findings, "response") == {"response.injection": [UNREADABLE]}


@settings(max_examples=examples(150), deadline=None)
@given(
    st.lists(st.sampled_from(DETECTORS), min_size=1, max_size=6),
    st.sampled_from(CANNOT_READ),
    st.sampled_from(["content", "response"]),
)
def test_every_field_a_scanner_fills_holds_what_it_could_not_read(
    detectors: list[Any], row: tuple[str, bytes, str, str], side: str
) -> None:
    """Whichever detectors a policy's rules read: each field their kinds fill holds the
    finding where the body could not be read, and no field of a kind not read appears
    (a policy reading one field is not told of another). Said once in a reason."""
    _, body, ctype, where = row
    scanner = Scanner(detectors)
    findings = scan_pieces(scanner, body_pieces(body, ctype))
    unread = [f for f in findings if f.detector == UNREADABLE]
    assert {f.kind for f in unread} == {d.kind for d in detectors}
    assert {f.location for f in unread} == {where}
    fields = _fields(unread, side)
    assert fields == {f"{side}.{KINDS[d.kind]}": [UNREADABLE] for d in detectors}
    assert UNREADABLE in found_names(scanner)
    assert describe(unread) == f"{UNREADABLE} at {where}+0"


# -- decided: through the gateway's decision step, at each level ---------------------------

LEVELS = ("full_enforce", "soft_enforce", "monitor")
#: A rule on each request-side content field, denying or holding on any detection.
RULES = [(field, decision) for field in ("content.pii", "content.secrets")
         for decision in ("deny", "require_approval")]  # fmt: skip


def _policy(field: str, decision: str) -> dict[str, Any]:
    return {"name": "guard", "rules": [
        {"name": "content", "decision": decision, "reason": "content rule",
         "conditions": [{"field": field, "operator": "exists"}]}]}  # fmt: skip


CONFIGS = {
    (field, decision, level): compile_snapshot(snapshot(
        [rule("*", "allow")],
        connectors=[connector("generic", domains=[HOST], credential=None)], level=level,
        policies=[{"name": "guard", "document": _policy(field, decision)}]))
    for field, decision in RULES for level in LEVELS
}  # fmt: skip


def _decide(field: str, decision: str, level: str, body: bytes, ctype: str) -> Any:
    config = CONFIGS[field, decision, level]
    agent = config.agent_for_key(key_hash(KEY))
    flow = Flow(request_id="r", method="POST", scheme="https", host=HOST, port=443,
                path="/notes", agent=agent, connector=config.route(HOST))  # fmt: skip
    headers = (("Host", HOST), ("Content-Type", ctype))
    request = HttpRequest("POST", "https", HOST, 443, "/notes", "", headers, body, True)
    return flow, pipeline.decide(config, flow, request)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("field", "decision"), RULES, ids=[f"{f}-{d}" for f, d in RULES])
@pytest.mark.parametrize(("body", "ctype", "where"), [r[1:] for r in PARTS], ids=PART_IDS)
def test_a_rule_on_any_content_field_decides_what_cannot_be_read(
    body: bytes, ctype: str, where: str, field: str, decision: str, level: str
) -> None:
    """Denied or held as a detection would be: refused at ``full_enforce``, recorded as it
    would have been (``would_deny``) where the level lets it pass, saying where."""
    flow, decided = _decide(field, decision, level, body, ctype)
    assert decided.decided_outcome == decision, decided.reason
    assert decided.matched_rules[0] == "guard/content"
    expected = apply_enforcement(decided, level)
    assert (decided.outcome, decided.would_outcome) == (expected.outcome, expected.would_outcome)
    if level == "full_enforce":
        assert decided.outcome == decision
    if decision == "deny" and level == "monitor":
        assert (decided.outcome, decided.would_outcome) == ("allow", "would_deny")
    assert describe(flow.findings) == f"{UNREADABLE} at {where}+0"  # (what the reason says)
    assert flow.content == {field: [UNREADABLE]}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("body", "ctype"), [r[1:3] for r in WHOLE], ids=[r[0] for r in WHOLE])
def test_a_whole_body_in_a_charset_not_known_is_refused_before_any_rule(
    body: bytes, ctype: str, level: str
) -> None:
    """Already so (no gap here): a connector reads only UTF-8 bodies, and refuses any other
    at every level; the finding is in the record too."""
    flow, decided = _decide("content.pii", "deny", level, body, ctype)
    assert decided.outcome == "deny"
    assert "only UTF-8 bodies are read" in decided.reason
    assert flow.content == {"content.pii": [UNREADABLE]}


@pytest.mark.parametrize(("field", "decision"), RULES, ids=[f"{f}-{d}" for f, d in RULES])
def test_a_body_that_can_be_read_is_decided_on_what_it_holds(field: str, decision: str) -> None:
    """The same rules let a plain body without a detection pass (they refuse no more)."""
    _, decided = _decide(field, decision, "full_enforce", b"plain words", "text/plain")
    assert decided.outcome == "allow", decided.reason


# -- an SDK action: an e-mail attached too deep to read -------------------------------------


def _forwarded(depth: int) -> bytes:
    """A plain mail (nothing any detector finds) attached as an ``.eml`` `depth` times."""
    data = b"Subject: notes\r\nContent-Type: text/plain\r\n\r\nplain words\r\n"
    for _ in range(depth):
        message = EmailMessage(policy=SMTP)
        message["Subject"] = "fwd"
        message.set_content("see attached")
        message.add_attachment(data, maintype="application", subtype="octet-stream",
                               filename="fwd.eml")  # fmt: skip
        data = as_sent(message)
    return data


@pytest.mark.parametrize(("depth", "outcome"), [(MAX_DEPTH, "allow"), (MAX_DEPTH + 1, "deny")])
def test_an_sdk_action_carrying_an_eml_too_deep_is_denied_by_a_personal_data_rule(
    depth: int, outcome: str
) -> None:
    """Before: a ``content.pii`` rule never saw ``mime_too_deep`` and allowed it. Read (as
    deep as ``mime`` reads), the plain mail passes."""
    engine = Engine(policies=[load_policy(_policy("content.pii", "deny"))])
    plan = guard_plan(engine.policies)
    spec = ActionSpec(type="demo.mail.send", resource={"provider": "demo"},
                      parameters={"raw": base64.b64encode(_forwarded(depth)).decode()})  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="sdk", now=datetime.now(UTC), connector="demo")
    ctx, found = with_findings(ctx, plan, action_findings(plan, spec, ("parameters.raw:mime",)))
    assert verdict(evaluate_sdk(engine, spec, ctx, plan=plan, findings=found)) == outcome
    if outcome == "deny":
        where = "parameters.raw(base64)" + ".part2" * depth
        assert [(f.detector, f.kind, f.location) for f in found] == [(TOO_DEEP, "pii", where)]
        assert ctx.attributes["content.pii"] == [TOO_DEEP]
