"""The action model: the seed's JSON shapes round-trip; the grammar and hash hold."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.actions import (
    ActionSpec,
    action_hash,
    canonical_json,
    is_action_type,
    parse_action_spec,
)
from agentfirewall.errors import ActionSpecError

SEED_RAW_HTTP = {
    "type": "github.pr.merge",
    "resource": {
        "provider": "github",
        "account": "acme",
        "target": "acme/api",
        "environment": "production",
    },
    "parameters": {"pull_number": 42},
}
SEED_STRIPE = {
    "type": "payment.transfer.initiate",
    "resource": {
        "provider": "stripe",
        "account": "acct_main",
        "target": "transfers",
        "environment": "production",
    },
    "parameters": {"amount": 25000, "currency": "usd", "destination": "acct_xyz"},
    "risk_hints": {"financial_impact": True, "irreversible": True},
}
SEED_LANGCHAIN = {
    "type": "github.issue.create",
    "resource": {
        "provider": "github",
        "account": "acme",
        "target": "acme/api",
        "environment": "production",
    },
    "parameters": {"title": "Login bug", "body": "It fails"},
}
SEED_CREWAI = {
    "type": "email.send",
    "resource": {
        "provider": "sendgrid",
        "account": "main",
        "target": "cto@example.com",
        "environment": "production",
    },
    "parameters": {"to": "cto@example.com", "subject": "Update", "body": "All green"},
    "risk_hints": {"external_recipient": True},
}
SEED_WEBHOOK = {
    "type": "webhook.post",
    "resource": {"provider": "webhook", "target": "https://api.example.com/v1/action"},
    "parameters": {
        "method": "POST",
        "headers": {"Authorization": "Bearer secret"},
        "body": {"key": "value"},
    },
}


@pytest.mark.parametrize(
    "data", [SEED_RAW_HTTP, SEED_STRIPE, SEED_LANGCHAIN, SEED_CREWAI, SEED_WEBHOOK]
)
def test_seed_specs_round_trip(data: dict[str, object]) -> None:
    spec = parse_action_spec(data)
    assert spec.to_dict() == {"parameters": {}, "risk_hints": {}, **data}
    assert parse_action_spec(spec.canonical()) == spec
    assert parse_action_spec(json.dumps(data)) == spec


def test_hash_is_stable_and_ignores_key_order() -> None:
    shuffled = json.loads(json.dumps(SEED_RAW_HTTP))
    shuffled["resource"] = dict(reversed(list(shuffled["resource"].items())))
    assert action_hash(SEED_RAW_HTTP) == action_hash(shuffled)
    assert len(action_hash(SEED_RAW_HTTP)) == 64


def test_hash_changes_with_any_parameter() -> None:
    other = {**SEED_RAW_HTTP, "parameters": {"pull_number": 43}}
    assert action_hash(SEED_RAW_HTTP) != action_hash(other)


def test_canonical_form_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


@pytest.mark.parametrize(
    "bad",
    [
        "GitHub.pr.merge",
        "github",
        "github..merge",
        ".github.pr",
        "github.pr.",
        "github pr",
        "github.pr.merge!",
        "",
        "a." * 10 + "b",
        "github.p\u00e9.merge",
    ],
)
def test_action_type_grammar_rejects(bad: str) -> None:
    assert not is_action_type(bad)
    with pytest.raises(ActionSpecError) as err:
        parse_action_spec({"type": bad})
    assert err.value.field == "type"
    assert "`type`" in str(err.value)


@pytest.mark.parametrize(
    "good",
    [
        "email.send",
        "github.pr.merge",
        "mcp.tools.create_pull_request",
        "http.get",
        "openai.fine-tuning.job.create",
        "payment.transfer.initiate",
    ],
)
def test_action_type_grammar_accepts(good: str) -> None:
    assert parse_action_spec({"type": good}).type == good


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ActionSpecError, match="Extra inputs"):
        parse_action_spec({**SEED_RAW_HTTP, "surprise": 1})
    with pytest.raises(ActionSpecError, match=r"resource\.region"):
        parse_action_spec({"type": "a.b", "resource": {"region": "eu"}})


def test_wrong_types_name_the_field() -> None:
    with pytest.raises(ActionSpecError, match="parameters"):
        parse_action_spec({"type": "a.b", "parameters": [1, 2]})


def test_spec_is_frozen_and_provider_falls_back_to_type() -> None:
    spec = parse_action_spec({"type": "email.send"})
    assert spec.provider == "email"
    with pytest.raises(Exception, match="frozen"):
        spec.type = "x.y"  # type: ignore[misc]


def test_non_json_values_are_refused() -> None:
    with pytest.raises(ActionSpecError):
        parse_action_spec({"type": "a.b", "parameters": {"x": float("nan")}})


segment = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)


@given(st.lists(segment, min_size=2, max_size=8))
def test_grammar_accepts_generated_types(parts: list[str]) -> None:
    name = ".".join(parts)
    assert is_action_type(name)
    assert ActionSpec(type=name).type == name


@given(st.text(max_size=40))
def test_grammar_never_crashes(text: str) -> None:
    ok = is_action_type(text)
    if not ok:
        with pytest.raises(ActionSpecError):
            parse_action_spec({"type": text})
