"""GitHub reads owner, organisation and repository names in any case: `ACME/Prod` is
`acme/prod`. A rule on `resource.account` or `resource.target` of a GitHub action must
hold for every spelling of the name, whichever case the rule itself is written in; other
providers (S3 keys, Slack ids) stay case-sensitive."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, load_policy
from tests.core.conftest import MakeContext

GH = get_connector("github")
PROXY = EvaluationContext(agent="Bot", mode="proxy", now=datetime(2026, 1, 5, 12, tzinfo=UTC))

#: (field, operator, value) leaves that all name the repository `acme/prod-api`.
LEAVES = [
    ("resource.target", "equals", "acme/prod-api"),
    ("resource.target", "equals", "Acme/Prod-API"),
    ("resource.target", "in", ["other/x", "ACME/prod-api"]),
    ("resource.target", "glob", "acme/prod*"),
    ("resource.target", "glob", "[A-Z]cme/PROD-*"),
    ("resource.target", "starts_with", "ACME/"),
    ("resource.target", "ends_with", "/Prod-Api"),
    ("resource.target", "contains", "PROD"),
    ("resource.target", "matches", r"^acme/prod-\w+$"),
    ("action_spec.resource.target", "matches", r"^ACME/PROD\W\D"),
    ("resource.account", "equals", "acme"),
    ("resource.account", "in", ["Acme"]),
    ("resource.account", "glob", "AC*"),
]


def _deny(field: str, operator: str, value: object) -> Engine:
    policy = load_policy(
        {
            "name": "protect-prod",
            "rules": [
                {
                    "name": "no-merge",
                    "decision": "deny",
                    "conditions": [{"field": field, "operator": operator, "value": value}],
                }
            ],
        }
    )
    return Engine(access_rules=[AccessRule("Bot", "github", "*", "allow")], policies=[policy])


def _merge(owner: str, repo: str) -> ActionSpec:
    path = f"/repos/{owner}/{repo}/pulls/7/merge"
    return GH.parse(HttpRequest("PUT", "https", "api.github.com", None, path, "", ())).spec


def _spellings() -> st.SearchStrategy[tuple[str, str]]:
    def spelled(word: str) -> st.SearchStrategy[str]:
        flips = st.lists(st.booleans(), min_size=len(word), max_size=len(word))
        return flips.map(
            lambda up: "".join(c.upper() if u else c for c, u in zip(word, up, strict=True))
        )

    return st.tuples(spelled("acme"), spelled("prod-api"))


@pytest.mark.parametrize(("field", "operator", "value"), LEAVES)
@settings(max_examples=40, deadline=None)
@given(name=_spellings())
def test_every_spelling_of_a_github_repository_meets_the_rule(
    field: str, operator: str, value: object, name: tuple[str, str]
) -> None:
    decision = _deny(field, operator, value).evaluate(_merge(*name), PROXY)
    assert decision.outcome == "deny", (name, decision.reason)
    assert decision.outcome == "deny"
    assert "protect-prod/no-merge" in decision.matched_rules


@pytest.mark.parametrize(
    ("field", "operator", "value"),
    [
        ("resource.target", "not_equals", "ACME/prod-api"),
        ("resource.target", "not_in", ["Acme/Prod-Api"]),
        ("resource.target", "not_contains", "Prod"),
    ],
)
def test_negated_operators_fold_case_too(
    make_ctx: MakeContext, field: str, operator: str, value: object
) -> None:
    decision = _deny(field, operator, value).evaluate(_merge("aCmE", "PROD-api"), make_ctx())
    assert decision.outcome == "allow"


def test_an_sdk_spec_naming_github_by_its_type_is_folded_too(make_ctx: MakeContext) -> None:
    spec = parse_action_spec({"type": "github.pr.merge", "resource": {"target": "ACME/PROD-API"}})
    decision = _deny("resource.target", "glob", "acme/prod*").evaluate(spec, make_ctx())
    assert decision.outcome == "deny"
    assert "protect-prod/no-merge" in decision.matched_rules


@pytest.mark.parametrize(
    "resource",
    [
        {"provider": "aws", "account": "123456789012", "target": "bucket/PUBLIC/report.csv"},
        {"provider": "slack", "account": "T1", "target": "bucket/PUBLIC/report.csv"},
        {"provider": "mcp", "target": "bucket/PUBLIC/report.csv"},
    ],
)
def test_other_providers_stay_case_sensitive(make_ctx: MakeContext, resource: dict) -> None:
    """S3 keys, Slack ids and MCP resources are distinct in another case: an allow rule on
    `bucket/public/*` must not let `bucket/PUBLIC/…` through."""
    allow = load_policy(
        {
            "name": "public-reads",
            "rules": [
                {
                    "name": "public",
                    "decision": "allow",
                    "conditions": [
                        {"field": "resource.target", "operator": "glob", "value": "bucket/public/*"}
                    ],
                }
            ],
        }
    )
    spec = parse_action_spec({"type": "files.object.get", "resource": resource})
    decision = Engine(policies=[allow]).evaluate(spec, make_ctx())
    assert decision.matched_rules == ()
