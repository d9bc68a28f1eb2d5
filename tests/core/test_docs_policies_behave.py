"""docs/policies.md and docs/policy-packs.md, claim by claim: each example decides what the
text around it says, with the real loader and the real engine.

Examples and tables are read from the docs when the tests run (a changed example is tested
as changed), and every test id names the doc line of its claim. A table row this file has
no check for fails, so a new row needs its proof. The last part is the mistakes a newcomer
makes — a typo in a key, an operator or a field, a tab, a list where one value goes, a
misspelt check in a test case: each is refused where it is, saying what was meant.
"""

from __future__ import annotations

import json
import re
import shlex
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.decisions import ApprovalRequirement, Decision, apply_enforcement
from agentfirewall.errors import PolicyError
from agentfirewall.policy import (
    NO_DENY_REASON,
    OPERATORS,
    AccessRule,
    Engine,
    EvaluationContext,
    KillSwitch,
    Policy,
    load_pack,
    load_policy,
    preset_rules,
    validate_policy_text,
)
from agentfirewall.policy.casefile import run_cases
from agentfirewall.policy.guard import explain_with_content, guard_plan, response_verdict
from agentfirewall.policy.loader import YamlLoader
from agentfirewall.policy.packs import list_packs
from tests.core.test_docs_policies import (
    PACKS,
    POLICIES,
    PROTECT,
    PROTECT_LINE,
    _block,
    _cells,
    _line,
    _paragraph,
    _table,
    _text,
    _ticked,
    _where,
)

MONDAY = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
_ABSENT = object()  # a field left out of the action


# --- deciding ----------------------------------------------------------------------------


def _ctx(**fields: Any) -> EvaluationContext:
    return EvaluationContext(**{"agent": "Bot", "mode": "sdk", "now": MONDAY, **fields})


def _decide(
    policies: list[Policy],
    action: dict[str, Any],
    *,
    rules: tuple[AccessRule, ...] = (),
    switches: tuple[KillSwitch, ...] = (),
    **context: Any,
) -> Decision:
    """`Engine.evaluate`, and `Engine.decide` (the fast path) must agree with it."""
    ctx = _ctx(**context)
    decision = Engine(rules, policies, switches).evaluate(parse_action_spec(action), ctx)
    fast = Engine(rules, policies, switches).decide(
        action, agent=ctx.agent, mode=ctx.mode, now=ctx.now, connector=ctx.connector,
        enforcement_level=ctx.enforcement_level, sdk_default=ctx.sdk_default, risk=ctx.risk,
        attributes=ctx.attributes,
    )  # fmt: skip
    assert (fast.outcome, fast.matched_rules) == (decision.outcome, decision.matched_rules)
    return decision


def _rule(decision: Decision) -> str:
    """The deciding rule; ``default`` when none decided."""
    return decision.matched_rules[0] if decision.matched_rules else "default"


def _policy(**rule: Any) -> Policy:
    """Policy `p` with one rule `r` (a deny unless `decision` says otherwise)."""
    scope = rule.pop("policy", {})
    return load_policy({"name": "p", "rules": [{"name": "r", "decision": "deny", **rule}], **scope})


def _leaf(condition: dict[str, Any], decision: str = "deny") -> Policy:
    return _policy(decision=decision, conditions=[condition])


def _placed(field: str, value: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """An action and context fields holding `value` at `field` (none for _ABSENT)."""
    action: dict[str, Any] = {"type": "github.pr.merge"}
    context: dict[str, Any] = {}
    parts = field.removeprefix("action_spec.").split(".")
    if value is _ABSENT:
        pass
    elif parts[0] in ("parameters", "risk_hints", "resource"):
        target = action.setdefault(parts[0], {})
        for part in parts[1:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    elif field == "context.time":
        context["now"] = value
    else:
        context["attributes"] = {field.removeprefix("context."): value}
    return action, context


def _holds(condition: dict[str, Any], value: object) -> bool:
    """Whether the leaf is true with `value` at its field (its deny rule decides)."""
    action, context = _placed(condition["field"], value)
    return _decide([_leaf(condition)], action, **context).outcome == "deny"


# --- 3. Policy documents: the protect-main example ---------------------------------------

MERGE = {"type": "github.pr.merge", "resource": {"environment": "production"}}
MAIN = {**MERGE, "parameters": {"base": "main"}}
# fmt: off
PROTECT_CASES = [  # "merges to main need a human": (case, action, agent, held)
    ("merge into main", MAIN, "Bot", True),
    ("merge naming no base", MERGE, "Bot", True),
    ("merge by any agent", MAIN, "ci-7", True),
    ("merge into a branch", {**MERGE, "parameters": {"base": "feature/x"}}, "Bot", False),
    ("merge in staging", {**MAIN, "resource": {"environment": "staging"}}, "Bot", False),
    ("merge naming no environment", {"type": "github.pr.merge"}, "Bot", False),
    ("another pr action", {**MAIN, "type": "github.pr.create"}, "Bot", False),
]
# fmt: on


@pytest.mark.parametrize(
    ("action", "agent", "held"),
    [case[1:] for case in PROTECT_CASES],
    ids=[f"policies.md:{PROTECT_LINE}:{case[0]}" for case in PROTECT_CASES],
)
def test_protect_main_holds_merges_to_main(action: dict[str, Any], agent: str, held: bool) -> None:
    decision = _decide([load_policy(PROTECT)], action, agent=agent)
    if not held:  # no rule matched: the SDK default answers
        assert (decision.outcome, decision.default_applied) == ("allow", True)
        return
    assert (decision.outcome, _rule(decision)) == ("require_approval", "protect-main/merge-to-main")
    assert (decision.reason, decision.risk_score) == ("merges to main need a human", 70)
    assert decision.approval == ApprovalRequirement(3600, ("admin", "owner"))


# --- the key / default / meaning table ---------------------------------------------------


def _refused(document: dict[str, Any], field: str, message: str = "missing") -> None:
    with pytest.raises(PolicyError, match=re.escape(message)) as caught:
        load_policy(document)
    assert caught.value.field == field


def _outcome(policy: Policy, action: dict[str, Any] | None = None, **context: Any) -> str:
    return _decide([policy], action or {"type": "a.b"}, **context).outcome


def _check_environments() -> None:
    assert _policy().scope.environments == ()
    prod = _policy(policy={"scope": {"environments": ["production"]}})
    assert _outcome(prod, {"type": "a.b", "resource": {"environment": "production"}}) == "deny"
    assert _outcome(prod, {"type": "a.b", "resource": {"environment": "Production"}}) == "allow"
    assert _outcome(prod) == "allow"  # an action without an environment: out of scope


def _check_agents() -> None:
    assert _policy().scope.agents == ("*",)
    ci = _policy(policy={"scope": {"agents": ["ci-*"]}})
    assert _outcome(ci, agent="ci-deploy") == "deny"
    assert _outcome(ci, agent="CI-deploy") == "allow"  # case-sensitive


def _check_metadata() -> None:
    assert _policy().metadata == {}
    lifted = _policy(policy={"metadata": {"scope": {"action_types": ["github.*"]}, "by": "me"}})
    assert (lifted.scope.action_types, lifted.metadata) == (("github.*",), {"by": "me"})


def _check_conditions() -> None:
    assert _outcome(_policy()) == "deny"  # no conditions: always
    both = [{"field": "type", "operator": "equals", "value": "a.b"},
            {"field": "parameters.x", "operator": "exists"}]  # fmt: skip
    assert _outcome(_policy(conditions=both)) == "allow"  # a list means `all`
    assert _outcome(_policy(conditions=both), {"type": "a.b", "parameters": {"x": 1}}) == "deny"


def _check_decision() -> None:
    _refused({"name": "p", "rules": [{"name": "r"}]}, "rules[0].decision", "missing")
    written = {"allow": "allow", "deny": "deny", "require_approval": "require_approval",
               "requires_approval": "require_approval", "redact": "allow"}  # fmt: skip
    for decision, outcome in written.items():
        assert _outcome(_policy(decision=decision)) == outcome


def _check_rule_name() -> None:
    _refused({"name": "p", "rules": [{"decision": "deny"}]}, "rules[0].name", "missing")
    twice = {"name": "p", "rules": [{"name": "r", "decision": "deny"}] * 2}
    _refused(twice, "rules", "duplicate rule name `r`")


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


# fmt: off
DEFAULTS: dict[str, Any] = {
    "name": lambda: _refused({"rules": [{"name": "r", "decision": "deny"}]}, "name"),
    "description": lambda: _equal(_policy().description, ""),
    "scope.action_types": lambda: _equal(_policy().scope.action_types, ("*",)),
    "scope.environments": _check_environments,
    "scope.agents": _check_agents,
    "metadata": _check_metadata,
    "priority": lambda: _equal(_policy().priority, 100),
    "enabled": lambda: _equal(
        (_policy().enabled, _decide([_policy(policy={"enabled": False})], {"type": "a.b"})
         .default_applied), (True, True)),
    "rules[].name": _check_rule_name,
    "rules[].conditions": _check_conditions,
    "rules[].decision": _check_decision,
    "rules[].reason": lambda: _equal(_decide([_policy()], {"type": "a.b"}).reason,
                                     "denied by policy rule `p/r`"),
    "rules[].risk_score": lambda: (
        _equal(_policy().rules[0].risk_score, 0),
        _refused({"name": "p", "rules": [{"name": "r", "decision": "deny", "risk_score": 101}]},
                 "rules[0].risk_score", "at most 100")),
    "rules[].approval": lambda: _equal(
        _decide([_policy(decision="require_approval")], {"type": "a.b"}).approval,
        ApprovalRequirement(300, ("owner", "admin", "member"))),
}
# fmt: on
KEY_ROWS = _table(POLICIES, "| key | default |")


@pytest.mark.parametrize("row", KEY_ROWS, ids=[f"policies.md:{n}:{c[0]}" for n, c in KEY_ROWS])
def test_each_key_has_its_documented_default(row: tuple[int, list[str]]) -> None:
    key = row[1][0].strip("`")
    assert key in DEFAULTS, f"policies.md:{row[0]}: `{key}` is documented but not checked here"
    DEFAULTS[key]()


# --- 2. Access rules ---------------------------------------------------------------------


def _documented_rules() -> tuple[AccessRule, ...]:
    """The rules the `tf permissions set` commands at the top of section 2 create."""
    rules = []
    for line in _block(POLICIES, "tf permissions set")[1].splitlines():
        flags = dict(zip(shlex.split(line)[3::2], shlex.split(line)[4::2], strict=True))
        rules.append(
            AccessRule(flags["--gateway"], flags["--connector"], flags["--action"],
                       flags["--decision"])  # type: ignore[arg-type]
        )  # fmt: skip
    return tuple(rules)


# fmt: off
ACCESS = [
    ("github.pr.create", "allow", "Bot:github:github.pr.*"),
    ("github.pr.merge", "require_approval", "Bot:github:github.pr.merge"),
    ("github.repo.delete", "deny", "Bot:github:github.repo.delete"),
    ("github.issue.create", "deny", "default"),
]
GLOBS = [  # (pattern, action, an allow-rule of that pattern allows it)
    ("github.*", "github.pr.merge", True), ("github.*.get", "github.pr.get", True),
    ("github.*.get", "github.file.get", True), ("aws.*.get", "aws.s3.object.get", True),
    ("*", "stripe.transfer.create", True), ("github.*.get", "github.pr.merge", False),
    ("*", "github.unknown.put", False), ("github.*", "github.unknown.put", False),
    ("github.unknown.*", "github.unknown.put", True),
]
SPECIFIC = [  # (winner, loser, action): "Most specific wins"
    ("Bot:github:github.pr.merge", "Bot:github:github.pr.*", "github.pr.merge"),
    ("Bot:github:github.pr.*", "Bot:github:github.*.get", "github.pr.get"),
    ("Bot:github:github.*.get", "Bot:github:github.*", "github.pr.get"),
    ("Bot:github:github.*.get", "Bot:github:github.*.*", "github.pr.get"),  # fewer wildcards
    ("Bot:github:*.get", "Bot:github:*", "github.pr.get"),  # more literal characters
    ("Bot:*:github.*", "*:github:github.*", "github.pr.get"),  # a named agent first
    ("*:github:github.*", "*:*:github.*", "github.pr.get"),  # then a named connector
]
# fmt: on
AT_THREE = _where(POLICIES, "So with the three")
AT_GLOBS = _where(POLICIES, "dotted globs")
AT_SPECIFIC = _where(POLICIES, "**Most specific wins.**")


def _access(label: str, decision: str) -> AccessRule:
    agent, connector, pattern = label.split(":")
    return AccessRule(agent, connector, pattern, decision)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "outcome", "rule"), ACCESS, ids=[f"{AT_THREE}:{a}" for a, *_ in ACCESS]
)
def test_the_three_commands_decide_as_the_text_says(action: str, outcome: str, rule: str) -> None:
    decision = _decide(
        [], {"type": action}, rules=_documented_rules(), mode="proxy", connector="github"
    )
    assert (decision.outcome, _rule(decision)) == (outcome, rule)
    if rule == "default":  # with the reason the doc prints
        shown = re.search(r"``(no permission for .*?) ``", _text(POLICIES))
        assert shown is not None
        assert decision.reason == shown.group(1)


@pytest.mark.parametrize(
    ("pattern", "action", "allowed"), GLOBS, ids=[f"{AT_GLOBS}:{p}~{a}" for p, a, _ in GLOBS]
)
def test_access_rule_globs(pattern: str, action: str, allowed: bool) -> None:
    rule = AccessRule("Bot", "*", pattern, "allow")
    assert (
        _decide([], {"type": action}, rules=(rule,), mode="proxy").outcome == "allow"
    ) is allowed
    # a require_approval (or deny) wildcard does cover a request the connector could not name
    held = AccessRule("Bot", "*", pattern, "require_approval")
    covered = allowed or ("unknown" in action and pattern in ("*", "github.*"))
    outcome = _decide([], {"type": action}, rules=(held,), mode="proxy").outcome
    assert outcome == ("require_approval" if covered else "deny")


@pytest.mark.parametrize(
    ("winner", "loser", "action"),
    SPECIFIC,
    ids=[f"{AT_SPECIFIC}:{w}>{lo}" for w, lo, _ in SPECIFIC],
)
def test_the_most_specific_rule_wins(winner: str, loser: str, action: str) -> None:
    for first, second in [("allow", "deny"), ("deny", "allow")]:  # whatever each decides
        rules = (_access(loser, second), _access(winner, first))
        decision = _decide([], {"type": action}, rules=rules, mode="proxy", connector="github")
        assert decision.matched_rules[-1] == winner


def test_on_a_complete_tie_deny_then_approval_then_allow() -> None:
    for decisions, wins in [(("allow", "require_approval"), "require_approval"),
                            (("require_approval", "deny", "allow"), "deny")]:  # fmt: skip
        rules = tuple(_access("Bot:github:github.*", d) for d in decisions)
        assert _decide([], {"type": "github.pr.get"}, rules=rules, mode="proxy").outcome == wins


def test_sdk_mode_connector_and_default() -> None:
    """'the connector is the spec's `resource.provider`, else the type's first segment';
    without a rule or a matching policy rule, the agent's `sdk_default` answers."""
    stripe = (_access("Bot:stripe:payment.*", "deny"),)
    by_provider = {"type": "payment.transfer.initiate", "resource": {"provider": "stripe"}}
    assert _decide([], by_provider, rules=stripe).outcome == "deny"
    assert _decide([], {"type": "payment.transfer.initiate"}, rules=stripe).outcome == "allow"
    payment = (_access("Bot:payment:payment.*", "deny"),)
    assert _decide([], {"type": "payment.transfer.initiate"}, rules=payment).outcome == "deny"
    allowed = _decide([], {"type": "email.send"})
    assert (allowed.outcome, allowed.reason, allowed.default_applied) == (
        "allow", NO_DENY_REASON, True
    )  # fmt: skip
    assert _decide([], {"type": "email.send"}, sdk_default="deny").outcome == "deny"


def test_presets_are_the_documented_rules() -> None:
    reads = [p for p in _ticked(_paragraph(POLICIES, "Presets (")) if p.startswith("*.")]
    expected = {
        "read-only": [*((p, "allow") for p in reads), ("*", "deny")],
        "allow-all": [("*", "allow")],
        "require-approval": [("*", "require_approval")],
    }
    for preset, rules in expected.items():
        found = preset_rules("Bot", "*", preset)  # type: ignore[arg-type]
        assert [(r.action_pattern, r.decision) for r in found] == rules


# --- 1. Kill switch; how the steps combine -----------------------------------------------

# fmt: off
SWITCHES = [  # (switch, action, agent, covered)
    (KillSwitch("all"), {"type": "github.pr.get"}, "Bot", True),
    (KillSwitch("connector", "github"), {"type": "github.pr.get"}, "Bot", True),
    (KillSwitch("connector", "github"), {"type": "slack.chat.post"}, "Bot", False),
    (KillSwitch("agent", "Finance Bot"), {"type": "github.pr.get"}, "Finance Bot", True),
    (KillSwitch("agent", "Finance Bot"), {"type": "github.pr.get"}, "Bot", False),
    (KillSwitch("connector", "stripe"),  # SDK mode: the provider counts as the connector
     {"type": "payment.transfer.initiate", "resource": {"provider": "stripe"}}, "Bot", True),
]
# fmt: on
AT_SWITCH = _where(POLICIES, "## 1. Kill switch")


@pytest.mark.parametrize(
    ("switch", "action", "agent", "covered"),
    SWITCHES,
    ids=[f"{AT_SWITCH}:{s.label}:{a['type']}:{g}" for s, a, g, _ in SWITCHES],
)
@pytest.mark.parametrize("level", ["monitor", "soft_enforce", "full_enforce"])
def test_a_kill_switch_denies_what_it_covers_at_every_level(
    switch: KillSwitch, action: dict[str, Any], agent: str, covered: bool, level: str
) -> None:
    everything = (_access("*:*:*", "allow"),)
    decision = _decide([], action, rules=everything, switches=(switch,), agent=agent,
                       enforcement_level=level)  # fmt: skip
    if not covered:
        assert decision.outcome == "allow"
        return
    assert (decision.outcome, decision.reason, decision.kill_switch) == (
        "deny", "kill_switch_active", True
    )  # fmt: skip
    assert decision.matched_rules == (switch.label,)
    assert re.fullmatch(r"kill_switch:(all|(connector|agent):.+)", switch.label)


def test_the_stricter_of_access_rule_and_policy_wins() -> None:
    """'An access rule that allows `github.pr.*` still needs the policies not to deny or
    hold the merge; a policy `allow` never lifts an access rule's `require_approval`.'"""
    merge = {"type": "github.pr.merge", "parameters": {"base": "main"}}
    allow = (_access("Bot:github:github.pr.*", "allow"),)
    for decision in ("deny", "require_approval"):
        assert (
            _decide([_policy(decision=decision)], merge, rules=allow, mode="proxy").outcome
            == decision
        )
    hold = (_access("Bot:github:github.pr.*", "require_approval"),)
    lifted = _decide([_policy(decision="allow")], merge, rules=hold, mode="proxy")
    assert lifted.outcome == "require_approval"


# --- Fields ------------------------------------------------------------------------------

A = {"type": "a.b"}
# fmt: off
FIELDS: dict[str, list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]] = {
    # the table's first name -> [(a true condition, the action, the context)]
    "action_spec.type": [
        ({"field": "action_spec.type", "operator": "equals", "value": "a.b"}, A, {})],
    "action_spec.parameters.<path>": [
        ({"field": "parameters.files.0.path", "operator": "equals", "value": "a.py"},
         {**A, "parameters": {"files": [{"path": "a.py"}]}}, {}),
        ({"field": "action_spec.parameters.base", "operator": "equals", "value": "main"},
         {**A, "parameters": {"base": "main"}}, {})],
    "action_spec.resource.<name>": [
        ({"field": f"resource.{name}", "operator": "equals", "value": "x"},
         {**A, "resource": {name: "x"}}, {})
        for name in ("provider", "account", "target", "environment")],
    "action_spec.risk_hints.<path>": [
        ({"field": "risk_hints.irreversible", "operator": "equals", "value": True},
         {**A, "risk_hints": {"irreversible": True}}, {})],
    "context.agent": [({"field": "context.agent", "operator": "equals", "value": "Bot"}, A, {})],
    "context.time": [({"field": "context.time", "operator": "time_window",
                       "value": {"start": "11:00", "end": "13:00", "days": ["mon"]}}, A, {})],
    "context.mode": [
        ({"field": "context.mode", "operator": "equals", "value": "sdk"}, A, {}),
        ({"field": "context.connector", "operator": "equals", "value": "github"}, A,
         {"connector": "github"}),
        ({"field": "context.risk", "operator": "equals", "value": "high"}, A, {"risk": "high"}),
        ({"field": "context.enforcement_level", "operator": "equals", "value": "soft_enforce"},
         A, {"enforcement_level": "soft_enforce"})],
    "context.<attribute>": [
        ({"field": "context.source_ip", "operator": "cidr", "value": ["10.0.0.0/8"]}, A,
         {"attributes": {"source_ip": "10.1.2.3"}})],
    "content.secrets": [
        ({"field": f, "operator": "contains", "value": "x"}, A, {"attributes": {f: ["x"]}})
        for f in ("content.secrets", "content.pii")],
    "response.secrets": [
        ({"field": f, "operator": "exists"}, A, {"attributes": {f: ["x"]}})
        for f in ("response.secrets", "response.injection")],
    "budget.<name>.remaining": [
        ({"field": f"budget.daily.{k}", "operator": "lt", "value": 5}, A,
         {"attributes": {f"budget.daily.{k}": 3}}) for k in ("remaining", "used")],
}
# fmt: on
FIELD_ROWS = _table(POLICIES, "| field | value |")


def _other(condition: dict[str, Any]) -> dict[str, Any]:
    """The same leaf, asking for what the action does not hold."""
    value = condition.get("value")
    if condition["operator"] == "exists":
        return {**condition, "operator": "not_exists"}
    if condition["operator"] == "cidr":
        return {**condition, "value": ["192.168.0.0/16"]}
    if isinstance(value, dict):  # a time window
        return {**condition, "value": {"start": "01:00", "end": "02:00"}}
    if isinstance(value, bool | int):
        return {**condition, "value": (not value) if isinstance(value, bool) else -(10**9)}
    return {**condition, "value": f"{value}-not"}


@pytest.mark.parametrize("row", FIELD_ROWS, ids=[f"policies.md:{n}:{c[0]}" for n, c in FIELD_ROWS])
def test_each_documented_field_reads_what_the_table_says(row: tuple[int, list[str]]) -> None:
    key = _ticked(row[1][0])[0]
    assert key in FIELDS, f"policies.md:{row[0]}: `{key}` is documented but not checked here"
    for condition, action, context in FIELDS[key]:
        if enforced := context.get("enforcement_level"):  # the level softens a deny: say hold
            condition = {**condition, "value": enforced}
        assert _decide([_leaf(condition)], action, **context).decided_outcome == "deny"
        other = _decide([_leaf(_other(condition))], action, **context)
        assert (other.decided_outcome, other.errors) == ("allow", ())


def test_context_attributes_are_never_set_by_the_gateway_or_the_control_plane() -> None:
    """'the gateway and the control plane pass none': only content, response and budget
    fields reach a policy from them (agentfirewall_server/decide.py, the gateway's
    pipeline), so a `context.source_ip` leaf is false there."""
    root = Path(__file__).resolve().parents[2]
    server = (root / "agentfirewall_server/decide.py").read_text()
    assert "attributes.update(await" in server  # budgets
    assert "with_findings(ctx, snapshot.guard, found)" in server  # content, set by the core:
    core = (root / "agentfirewall/policy/replay.py").read_text()
    assert "attributes.update(content_attributes(mine))" in core
    assert _holds({"field": "context.source_ip", "operator": "cidr", "value": ["0.0.0.0/0"]},
                  _ABSENT) is False  # fmt: skip


# --- Operators ---------------------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")
# fmt: off
OPERATOR_CASES: dict[str, list[tuple[object, bool]]] = {  # the example's field set to a value
    "equals": [("main", True), ("Main", False), (_ABSENT, False), (["main"], False)],
    "not_equals": [("dev", True), ("main", False), (5, False), (_ABSENT, False)],
    "in": [("master", True), ("main", True), ("dev", False), (_ABSENT, False)],
    "not_in": [("production", True), ("dev", False), (_ABSENT, False)],
    "contains": [(["docs", "ci"], True), ("docs-only", True), (["ci"], False), (5, False)],
    "not_contains": [("hello", True), ("my password", False), (["a"], True), (5, False),
                     (_ABSENT, False)],
    "starts_with": [("release/1.2", True), ("hotfix/x", True), ("main", False), (1, False)],
    "ends_with": [("setup.exe", True), ("setup.exe.txt", False), (_ABSENT, False)],
    "matches": [("DROP  TABLE users", True), ("drop table", True),
                ("select 1; drop table x", False), (5, False)],
    "any_matches": [(["refs/tags/v1", "refs/heads/MAIN"], True),
                    ([*(f"refs/tags/v{i}" for i in range(20)), "refs/heads/main"], True),
                    (["refs/heads/main-old", "refs/tags/v1"], False), ([], False),
                    ("refs/heads/main", True), ("refs/heads/main-old", False), (_ABSENT, False)],
    "glob": [("acme/api", True), ("acme/x/y", True), ("other/api", False)],
    "gt": [(10001, True), (10000, False), ("15000", True), (10000.5, True), (True, False),
           ("15k", False), (_ABSENT, False)],
    "lt": [(-1, True), (0, False), ("-2.5", True), (_ABSENT, False)],
    "between": [(100, True), (500, True), ("250", True), (501, False), (99, False)],
    "exists": [(True, True), (False, True), (None, False), (_ABSENT, False)],
    "not_exists": [(_ABSENT, True), (None, True), ("main", False)],
    "cidr": [("10.1.2.3", True), ("::ffff:10.1.2.3", True), ("2001:db8::1", True),
             ("192.168.0.1", False), ("not-an-ip", False), (_ABSENT, False)],
    "time_window": [  # Friday 22:00 to Saturday 06:00 in Paris (UTC+1 in January)
        (datetime(2026, 1, 9, 22, 0, tzinfo=PARIS), True),
        (datetime(2026, 1, 10, 5, 59, tzinfo=PARIS), True),
        (datetime(2026, 1, 10, 6, 0, tzinfo=PARIS), False),
        (datetime(2026, 1, 9, 21, 59, tzinfo=PARIS), False),
        (datetime(2026, 1, 10, 22, 30, tzinfo=PARIS), False),  # Saturday's own night
        (datetime(2026, 1, 9, 21, 0, tzinfo=UTC), True),  # the same moment as the first
    ],
}
DETAIL = [  # the "true when" column's finer claims
    ({"field": "parameters.n", "operator": "gte", "value": 10000}, 10000, True),
    ({"field": "parameters.n", "operator": "lte", "value": 0}, 0, True),
    ({"field": "parameters.n", "operator": "equals", "value": 1}, True, False),  # 1 ≠ true
    ({"field": "parameters.n", "operator": "equals", "value": True}, 1, False),
    ({"field": "resource.target", "operator": "glob", "value": "acme/ap?"}, "acme/api", True),
    ({"field": "resource.target", "operator": "glob", "value": "acme/[ab]pi"}, "acme/api", True),
    ({"field": "resource.target", "operator": "glob", "value": "acme/[bc]pi"}, "acme/api", False),
]
# fmt: on
OPERATOR_ROWS = _table(POLICIES, "| operator | example |")


def _example(row: tuple[int, list[str]]) -> dict[str, Any]:
    loaded = yaml.load(_ticked(row[1][1])[0], Loader=YamlLoader)  # noqa: S506
    assert isinstance(loaded, dict)
    return loaded


def _shown(value: object) -> str:
    """A case's value in its test id (the same in every process: pytest-xdist compares)."""
    return "absent" if value is _ABSENT else repr(value)


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        pytest.param(_example(row), value, expected,
                     id=f"policies.md:{row[0]}:{_example(row)['operator']}:{_shown(value)}")
        for row in OPERATOR_ROWS
        for value, expected in OPERATOR_CASES.get(_example(row)["operator"], [(None, None)])
    ],
)  # fmt: skip
def test_each_operator_example_is_true_when_the_table_says(
    condition: dict[str, Any], value: object, expected: bool | None
) -> None:
    assert expected is not None, f"`{condition['operator']}` is documented but not checked"
    assert _holds(condition, value) is expected


def test_every_operator_is_in_the_table() -> None:
    assert {op for _, cells in OPERATOR_ROWS for op in _ticked(cells[0])} == set(OPERATORS)


@pytest.mark.parametrize(
    ("condition", "value", "expected"), DETAIL, ids=[str(d[1:]) for d in DETAIL]
)
def test_the_true_when_column_in_detail(
    condition: dict[str, Any], value: object, expected: bool
) -> None:
    assert _holds(condition, value) is expected


# fmt: off
NUMBERS = [  # the "Numbers are compared exactly" paragraph: (operator, bound, value, true)
    ("gt", 10**30, 10**30 + 1, True), ("gt", 10000, "15000", True), ("lt", 0, "-2.5", True),
    ("gt", 0, "1e9", False), ("gt", 0, "15k", False), ("gt", 0, True, False),
    ("gt", 0, "NaN", False), ("gt", 0, "Infinity", False), ("lt", 0, "-inf", False),
]
WINDOWS = [  # the time_window paragraph: (window, moment, inside)
    ({"start": "22:00", "end": "06:00", "days": ["fri"]}, "2026-01-09T22:00+00:00", True),
    ({"start": "22:00", "end": "06:00", "days": ["fri"]}, "2026-01-10T05:59+00:00", True),
    ({"start": "22:00", "end": "06:00", "days": ["fri"]}, "2026-01-10T06:00+00:00", False),
    ({"start": "22:00", "end": "06:00", "days": ["fri"]}, "2026-01-09T05:00+00:00", False),
    ({"start": "09:00", "end": "17:00"}, "2026-01-11T09:00+00:00", True),  # no days: every day
    ({"start": "09:00", "end": "17:00"}, "2026-01-11T17:00+00:00", False),
    ({"start": "09:00", "end": "17:00", "timezone": "+05:30"}, "2026-01-05T03:30+00:00", True),
    ({"start": "09:00", "end": "17:00", "timezone": "+05:30"}, "2026-01-05T12:00+00:00", False),
    ({"start": "09:00", "end": "17:00", "timezone": "America/New_York"},
     "2026-01-05T14:00+00:00", True),
]
# fmt: on
AT_NUMBERS = _where(POLICIES, "Numbers are compared")
AT_WINDOWS = _where(POLICIES, "`time_window`: `start` inclusive")


@pytest.mark.parametrize(
    ("op", "bound", "value", "expected"), NUMBERS, ids=[f"{AT_NUMBERS}:{n[2]!r}" for n in NUMBERS]
)
def test_numbers_as_documented(op: str, bound: int, value: object, expected: bool) -> None:
    assert _holds({"field": "parameters.n", "operator": op, "value": bound}, value) is expected


def test_policy_numbers_must_be_finite_and_unicode_is_not_normalised() -> None:
    infinite = {"field": "parameters.n", "operator": "gt", "value": float("inf")}
    _refused({"name": "p", "rules": [{"name": "r", "decision": "deny", "conditions": [infinite]}]},
             "rules[0].conditions[0]", "finite")  # fmt: skip
    composed = {"field": "parameters.s", "operator": "equals", "value": "\u00e9"}
    assert _holds(composed, "\u00e9")
    assert not _holds(composed, "e\u0301")


@pytest.mark.parametrize(
    ("window", "moment", "inside"), WINDOWS, ids=[f"{AT_WINDOWS}:{w}@{m}" for w, m, _ in WINDOWS]
)
def test_time_windows_as_documented(window: dict[str, Any], moment: str, inside: bool) -> None:
    condition = {"field": "context.time", "operator": "time_window", "value": window}
    assert _holds(condition, datetime.fromisoformat(moment)) is inside
    as_text = {**condition, "field": "parameters.at"}  # an ISO string with an offset works too
    assert _holds(as_text, moment) is inside
    assert _holds(as_text, moment.removesuffix("+00:00")) is False  # naive: never


# --- `matches` guard; fail closed --------------------------------------------------------

REGEXES = [*(p for p in _ticked(_paragraph(POLICIES, "`matches` is guarded")) if p.startswith("(")),
           r"(a)\1", "a+b+c+d+e+", "a" * 1001]  # fmt: skip
AT_GUARD = _where(POLICIES, "`matches` is guarded")


@pytest.mark.parametrize("pattern", REGEXES, ids=[f"{AT_GUARD}:{p[:12]}" for p in REGEXES])
def test_dangerous_patterns_are_refused_at_load(pattern: str) -> None:
    leaf = {"field": "parameters.q", "operator": "matches", "value": pattern}
    errors = validate_policy_text(json.dumps({"name": "p", "rules": [
        {"name": "r", "decision": "deny", "conditions": [leaf]}]}))  # fmt: skip
    assert [e.field for e in errors] == ["rules[0].conditions[0]"]
    assert re.search(r"unsafe regular expression|longer than 1000", errors[0].message)


@pytest.mark.parametrize(
    ("operator", "wrap"),
    [("matches", str), ("glob", str), ("any_matches", lambda q: ["x", q]),
     ("any_matches", lambda q: [q, "x"])],
    ids=["matches", "glob", "any_matches-item-last", "any_matches-item-first"],
)  # fmt: skip
def test_an_input_over_the_cap_fails_closed(operator: str, wrap: Callable[[str], Any]) -> None:
    """'A rule that cannot be evaluated ... counts as a matching deny, whatever its own
    decision, and is named in `Decision.errors`' (`any_matches`: wherever the item)."""
    allow = _leaf({"field": "parameters.q", "operator": operator, "value": "x"}, "allow")
    over = _decide([allow], {"type": "a.b", "parameters": {"q": wrap("y" * 4097)}})
    assert over.outcome == "deny"
    assert "could not be evaluated" in over.errors[0]
    assert _decide([allow], {"type": "a.b", "parameters": {"q": wrap("y" * 4096)}}).errors == ()


@pytest.mark.parametrize(
    "value", [["x", None], [["x"]], {"0": "x"}, 0, False, None], ids=repr
)  # fmt: skip
def test_any_matches_on_a_value_of_another_shape_fails_closed(value: object) -> None:
    """The operator row: 'a value of any other shape ... fails the rule closed', an allow
    rule's too (it used to be false, skipping the items that were not strings)."""
    allow = _leaf({"field": "parameters.q", "operator": "any_matches", "value": "x"}, "allow")
    decision = _decide([allow], {"type": "a.b", "parameters": {"q": value}})
    assert decision.outcome == "deny"
    assert "`any_matches` needs a string or a list of strings" in decision.errors[0]


# --- How policies combine; risk; the decision; enforcement -------------------------------


def _named(name: str, decision: str, priority: int, **rule: Any) -> Policy:
    return load_policy({"name": name, "priority": priority,
                        "rules": [{"name": "r", "decision": decision, **rule}]})  # fmt: skip


def test_deny_wins_and_the_lowest_priority_number_gives_the_reason() -> None:
    policies = [_named("late", "deny", 20, reason="late"), _named("allow", "allow", 1),
                _named("held", "require_approval", 5),
                _named("early", "deny", 10, reason="early")]  # fmt: skip
    decision = _decide(policies, {"type": "a.b"})
    assert (decision.outcome, decision.reason, _rule(decision)) == ("deny", "early", "early/r")
    assert decision.matched_policies == ("allow", "held", "early", "late")  # by priority


def test_require_approval_then_allow_then_the_access_rule_or_the_default() -> None:
    approval = {"timeout_seconds": 60, "approver_roles": ["admin"]}
    policies = [_named("a", "allow", 1), _named("h", "require_approval", 9, approval=approval)]
    held = _decide(policies, {"type": "a.b"})
    assert (held.outcome, held.approval) == (
        "require_approval",
        ApprovalRequirement(60, ("admin",)),
    )
    assert (
        _decide([_named("a", "allow", 1)], {"type": "a.b"}, sdk_default="deny").outcome == "allow"
    )
    unmatched = _named("x", "deny", 1, conditions=[{"field": "parameters.x", "operator": "exists"}])
    hold = (_access("Bot:*:*", "require_approval"),)
    assert _decide([unmatched], {"type": "a.b"}, rules=hold).outcome == "require_approval"
    assert _decide([unmatched], {"type": "a.b"}, sdk_default="deny").outcome == "deny"


def test_matched_rules_start_with_the_deciding_rule() -> None:
    policies = [
        _named("d", "deny", 5, risk_score=10),
        _named("h", "require_approval", 1, risk_score=90),
    ]
    decision = _decide(policies, {"type": "a.b"}, rules=(_access("Bot:*:*", "allow"),))
    assert decision.matched_rules == ("d/r", "h/r", "Bot:*:*")


RISKS = dict(re.findall(r"(low|medium|high) (\d+)", _paragraph(POLICIES, "**Risk score.**")))


@pytest.mark.parametrize(("route", "score", "expected"),
                         [(None, 30, 30), ("low", 5, 10), ("medium", 30, 50), ("high", 30, 80),
                          ("high", 95, 95)])  # fmt: skip
def test_risk_is_the_highest_of_the_matched_rules_and_the_route(
    route: str | None, score: int, expected: int
) -> None:
    assert RISKS == {"low": "10", "medium": "50", "high": "80"}
    decision = _decide([_named("p", "allow", 1, risk_score=score)], {"type": "a.b"}, risk=route)
    assert decision.risk_score == expected


def test_explain_shows_every_rule_of_every_policy_in_scope() -> None:
    policies = [_named("d", "deny", 5), _named("a", "allow", 1), load_policy(PROTECT)]
    steps = Engine(policies=policies).explain(
        parse_action_spec({"type": "github.pr.merge"}), _ctx()
    )
    shown = "\n".join(f"{step.result} {step.detail}" for step in steps.steps)
    assert "d/r: deny" in shown  # the rule that decided,
    assert "a/r: allow" in shown  # and the others
    # an action without an environment beside a policy that lists some, said plainly
    assert "protect-main: out of scope the action names no environment" in shown


ENFORCEMENT_ROWS = _table(POLICIES, "| level | deny |")


def _enforced(cell: str) -> tuple[str, str | None]:
    if cell.startswith("allowed"):
        return "allow", _ticked(cell)[0]
    return {"deny": ("deny", None), "held": ("require_approval", None)}[cell]


@pytest.mark.parametrize(
    "row", ENFORCEMENT_ROWS, ids=[f"policies.md:{n}:{c[0]}" for n, c in ENFORCEMENT_ROWS]
)
def test_enforcement_levels(row: tuple[int, list[str]]) -> None:
    level = _ticked(row[1][0])[0]
    for decided, killed, cell in [("deny", False, row[1][1]),
                                  ("require_approval", False, row[1][2]),
                                  ("deny", True, row[1][3])]:  # fmt: skip
        rules = Decision(decided, "r", kill_switch=killed, decided_outcome=decided)  # type: ignore[arg-type]
        decision = apply_enforcement(rules, level)  # type: ignore[arg-type]
        assert (decision.outcome, decision.would_outcome) == _enforced(cell), (level, decided)


# --- Content guardrails ------------------------------------------------------------------

CONTENT_LINE, CONTENT = _block(POLICIES, "- name: no-secrets-to-unknown-hosts")
# fmt: off
CONTENT_CASES = [  # (action type, connector, what fired, outcome, the rule that decided)
    ("generic.post", "generic", {"content.secrets": ["aws_access_key"]}, "deny",
     "content/no-secrets-to-unknown-hosts"),
    ("github.pr.create", "github", {"content.secrets": ["aws_access_key"]}, "allow", "*:*:*"),
    ("slack.chat.post", "slack", {"content.pii": ["card_number", "email"]}, "require_approval",
     "content/hold-card-numbers-in-slack"),
    ("openai.chat.create", "openai", {"content.secrets": ["private_key"]}, "deny",
     "content/no-private-key-in-prompts"),
    ("github.pr.create", "github", {"content.pii": ["email"]}, "allow", "content/redact-pii"),
    ("github.pr.create", "github", {}, "allow", "*:*:*"),  # nothing fired: absent
]
# fmt: on


def _content() -> Policy:
    return load_policy(f"name: content\n{CONTENT}", source=f"policies.md:{CONTENT_LINE}")


@pytest.mark.parametrize(
    ("action", "connector", "found", "outcome", "rule"),
    CONTENT_CASES,
    ids=[f"policies.md:{CONTENT_LINE}:{c[0]}:{sorted(c[2].values())}" for c in CONTENT_CASES],
)
def test_content_rules_decide_on_what_the_detectors_found(
    action: str, connector: str, found: dict[str, Any], outcome: str, rule: str
) -> None:
    decision = _decide([_content()], {"type": action}, mode="proxy", connector=connector,
                       attributes=found, rules=(_access("*:*:*", "allow"),))  # fmt: skip
    assert (decision.outcome, decision.matched_rules[0]) == (outcome, rule)


def test_a_redact_rule_refuses_an_sdk_action_and_injected_output_is_cut() -> None:
    policy = _content()
    plan = guard_plan((policy,))
    spec = parse_action_spec(
        {"type": "github.issue.create", "parameters": {"body": "ada@example.com"}}
    )
    decision = explain_with_content(Engine(policies=[policy]), plan, spec, _ctx()).decision
    assert decision.outcome == "deny"
    assert "redact rule `content/redact-pii`" in decision.reason
    assert decision.reason.endswith("content: email at parameters.body+0")
    ctx = _ctx(mode="proxy", attributes={"response.injection": ["injection.role_override"]})
    verdict = response_verdict(
        Engine(policies=[policy]), plan, parse_action_spec({"type": "mcp.tools.call"}), ctx
    )
    assert verdict[:2] == ("cut", "content/cut-injected-tool-output")


DETECTOR_ROWS = _table(POLICIES, "| kind | detector |")


@pytest.mark.parametrize(
    "row", DETECTOR_ROWS, ids=[f"policies.md:{n}:{c[1]}" for n, c in DETECTOR_ROWS]
)
def test_the_detector_table_names_real_detectors(row: tuple[int, list[str]]) -> None:
    from agentfirewall.content.detectors import PII, SECRETS

    family = {"secret": SECRETS, "pii": PII}[row[1][0]]
    assert (row[1][1].strip("`"), float(row[1][2])) in {(d.name, d.confidence) for d in family}


def test_the_injection_markers_are_the_documented_set() -> None:
    from agentfirewall.content import injection

    said = _paragraph(POLICIES, "**Prompt-injection markers**")
    named = dict(re.findall(r"`(?:injection\.)?([a-z_]+)`\s*\((\d\.\d+)", said))
    assert {d.name: d.confidence for d in injection.INJECTION} == {
        f"injection.{name}": float(confidence) for name, confidence in named.items()
    }
    assert f"version `{injection.INJECTION_VERSION}`" in said


# --- docs/policy-packs.md ----------------------------------------------------------------

PACK_ROWS = _table(PACKS, "| pack | scope |")


def test_every_pack_is_for_all_agents_at_priority_30_to_50() -> None:
    for info in list_packs():
        pack = load_pack(info.name)
        assert pack.scope.agents == ("*",)
        assert 30 <= pack.priority <= 50
        assert load_policy(pack.to_document()) == pack  # "can be copied and edited"


@pytest.mark.parametrize(
    "row", PACK_ROWS, ids=[f"policy-packs.md:{n}:{c[0]}" for n, c in PACK_ROWS]
)
def test_the_pack_table_names_each_pack_and_its_scope(row: tuple[int, list[str]]) -> None:
    assert list(load_pack(row[1][0].strip("`")).scope.action_types) == _ticked(row[1][1])


def _at(moment: str) -> dict[str, Any]:
    return {"now": datetime.fromisoformat(moment)}


SAT_NIGHT = _at("2026-01-10T23:00+00:00")
PR = {"type": "github.pr.create"}
# fmt: off
PACK_CASES: dict[str, list[tuple[dict[str, Any], str | None, dict[str, Any]]]] = {
    # rule -> [(action, the outcome it promises or None when it leaves the action, context)]
    "deny-destructive-deletes": [
        *(({"type": f"github.{r}.delete"}, "deny", {})
          for r in ("repo", "branch", "tag", "release", "release_asset")),
        ({"type": "github.issue.delete"}, None, {}),
        ({"type": "github.file.delete", "parameters": {"branch": "feature"}}, None, {}),
        ({"type": "github.repo.push", "parameters": {"refs": ["refs/heads/x", "refs/tags/v1"],
                                                     "deleted_refs": ["refs/tags/v1"]}},
         "deny", {}),
        ({"type": "github.repo.push", "parameters": {"refs": ["refs/heads/x"],
                                                     "deleted_refs": []}}, None, {})],
    "merge-to-default-branch": [
        ({"type": "github.pr.merge", "parameters": {"base": "main"}}, "require_approval", {}),
        ({"type": "github.pr.merge", "parameters": {"base": "master"}}, "require_approval", {}),
        ({"type": "github.pr.merge", "parameters": {"merge_method": "squash"}},  # a REST merge
         "require_approval", {}),
        ({"type": "github.pr.merge", "parameters": {"base": "feature/x"}}, None, {}),
        ({"type": "github.pr.create", "parameters": {"base": "main"}}, None, {}),
        ({"type": "github.branch.merge", "parameters": {"base": "refs/heads/Main"}},
         "require_approval", {}),
        ({"type": "github.branch.merge", "parameters": {"base": "feature/x"}}, None, {}),
        ({"type": "github.ref.update", "parameters": {"ref": "heads/master"}},
         "require_approval", {}),
        ({"type": "github.ref.update", "parameters": {"ref_id": "R"}}, "require_approval", {}),
        ({"type": "github.ref.update", "parameters": {"ref": "heads/main-old"}}, None, {})],
    "commits-to-default-branch": [
        *(({"type": "github.repo.push", "parameters": {"refs": refs}}, "require_approval", {})
          for refs in (["refs/heads/main"], ["refs/tags/v1", "refs/heads/Master"],
                       [*(f"refs/tags/v{i}" for i in range(11)), "refs/heads/MAIN"],
                       "refs/heads/main")),  # an SDK action's one ref as a string
        ({"type": "github.repo.push"}, "require_approval", {}),  # its refs not read
        *(({"type": "github.repo.push", "parameters": {"refs": refs}}, "deny", {})
          for refs in ([["refs/heads/main"]], {"0": "refs/heads/main"}, {"main": True},
                       ["refs/heads/feature", None], 0, True)),  # unreadable: fails closed
        *(({"type": "github.repo.push", "parameters": {"refs": refs}}, None, {})
          for refs in ([], ["refs/heads/feature"], ["refs/heads/main-old"],
                       [f"refs/tags/v{i}" for i in range(12)])),  # however many
        *(({"type": t, "parameters": {"branch": b}}, "require_approval", {})
          for t in ("github.file.create", "github.file.update", "github.file.delete")
          for b in ("main", "Master", "refs/heads/main", "", None)),
        ({"type": "github.file.update", "parameters": {"branch_id": "BR_1"}},  # GraphQL by id
         "require_approval", {}),
        ({"type": "github.file.create"}, "require_approval", {}),  # to the default branch
        ({"type": "github.file.update", "parameters": {"branch": "feature"}}, None, {}),
        ({"type": "github.file.get", "parameters": {"ref": "main"}}, None, {})],
    "protection-changes": [
        ({"type": "github.branch_protection.update", "parameters": {"branch": "main"}},
         "require_approval", {}),
        ({"type": "github.branch_protection.delete", "parameters": {"branch": "main"}},
         "require_approval", {}),
        ({"type": "github.branch_protection.get", "parameters": {"branch": "main"}}, None, {}),
        ({"type": "github.branch_protection.list"}, None, {})],
    "access-changes": [
        *(({"type": t}, "require_approval", {})
          for t in ("github.deploy_key.create", "github.collaborator.add",
                    "github.member.add", "github.team.add_member", "github.team.add_repo",
                    "github.team.create", "github.team.update", "github.org.update",
                    "github.repo.make_public", "github.repo.transfer",
                    "github.webhook.create", "github.webhook.update",
                    "github.environment.update", "github.environment.delete")),
        *(({"type": t}, None, {})
          for t in ("github.deploy_key.list", "github.webhook.get", "github.webhook.ping",
                    "github.environment.get", "github.collaborator.list"))],
    "deployment-approvals": [
        ({"type": "github.deployment.approve"}, "require_approval", {}),
        ({"type": "github.deployment.reject"}, None, {})],
    "unnamed-changes": [
        *(({"type": t}, "require_approval", {})
          for t in ("github.graphql.mutate", "github.unknown.post", "github.unknown.delete")),
        ({"type": "github.unknown.get"}, None, {}), ({"type": "github.graphql.query"}, None, {})],
    "large-money-movement": [
        *(({"type": t, "parameters": {"amount": 50001}}, "require_approval", {})
          for t in ("stripe.transfer.create", "stripe.payout.create", "stripe.refund.create",
                    "payment.transfer.initiate", "payment.payout.initiate",
                    "payment.refund.create")),
        *(({"type": "stripe.transfer.create", "parameters": {"amount": a}}, None, {})
          for a in (50000, "50000", 0)),
        *(({"type": "stripe.transfer.create", "parameters": {"amount": a}}, "require_approval", {})
          for a in ("50001", "lots", "1e9", None)),
        ({"type": "stripe.refund.create"}, "require_approval", {}),  # no amount at all
        ({"type": "stripe.unknown.post", "parameters": {"path": "/v1/application_fees/f/refunds"}},
         "require_approval", {}),
        ({"type": "stripe.unknown.post", "parameters": {"path": "/v1/quotes"}}, None, {}),
        ({"type": "stripe.charge.create", "parameters": {"amount": 10**9}}, None, {}),
        *(({"type": t}, None, {}) for t in ("stripe.customer.create", "stripe.invoice.create",
                                            "stripe.balance.get"))],
    "deny-admin-api": [
        ({"type": "slack.admin.users.invite"}, "deny", {}),
        ({"type": "slack.unknown.post", "parameters": {"path": "/api/admin.apps.approve"}},
         "deny", {}),
        ({"type": "slack.unknown.post", "parameters": {"path": "/api/Admin.users.list"}},
         "deny", {}),
        ({"type": "slack.unknown.post", "parameters": {"path": "/api/emoji.list"}}, None, {})],
    "destructive-changes": [
        *(({"type": t}, "require_approval", {})
          for t in ("slack.conversation.archive", "slack.message.delete",
                    "slack.conversation.kick", "slack.file.remove")),
        ({"type": "slack.conversation.create"}, None, {})],
    "broadcast-mentions": [
        *(({"type": "slack.message.post", "parameters": {"text": f"hi {m}"}},
           "require_approval", {})
          for m in ("<!channel>", "<!everyone>", "<!here>", "<!here|here>")),
        ({"type": "slack.message.post", "parameters": {"blocks": []}}, "require_approval", {}),
        ({"type": "slack.message.post", "parameters": {"attachments": []}}, "require_approval", {}),
        ({"type": "slack.message.post", "parameters": {"text": "hi @channel"}}, None, {}),
        *(({"type": "slack.message.post", "parameters": {"text": "hi @here", "link_names": v}},
           "require_approval", {}) for v in (True, 1, "1", "true")),
        ({"type": "slack.message.post", "parameters": {"text": "hi @here", "link_names": False}},
         None, {}),
        *(({"type": "slack.message.post", "parameters": {"markdown_text": f"**hi** {m}"}},
           "require_approval", {}) for m in ("<!channel>", "@everyone")),
        ({"type": "slack.message.post", "parameters": {"markdown_text": "**hi** team"}},
         None, {}),
        ({"type": "slack.message.post", "parameters": {"text": "hi @here", "parse": "full"}},
         "require_approval", {}),
        ({"type": "slack.message.post", "parameters": {"text": "hi @here", "parse": "none"}},
         None, {}),
        ({"type": "slack.file.share", "parameters": {"initial_comment": "<!channel> look"}},
         "require_approval", {}),
        ({"type": "slack.unknown.post", "parameters": {"path": "/api/chat.startStream"}},
         "require_approval", {})],
    "deny-file-and-model-deletes": [
        ({"type": "openai.file.delete"}, "deny", {}),
        ({"type": "openai.model.delete"}, "deny", {})],
    "other-deletes": [({"type": "openai.vector_store.delete"}, "require_approval", {}),
                      ({"type": "openai.assistant.delete"}, "require_approval", {})],
    "costly-jobs": [
        *(({"type": t}, "require_approval", {})
          for t in ("openai.fine_tuning.create", "openai.fine_tuning.job.create",
                    "openai.batch.create")),
        ({"type": "openai.unknown.post", "parameters": {"path": "/v1/fine_tuning/jobs/j/resume"}},
         "require_approval", {}),
        *(({"type": t}, None, {})  # "Chat, responses, embeddings, images, audio and reads pass"
          for t in ("openai.chat.create", "openai.response.create", "openai.embedding.create",
                    "openai.image.create", "openai.audio.speech", "openai.model.list"))],
    "deny-writes": [
        *(({"type": f"github.pr.{verb}"}, None, {})
          for verb in ("get", "list", "search", "info", "history", "retrieve", "read")),
        ({"type": "github.pr.create"}, "deny", {}), ({"type": "slack.unknown.get"}, "deny", {}),
        ({"type": "github.pr.getter"}, "deny", {})],
    "freeze-writes": [
        (PR, "deny", SAT_NIGHT), (PR, "deny", _at("2026-01-10T22:00+00:00")),
        (PR, "deny", _at("2026-01-11T05:59+00:00")), (PR, None, _at("2026-01-11T06:00+00:00")),
        (PR, None, _at("2026-01-10T21:59+00:00")), (PR, None, _at("2026-01-11T23:00+00:00")),
        ({"type": "github.pr.get"}, None, SAT_NIGHT),
        ({"type": "slack.unknown.get"}, "deny", SAT_NIGHT),
        (PR, "deny", {"now": datetime(2026, 1, 10, 23, 0, tzinfo=timezone(timedelta(hours=1)))})],
}
# fmt: on


def _pack_rule_rows() -> list[tuple[str, int, list[str]]]:
    """Each pack section's rule table, as (pack, line, cells)."""
    found, pack = [], ""
    for number, line in enumerate(_text(PACKS).splitlines(), 1):
        if heading := re.fullmatch(r"## `([a-z-]+)`", line):
            pack = heading.group(1)
        elif pack and line.startswith("| `"):
            found.append((pack, number, _cells(line)))
    return found


@pytest.mark.parametrize(
    ("pack", "line", "cells"),
    _pack_rule_rows(),
    ids=[f"policy-packs.md:{n}:{c[0].strip('`')}" for _, n, c in _pack_rule_rows()],
)
def test_each_pack_rule_does_what_its_row_says(pack: str, line: int, cells: list[str]) -> None:
    name, said = cells[0].strip("`"), cells[2]
    policy = load_pack(pack)
    rule = next(r for r in policy.rules if r.name == name)
    assert rule.decision == said.split()[0]
    assert rule.risk_score == int(re.findall(r"risk (\d+)", said)[0])
    if "by `owner`/`admin`, 1 hour" in said:
        assert rule.approval is not None
        assert rule.approval.timeout_seconds == 3600
        assert set(rule.approval.approver_roles) == {"owner", "admin"}
    assert name in PACK_CASES, f"policy-packs.md:{line}: `{name}` is documented but not checked"
    for action, outcome, context in PACK_CASES[name]:
        decision = _decide([policy], action, **context)
        if outcome is None:
            assert decision.default_applied, (action, decision.matched_rules)
        else:
            assert (decision.outcome, _rule(decision)) == (outcome, f"{pack}/{name}"), action


def test_where_a_request_lacks_what_a_rule_needs_the_reason_says_so() -> None:
    merge = _decide([load_pack("github-safe-defaults")], {"type": "github.pr.merge"})
    assert "does not name its base branch" in merge.reason
    transfer = _decide([load_pack("stripe-safe-defaults")], {"type": "stripe.transfer.create"})
    assert "carries no amount" in transfer.reason
    blocks = {"type": "slack.message.post", "parameters": {"blocks": [{"text": "x"}]}}
    assert "cannot read mentions" in _decide([load_pack("slack-safe-defaults")], blocks).reason


def test_the_read_only_pack_and_preset_agree() -> None:
    """'The access-rule preset of the same name ... does the same for one agent and
    connector at the permission level.'"""
    preset = tuple(preset_rules("Bot", "github", "read-only"))
    for action in ("github.pr.get", "github.pr.create", "github.unknown.get", "github.file.list"):
        by_pack = _decide([load_pack("read-only")], {"type": action}).outcome
        by_preset = _decide([], {"type": action}, rules=preset, mode="proxy", connector="github")
        assert by_pack == by_preset.outcome, action


# --- A newcomer's mistakes: refused, where they are, with what was meant -----------------

_SHELL = "name: p\nrules:\n  - name: r\n    conditions:\n{}\n    decision: deny\n"
# fmt: off
MISTAKES = [  # (a line 5 a newcomer writes, the error's line, its field, what it says)
    ("      - {feild: type, operator: equals, value: x}", 5, "rules[0].conditions[0].feild",
     "unknown field: did you mean `field`?"),
    ("      - {field: type, operator: equal, value: x}", 5, "rules[0].conditions[0].operator",
     "unknown operator `equal` (did you mean `equals`?)"),
    ("      - {field: parameters.n, operator: '>', value: 5}", 5,
     "rules[0].conditions[0].operator", "(did you mean `gt`?)"),
    ("      - {field: parameters.n, operator: greater_than, value: 5}", 5,
     "rules[0].conditions[0].operator", "(did you mean `gt`?)"),
    ("      - {field: action_spec.paramters.base, operator: equals, value: main}", 5,
     "rules[0].conditions[0].field", "(did you mean `action_spec.parameters.base`?)"),
    ("      - {field: resource.env, operator: equals, value: prod}", 5,
     "rules[0].conditions[0].field", "(did you mean `resource.environment`?)"),
    ("      - {field: content.secret, operator: exists}", 5, "rules[0].conditions[0].field",
     "(did you mean `content.secrets`?)"),
    ("      - {field: agent, operator: equals, value: Bot}", 5, "rules[0].conditions[0].field",
     "(did you mean `context.agent`?)"),
    ("      - {field: context.agnet, operator: equals, value: Bot}", 5,
     "rules[0].conditions[0].field", "did you mean `context.agent`?"),
    ("      - {field: context.now, operator: time_window, value: {start: '22:00', end: '06:00'}}",
     5, "rules[0].conditions[0].field", "did you mean `context.time`?"),
    ("      - {field: parameters.body, operator: contains, value: [password, secret]}", 5,
     "rules[0].conditions[0]", "write one `contains` per value under `any:`"),
    ("      - {field: parameters.body, operator: not_contains, value: [password, secret]}", 5,
     "rules[0].conditions[0]", "write one `not_contains` per value under `all:`"),
    ("      - {field: context.time, operator: time_window, value: {start: '22:00', end: '06:00',"
     " timzone: UTC}}", 5, "rules[0].conditions[0]",
     "unknown time_window key `timzone` (did you mean `timezone`?)"),
    ("      and: [{field: type, operator: equals, value: x}]", 4, "rules[0].conditions",
     "did you mean `all` for `and`?"),
    ("      not: [{field: type, operator: equals, value: x}]", 5, "rules[0].conditions.not",
     "`not` takes one condition, not a list"),
    ("\t- {field: type, operator: equals, value: x}", 5, None,
     "a tab where YAML allows only spaces: indent with spaces"),
]
MISSPELT = [  # (a document, the field named, what it says)
    ("name: p\nscope: {action_type: [github.*]}\nrules: [{name: r, decision: deny}]\n",
     "scope.action_type", "did you mean `action_types`?"),
    ("name: p\nrule: [{name: r, decision: deny}]\n", "rule", "did you mean `rules`?"),
    ("name: p\nrules: [{name: r, decision: deny, condition: []}]\n", "rules[0].condition",
     "did you mean `conditions`?"),
    ("name: p\nrules: [{name: r, decision: block}]\n", "rules[0].decision", "did you mean `deny`?"),
    ("name: p\nrules: [{name: r, decision: hold}]\n", "rules[0].decision",
     "did you mean `require_approval`?"),
]
# fmt: on


@pytest.mark.parametrize(
    ("written", "line", "field", "message"), MISTAKES, ids=[m[3][:40] for m in MISTAKES]
)
def test_a_mistake_is_refused_where_it_is_with_what_was_meant(
    written: str, line: int, field: str | None, message: str
) -> None:
    errors = validate_policy_text(_SHELL.format(written), source="p.yaml")
    assert [(e.line, e.field) for e in errors] == [(line, field)]  # one mistake, one error
    assert message in errors[0].message


@pytest.mark.parametrize(("document", "field", "message"), MISSPELT, ids=[m[2] for m in MISSPELT])
def test_misspelt_keys_and_decisions_are_told_the_right_one(
    document: str, field: str, message: str
) -> None:
    errors = validate_policy_text(document)
    assert [e.field for e in errors] == [field]
    assert message in errors[0].message


@pytest.mark.parametrize(
    "condition",
    [
        {"field": "parameters.body", "operator": "contains", "value": ["a", "b"]},
        {"field": "context.now", "operator": "exists"},
    ],
)
def test_a_stored_policy_with_such_a_mistake_still_loads_as_it_was(
    condition: dict[str, Any],
) -> None:
    """New documents are refused; one a control plane stored earlier keeps loading (a
    deny never vanishes from enforcement because a check tightened), meaning what it did:
    its leaf is false."""
    document = {
        "name": "p",
        "rules": [{"name": "r", "decision": "deny", "conditions": [condition]}],
    }
    with pytest.raises(PolicyError):
        load_policy(document)
    stored = load_policy(document, stored=True)
    assert _decide([stored], {"type": "a.b", "parameters": {"body": "a b"}}).outcome == "allow"


KNOWN_KEYS = {"all", "any", "not", "field", "operator", "value", "version", "name", "description",
              "scope", "action_types", "environments", "agents", "priority", "enabled", "rules",
              "conditions", "decision", "reason", "risk_score", "approval", "timeout_seconds",
              "approver_roles", "metadata", "redact"}  # fmt: skip
PROTECT_KEYS = [
    (number, key)
    for number, line in enumerate(PROTECT.splitlines(), 1)
    for key in re.findall(r"(?:^\s*-?\s*|[{,]\s*)([a-z_]+):", line)
]


def _typo(word: str, edit: str, at: int, letter: str) -> str:
    i = at % len(word)
    return {
        "drop": word[:i] + word[i + 1 :],
        "double": word[:i] + word[i] + word[i:],
        "swap": word[:i] + word[i + 1 : i + 2] + word[i] + word[i + 2 :],
        "replace": word[:i] + letter + word[i + 1 :],
    }[edit]


EDITS = st.sampled_from(["drop", "double", "swap", "replace"])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(PROTECT_KEYS),
    EDITS,
    st.integers(0, 30),
    st.sampled_from(string.ascii_lowercase),
)
def test_any_misspelt_key_is_refused_at_its_line(
    where: tuple[int, str], edit: str, at: int, letter: str
) -> None:
    """A typo in any key of the example — a letter dropped, doubled, swapped or replaced —
    is refused at the key's line (a condition group's typo: at the line of the group that
    holds it), naming a field: never loaded as a policy that quietly does less."""
    number, key = where
    typo = _typo(key, edit, at, letter)
    assume(typo and typo not in KNOWN_KEYS)
    lines = PROTECT.splitlines()
    lines[number - 1] = re.sub(rf"\b{key}:", f"{typo}:", lines[number - 1], count=1)
    errors = validate_policy_text("\n".join(lines))
    assert errors, typo
    assert errors[0].field is not None
    assert errors[0].line in (number, number - 1), errors


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(OPERATORS),
    EDITS,
    st.integers(0, 20),
    st.sampled_from(string.ascii_lowercase + "_"),
)
def test_any_misspelt_operator_is_refused_with_the_right_one(
    op: str, edit: str, at: int, letter: str
) -> None:
    typo = _typo(op, edit, at, letter)
    assume(len(op) > 2 and typo not in OPERATORS)
    errors = validate_policy_text(
        _SHELL.format(f"      - {{field: parameters.x, operator: {typo}, value: 1}}")
    )
    assert [(e.line, e.field) for e in errors] == [(5, "rules[0].conditions[0].operator")]
    assert re.search(r"\(did you mean `[a-z_]+`\?\)", errors[0].message), typo


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([n for n, line in enumerate(PROTECT.splitlines(), 1) if line.startswith(" ")])
)
def test_a_tab_in_any_indentation_is_refused_at_its_line(number: int) -> None:
    lines = PROTECT.splitlines()
    lines[number - 1] = "\t" + lines[number - 1].lstrip(" ")
    with pytest.raises(PolicyError, match="indent with spaces") as caught:
        load_policy("\n".join(lines))
    assert caught.value.line == number


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OPERATOR_ROWS), JSON | st.just(_ABSENT))
def test_any_value_of_any_type_gives_a_decision_never_an_error(
    row: tuple[int, list[str]], value: object
) -> None:
    """'A missing field makes a leaf false (only `not_exists` is true) and a value of the
    wrong type makes it false too — never an error': every operator example of the table
    against every kind of JSON value, or none. 'The one exception is `any_matches`': a
    value but a string or a list of strings fails its rule closed."""
    condition = _example(row)
    if condition["field"] == "context.time":  # the time is always set: read a field instead
        condition = {**condition, "field": "parameters.at"}
    if condition["field"].startswith("resource."):  # an action spec holds only text there
        assume(value is _ABSENT or (isinstance(value, str) and value.strip()))
    action, context = _placed(condition["field"], value)
    decision = _decide([_leaf(condition)], action, **context)
    items = value if isinstance(value, list) else [value]
    unreadable = value is not _ABSENT and not all(type(item) is str for item in items)
    if condition["operator"] == "any_matches" and unreadable:
        assert (decision.outcome, len(decision.errors)) == ("deny", 1)
    else:
        assert decision.errors == ()
    if value is _ABSENT:
        assert (decision.outcome == "deny") is (condition["operator"] == "not_exists")


# --- `policy test`: a misspelt check fails its case ---------------------------------------

# fmt: off
CASE_MISTAKES = [  # (a case file, what its one result says)
    ("action: {type: a.b}\nexpect: {outcom: deny}\n",
     "unknown `expect` key `outcom`: did you mean `outcome`?"),
    ("policies: [{text: 'name: p'}]\naction: {type: a.b}\nexpect: {error: {mesage_contains: x}}\n",
     "unknown `expect.error` key `mesage_contains`: did you mean `message_contains`?"),
    ("acton: {type: a.b}\nexpect: {outcome: allow}\n",
     "unknown case key `acton`: did you mean `action`?"),
    ("acess_rules: ['*:*:*=deny']\ncases:\n  - {action: {type: a.b}, expect: {outcome: allow}}\n",
     "unknown shared key `acess_rules`: did you mean `access_rules`?"),
]
# fmt: on


@pytest.mark.parametrize(("text", "message"), CASE_MISTAKES, ids=[m for _, m in CASE_MISTAKES])
def test_a_misspelt_case_key_fails_the_case(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "case.yaml").write_text(text)
    assert [(r.passed, r.message) for r in run_cases(tmp_path / "case.yaml")] == [(False, message)]


def test_a_duplicate_key_in_a_case_file_fails_it(tmp_path: Path) -> None:
    """Read as a policy document is: the second `expect` used to replace the first (a case
    that expects deny, then allow, passed on allow), a second `cases` hid the first list."""
    file = tmp_path / "case.yaml"
    file.write_text("action: {type: a.b}\nexpect: {outcome: deny}\nexpect: {outcome: allow}\n")
    ((passed, message),) = [(r.passed, r.message) for r in run_cases(file)]
    assert not passed
    assert message == "cannot read case file: case.yaml:3: `expect`: duplicate key"


def test_a_shared_action_reaches_every_case(tmp_path: Path) -> None:
    (tmp_path / "cases.yaml").write_text(
        "action: {type: github.repo.delete}\npacks: [github-safe-defaults]\ncases:\n"
        "  - {name: one, expect: {outcome: deny}}\n  - {name: two, expect: {outcome: deny}}\n"
    )
    assert [r.passed for r in run_cases(tmp_path / "cases.yaml")] == [True, True]


def test_tf_policy_validate_warns_about_action_names_no_connector_gives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """'`tf policy validate` and `tf policy add` warn about action names under a connector's
    prefix that its catalogue does not know (an SDK action may still use such a name).'"""
    from agentfirewall_proxy.cli.app import main as tf

    _line(POLICIES, "`tf policy validate` and `tf policy add` warn")
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nscope: {action_types: [github.pull_request.*, payment.*]}\nrules:\n"
        "  - name: r\n    conditions: [{field: type, operator: in, value: "
        "[github.pr.merge, github.pull.merge]}]\n    decision: deny\n"
    )
    assert tf(["policy", "validate", str(path)]) == 0  # valid: warned, not refused
    err = capsys.readouterr().err
    assert (
        f"{path}:2: `scope.action_types[0]`: action `github.pull_request.*` matches nothing" in err
    )
    assert f"{path}:4: `rules[0]` (r): action `github.pull.merge` matches nothing" in err
    assert "did you mean `github.pr.merge`" in err
    assert "payment" not in err  # an SDK name, not a connector's
    assert "`github.pr.merge` matches" not in err
