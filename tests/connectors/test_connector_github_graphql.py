"""GitHub GraphQL: every known mutation named as REST names it, variables resolved,
fragments and aliases seen through, several actions all reported, tricks refused."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from agentfirewall.connectors import HttpRequest, ParsedAction
from agentfirewall.connectors.github_graphql import MAX_ACTIONS
from agentfirewall.connectors.github_mutations import MUTATIONS
from agentfirewall.connectors.registry import get_connector
from agentfirewall.errors import ConnectorError

GH = get_connector("github")
URL = "https://api.github.com/graphql"
JSON = (("Content-Type", "application/json"),)


def post(body: bytes, *, complete: bool = True, headers: tuple[tuple[str, str], ...] = JSON,
         url: str = URL) -> ParsedAction:  # fmt: skip
    return GH.parse(HttpRequest.from_url("POST", url, headers=headers, body=body,
                                         body_complete=complete))  # fmt: skip


def gql(query: str, variables: Any = None, **extra: Any) -> ParsedAction:
    payload: dict[str, Any] = {"query": query, **extra}
    if variables is not None:
        payload["variables"] = variables
    return post(json.dumps(payload).encode())


def test_at_least_thirty_mutations_are_named() -> None:
    assert len(MUTATIONS) >= 30


@pytest.mark.parametrize("field", sorted(MUTATIONS))
def test_every_known_mutation_is_named_as_its_action(field: str) -> None:
    known = MUTATIONS[field]
    parsed = gql(f'mutation {{ {field}(input: {{clientMutationId: "c"}}) {{ clientMutationId }} }}')
    expected = (known.action, known.risk)
    if field == "updateRefs":  # no readable refUpdates: read as the riskier variant
        expected = ("github.branch.delete", "high")
    assert (parsed.action_type, parsed.risk) == expected
    assert parsed.also == ()


def test_mutation_risks_agree_with_rest() -> None:
    rest = {}
    for info in GH.actions():
        if not info.path.startswith("/graphql"):
            rest.setdefault(info.type, info.risk)
    for field, known in MUTATIONS.items():
        actions = [(known.action, known.risk), *((v.action, v.risk) for v in known.variants)]
        for action, risk in actions:
            if action in rest:
                assert rest[action] == risk, (field, action)


def test_merge_with_variables_and_parameters() -> None:
    parsed = gql(
        "mutation Merge($id: ID!, $how: PullRequestMergeMethod = REBASE) {"
        " m: mergePullRequest(input: {pullRequestId: $id, mergeMethod: $how,"
        ' expectedHeadOid: "abc"}) { pullRequest { merged } } }',
        {"id": "PR_kw1"},
        operationName="Merge",
    )
    assert parsed.action_type == "github.pr.merge"
    assert parsed.spec.parameters == {
        "pull_request_id": "PR_kw1",
        "merge_method": "rebase",
        "sha": "abc",
    }


@pytest.mark.parametrize(
    ("field", "given", "action"),
    [
        ("updatePullRequest", {"pullRequestId": "p", "state": "CLOSED"}, "github.pr.close"),
        ("updatePullRequest", {"pullRequestId": "p", "state": "OPEN"}, "github.pr.update"),
        ("updateIssue", {"id": "i", "state": "CLOSED"}, "github.issue.close"),
        ("updateRepository", {"repositoryId": "r", "visibility": "PUBLIC"},
         "github.repo.make_public"),
        ("updateRepository", {"repositoryId": "r", "name": "n"}, "github.repo.update"),
        ("createRef", {"repositoryId": "r", "name": "refs/tags/v1", "oid": "a"},
         "github.tag.create"),
        ("createRef", {"repositoryId": "r", "name": "refs/heads/x", "oid": "a"},
         "github.branch.create"),
        ("updateRefs", {"repositoryId": "r", "refUpdates": [{"name": "refs/heads/main",
         "afterOid": "0" * 40}]}, "github.branch.delete"),
        ("updateRefs", {"repositoryId": "r", "refUpdates": [{"name": "refs/heads/main",
         "afterOid": "1" * 40}]}, "github.ref.update"),
        ("createCommitOnBranch", {"fileChanges": {"deletions": [{"path": "a"}]}},
         "github.file.delete"),
        ("createCommitOnBranch", {"fileChanges": {"additions": []}}, "github.file.update"),
    ],
)  # fmt: skip
def test_variants_from_variables(field: str, given: dict[str, Any], action: str) -> None:
    parsed = gql(f"mutation($i: X!) {{ {field}(input: $i) {{ clientMutationId }} }}", {"i": given})
    assert parsed.action_type == action


def test_fragments_aliases_and_several_actions_all_reported() -> None:
    parsed = gql(
        "query Q { viewer { login } }\n"
        "mutation A { c: closePullRequest(input: {pullRequestId: \"p\"}) { clientMutationId }"
        " ... on Mutation { addComment(input: {subjectId: \"s\", body: \"hi\"}) { x } }"
        " ...F }\n"
        "fragment F on Mutation { deleteRef(input: {refId: \"r\"}) @skip(if: true) { x } }",
        operationName="Q",
    )  # fmt: skip
    assert parsed.action_type == "github.branch.delete"  # the riskiest leads
    others = sorted(a.action_type for a in parsed.also)
    assert others == ["github.graphql.query", "github.issue.comment", "github.pr.close"]
    assert sorted(parsed.spec.risk_hints["graphql_also"]) == others  # type: ignore[arg-type]


def test_unknown_mutation_and_query() -> None:
    unknown = gql('mutation { addStar(input: {starrableId: "x"}) { clientMutationId } }')
    assert (unknown.action_type, unknown.risk) == ("github.graphql.mutate", "high")
    assert unknown.spec.parameters["mutation"] == "addStar"
    query = gql('{ repository(owner: "a", name: "b") { id } }')
    assert (query.action_type, query.risk) == ("github.graphql.query", "low")
    subscription = gql("subscription { anything }")
    assert subscription.action_type == "github.graphql.mutate"


def test_enterprise_path_is_parsed_too() -> None:
    body = json.dumps({"query": "mutation { mergePullRequest(input: {}) { x } }"}).encode()
    parsed = post(body, url="https://ghe.example.com/api/graphql")
    assert parsed.action_type == "github.pr.merge"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"query": "query { a }", "query": "mutation { mergePullRequest { x } }"}',
         "duplicate key"),
        (b'{"query": "mutation($v: X) { mergePullRequest(input: $v) { x } }",'
         b' "variables": {"v": {"a": 1, "a": 2}}}', "duplicate key"),
        (b'[{"query": "query { a }"}, {"query": "mutation { deleteRef { x } }"}]', "batch"),
        (b'{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}}',
         "without a document"),
        (b'{"id": "abc123"}', "without a document"),
        (b'{"query": 5}', "not a string"),
        (b'{"query": "query { a }", "variables": "{}"}', "not an object"),
        (b'{"query": "mutation { ", "variables": {}}', "does not parse"),
        (b'{"query": "mutation { ...F }"}', "not defined"),
        (b'{"query": "mutation { ...F } fragment F on Mutation { ...F }"}', "spreads itself"),
        (b'"query { a }"', "not a JSON object"),
        (b"not json", "JSON"),
    ],
)  # fmt: skip
def test_refused(body: bytes, message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        post(body)


def test_body_not_fully_seen_or_compressed_is_refused() -> None:
    body = json.dumps({"query": "query { a }"}).encode()
    with pytest.raises(ConnectorError, match="not fully inspected"):
        post(body, complete=False)
    # mtime=0: the same bytes every run (about 0.4 % of gzip headers' times made bytes in
    # which the `_method` check finds a candidate and refuses first: "not UTF-8")
    with pytest.raises(ConnectorError, match="gzip"):
        post(gzip.compress(body, mtime=0), headers=(*JSON, ("Content-Encoding", "gzip")))


def test_too_many_actions_is_refused() -> None:
    fields = " ".join(f'a{i}: addComment(input: {{subjectId: "{i}"}}) {{ x }}' for i in range(60))
    with pytest.raises(ConnectorError, match=f"more than {MAX_ACTIONS}"):
        gql(f"mutation {{ {fields} }}")


def test_catalogue_lists_the_mutations() -> None:
    rows = [a for a in GH.actions() if a.path.startswith("/graphql mutation")]
    assert {r.path.rsplit(" ", 1)[1] for r in rows} == set(MUTATIONS)


def test_sdk_mode_cannot_execute_a_known_mutation_under_the_generic_name() -> None:
    from agentfirewall.actions import parse_action_spec

    unknown = parse_action_spec(
        {"type": "github.graphql.mutate", "parameters": {"query": "mutation { addStar { x } }"}}
    )
    assert GH.build_request(unknown).url == URL
    merge = parse_action_spec(
        {"type": "github.graphql.mutate",
         "parameters": {"query": "mutation { mergePullRequest(input: {}) { x } }"}}
    )  # fmt: skip
    with pytest.raises(ConnectorError, match=r"github\.pr\.merge"):
        GH.build_request(merge)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{" + "a{" * 5000 + "b" + "}" * 5001, "nested deeper than 64"),
        ("mutation { x(input: " + "[" * 5000 + "1" + "]" * 5000 + ") { y } }", "nested deeper"),
        ("mutation { x(input: " + "{a:" * 3000 + "1" + "}" * 3000 + ") { y } }", "nested deeper"),
        ("query { " + " ".join(f"f{i}" for i in range(12_000)) + " }", "more than 10000 tokens"),
    ],
)
def test_deep_or_huge_documents_are_refused_before_the_parser_recurses(
    query: str, message: str
) -> None:
    with pytest.raises(ConnectorError, match=message):
        gql(query)


def test_brackets_inside_strings_and_comments_do_not_count() -> None:
    body = "{" * 200 + "[" * 200
    parsed = gql(f'mutation {{ addComment(input: {{body: "{body}"}}) {{ x }} }} # {"{" * 99}')
    assert parsed.action_type == "github.issue.comment"
    assert parsed.spec.parameters["body"] == body


def test_every_repeated_mutation_is_an_action() -> None:
    """GitHub runs each aliased field: twenty aliased `addComment` calls are twenty actions
    (they were one: a repeated (action, parameters) was dropped), through fragments too."""
    twenty = " ".join(f'c{i}: addComment(input: {{subjectId: "s", body: "x"}}) {{ x }}'
                      for i in range(20))  # fmt: skip
    parsed = gql(f"mutation {{ {twenty} }}")
    assert [a.action_type for a in (parsed, *parsed.also)] == ["github.issue.comment"] * 20
    call = 'addComment(input: {subjectId: "s", body: "x"}) { x }'
    spread = gql(f"mutation {{ a: {call} ... on Mutation {{ b: {call} }} ...F }}"
                 f" fragment F on Mutation {{ c: {call} }}")  # fmt: skip
    assert len(spread.also) == 2


def test_fields_graphql_merges_are_one_action() -> None:
    """One response key in one operation is executed once (the same call, unaliased, in a
    fragment and beside it); a key whose calls differ stays two (GitHub refuses it)."""
    call = 'addComment(input: {subjectId: "s", body: "x"}) { x }'
    once = gql(f"mutation {{ {call} ...F ... on Mutation {{ {call} }} }}"
               f" fragment F on Mutation {{ {call} }}")  # fmt: skip
    assert once.also == ()
    differ = gql('mutation { a: addComment(input: {subjectId: "s", body: "x"}) { x }'
                 ' a: addComment(input: {subjectId: "s", body: "y"}) { x } }')  # fmt: skip
    assert len(differ.also) == 1


def test_unknown_mutations_with_other_arguments_are_two_actions() -> None:
    parsed = gql('mutation { enqueuePullRequest(input: {pullRequestId: "p1"}) { x }'
                 ' b: enqueuePullRequest(input: {pullRequestId: "p2"}) { x } }')  # fmt: skip
    arguments = [a.spec.parameters["arguments"] for a in (parsed, *parsed.also)]
    assert arguments == [{"input": {"pullRequestId": "p1"}}, {"input": {"pullRequestId": "p2"}}]


@pytest.mark.parametrize(
    "query",
    [  # every occurrence counts, the same call repeated too
        "mutation { " + " ".join(f'a{i}: addComment(input: {{subjectId: "s"}}) {{ x }}'
                                 for i in range(MAX_ACTIONS + 1)) + " }",
        "mutation { " + "...F " * (MAX_ACTIONS + 1) + "}"
        ' fragment F on Mutation { addComment(input: {subjectId: "s"}) { x } }',
        # spreads of spreads: 2**40 fields, refused before they are all expanded
        "mutation { ...F0 } fragment F40 on Mutation { addComment { x } } "
        + " ".join(f"fragment F{i} on Mutation {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40)),
    ],
    ids=["aliases", "spreads", "spreads-of-spreads"],
)  # fmt: skip
def test_more_than_max_actions_occurrences_is_refused(query: str) -> None:
    with pytest.raises(ConnectorError, match=f"more than {MAX_ACTIONS}"):
        gql(query)


def test_fragment_spreads_nested_too_deep_are_refused() -> None:
    chain = " ".join(f"fragment F{i} on Mutation {{ ...F{i + 1} }}" for i in range(1200))
    with pytest.raises(ConnectorError, match="nested deeper than 64"):
        gql(f"mutation {{ ...F0 }} {chain} fragment F1200 on Mutation {{ deleteRef {{ x }} }}")
