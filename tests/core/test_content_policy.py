"""Content fields in the policy language, the guard plan, locations and redaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec
from agentfirewall.content import (
    body_pieces,
    default_scanner,
    redact_body,
    request_pieces,
    scan_pieces,
)
from agentfirewall.content.locate import UNREAD_NAMES
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.fields import compile_field
from agentfirewall.policy.guard import guard_plan, redactions, response_verdict
from agentfirewall.policy.permissions import AccessRule
from agentfirewall.policy.schema import document_schema
from agentfirewall.policy.unseen import reads_request_data, unseen_decision
from tests.fuzzscale import examples

AWS = "AKIAQ3V7WZ2MXK4PLRTY"
CARD = "4242 4242 4242 4242"
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def _policy(*rules: dict[str, object]) -> object:
    return load_policy({"name": "p", "rules": list(rules)})


def _rule(name: str, decision: str, field: str, op: str = "exists", value: object = None):  # type: ignore[no-untyped-def]
    leaf: dict[str, object] = {"field": field, "operator": op}
    if value is not None:
        leaf["value"] = value
    return {"name": name, "decision": decision, "conditions": [leaf]}


def _engine(*rules: dict[str, object]) -> Engine:
    allow = AccessRule(agent="*", connector="*", action_pattern="*", decision="allow")
    return Engine([allow], [_policy(*rules)])  # type: ignore[list-item]


def _ctx(**attributes: object) -> EvaluationContext:
    return EvaluationContext(agent="bot", mode="proxy", now=NOW, connector="slack",
                             attributes=attributes)  # fmt: skip


SPEC = ActionSpec(type="slack.message.send", parameters={"text": "x"})


def test_content_fields_compile_and_unknown_ones_are_refused() -> None:
    for field in ("content.secrets", "content.pii", "response.secrets", "response.injection"):
        assert compile_field(field)(SPEC, _ctx(**{field: ["x"]})) == ["x"]
    for bad in ("content.other", "content", "response.pii.x", "content.secrets.0"):
        with pytest.raises(ValueError, match="unknown field"):
            compile_field(bad)


def test_redact_decision_loads_as_an_allow_that_redacts() -> None:
    policy = _policy(_rule("r", "redact", "content.pii", "contains", "card_number"))
    rule = policy.rules[0]  # type: ignore[attr-defined]
    assert (rule.decision, rule.redact) == ("allow", True)
    assert load_policy(policy.to_document()) == policy  # type: ignore[attr-defined]
    assert "redact" in document_schema()["$defs"]["Rule"]["properties"]["decision"]["enum"]


def test_detections_decide_with_existing_operators() -> None:
    engine = _engine(
        _rule("no-aws", "deny", "content.secrets", "contains", "aws_access_key"),
        _rule("hold-pii", "require_approval", "content.pii", "exists"),
    )
    assert engine.evaluate(SPEC, _ctx()).outcome == "allow"
    assert engine.evaluate(SPEC, _ctx(**{"content.secrets": ["aws_access_key"]})).outcome == "deny"
    assert engine.evaluate(SPEC, _ctx(**{"content.secrets": ["jwt"]})).outcome == "allow"
    held = engine.evaluate(SPEC, _ctx(**{"content.pii": ["email"]}))
    assert held.outcome == "require_approval"


def test_no_content_rule_means_nothing_is_scanned() -> None:
    plan = guard_plan((_policy(_rule("t", "deny", "action_spec.type", "equals", "x")),))  # type: ignore[arg-type]
    assert plan.request is None
    assert plan.response is None
    plan = guard_plan((_policy(_rule("s", "deny", "content.secrets")),))  # type: ignore[arg-type]
    assert plan.request is not None
    assert plan.response is None
    assert "aws_access_key" in plan.request.names
    assert "email" not in plan.request.names
    plan = guard_plan((_policy(_rule("i", "deny", "response.injection")),))  # type: ignore[arg-type]
    assert plan.request is None
    assert plan.response is not None
    assert all(n.startswith("injection.") for n in plan.response.names)


def test_redactions_name_what_the_matching_rules_target() -> None:
    rules = (_rule("cards", "redact", "content.pii", "contains", "card_number"),
             _rule("all-pii", "redact", "content.secrets", "exists"))  # fmt: skip
    engine = _engine(*rules)
    plan = guard_plan(engine.policies)
    names, label = redactions(engine, plan, SPEC, _ctx(**{"content.pii": ["card_number"]}))
    # (and what could not be read, which may hold a card number: refused, not forwarded)
    assert (names, label) == (frozenset({"card_number"}) | UNREAD_NAMES, "p/cards")
    names, _ = redactions(engine, plan, SPEC, _ctx(**{"content.secrets": ["jwt"]}))
    assert "jwt" in names
    assert "aws_access_key" in names
    assert "card_number" not in names
    assert redactions(engine, plan, SPEC, _ctx())[0] == frozenset()


def test_response_verdict_cuts_redacts_or_passes() -> None:
    engine = _engine(
        _rule("cut", "deny", "response.injection", "contains", "injection.ignore_instructions"),
        _rule("scrub", "redact", "response.secrets", "exists"),
        _rule("fine", "allow", "response.injection", "exists"),
    )
    plan = guard_plan(engine.policies)
    hit = {"response.injection": ["injection.ignore_instructions"]}
    assert response_verdict(engine, plan, SPEC, _ctx(**hit))[:2] == ("cut", "p/cut")
    outcome, label, names = response_verdict(
        engine, plan, SPEC, _ctx(**{"response.secrets": ["jwt"]})
    )
    assert (outcome, label) == ("redact", "p/scrub")
    assert "jwt" in names
    other = {"response.injection": ["injection.chat_template"]}
    assert response_verdict(engine, plan, SPEC, _ctx(**other))[0] == "pass"


def test_unseen_body_widens_content_rules_not_response_rules() -> None:
    assert reads_request_data("content.secrets")
    assert not reads_request_data("response.secrets")
    engine = _engine(_rule("out", "deny", "content.secrets"))
    seen = engine.evaluate(SPEC, _ctx())
    assert unseen_decision(engine, SPEC, _ctx(), seen).outcome == "deny"
    engine = _engine(_rule("back", "deny", "response.secrets"))
    seen = engine.evaluate(SPEC, _ctx())
    assert unseen_decision(engine, SPEC, _ctx(), seen).outcome == "allow"


def test_findings_say_where_and_never_what() -> None:
    scanner = default_scanner()
    headers = [("X-Note", AWS), ("Authorization", AWS)]
    pieces = request_pieces(f"/v1/{AWS}", f"a=1&key={AWS}", headers, {"authorization"})
    body = json.dumps({"messages": [{"content": f"card: {CARD}"}]}).encode()
    pieces += body_pieces(body, "application/json")
    found = {(f.detector, f.location, f.offset) for f in scan_pieces(scanner, pieces)}
    assert found == {
        ("aws_access_key", "url.path", 4),
        ("aws_access_key", "query.key", 0),
        ("aws_access_key", "header.x-note", 0),
        ("card_number", "body.messages.0.content", 6),
    }
    form = scan_pieces(scanner, body_pieces(b"password=a8Fj3kLm9Qz2Xv7Bn4Rt&x=1", "application/"
                                            "x-www-form-urlencoded"))  # fmt: skip
    assert [(f.detector, f.location) for f in form] == [("generic_secret", "form.password")]


def test_redaction_in_json_form_and_text() -> None:
    scanner = default_scanner()
    names = frozenset({"card_number", "aws_access_key"})
    body = json.dumps({"text": f"pay {CARD}", "n": 1, "k": [AWS]}).encode()
    out, count = redact_body(scanner, body, "application/json; charset=utf-8", names)
    assert count == 2
    assert json.loads(out) == {"text": "pay [REDACTED:card_number]", "n": 1,
                               "k": ["[REDACTED:aws_access_key]"]}  # fmt: skip
    out, count = redact_body(scanner, f"text=pay+{CARD}&c=1".encode(),
                             "application/x-www-form-urlencoded", names)  # fmt: skip
    assert dict(parse_qsl(out.decode())) == {"text": "pay [REDACTED:card_number]", "c": "1"}
    out, count = redact_body(scanner, f"--b\r\n\r\n{AWS}\r\n--b--".encode(), "multipart/x", names)
    assert out == b"--b\r\n\r\n[REDACTED:aws_access_key]\r\n--b--"
    assert count == 1
    assert redact_body(scanner, b'{"a": "clean"}', "application/json", names) == (
        b'{"a": "clean"}', 0,
    )  # fmt: skip


_SECRETS = st.sampled_from([AWS, CARD, "ghp_" + "aB3xY9kLmN" * 3 + "q1w2e3", "bob@example.com"])
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
_JSON = st.recursive(
    st.none()
    | st.integers()
    | _TEXT
    | st.builds(lambda a, s, b: a + " " + s + " " + b, _TEXT, _SECRETS, _TEXT),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=examples(60), deadline=None)
@given(_JSON)
@example({"TOKEN": "AKIA222223245AAAABCD:0"})  # found by CI: a key id redacted, ":0" left
def test_redacted_json_stays_json_and_keeps_no_detection(document: object) -> None:
    scanner = default_scanner()
    names = scanner.names
    out, _ = redact_body(scanner, json.dumps(document).encode(), "application/json", names)
    again = json.loads(out)
    rescanned = scan_pieces(scanner, body_pieces(json.dumps(again).encode(), "application/json"))
    assert rescanned == []


_SECRET_NAMES = st.sampled_from(["TOKEN", "api_key", "password", "session_id", "Authorization"])
_AROUND = st.text(alphabet="abcXYZ0129:_-=/+. ", max_size=12)


@settings(max_examples=examples(100), deadline=None)
@given(
    st.dictionaries(
        _SECRET_NAMES, st.builds(lambda a, s, b: a + s + b, _AROUND, _SECRETS, _AROUND), min_size=1
    )
)
def test_a_secret_named_value_leaves_nothing_to_find_once_redacted(
    document: dict[str, str],
) -> None:
    """A known secret inside a secret-named value, with text before and after it: once
    redacted, what is left (markers and the text around them) is not itself a secret."""
    scanner = default_scanner()
    body = json.dumps(document).encode()
    out, count = redact_body(scanner, body, "application/json", scanner.names)
    assert (count >= 1) is bool(scan_pieces(scanner, body_pieces(body, "application/json")))
    rescanned = scan_pieces(scanner, body_pieces(out, "application/json"))
    assert rescanned == []
