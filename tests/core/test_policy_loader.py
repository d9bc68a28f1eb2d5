"""Loading policy documents: the format, JSON, errors with file/line/field, YAML traps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentfirewall.errors import PolicyError
from agentfirewall.policy import load_policy, load_policy_file, validate_policy_text
from agentfirewall.policy.models import AllCondition, FieldCondition, NotCondition

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"
DESIGN_EXAMPLE = (EXAMPLES / "protect-main.yaml").read_text(encoding="utf-8")


def test_the_design_example_loads() -> None:
    policy = load_policy(DESIGN_EXAMPLE)
    assert policy.name == "protect-main"
    assert policy.priority == 10
    assert policy.scope.environments == ("production",)
    rule = policy.rules[0]
    assert rule.decision == "require_approval"  # `requires_approval` accepted
    assert rule.approval is not None
    assert rule.approval.approver_roles == ("admin", "owner")
    assert isinstance(rule.conditions, AllCondition)
    inner = rule.conditions.all[1].any[1]  # type: ignore[union-attr]
    assert isinstance(inner, NotCondition)
    assert isinstance(inner.not_, FieldCondition)
    assert inner.not_.operator == "exists"


def test_json_and_round_trip() -> None:
    policy = load_policy(DESIGN_EXAMPLE)
    document = policy.to_document()
    assert load_policy(json.dumps(document)) == policy
    assert load_policy(document) == policy
    assert document["rules"][0]["conditions"]["all"][1]["any"][1]["not"]["operator"] == "exists"


def test_defaults_and_both_spellings() -> None:
    policy = load_policy("name: p\nrules:\n  - {name: a, decision: require_approval}\n")
    assert policy.version is None
    assert policy.enabled
    assert policy.priority == 100
    assert policy.scope.action_types == ("*",)
    assert policy.scope.agents == ("*",)
    assert policy.rules[0].decision == "require_approval"
    assert load_policy("version: 1\nname: p\nrules: [{name: a, decision: allow}]").version == 1


def test_scope_under_metadata() -> None:
    text = (
        "name: p\nmetadata:\n  owner: sec\n  scope: {action_types: ['stripe.*']}\n"
        "rules: [{name: a, decision: deny}]\n"
    )
    policy = load_policy(text)
    assert policy.scope.action_types == ("stripe.*",)
    assert policy.metadata == {"owner": "sec"}
    errors = validate_policy_text(text.replace("stripe.*", "Stripe"), source="m.yaml")
    assert errors[0].line == 4
    assert errors[0].field == "scope.action_types[0]"


def test_a_list_of_conditions_means_all() -> None:
    policy = load_policy(
        "name: p\nrules:\n - name: r\n   decision: deny\n   conditions:\n"
        "    - {field: action_spec.type, operator: exists}\n"
    )
    assert isinstance(policy.rules[0].conditions, AllCondition)


def test_errors_carry_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(DESIGN_EXAMPLE.replace("operator: exists", "operator: exist"), "utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    error = caught.value
    assert error.file == str(path)
    assert error.line == 18
    assert error.field == "rules[0].conditions.all[1].any[1].not.operator"
    assert str(error).startswith(f"{path}:18: `rules[0].conditions.all[1].any[1].not.operator`: ")


def test_all_errors_are_reported() -> None:
    text = (
        "name: p\nrules:\n  - {name: a, decision: maybe}\n"
        "  - {name: b, decision: deny, risk_score: -1}\n"
    )
    errors = validate_policy_text(text)
    assert [(e.line, e.field) for e in errors] == [
        (3, "rules[0].decision"),
        (4, "rules[1].risk_score"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty document"),
        ("- a\n- b\n", "must be a mapping"),
        (
            "name: p\nrules: [{name: a, decision: deny}, {name: a, decision: allow}]\n",
            "duplicate rule name",
        ),
        ("base: &b {name: r, decision: deny}\nname: p\nrules: [*b]\n", "anchors and aliases"),
        ("name: p\nrules: []\n", "`rules`: needs at least 1 item(s), has 0"),
        ("name: p\nversion: 2\nrules: [{name: a, decision: deny}]\n", "`version`: expected 1"),
        ("name: p\nrules: {a: 1}\n", "`rules`: expected a list"),
        ("name: ''\nrules: [{name: a, decision: deny}]\n", "`name`: needs at least 1 character"),
        (
            "name: p\nrules: [{name: a, decision: deny,\n"
            "  conditions: {field: x.y, operator: exists}}]",
            "unknown field",
        ),
        ("name: p\nrules: [{name: a, decision: deny, conditions: {color: red}}]", "a condition is"),
        (
            "name: p\nrules: [{name: a, decision: deny, conditions: {field: type, operator: gt}}]",
            "needs a `value`",
        ),
        (
            "name: p\nrules: [{name: a, decision: deny,\n"
            "  conditions: {field: type, operator: exists, value: 3}}]",
            "takes no value",
        ),
    ],
)
def test_invalid_documents(text: str, message: str) -> None:
    errors = validate_policy_text(text, source="t.yaml")
    assert errors, text
    assert message in str(errors[0])
    with pytest.raises(PolicyError):
        load_policy(text)


def _nested_block(depth: int) -> str:
    return "".join(f"{' ' * level}a:\n" for level in range(depth)) + " " * depth + "b: 1\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{a: " * 3000 + "1" + "}" * 3000, "nested deeper than 64 levels"),
        ('{"a":' * 3000 + "1" + "}" * 3000, "nested deeper than 64 levels"),
        ("[" * 3000 + "]" * 3000, "nested deeper than 64 levels"),
        (_nested_block(1200), "nested deeper than 64 levels"),
        ("name: p\nrules: [{name: a, decision: deny}]\nx: " + "9" * 5000, "invalid value"),
    ],
)
def test_documents_that_would_exhaust_the_parser_are_refused(text: str, message: str) -> None:
    """0.1.0 answered these with a RecursionError (PyYAML composes a document recursively,
    after seconds of work) or Python's 4,300-digit limit: a 500 from every policy route,
    `validate` included. Now a PolicyError, before the document is composed."""
    errors = validate_policy_text(text, source="t.yaml")
    assert [message in e.message for e in errors] == [True]
    nested = "name: p\nrules: [{name: a, decision: deny, conditions: " + "{not: " * 20
    assert validate_policy_text(nested + "{field: type, operator: exists}" + "}" * 20 + "}]") == []


def test_yaml_1_1_traps_are_off() -> None:
    policy = load_policy(
        "name: p\nrules:\n - name: no\n   decision: deny\n   conditions:\n"
        "    - {field: parameters.country, operator: in, value: [NO, on, yes]}\n"
        "    - {field: parameters.date, operator: equals, value: 2024-01-01}\n"
        "    - {field: context.time, operator: time_window, value: {start: 22:00, end: 06:00}}\n"
    )
    rule = policy.rules[0]
    assert rule.name == "no"
    assert isinstance(rule.conditions, AllCondition)
    values = [c.value for c in rule.conditions.all if isinstance(c, FieldCondition)]
    assert values == [["NO", "on", "yes"], "2024-01-01", {"start": "22:00", "end": "06:00"}]


@pytest.mark.parametrize(
    "line",
    ["enabled: no", "enabled: off", "enabled: yes", "enabled: 'false'", "enabled: 0",
     "priority: '5'", "priority: 5.0", "rules_risk: '50'", "timeout: '60'"],
)  # fmt: skip
def test_numbers_and_booleans_are_written_as_such(line: str) -> None:
    """`no`, `off`, `'false'` and 0 are not booleans, `'5'` is not a number: refused, never
    read as false (a policy silently disabled) or as the number it spells."""
    risk = "'50'" if line == "rules_risk: '50'" else "50"
    timeout = "'60'" if line == "timeout: '60'" else "60"
    top = "" if line.startswith(("rules_risk", "timeout")) else line + "\n"
    text = (
        f"name: p\n{top}rules:\n - name: r\n   decision: requires_approval\n"
        f"   risk_score: {risk}\n   approval: {{timeout_seconds: {timeout}}}\n"
    )
    with pytest.raises(PolicyError, match=r"valid (boolean|integer|number)"):
        load_policy(text)
    plain = "name: p\nenabled: false\nrules:\n - {name: r, decision: deny}\n"
    assert load_policy(plain).enabled is False


@pytest.mark.parametrize(
    ("written", "suggested"),
    [("requires-approval", "requires_approval"), ("Deny", "deny"), ("redacted", "redact")],
)
def test_a_misspelled_decision_names_every_valid_one_and_the_nearest(
    written: str, suggested: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(f"name: p\nrules:\n - {{name: r, decision: {written}}}\n")
    message = str(caught.value)
    for valid in ("allow", "deny", "require_approval", "requires_approval", "redact"):
        assert valid in message
    assert f"did you mean `{suggested}`?" in message


def test_a_stored_document_is_read_as_it_was_accepted() -> None:
    """What earlier versions accepted on write (`enabled: 'no'`, `priority: '5'`, a role of
    any name) is refused now, but a document already stored still loads, as it was read
    then: a policy never vanishes from enforcement because a check tightened."""
    old = (
        "name: p\nenabled: 'no'\npriority: '5'\nrules:\n - {name: r, decision: "
        "requires_approval, risk_score: '50', approval: {approver_roles: [admins]}}\n"
    )
    with pytest.raises(PolicyError):
        load_policy(old)
    stored = load_policy(old, stored=True)
    assert (stored.enabled, stored.priority, stored.rules[0].risk_score) == (False, 5, 50)
    assert stored.rules[0].approval is not None
    assert stored.rules[0].approval.approver_roles == ("admins",)


def test_bytes_size_and_encoding_limits() -> None:
    assert load_policy(DESIGN_EXAMPLE.encode()).name == "protect-main"
    with pytest.raises(PolicyError, match="UTF-8"):
        load_policy(b"name: \xff\n")
    with pytest.raises(PolicyError, match="1 MiB"):
        load_policy("name: p\n" + "#" * (1024 * 1024))


def test_missing_file() -> None:
    with pytest.raises(PolicyError, match="cannot read file") as caught:
        load_policy_file("/nonexistent/policy.yaml")
    assert caught.value.file == "/nonexistent/policy.yaml"


def test_json_with_tabs_and_line_numbers() -> None:
    text = '{\n\t"name": "p",\n\t"rules": [\n\t\t{"name": "r", "decision": "perhaps"}\n\t]\n}\n'
    errors = validate_policy_text(text, source="p.json")
    assert [(e.line, e.field) for e in errors] == [(4, "rules[0].decision")]
    assert load_policy(text.replace("perhaps", "deny")).rules[0].decision == "deny"
