"""A content rule that names one detector fails closed on what the scanner could not read.

The review's case: ``content.pii contains card_number`` (deny) let an upload through whose
part no reader here reads (``unreadable_encoding``), or an e-mail attached too deep
(``mime_too_deep``), although it may hold a card number: only ``exists`` saw the finding.
Now a leaf on a content field whose value holds what could not be read answers as
``agentfirewall.policy.conditions.UNREAD_ANSWERS`` says, by operator: a question of
presence is yes, one of absence no, whichever detector it names; a ``redact`` rule naming
one detector refuses it (the SDK denies it, the gateway refuses to rewrite it). Request
and response fields alike, at every enforcement level, live and in a replay. Through a
real gateway: ``test_content_unread_named_gateway.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec
from agentfirewall.content import (
    INJECTION,
    PII,
    SECRETS,
    Finding,
    Scanner,
    body_pieces,
    content_attributes,
    decoded_pieces,
    scan_pieces,
    value_pieces,
)
from agentfirewall.content.locate import UNREAD as TOO_DEEP
from agentfirewall.content.locate import UNREADABLE
from agentfirewall.content.mime import MAX_DEPTH
from agentfirewall.decisions import apply_enforcement
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.conditions import UNREAD_ANSWERS
from agentfirewall.policy.guard import (
    action_findings,
    guard_plan,
    redactions,
    response_verdict,
)
from agentfirewall.policy.operators import OPERATORS
from agentfirewall.policy.replay import Recorded, evaluate_sdk, replay_one, verdict, with_findings
from tests.core.test_content_unreadable import FORM_DATA, PARTS, _forwarded
from tests.fuzzscale import examples

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
LABEL = "guard/content"
#: Each content field a policy reads, and the names of the detectors that fill it.
FAMILIES = {
    "content.secrets": sorted({d.name for d in SECRETS}),
    "content.pii": sorted({d.name for d in PII}),
    "response.secrets": sorted({d.name for d in SECRETS}),
    "response.injection": sorted({d.name for d in INJECTION}),
}
UNREAD_KINDS = (UNREADABLE, TOO_DEEP)
LEVELS = ("full_enforce", "soft_enforce", "monitor")
#: The operators that ask whether a detection is there, or is not (the others: below).
ASKING = sorted(op for op, answer in UNREAD_ANSWERS.items() if answer is not None)
SPEC = ActionSpec(type="demo.notes.send", resource={"provider": "demo"})
#: An e-mail attached one deeper than ``mime`` reads, as an SDK action's raw parameter.
TOO_DEEP_MAIL = base64.b64encode(_forwarded(MAX_DEPTH + 1)).decode()


# -- what could not be read, as the scanner of a plan finds it -----------------------------


def _unread_findings(scanner: Scanner, kind: str, part: int = 0) -> list[Finding]:
    """What `scanner` finds where it cannot read: a multipart part in no encoding a reader
    here knows (`part`: which of ``PARTS``), or an e-mail attached too deep."""
    if kind == UNREADABLE:
        pieces = body_pieces(PARTS[part][1], FORM_DATA)
    else:
        pieces = value_pieces({"raw": TOO_DEEP_MAIL}, "parameters")
        pieces += decoded_pieces(pieces, ("parameters.raw:mime",))
    found = scan_pieces(scanner, pieces)
    assert {f.detector for f in found} == {kind}  # (nothing read there: only that)
    return found


# -- leaves: a value for each operator, naming detectors of the field's family ----------------


def _values(operator: str, names: list[str]) -> st.SearchStrategy[Any]:
    name = st.sampled_from(names)
    several = st.lists(name, min_size=1, max_size=3, unique=True)
    count = st.integers(min_value=0, max_value=3)
    drawn: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
        "exists": lambda: st.none(),
        "not_exists": lambda: st.none(),
        "equals": lambda: name | several,
        "not_equals": lambda: name | several,
        "in": lambda: several,
        "not_in": lambda: several,
        "contains": lambda: name,
        "not_contains": lambda: name,
        "any_matches": lambda: name.map(re.escape),
        "matches": lambda: name.map(re.escape),
        "glob": lambda: name.map(lambda n: n[:3] + "*"),
        "starts_with": lambda: name.map(lambda n: n[:4]),
        "ends_with": lambda: name.map(lambda n: n[-4:]),
        "gt": lambda: count,
        "gte": lambda: count,
        "lt": lambda: count,
        "lte": lambda: count,
        "between": lambda: st.tuples(st.integers(0, 1), st.integers(1, 3)).map(list),
        "cidr": lambda: st.just("10.0.0.0/8"),
        "time_window": lambda: st.just({"start": "00:00", "end": "23:59"}),
    }
    return drawn[operator]()


@st.composite
def leaves(draw: st.DrawFn, fields: list[str], operators: list[str]) -> dict[str, Any]:
    field = draw(st.sampled_from(fields))
    operator = draw(st.sampled_from(operators))
    leaf: dict[str, Any] = {"field": field, "operator": operator}
    value = draw(_values(operator, FAMILIES[field]))
    if value is not None:
        leaf["value"] = value
    return leaf


def _engine(condition: dict[str, Any], decision: str) -> Engine:
    rule = {"name": "content", "decision": decision, "reason": "content rule",
            "conditions": [condition]}  # fmt: skip
    return Engine(policies=[load_policy({"name": "guard", "rules": [rule]})])


def _refusing(leaf: dict[str, Any]) -> dict[str, Any]:
    """The condition that refuses when `leaf` answers as what could not be read must make it
    answer: the leaf for a question of presence, ``not`` it for one of absence (``deny
    unless none is found``)."""
    return leaf if UNREAD_ANSWERS[leaf["operator"]] else {"not": leaf}


def _ctx(level: str, mode: str = "sdk", **attributes: object) -> EvaluationContext:
    return EvaluationContext(agent="Bot", mode=mode, now=NOW, connector="demo",
                             enforcement_level=level, attributes=attributes)  # fmt: skip


def _readable(field: str, names: list[str]) -> list[Finding]:
    """Detections of `names` read beside what was not (a card number in another part)."""
    kind = {"secrets": "secret", "pii": "pii", "injection": "injection"}[field.split(".")[1]]
    return [Finding(name, kind, 0.9, "body.note", 0, 4) for name in names]


# -- the table ---------------------------------------------------------------------------


def test_every_operator_is_decided_for_what_could_not_be_read() -> None:
    """A new operator must be placed in the table (presence, absence, or neither)."""
    assert set(UNREAD_ANSWERS) == set(OPERATORS)


# -- the property: operator x field x what could not be read x enforcement level ----------


@settings(max_examples=examples(300), deadline=None)
@given(
    leaves(["content.secrets", "content.pii"], ASKING),
    st.sampled_from(["deny", "require_approval", "redact"]),
    st.sampled_from(UNREAD_KINDS),
    st.integers(0, len(PARTS) - 1),
    st.sampled_from(LEVELS),
    st.data(),
)
def test_a_request_rule_naming_a_detector_refuses_what_could_not_be_read(
    leaf: dict[str, Any], decision: str, kind: str, part: int, level: str, data: st.DataObject
) -> None:
    """Whatever the operator and the detector it names: denied, held, or (a redact rule in
    SDK mode) denied as a detection would be, at every level (``would_deny`` where the level
    lets it pass); the gateway's redaction targets hold what could not be read, so it
    refuses to rewrite it. Detections read beside it change nothing.

    Before: ``contains``/``in``/``equals`` and the other leaves naming a detector were false
    (the value holds only ``unreadable_encoding``), absence leaves true: allowed."""
    engine = _engine(_refusing(leaf), decision)
    plan = guard_plan(engine.policies)
    assert plan.request is not None
    beside = data.draw(st.lists(st.sampled_from(FAMILIES[leaf["field"]]), max_size=2))
    findings = _unread_findings(plan.request, kind, part) + _readable(leaf["field"], beside)
    ctx, found = with_findings(_ctx(level), plan, findings)
    assert kind in ctx.attributes[leaf["field"]]  # type: ignore[operator]
    decided = evaluate_sdk(engine, SPEC, ctx, plan=plan, findings=found)
    expected = "require_approval" if decision == "require_approval" else "deny"
    assert verdict(decided) == expected, decided.reason
    assert decided.matched_rules[0] == LABEL
    enforced = apply_enforcement(decided, level)
    assert (decided.outcome, decided.would_outcome) == (enforced.outcome, enforced.would_outcome)
    if decision == "redact":  # through the gateway: a redact that cannot rewrite it refuses
        names, rule = redactions(engine, plan, SPEC, ctx)
        assert kind in names
        assert rule == LABEL


@settings(max_examples=examples(300), deadline=None)
@given(
    leaves(["response.secrets", "response.injection"], ASKING),
    st.sampled_from(["deny", "require_approval", "redact"]),
    st.sampled_from(UNREAD_KINDS),
    st.integers(0, len(PARTS) - 1),
    st.sampled_from(LEVELS),
)
def test_a_response_rule_naming_a_detector_cuts_what_could_not_be_read(
    leaf: dict[str, Any], decision: str, kind: str, part: int, level: str
) -> None:
    """An answer the scanner could not read: cut by a deny or hold rule, redacted by a
    redact rule with what could not be read among the names (the gateway then cuts it: it
    cannot rewrite it). The gateway applies the level to the verdict (monitor: flagged).

    Before: ``pass`` (the rule did not match)."""
    engine = _engine(_refusing(leaf), decision)
    plan = guard_plan(engine.policies)
    assert plan.response is not None
    findings = _unread_findings(plan.response, kind, part)
    ctx = _ctx(level, "proxy", **content_attributes(findings, "response"))
    outcome, rule, names = response_verdict(engine, plan, SPEC, ctx)
    assert rule == LABEL
    if decision == "redact":
        assert outcome == "redact"
        assert kind in names
    else:
        assert outcome == "cut"


@pytest.mark.parametrize("field", sorted(FAMILIES))
@pytest.mark.parametrize("operator", [op for op, a in UNREAD_ANSWERS.items() if a is None])
def test_a_leaf_that_reads_no_detection_is_not_changed_by_what_could_not_be_read(
    field: str, operator: str
) -> None:
    """``cidr`` and ``time_window`` ask whether the value is an address or a moment: a list
    of detector names never is, whatever the body holds, so their leaf stays false."""
    value = "10.0.0.0/8" if operator == "cidr" else {"start": "00:00", "end": "23:59"}
    engine = _engine({"field": field, "operator": operator, "value": value}, "deny")
    for held in ([UNREADABLE], [TOO_DEEP, FAMILIES[field][0]], [FAMILIES[field][0]]):
        assert engine.evaluate(SPEC, _ctx("full_enforce", **{field: held})).matched_rules == ()


# -- the examples the review named ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "operator", "value"),
    [
        ("content.pii", "contains", "card_number"),
        ("content.secrets", "contains", "private_key"),
        ("content.pii", "in", ["card_number", "iban"]),
        ("content.pii", "equals", "card_number"),
    ],
)
@pytest.mark.parametrize("kind", UNREAD_KINDS)
def test_a_deny_rule_naming_one_detector_denies_what_could_not_be_read(
    field: str, operator: str, value: object, kind: str
) -> None:
    """Before: allowed ("No deny rules matched")."""
    engine = _engine({"field": field, "operator": operator, "value": value}, "deny")
    decided = engine.evaluate(SPEC, _ctx("full_enforce", **{field: [kind]}))
    assert (decided.outcome, decided.matched_rules) == ("deny", (LABEL,))


def test_an_allow_rule_on_no_card_number_does_not_allow_what_could_not_be_read() -> None:
    """An agent whose SDK default is deny, a rule allowing what holds no card number.
    Before: ``not_contains card_number`` was true of ``[unreadable_encoding]``: allowed."""
    engine = _engine({"field": "content.pii", "operator": "not_contains", "value": "card_number"},
                     "allow")  # fmt: skip
    plan = guard_plan(engine.policies)
    spec = ActionSpec(type="demo.mail.send", resource={"provider": "demo"},
                      parameters={"raw": TOO_DEEP_MAIL})  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="sdk", now=NOW, connector="demo", sdk_default="deny")
    ctx, found = with_findings(ctx, plan, action_findings(plan, spec, ("parameters.raw:mime",)))
    decided = evaluate_sdk(engine, spec, ctx, plan=plan, findings=found)
    assert (decided.outcome, decided.default_applied) == ("deny", True)
    read = dataclasses.replace(ctx, attributes={"content.pii": ["email"]})
    assert engine.evaluate(spec, read).outcome == "allow"  # (what was read: as before)


@pytest.mark.parametrize("level", LEVELS)
def test_an_sdk_redact_rule_naming_one_detector_refuses_an_eml_too_deep(level: str) -> None:
    """Before: allowed, at every level (the rule did not match, and its targets were
    ``card_number`` alone)."""
    engine = _engine({"field": "content.pii", "operator": "contains", "value": "card_number"},
                     "redact")  # fmt: skip
    plan = guard_plan(engine.policies)
    assert dict(plan.redact_request)[LABEL] >= {"card_number", UNREADABLE, TOO_DEEP}
    spec = ActionSpec(type="demo.mail.send", resource={"provider": "demo"},
                      parameters={"raw": TOO_DEEP_MAIL})  # fmt: skip
    ctx = _ctx(level)
    ctx, found = with_findings(ctx, plan, action_findings(plan, spec, ("parameters.raw:mime",)))
    decided = evaluate_sdk(engine, spec, ctx, plan=plan, findings=found)
    assert verdict(decided) == "deny"
    assert "cannot be redacted" in decided.reason
    assert decided.outcome == apply_enforcement(decided, level).outcome
    if level != "full_enforce":
        assert (decided.outcome, decided.would_outcome) == ("allow", "would_deny")


@pytest.mark.parametrize("decision", ["deny", "redact"])
def test_a_replayed_sdk_record_of_what_could_not_be_read_is_refused(decision: str) -> None:
    """A record keeps the detectors' names (``content.pii: [mime_too_deep]``): replayed, a
    rule naming one detector decides it as live does now. Before: allow."""
    engine = _engine({"field": "content.pii", "operator": "contains", "value": "card_number"},
                     decision)  # fmt: skip
    item = Recorded("r1", "sdk", SPEC, _ctx("full_enforce", **{"content.pii": [TOO_DEEP]}))
    assert verdict(replay_one(engine, item)) == "deny"
