"""GitHub refs with slashes: branch protection cannot be changed under another name, and
every ``commits/{ref}`` sub-route is named for refs with slashes.

The guarantee: a request that changes branch protection (any of the 33 endpoints of
GitHub's "Protected branches" REST page, and rulesets) is named in the
``github.branch_protection.*`` family whatever the branch is called and however the path is
spelled, so an access rule or policy on that family cannot be bypassed by editing one part
of the protection (``.../protection/required_status_checks/contexts``) or by a branch whose
name holds the route's own literals (``protection/restrictions``). The endpoint tables
below are written from GitHub's documentation, not from the connector's route table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import ConnectorError, HttpRequest, ParsedAction
from agentfirewall.connectors.github import CONNECTOR as GH
from agentfirewall.policy import AccessRule, Engine, load_pack
from tests.fuzzscale import examples

FAMILY = "github.branch_protection."
GHE_BASE = "https://ghe.example.com/api/v3"

# GitHub REST "Protected branches": (method, part under .../protection, expected verb).
PROTECTION: list[tuple[str, str, str]] = [
    ("GET", "", "get"),
    ("PUT", "", "update"),
    ("DELETE", "", "delete"),
    ("GET", "enforce_admins", "get"),
    ("POST", "enforce_admins", "update"),
    ("DELETE", "enforce_admins", "delete"),
    ("GET", "required_pull_request_reviews", "get"),
    ("PATCH", "required_pull_request_reviews", "update"),
    ("DELETE", "required_pull_request_reviews", "delete"),
    ("GET", "required_signatures", "get"),
    ("POST", "required_signatures", "update"),
    ("DELETE", "required_signatures", "delete"),
    ("GET", "required_status_checks", "get"),
    ("PATCH", "required_status_checks", "update"),
    ("DELETE", "required_status_checks", "delete"),
    ("GET", "required_status_checks/contexts", "get"),
    ("POST", "required_status_checks/contexts", "update"),
    ("PUT", "required_status_checks/contexts", "update"),
    ("DELETE", "required_status_checks/contexts", "delete"),
    ("GET", "restrictions", "get"),
    ("DELETE", "restrictions", "delete"),
    *(
        (method, f"restrictions/{who}", verb)
        for who in ("apps", "teams", "users")
        for method, verb in (("GET", "get"), ("POST", "update"), ("PUT", "update"),
                             ("DELETE", "delete"))
    ),
]  # fmt: skip
PROTECTION_WRITES = [row for row in PROTECTION if row[0] != "GET"]

# GitHub REST "Commits", "Commit statuses", "Check runs/suites", "Commit comments":
# (method, sub-route under commits/{ref}, action).
COMMIT_ROUTES: list[tuple[str, str, str]] = [
    ("GET", "", "github.commit.get"),
    ("GET", "status", "github.commit_status.get"),
    ("GET", "statuses", "github.commit_status.list"),
    ("GET", "check-runs", "github.check_run.list"),
    ("GET", "check-suites", "github.check_suite.list"),
    ("GET", "comments", "github.commit_comment.list"),
    ("POST", "comments", "github.commit_comment.create"),
    ("GET", "pulls", "github.commit_pr.list"),
    ("GET", "branches-where-head", "github.commit_branch.list"),
]
COMMIT_LITERALS = {sub for _, sub, _ in COMMIT_ROUTES if sub}

# Words a branch or ref may hold that are also literals of the routes around it.
VOCABULARY = sorted(
    {"protection", "rename", "restrictions", "contexts", "users", "teams", "apps", "status"}
    | {part for _, p, _ in PROTECTION for part in p.split("/") if part}
    | COMMIT_LITERALS
)


# -- names and spellings ----------------------------------------------------------------

# Characters a git ref may hold. Those outside the URL path's safe set must be
# percent-encoded by the client; the others may be (`%41` is `A`).
_PLAIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!$&'()+,=@"
_MUST_ENCODE = '%#{}|<>"`é雪'


def _git_segment_ok(segment: str) -> bool:
    """git check-ref-format's rules for one component (the ones our alphabet can break)."""
    return not (
        segment.startswith(".")
        or segment.endswith((".", ".lock"))
        or ".." in segment
        or "@{" in segment
    )


ref_segments = st.one_of(
    st.sampled_from(VOCABULARY),
    st.text(_PLAIN + _MUST_ENCODE, min_size=1, max_size=8).filter(_git_segment_ok),
)
ref_names = (
    st.lists(ref_segments, min_size=1, max_size=4).map("/".join).filter(lambda name: name != "@")
)


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


@dataclass(frozen=True)
class Spelling:
    """How a client spells the same request: which characters it escapes, the case of the
    literals, a trailing slash, GitHub Enterprise's prefix or GitHub's by-id path."""

    escapes: tuple[bool, ...]
    upper: tuple[bool, ...]
    trailing_slash: bool
    where: str  # "api" | "ghe" | "by-id"

    def literal(self, text: str, offset: int) -> str:
        out = []
        for index, char in enumerate(text):
            k = offset + index
            char = char.upper() if self.upper[k % len(self.upper)] else char
            escape = self.escapes[k % len(self.escapes)] and char != "/"
            out.append(_escape(char) if escape else char)
        return "".join(out)

    def name(self, text: str, offset: int) -> str:
        out = []
        for index, char in enumerate(text):
            k = (offset + index) % len(self.escapes)
            encode = char in _MUST_ENCODE or (char != "/" and self.escapes[k])
            out.append(_escape(char) if encode else char)
        return "".join(out)


spellings = st.builds(
    Spelling,
    escapes=st.lists(st.booleans(), min_size=1, max_size=12).map(tuple),
    upper=st.lists(st.booleans(), min_size=1, max_size=12).map(tuple),
    trailing_slash=st.booleans(),
    where=st.sampled_from(["api", "ghe", "by-id"]),
)
PLAIN = Spelling((False,), (False,), False, "api")


def _request(
    method: str, parts: list[tuple[str, bool]], spelling: Spelling
) -> tuple[HttpRequest, str | None, str]:
    """The request for path `parts` ((text, is_a_name) pairs after /repos/acme/api), the
    base URL to parse it with, and the resource target it must name."""
    path = ""
    offset = 0
    for text, is_name in parts:
        path += "/" + (spelling.name(text, offset) if is_name else spelling.literal(text, offset))
        offset += len(text)
    if spelling.trailing_slash:
        path += "/"
    body = b"{}" if method not in ("GET", "DELETE") else b""
    headers = (("content-type", "application/json"),) if body else ()
    if spelling.where == "ghe":
        full = "/api/v3" + spelling.literal("/repos", 3) + "/acme/api" + path
        req = HttpRequest(method, "https", "ghe.example.com", None, full, "", headers, body)
        return req, GHE_BASE, "acme/api"
    if spelling.where == "by-id":
        full = spelling.literal("/repositories", 5) + "/12345" + path
        req = HttpRequest(method, "https", "api.github.com", None, full, "", headers, body)
        return req, None, "12345"
    full = spelling.literal("/repos", 1) + "/acme/api" + path
    req = HttpRequest(method, "https", "api.github.com", None, full, "", headers, body)
    return req, None, "acme/api"


def _protection_parts(branch: str, part: str) -> list[tuple[str, bool]]:
    tail = ["protection", *(p for p in part.split("/") if p)]
    return [("branches", False), (branch, True), *((p, False) for p in tail)]


def _parse(
    method: str, parts: list[tuple[str, bool]], spelling: Spelling
) -> tuple[ParsedAction, dict[str, object]]:
    """The parsed request, and its parameters but the by-id spelling's repository id (the
    resource target is checked here: the repository, or its id)."""
    req, base, target = _request(method, parts, spelling)
    parsed = GH.parse(req, base_url=base)
    assert parsed.spec.resource.target == target
    params: dict[str, object] = dict(parsed.spec.parameters)
    if spelling.where == "by-id":
        assert params.pop("repository_id") == 12345
    return parsed, params


# -- branch protection ------------------------------------------------------------------


@pytest.mark.parametrize(("method", "part", "verb"), PROTECTION)
def test_each_protection_endpoint_is_named_in_the_family(method: str, part: str, verb: str) -> None:
    parsed, _ = _parse(method, _protection_parts("release/1.x", part), PLAIN)
    assert parsed.action_type == FAMILY + verb
    assert parsed.risk == ("low" if method == "GET" else "high")
    assert parsed.spec.parameters == {"branch": "release/1.x"}
    assert parsed.spec.resource.target == "acme/api"


@settings(max_examples=examples(300), deadline=None)
@given(
    endpoint=st.sampled_from(PROTECTION),
    branch=ref_names,
    spelling=spellings,
)
def test_branch_protection_is_named_for_any_branch_in_any_spelling(
    endpoint: tuple[str, str, str], branch: str, spelling: Spelling
) -> None:
    method, part, verb = endpoint
    parsed, params = _parse(method, _protection_parts(branch, part), spelling)
    assert parsed.action_type == FAMILY + verb
    assert params == {"branch": branch}
    assert "path_relaxed" not in parsed.spec.risk_hints


@settings(max_examples=examples(200), deadline=None)
@given(endpoint=st.sampled_from(PROTECTION_WRITES), branch=ref_names, spelling=spellings)
def test_a_format_suffix_does_not_take_a_protection_write_out_of_the_family(
    endpoint: tuple[str, str, str], branch: str, spelling: Spelling
) -> None:
    # `.../restrictions/users.json`: matched relaxed, still the same protection action
    method, part, verb = endpoint
    parts = _protection_parts(branch, part)
    parts[-1] = (parts[-1][0] + ".json", False)
    parsed, params = _parse(method, parts, spelling)
    assert parsed.action_type == FAMILY + verb
    assert params == {"branch": branch}


@settings(max_examples=examples(300), deadline=None)
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
    branch=ref_names,
    tail=st.lists(st.sampled_from(VOCABULARY), min_size=0, max_size=3),
    spelling=spellings,
)
def test_no_write_under_protection_escapes_to_a_grantable_name(
    method: str, branch: str, tail: list[str], spelling: Spelling
) -> None:
    # Any write to `.../branches/<branch>/protection[/anything]`, endpoint or not, is in
    # the family, or `github.unknown.*` (no allow wildcard grants it: docs/connectors.md),
    # or a rename of the branch the whole path names (it ends in `/rename`)
    parts = [("branches", False), (branch, True), ("protection", False)]
    parts += [(word, False) for word in tail]
    req, base, _ = _request(method, parts, spelling)
    try:
        action = GH.parse(req, base_url=base).action_type
    except ConnectorError:
        return
    if tail and tail[-1] == "rename" and method == "POST":
        assert action == "github.branch.rename"
    else:
        assert action.startswith((FAMILY, "github.unknown.")), action


def test_every_protection_route_of_the_table_is_in_the_family_and_documented() -> None:
    # the table holds exactly GitHub's endpoints under .../protection, and every route
    # that names protection or a ruleset is in the family
    base = "/repos/{owner}/{repo}/branches/{branch+}/protection"
    found = set()
    for route in GH.table.routes:
        if "/protection" in route.path or "/rulesets" in route.path:
            assert route.action.startswith(FAMILY), (route.method, route.path)
            assert all(v.action.startswith(FAMILY) for v in route.variants)
        if route.path.startswith(base) and route.listed:
            found.add((route.method, route.path[len(base) :].lstrip("/")))
    assert found == {(method, part) for method, part, _ in PROTECTION}


RULESETS = [
    ("GET", "/repos/acme/api/rulesets", "list", "acme/api"),
    ("POST", "/repos/acme/api/rulesets", "update", "acme/api"),
    ("GET", "/repos/acme/api/rulesets/7", "get", "acme/api"),
    ("PUT", "/repos/acme/api/rulesets/7", "update", "acme/api"),
    ("DELETE", "/repos/acme/api/rulesets/7", "delete", "acme/api"),
    ("GET", "/repos/acme/api/rules/branches/release/1.x", "get", "acme/api"),
    ("GET", "/orgs/acme/rulesets", "list", "acme"),
    ("POST", "/orgs/acme/rulesets", "update", "acme"),
    ("GET", "/orgs/acme/rulesets/7", "get", "acme"),
    ("PUT", "/orgs/acme/rulesets/7", "update", "acme"),
    ("DELETE", "/orgs/acme/rulesets/7", "delete", "acme"),
]


@pytest.mark.parametrize(("method", "path", "verb", "target"), RULESETS)
def test_rulesets_are_branch_protection_as_in_graphql(
    method: str, path: str, verb: str, target: str
) -> None:
    # GraphQL's createRepositoryRuleset / deleteRepositoryRuleset are already
    # github.branch_protection.update / .delete; REST must not be a way around them
    body = b"{}" if method in ("POST", "PUT") else b""
    parsed = GH.parse(HttpRequest.from_url(method, "https://api.github.com" + path, body=body))
    assert parsed.action_type == FAMILY + verb
    assert parsed.risk == ("low" if method == "GET" else "high")
    assert parsed.spec.resource.target == target


# Tag protection (deprecated: GitHub moves its rules into rulesets, which protect tags too):
# (method, path parts after /repos/acme/api, verb, parameters).
TAG_PROTECTION: list[tuple[str, list[tuple[str, bool]], str, dict[str, object]]] = [
    ("GET", [("tags", False), ("protection", False)], "list", {}),
    ("POST", [("tags", False), ("protection", False)], "update", {}),
    ("DELETE", [("tags", False), ("protection", False), ("2", True)], "delete",
     {"tag_protection_id": 2}),
]  # fmt: skip


@settings(max_examples=examples(200), deadline=None)
@given(endpoint=st.sampled_from(TAG_PROTECTION), spelling=spellings)
def test_tag_protection_is_branch_protection_in_any_spelling(
    endpoint: tuple[str, list[tuple[str, bool]], str, dict[str, object]], spelling: Spelling
) -> None:
    # like a tag ruleset, a tag protection rule is in the family (it was github.unknown.*)
    method, parts, verb, expected = endpoint
    parsed, params = _parse(method, parts, spelling)
    assert parsed.action_type == FAMILY + verb
    assert parsed.risk == ("low" if method == "GET" else "high")
    assert params == expected
    assert "path_relaxed" not in parsed.spec.risk_hints


def test_a_deny_on_the_family_denies_every_protection_change() -> None:
    # the user's view: allow github.*, deny github.branch_protection.*; no endpoint, under
    # no branch name, gets through
    engine = Engine(
        access_rules=[
            AccessRule("Bot", "github", "github.*", "allow"),
            AccessRule("Bot", "github", "github.branch_protection.*", "deny"),
        ]
    )
    now = datetime(2025, 1, 1, tzinfo=UTC)
    for branch in ("main", "release/1.x", "protection/restrictions", "a/rename/b"):
        for method, part, _ in PROTECTION_WRITES:
            parsed, _ = _parse(method, _protection_parts(branch, part), PLAIN)
            decision = engine.decide(
                parsed.spec, agent="Bot", mode="proxy", now=now, connector="github"
            )
            assert decision.outcome == "deny", (method, branch, part)
    for method, path, verb, _ in RULESETS:
        if verb in ("update", "delete"):
            body = b"{}" if method != "DELETE" else b""
            spec = GH.parse(HttpRequest.from_url(method, "https://api.github.com" + path,
                                                 body=body)).spec  # fmt: skip
            decision = engine.decide(spec, agent="Bot", mode="proxy", now=now, connector="github")
            assert decision.outcome == "deny", path
    for method, parts, verb, _ in TAG_PROTECTION:
        if verb != "list":
            parsed, _ = _parse(method, parts, PLAIN)
            decision = engine.decide(
                parsed.spec, agent="Bot", mode="proxy", now=now, connector="github"
            )
            assert decision.outcome == "deny", (method, parts)


def test_safe_defaults_pack_holds_tag_protection_changes() -> None:
    # github-safe-defaults holds every github.branch_protection.update / .delete for a
    # human; a tag protection change named github.unknown.* was denied outright instead
    engine = Engine(
        access_rules=[AccessRule("Bot", "github", "github.*", "allow")],
        policies=[load_pack("github-safe-defaults")],
    )
    now = datetime(2025, 1, 1, tzinfo=UTC)
    for method, parts, verb, _ in TAG_PROTECTION:
        parsed, _ = _parse(method, parts, PLAIN)
        decision = engine.decide(
            parsed.spec, agent="Bot", mode="proxy", now=now, connector="github"
        )
        expected = "allow" if verb == "list" else "require_approval"
        assert decision.outcome == expected, (method, parts)


# -- commits/{ref+} ---------------------------------------------------------------------


def _commit_parts(ref: str, sub: str) -> list[tuple[str, bool]]:
    return [("commits", False), (ref, True), *([(sub, False)] if sub else [])]


@pytest.mark.parametrize(("method", "sub", "action"), COMMIT_ROUTES)
@pytest.mark.parametrize("ref", ["abc123", "feature/x", "release/1.x/hotfix", "v1.0"])
def test_each_commit_route_takes_a_ref_with_slashes(
    method: str, sub: str, action: str, ref: str
) -> None:
    parsed, _ = _parse(method, _commit_parts(ref, sub), PLAIN)
    assert parsed.action_type == action
    assert parsed.risk == "low"
    assert parsed.spec.parameters == {"ref": ref}
    # and the request built for the action is the same request
    built = GH.build_request(parsed.spec)
    assert (built.method, built.path) == (
        method,
        f"/repos/acme/api/commits/{ref}" + (f"/{sub}" if sub else ""),
    )


@settings(max_examples=examples(300), deadline=None)
@given(route=st.sampled_from(COMMIT_ROUTES), ref=ref_names, spelling=spellings)
def test_commit_routes_are_named_for_any_ref_in_any_spelling(
    route: tuple[str, str, str], ref: str, spelling: Spelling
) -> None:
    method, sub, action = route
    last = ref.rsplit("/", 1)[-1].lower()
    if not sub and "/" in ref and last in COMMIT_LITERALS:
        # `commits/feature/status` is the status of `feature`: see the test below
        return
    parsed, params = _parse(method, _commit_parts(ref, sub), spelling)
    assert parsed.action_type == action
    assert params == {"ref": ref}
    assert "path_relaxed" not in parsed.spec.risk_hints


@pytest.mark.parametrize("sub", sorted(COMMIT_LITERALS))
def test_a_ref_ending_in_a_sub_route_literal_is_read_as_the_sub_route(sub: str) -> None:
    # like `/branches/a/protection` (the protection of branch `a`), the longest literal
    # tail wins: a read either way, and a ref of one segment is still a commit
    method = "GET"
    parsed, _ = _parse(method, _commit_parts(f"feature/{sub}", ""), PLAIN)
    expected = next(a for m, s, a in COMMIT_ROUTES if (m, s) == (method, sub))
    assert (parsed.action_type, parsed.spec.parameters) == (expected, {"ref": "feature"})
    alone, _ = _parse(method, _commit_parts(sub, ""), PLAIN)
    assert (alone.action_type, alone.spec.parameters) == ("github.commit.get", {"ref": sub})


def test_commit_reads_are_reads_for_the_read_only_pack() -> None:
    # read-only (agentfirewall/policy/packs/read-only.yaml) allows *.get and *.list only
    for method, _, action in COMMIT_ROUTES:
        if method == "GET":
            assert action.endswith((".get", ".list")), action


def test_setting_a_commit_status_is_a_named_write() -> None:
    # a status can satisfy a required status check: it is named, never a read
    body = b'{"state": "success", "context": "ci/build"}'
    req = HttpRequest.from_url(
        "POST",
        "https://api.github.com/repos/acme/api/statuses/0123abcd",
        headers=(("content-type", "application/json"),),
        body=body,
    )
    parsed = GH.parse(req)
    assert parsed.action_type == "github.commit_status.create"
    assert parsed.risk == "medium"
    assert parsed.spec.parameters == {
        "sha": "0123abcd",
        "state": "success",
        "context": "ci/build",
    }
