"""GitHub connector: one row per action, request -> action, parameters, risk."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector
from agentfirewall.connectors.github_mutations import MUTATIONS
from agentfirewall.policy import AccessRule, Engine, load_policy

GH = get_connector("github")
API = "https://api.github.com"
R = "/repos/acme/api"


def req(method: str, path: str, body: object = None, host: str = API) -> HttpRequest:
    data = b"" if body is None else json.dumps(body).encode()
    return HttpRequest.from_url(method, host + path, body=data)


Row = tuple[str, str, object, str, str, dict[str, object]]

# An organisation's webhooks (they hear every repository's events): the repository's
# webhook family, `github.unknown.<method>` before.
ORG_HOOK = "/orgs/acme/hooks/4"
ORG_HOOK_ROWS: list[Row] = [
    ("GET", "/orgs/acme/hooks", None, "github.webhook.list", "low", {}),
    ("POST", "/orgs/acme/hooks", {"name": "web"}, "github.webhook.create", "high", {}),
    ("GET", ORG_HOOK, None, "github.webhook.get", "low", {"hook_id": 4}),
    ("PATCH", ORG_HOOK, {"active": True}, "github.webhook.update", "high", {"hook_id": 4}),
    ("DELETE", ORG_HOOK, None, "github.webhook.delete", "high", {"hook_id": 4}),
    ("GET", ORG_HOOK + "/config", None, "github.webhook.get", "low", {"hook_id": 4}),
    ("PATCH", ORG_HOOK + "/config", {}, "github.webhook.update", "high", {"hook_id": 4}),
    ("POST", ORG_HOOK + "/pings", None, "github.webhook.ping", "low", {"hook_id": 4}),
    ("GET", ORG_HOOK + "/deliveries", None, "github.webhook_delivery.list", "low",
     {"hook_id": 4}),
    ("POST", ORG_HOOK + "/deliveries/7/attempts", None, "github.webhook_delivery.redeliver",
     "medium", {"hook_id": 4, "delivery_id": 7}),
]  # fmt: skip

# Repository settings GitHub serves that were `github.unknown.<method>` before: an
# environment's deployment branch policies and protection rules (github.environment.*,
# like every part of branch protection), a webhook and its config, deliveries, pings and
# tests, one deploy key, and tag protection (github.branch_protection.*, like rulesets).
ENV = R + "/environments/production"
BRANCH_POLICIES = ENV + "/deployment-branch-policies"
PROTECTION_RULES = ENV + "/deployment_protection_rules"
HOOK = R + "/hooks/4"
IN_ENV = {"environment_name": "production"}
SETTINGS_ROWS: list[Row] = [
    ("GET", BRANCH_POLICIES, None, "github.environment.list", "low", IN_ENV),
    (
        "POST",
        BRANCH_POLICIES,
        {"name": "release/*", "type": "branch"},
        "github.environment.update",
        "high",
        {**IN_ENV, "name": "release/*", "type": "branch"},
    ),
    (
        "GET",
        BRANCH_POLICIES + "/3",
        None,
        "github.environment.get",
        "low",
        {**IN_ENV, "branch_policy_id": 3},
    ),
    (
        "PUT",
        BRANCH_POLICIES + "/3",
        {"name": "*"},
        "github.environment.update",
        "high",
        {**IN_ENV, "branch_policy_id": 3, "name": "*"},
    ),
    (
        "DELETE",
        BRANCH_POLICIES + "/3",
        None,
        "github.environment.delete",
        "high",
        {**IN_ENV, "branch_policy_id": 3},
    ),
    ("GET", PROTECTION_RULES, None, "github.environment.list", "low", IN_ENV),
    (
        "POST",
        PROTECTION_RULES,
        {"integration_id": 5},
        "github.environment.update",
        "high",
        {**IN_ENV, "integration_id": 5},
    ),
    ("GET", PROTECTION_RULES + "/apps", None, "github.environment.list", "low", IN_ENV),
    (
        "GET",
        PROTECTION_RULES + "/8",
        None,
        "github.environment.get",
        "low",
        {**IN_ENV, "protection_rule_id": 8},
    ),
    (
        "DELETE",
        PROTECTION_RULES + "/8",
        None,
        "github.environment.delete",
        "high",
        {**IN_ENV, "protection_rule_id": 8},
    ),
    ("GET", R + "/environments", None, "github.environment.list", "low", {}),
    ("GET", ENV, None, "github.environment.get", "low", IN_ENV),
    ("PUT", ENV, {"wait_timer": 0}, "github.environment.update", "high", IN_ENV),
    ("DELETE", ENV, None, "github.environment.delete", "high", IN_ENV),
    ("GET", R + "/keys/9", None, "github.deploy_key.get", "low", {"key_id": 9}),
    ("DELETE", R + "/keys/9", None, "github.deploy_key.delete", "high", {"key_id": 9}),
    ("GET", HOOK, None, "github.webhook.get", "low", {"hook_id": 4}),
    (
        "PATCH",
        HOOK,
        {"config": {"url": "https://collector.example"}},
        "github.webhook.update",
        "high",
        {"hook_id": 4},
    ),
    ("GET", HOOK + "/config", None, "github.webhook.get", "low", {"hook_id": 4}),
    (
        "PATCH",
        HOOK + "/config",
        {"url": "https://collector.example"},
        "github.webhook.update",
        "high",
        {"hook_id": 4},
    ),
    ("POST", HOOK + "/pings", None, "github.webhook.ping", "low", {"hook_id": 4}),
    ("POST", HOOK + "/tests", None, "github.webhook.test", "medium", {"hook_id": 4}),
    ("GET", HOOK + "/deliveries", None, "github.webhook_delivery.list", "low", {"hook_id": 4}),
    (
        "GET",
        HOOK + "/deliveries/7",
        None,
        "github.webhook_delivery.get",
        "low",
        {"hook_id": 4, "delivery_id": 7},
    ),
    (
        "POST",
        HOOK + "/deliveries/7/attempts",
        None,
        "github.webhook_delivery.redeliver",
        "medium",
        {"hook_id": 4, "delivery_id": 7},
    ),
    ("GET", R + "/tags/protection", None, "github.branch_protection.list", "low", {}),
    (
        "POST",
        R + "/tags/protection",
        {"pattern": "v*"},
        "github.branch_protection.update",
        "high",
        {"pattern": "v*"},
    ),
    (
        "DELETE",
        R + "/tags/protection/2",
        None,
        "github.branch_protection.delete",
        "high",
        {"tag_protection_id": 2},
    ),
]

# (method, path, body, action, risk, parameters)
ROWS: list[Row] = [
    ("GET", R + "/pulls?state=open", None, "github.pr.list", "low", {"state": "open"}),
    (
        "POST",
        R + "/pulls",
        {"title": "t", "head": "f", "base": "main", "body": "x"},
        "github.pr.create",
        "low",
        {"title": "t", "head": "f", "base": "main"},
    ),
    ("GET", R + "/pulls/7", None, "github.pr.get", "low", {"pull_number": 7}),
    (
        "PATCH",
        R + "/pulls/7",
        {"title": "n"},
        "github.pr.update",
        "low",
        {"pull_number": 7, "title": "n"},
    ),
    (
        "PATCH",
        R + "/pulls/7",
        {"state": "closed"},
        "github.pr.close",
        "low",
        {"pull_number": 7, "state": "closed"},
    ),
    (
        "PUT",
        R + "/pulls/42/merge",
        {"merge_method": "squash"},
        "github.pr.merge",
        "medium",
        {"pull_number": 42, "merge_method": "squash"},
    ),
    ("GET", R + "/pulls/42/merge", None, "github.pr_merge.get", "low", {"pull_number": 42}),
    (
        "PUT",
        R + "/pulls/42/update-branch",
        None,
        "github.pr.update_branch",
        "low",
        {"pull_number": 42},
    ),
    ("GET", R + "/pulls/42/files", None, "github.pr_file.list", "low", {"pull_number": 42}),
    ("GET", R + "/pulls/42/commits", None, "github.pr_commit.list", "low", {"pull_number": 42}),
    ("GET", R + "/pulls/42/reviews", None, "github.review.list", "low", {"pull_number": 42}),
    (
        "POST",
        R + "/pulls/42/reviews",
        {"event": "APPROVE"},
        "github.pr.review",
        "low",
        {"pull_number": 42, "event": "APPROVE"},
    ),
    (
        "GET",
        R + "/pulls/42/reviews/3",
        None,
        "github.review.get",
        "low",
        {"pull_number": 42, "review_id": 3},
    ),
    (
        "POST",
        R + "/pulls/42/requested_reviewers",
        {"reviewers": ["bob"]},
        "github.pr.request_review",
        "low",
        {"pull_number": 42, "reviewers": ["bob"]},
    ),
    (
        "GET",
        R + "/pulls/42/comments",
        None,
        "github.review_comment.list",
        "low",
        {"pull_number": 42},
    ),
    (
        "POST",
        R + "/pulls/42/comments",
        {"path": "a.py", "commit_id": "c"},
        "github.review_comment.create",
        "low",
        {"pull_number": 42, "path": "a.py", "commit_id": "c"},
    ),
    ("GET", R + "/issues", None, "github.issue.list", "low", {}),
    (
        "POST",
        R + "/issues",
        {"title": "bug", "labels": ["x"]},
        "github.issue.create",
        "low",
        {"title": "bug", "labels": ["x"]},
    ),
    ("GET", R + "/issues/5", None, "github.issue.get", "low", {"issue_number": 5}),
    (
        "PATCH",
        R + "/issues/5",
        {"state": "open"},
        "github.issue.update",
        "low",
        {"issue_number": 5, "state": "open"},
    ),
    (
        "PATCH",
        R + "/issues/5",
        {"state": "closed"},
        "github.issue.close",
        "low",
        {"issue_number": 5, "state": "closed"},
    ),
    ("GET", R + "/issues/5/comments", None, "github.comment.list", "low", {"issue_number": 5}),
    (
        "POST",
        R + "/issues/5/comments",
        {"body": "hi"},
        "github.issue.comment",
        "low",
        {"issue_number": 5},
    ),
    ("GET", R + "/issues/comments/9", None, "github.comment.get", "low", {"comment_id": 9}),
    (
        "PATCH",
        R + "/issues/comments/9",
        {"body": "x"},
        "github.comment.update",
        "low",
        {"comment_id": 9},
    ),
    (
        "DELETE",
        R + "/issues/comments/9",
        None,
        "github.comment.delete",
        "medium",
        {"comment_id": 9},
    ),
    (
        "POST",
        R + "/issues/5/labels",
        {"labels": ["a"]},
        "github.issue.label",
        "low",
        {"issue_number": 5, "labels": ["a"]},
    ),
    ("PUT", R + "/issues/5/lock", None, "github.issue.lock", "low", {"issue_number": 5}),
    ("DELETE", R + "/issues/5/lock", None, "github.issue.unlock", "low", {"issue_number": 5}),
    ("GET", R + "/branches", None, "github.branch.list", "low", {}),
    ("GET", R + "/branches/feat/x", None, "github.branch.get", "low", {"branch": "feat/x"}),
    (
        "GET",
        R + "/branches/main/protection",
        None,
        "github.branch_protection.get",
        "low",
        {"branch": "main"},
    ),
    (
        "PUT",
        R + "/branches/main/protection",
        {},
        "github.branch_protection.update",
        "high",
        {"branch": "main"},
    ),
    (
        "DELETE",
        R + "/branches/main/protection",
        None,
        "github.branch_protection.delete",
        "high",
        {"branch": "main"},
    ),
    (
        "POST",
        R + "/branches/old/rename",
        {"new_name": "new"},
        "github.branch.rename",
        "medium",
        {"branch": "old", "new_name": "new"},
    ),
    # branch names with slashes, sent unencoded as GitHub takes them
    (
        "GET",
        R + "/branches/release/1.x/protection",
        None,
        "github.branch_protection.get",
        "low",
        {"branch": "release/1.x"},
    ),
    (
        "PUT",
        R + "/branches/release/1.x/protection",
        {},
        "github.branch_protection.update",
        "high",
        {"branch": "release/1.x"},
    ),
    (
        "DELETE",
        R + "/branches/release/1.x/protection",
        None,
        "github.branch_protection.delete",
        "high",
        {"branch": "release/1.x"},
    ),
    (
        "POST",
        R + "/branches/feat/old/rename",
        {"new_name": "feat/new"},
        "github.branch.rename",
        "medium",
        {"branch": "feat/old", "new_name": "feat/new"},
    ),
    # a branch whose name holds the literal that follows it
    (
        "GET",
        R + "/branches/a/protection/b",
        None,
        "github.branch.get",
        "low",
        {"branch": "a/protection/b"},
    ),
    (
        "PUT",
        R + "/branches/a/protection/b/protection",
        {},
        "github.branch_protection.update",
        "high",
        {"branch": "a/protection/b"},
    ),
    (
        "POST",
        R + "/branches/rename/rename",
        {"new_name": "x"},
        "github.branch.rename",
        "medium",
        {"branch": "rename", "new_name": "x"},
    ),
    (
        "POST",
        R + "/merges",
        {"base": "main", "head": "f"},
        "github.branch.merge",
        "medium",
        {"base": "main", "head": "f"},
    ),
    (
        "POST",
        R + "/git/refs",
        {"ref": "refs/heads/f", "sha": "s"},
        "github.branch.create",
        "low",
        {"ref": "refs/heads/f", "sha": "s"},
    ),
    (
        "POST",
        R + "/git/refs",
        {"ref": "refs/tags/v1", "sha": "s"},
        "github.tag.create",
        "low",
        {"ref": "refs/tags/v1", "sha": "s"},
    ),
    ("GET", R + "/git/ref/heads/main", None, "github.ref.get", "low", {"ref": "heads/main"}),
    ("GET", R + "/git/refs/heads/main", None, "github.ref.get", "low", {"ref": "heads/main"}),
    ("GET", R + "/git/matching-refs/heads/f", None, "github.ref.list", "low", {"ref": "heads/f"}),
    (
        "PATCH",
        R + "/git/refs/heads/main",
        {"sha": "s", "force": True},
        "github.ref.update",
        "medium",
        {"ref": "heads/main", "sha": "s", "force": True},
    ),
    (
        "DELETE",
        R + "/git/refs/heads/feat/x",
        None,
        "github.branch.delete",
        "high",
        {"ref": "heads/feat/x"},
    ),
    ("DELETE", R + "/git/refs/tags/v1.0", None, "github.tag.delete", "high", {"tag": "v1.0"}),
    ("GET", R + "/tags", None, "github.tag.list", "low", {}),
    ("GET", R + "/commits?sha=main", None, "github.commit.list", "low", {"sha": "main"}),
    ("GET", R + "/commits/abc", None, "github.commit.get", "low", {"ref": "abc"}),
    # a ref may hold slashes (tests/connectors/test_connector_github_refs.py)
    ("GET", R + "/commits/feat/x", None, "github.commit.get", "low", {"ref": "feat/x"}),
    (
        "GET",
        R + "/commits/feat/x/status",
        None,
        "github.commit_status.get",
        "low",
        {"ref": "feat/x"},
    ),
    ("GET", R + "/commits/abc/statuses", None, "github.commit_status.list", "low", {"ref": "abc"}),
    (
        "POST",
        R + "/statuses/abc",
        {"state": "success", "context": "ci"},
        "github.commit_status.create",
        "medium",
        {"sha": "abc", "state": "success", "context": "ci"},
    ),
    ("GET", R + "/commits/abc/check-runs", None, "github.check_run.list", "low", {"ref": "abc"}),
    (
        "GET",
        R + "/commits/abc/check-suites",
        None,
        "github.check_suite.list",
        "low",
        {"ref": "abc"},
    ),
    ("GET", R + "/commits/abc/comments", None, "github.commit_comment.list", "low", {"ref": "abc"}),
    (
        "POST",
        R + "/commits/abc/comments",
        {"body": "b", "path": "a.py"},
        "github.commit_comment.create",
        "low",
        {"ref": "abc", "path": "a.py"},
    ),
    ("GET", R + "/commits/abc/pulls", None, "github.commit_pr.list", "low", {"ref": "abc"}),
    (
        "GET",
        R + "/commits/abc/branches-where-head",
        None,
        "github.commit_branch.list",
        "low",
        {"ref": "abc"},
    ),
    ("GET", R + "/rulesets", None, "github.branch_protection.list", "low", {}),
    ("GET", R + "/contents", None, "github.file.list", "low", {}),
    (
        "GET",
        R + "/contents/docs/a%20b.md?ref=dev",
        None,
        "github.file.get",
        "low",
        {"path": "docs/a b.md", "ref": "dev"},
    ),
    (
        "PUT",
        R + "/contents/a.txt",
        {"message": "m", "content": "aGk="},
        "github.file.create",
        "low",
        {"path": "a.txt", "message": "m"},
    ),
    (
        "PUT",
        R + "/contents/a.txt",
        {"message": "m", "content": "aGk=", "sha": "s"},
        "github.file.update",
        "low",
        {"path": "a.txt", "message": "m", "sha": "s"},
    ),
    (
        "DELETE",
        R + "/contents/a.txt",
        {"message": "m", "sha": "s"},
        "github.file.delete",
        "medium",
        {"path": "a.txt", "message": "m", "sha": "s"},
    ),
    ("GET", R + "/readme", None, "github.readme.get", "low", {}),
    ("GET", R + "/readme/docs/api", None, "github.readme.get", "low", {"dir": "docs/api"}),
    ("GET", R + "/git/blobs/3d21ec5", None, "github.blob.get", "low", {"file_sha": "3d21ec5"}),
    (
        "POST",
        R + "/git/blobs",
        {"content": "aGk=", "encoding": "base64"},
        "github.blob.create",
        "low",
        {},
    ),
    ("GET", R + "/releases", None, "github.release.list", "low", {}),
    (
        "POST",
        R + "/releases",
        {"tag_name": "v1", "draft": False},
        "github.release.create",
        "medium",
        {"tag_name": "v1", "draft": False},
    ),
    ("GET", R + "/releases/latest", None, "github.release.get", "low", {}),
    ("GET", R + "/releases/tags/v1", None, "github.release.get", "low", {"tag": "v1"}),
    ("GET", R + "/releases/tags/v1/beta", None, "github.release.get", "low", {"tag": "v1/beta"}),
    ("GET", R + "/releases/3", None, "github.release.get", "low", {"release_id": 3}),
    (
        "PATCH",
        R + "/releases/3",
        {"draft": True},
        "github.release.update",
        "medium",
        {"release_id": 3, "draft": True},
    ),
    ("DELETE", R + "/releases/3", None, "github.release.delete", "high", {"release_id": 3}),
    ("GET", R, None, "github.repo.get", "low", {}),
    ("PATCH", R, {"description": "d"}, "github.repo.update", "low", {}),
    (
        "PATCH",
        R,
        {"visibility": "public"},
        "github.repo.make_public",
        "high",
        {"visibility": "public"},
    ),
    ("PATCH", R, {"private": False}, "github.repo.make_public", "high", {"private": False}),
    ("PATCH", R, {"archived": True}, "github.repo.archive", "medium", {"archived": True}),
    ("DELETE", R, None, "github.repo.delete", "high", {}),
    ("POST", "/user/repos", {"name": "n"}, "github.repo.create", "medium", {"name": "n"}),
    ("POST", "/orgs/acme/repos", {"name": "n"}, "github.repo.create", "medium", {"name": "n"}),
    ("GET", "/user/repos", None, "github.repo.list", "low", {}),
    ("GET", "/orgs/acme/repos", None, "github.repo.list", "low", {}),
    ("GET", "/users/bob/repos", None, "github.repo.list", "low", {"username": "bob"}),
    ("POST", R + "/forks", None, "github.repo.fork", "low", {}),
    (
        "POST",
        R + "/transfer",
        {"new_owner": "x"},
        "github.repo.transfer",
        "high",
        {"new_owner": "x"},
    ),
    (
        "POST",
        R + "/dispatches",
        {"event_type": "e"},
        "github.repo.dispatch",
        "medium",
        {"event_type": "e"},
    ),
    ("GET", R + "/collaborators", None, "github.collaborator.list", "low", {}),
    (
        "PUT",
        R + "/collaborators/bob",
        {"permission": "admin"},
        "github.collaborator.add",
        "high",
        {"username": "bob", "permission": "admin"},
    ),
    (
        "DELETE",
        R + "/collaborators/bob",
        None,
        "github.collaborator.remove",
        "high",
        {"username": "bob"},
    ),
    ("GET", R + "/hooks", None, "github.webhook.list", "low", {}),
    ("POST", R + "/hooks", {"config": {}}, "github.webhook.create", "high", {}),
    ("DELETE", R + "/hooks/4", None, "github.webhook.delete", "high", {"hook_id": 4}),
    ("GET", R + "/keys", None, "github.deploy_key.list", "low", {}),
    (
        "POST",
        R + "/keys",
        {"title": "k", "key": "ssh-rsa x"},
        "github.deploy_key.create",
        "high",
        {"title": "k"},
    ),
    *SETTINGS_ROWS,
    *ORG_HOOK_ROWS,
    ("GET", R + "/actions/secrets", None, "github.secret.list", "low", {}),
    (
        "PUT",
        R + "/actions/secrets/TOKEN",
        {},
        "github.secret.update",
        "high",
        {"secret_name": "TOKEN"},
    ),
    (
        "DELETE",
        R + "/actions/secrets/TOKEN",
        None,
        "github.secret.delete",
        "high",
        {"secret_name": "TOKEN"},
    ),
    ("GET", "/user/orgs", None, "github.org.list", "low", {}),
    ("GET", "/orgs/acme", None, "github.org.get", "low", {}),
    ("PATCH", "/orgs/acme", {}, "github.org.update", "medium", {}),
    ("GET", "/orgs/acme/members", None, "github.member.list", "low", {}),
    (
        "PUT",
        "/orgs/acme/memberships/bob",
        {"role": "admin"},
        "github.member.add",
        "high",
        {"username": "bob", "role": "admin"},
    ),
    (
        "DELETE",
        "/orgs/acme/memberships/bob",
        None,
        "github.member.remove",
        "high",
        {"username": "bob"},
    ),
    ("DELETE", "/orgs/acme/members/bob", None, "github.member.remove", "high", {"username": "bob"}),
    ("GET", "/orgs/acme/teams", None, "github.team.list", "low", {}),
    ("POST", "/orgs/acme/teams", {"name": "t"}, "github.team.create", "low", {"name": "t"}),
    ("GET", "/orgs/acme/teams/core", None, "github.team.get", "low", {"team_slug": "core"}),
    (
        "PATCH",
        "/orgs/acme/teams/core",
        {"privacy": "secret"},
        "github.team.update",
        "low",
        {"team_slug": "core", "privacy": "secret"},
    ),
    ("DELETE", "/orgs/acme/teams/core", None, "github.team.delete", "high", {"team_slug": "core"}),
    (
        "PUT",
        "/orgs/acme/teams/core/memberships/bob",
        None,
        "github.team.add_member",
        "medium",
        {"team_slug": "core", "username": "bob"},
    ),
    (
        "DELETE",
        "/orgs/acme/teams/core/memberships/bob",
        None,
        "github.team.remove_member",
        "medium",
        {"team_slug": "core", "username": "bob"},
    ),
    (
        "PUT",
        "/orgs/acme/teams/core/repos/acme/api",
        {"permission": "push"},
        "github.team.add_repo",
        "medium",
        {"team_slug": "core", "permission": "push"},
    ),
    ("GET", "/user", None, "github.user.get", "low", {}),
    ("GET", "/users/bob", None, "github.user.get", "low", {"username": "bob"}),
    ("GET", "/search/code?q=x", None, "github.search.list", "low", {"kind": "code", "q": "x"}),
    ("GET", R + "/actions/workflows", None, "github.workflow.list", "low", {}),
    (
        "GET",
        R + "/actions/workflows/ci.yml",
        None,
        "github.workflow.get",
        "low",
        {"workflow_id": "ci.yml"},
    ),
    (
        "POST",
        R + "/actions/workflows/ci.yml/dispatches",
        {"ref": "main"},
        "github.workflow.dispatch",
        "medium",
        {"workflow_id": "ci.yml", "ref": "main"},
    ),
    (
        "PUT",
        R + "/actions/workflows/ci.yml/enable",
        None,
        "github.workflow.enable",
        "low",
        {"workflow_id": "ci.yml"},
    ),
    (
        "PUT",
        R + "/actions/workflows/ci.yml/disable",
        None,
        "github.workflow.disable",
        "medium",
        {"workflow_id": "ci.yml"},
    ),
    (
        "GET",
        R + "/actions/runs?status=failure",
        None,
        "github.run.list",
        "low",
        {"status": "failure"},
    ),
    ("GET", R + "/actions/runs/8", None, "github.run.get", "low", {"run_id": 8}),
    ("POST", R + "/actions/runs/8/rerun", None, "github.run.rerun", "low", {"run_id": 8}),
    ("POST", R + "/actions/runs/8/cancel", None, "github.run.cancel", "low", {"run_id": 8}),
    ("DELETE", R + "/actions/runs/8", None, "github.run.delete", "medium", {"run_id": 8}),
    ("GET", R + "/actions/runs/8/logs", None, "github.run_log.get", "low", {"run_id": 8}),
    ("GET", R + "/actions/artifacts", None, "github.artifact.list", "low", {}),
    ("GET", R + "/releases/5/assets", None, "github.release_asset.list", "low", {"release_id": 5}),
    (
        "POST",
        R + "/releases/5/assets",
        None,
        "github.release_asset.upload",
        "medium",
        {"release_id": 5},
    ),
    ("GET", R + "/releases/assets/9", None, "github.release_asset.get", "low", {"asset_id": 9}),
    (
        "PATCH",
        R + "/releases/assets/9",
        {"name": "b.zip"},
        "github.release_asset.update",
        "medium",
        {"asset_id": 9, "name": "b.zip"},
    ),
    (
        "DELETE",
        R + "/releases/assets/9",
        None,
        "github.release_asset.delete",
        "high",
        {"asset_id": 9},
    ),
    ("POST", "/graphql", {"query": "{ viewer { login } }"}, "github.graphql.query", "low", {}),
    (
        "POST",
        "/graphql",
        {"query": "mutation M { x }", "operationName": "M"},
        "github.graphql.mutate",
        "high",
        {"mutation": "x", "operationName": "M"},
    ),
]
GRAPHQL_ACTIONS = {
    action
    for known in MUTATIONS.values()
    for action in (known.action, *(v.action for v in known.variants))
}

GIT_ROWS = [
    ("GET", "/acme/api.git/info/refs?service=git-upload-pack", "github.repo.fetch", "low"),
    ("GET", "/acme/api.git/info/refs?service=git-receive-pack", "github.repo.push", "high"),
    ("POST", "/acme/api.git/git-upload-pack", "github.repo.fetch", "low"),
    ("POST", "/acme/api.git/git-receive-pack", "github.repo.push", "high"),
    ("GET", "/acme/api/info/refs?service=git-upload-pack", "github.repo.fetch", "low"),
    ("GET", "/acme/api/info/refs?service=git-receive-pack", "github.repo.push", "high"),
    ("POST", "/acme/api/git-upload-pack", "github.repo.fetch", "low"),
    ("POST", "/acme/api/git-receive-pack", "github.repo.push", "high"),
]


@pytest.mark.parametrize(("method", "path", "body", "action", "risk", "params"), ROWS)
def test_github_row(
    method: str, path: str, body: object, action: str, risk: str, params: dict[str, object]
) -> None:
    parsed = GH.parse(req(method, path, body))
    assert parsed.action_type == action
    assert parsed.risk == risk
    assert parsed.spec.parameters == params
    assert parsed.spec.resource.provider == "github"
    assert parsed.spec.risk_hints == {}
    # what the connector builds without validation is a valid spec
    assert ActionSpec.model_validate(parsed.spec.to_dict()) == parsed.spec


def test_every_github_action_has_a_row() -> None:
    named = {row[3] for row in ROWS} | {row[2] for row in GIT_ROWS}
    # GraphQL-only names (github.issue.delete...) are proven in test_connector_github_graphql
    assert named | GRAPHQL_ACTIONS == {info.type for info in GH.actions()}
    assert len(named) >= 40


def test_resource_account_and_target_from_path() -> None:
    spec = GH.parse(req("PUT", R + "/pulls/42/merge")).spec
    assert spec.to_dict()["resource"] == {
        "provider": "github",
        "account": "acme",
        "target": "acme/api",
    }
    org = GH.parse(req("POST", "/orgs/acme/teams", {"name": "t"})).spec
    assert (org.resource.account, org.resource.target) == ("acme", "acme")
    hook = GH.parse(req("PATCH", "/orgs/acme/hooks/4/config", {})).spec
    assert (hook.resource.account, hook.resource.target) == ("acme", "acme")
    # an organisation's hooks have no /tests endpoint: it names nothing
    assert GH.parse(req("POST", "/orgs/acme/hooks/4/tests")).action_type == "github.unknown.post"


@pytest.mark.parametrize(("method", "path", "action", "risk"), GIT_ROWS)
def test_git_smart_http(method: str, path: str, action: str, risk: str) -> None:
    body = b"0000" if path.endswith("receive-pack") else b""  # git's probe before a push
    parsed = GH.parse(HttpRequest.from_url(method, "https://github.com" + path, body=body))
    assert (parsed.action_type, parsed.risk) == (action, risk)
    assert parsed.spec.resource.target == "acme/api"


def test_push_discovery_and_the_probe_share_one_action_hash() -> None:
    """Neither updates a ref: both are `github.repo.push` with `refs: []`."""
    discovery = GH.parse(req("GET", "/acme/api.git/info/refs?service=git-receive-pack"))
    probe = GH.parse(HttpRequest.from_url("POST", API + "/acme/api.git/git-receive-pack",
                                          body=b"0000"))  # fmt: skip
    assert discovery.spec.parameters == {"refs": []}
    assert discovery.spec.action_hash == probe.spec.action_hash


def test_enterprise_prefix_is_stripped() -> None:
    parsed = GH.parse(req("PUT", "/api/v3/repos/a/b/pulls/1/merge", host="https://ghe.example.com"))
    assert parsed.action_type == "github.pr.merge"
    custom = GH.parse(
        req("DELETE", "/gh/api/repos/a/b", host="https://ghe.example.com"),
        base_url="https://ghe.example.com/gh/api",
    )
    assert custom.action_type == "github.repo.delete"


@pytest.mark.parametrize(
    ("method", "path", "action", "risk"),
    [
        ("GET", "/nope", "github.unknown.get", "low"),
        ("HEAD", "/nope", "github.unknown.head", "low"),
        ("OPTIONS", R, "github.unknown.options", "low"),
        ("POST", "/nope", "github.unknown.post", "medium"),
        ("PUT", R + "/pulls/1/other", "github.unknown.put", "medium"),
        ("DELETE", "/gists/1", "github.unknown.delete", "high"),
        ("PROPFIND", "/x", "github.unknown.propfind", "medium"),
    ],
)
def test_fallback(method: str, path: str, action: str, risk: str) -> None:
    parsed = GH.parse(req(method, path))
    assert (parsed.action_type, parsed.risk, parsed.route) == (action, risk, "fallback")


SLASHED = "/repos/acme/api/branches/release/1.x"


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("PUT", SLASHED + "/protection", "github.branch_protection.update"),
        ("DELETE", SLASHED + "/protection", "github.branch_protection.delete"),
        ("GET", SLASHED + "/protection", "github.branch_protection.get"),
        ("POST", SLASHED + "/rename", "github.branch.rename"),
        ("GET", SLASHED, "github.branch.get"),
    ],
)
def test_slashed_branch_is_named_with_its_whole_name(method: str, path: str, action: str) -> None:
    # GitHub takes a branch name's slashes unencoded; the whole name is the parameter, so
    # a policy on `github.branch_protection.update` for `release/*` sees this request
    parsed = GH.parse(req(method, path, {} if method in ("PUT", "POST") else None))
    assert parsed.action_type == action
    assert parsed.spec.parameters["branch"] == "release/1.x"
    assert parsed.spec.resource.target == "acme/api"


def test_policy_on_slashed_branches_sees_branch_protection_update() -> None:
    policy = load_policy(
        """
name: protect-release
scope: {action_types: ["github.branch_protection.*"]}
rules:
  - name: release-protection
    conditions:
      all:
        - {field: action_spec.type, operator: equals, value: github.branch_protection.update}
        - {field: action_spec.parameters.branch, operator: glob, value: "release/*"}
    decision: require_approval
    reason: release branches keep their protection
"""
    )
    engine = Engine(access_rules=[AccessRule("Bot", "github", "github.*", "allow")],
                    policies=[policy])  # fmt: skip
    now = datetime(2025, 1, 1, tzinfo=UTC)

    def outcome(path: str) -> str:
        spec = GH.parse(req("PUT", path, {})).spec
        decision = engine.decide(spec, agent="Bot", mode="proxy", now=now, connector="github")
        return decision.outcome

    # named `github.unknown.put`, the request would be denied (no allow wildcard grants it)
    # and the rule would never be asked
    assert outcome(SLASHED + "/protection") == "require_approval"
    assert outcome(R + "/branches/main/protection") == "allow"


@pytest.mark.parametrize("encoded", ["%2F", "%2f", "%252F"])
def test_branch_with_an_encoded_slash_is_refused_or_one_segment(encoded: str) -> None:
    # Octokit sends `release%2F1.x`: upstreams disagree on what an encoded slash means, so
    # it is refused; a double-encoded one is one segment, never two
    path = f"/repos/acme/api/branches/release{encoded}1.x/protection"
    if encoded == "%252F":
        parsed = GH.parse(req("PUT", path, {}))
        assert parsed.action_type == "github.branch_protection.update"
        assert parsed.spec.parameters == {"branch": "release%2F1.x"}
        return
    with pytest.raises(ConnectorError, match=r"refused path.*encoded `/`"):
        GH.parse(req("PUT", path, {}))


def test_head_reads_like_get() -> None:
    assert GH.parse(req("HEAD", R + "/pulls/1")).action_type == "github.pr.get"


def test_truncated_body_cannot_hide_a_close() -> None:
    prefix = b'{"title": "x", "state": "op'
    truncated = HttpRequest.from_url(
        "PATCH", API + R + "/pulls/1", body=prefix, body_complete=False
    )
    with pytest.raises(ConnectorError, match="larger than"):
        GH.parse(truncated)


def test_truncated_body_without_variants_keeps_whole_members() -> None:
    prefix = b'{"title": "t", "head": "f", "body": "long text that goes o'
    parsed = GH.parse(
        HttpRequest.from_url("POST", API + R + "/pulls", body=prefix, body_complete=False)
    )
    assert parsed.action_type == "github.pr.create"
    assert parsed.spec.parameters == {"title": "t", "head": "f"}
    assert parsed.spec.risk_hints == {"body_truncated": True}


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"state": NaN}', b"\xef\xbb\xbf{}", b'{"a": 1e999}', b"[" * 100_000, b"\xff"],
)
def test_bad_json_is_a_connector_error(body: bytes) -> None:
    with pytest.raises(ConnectorError, match="invalid JSON"):
        GH.parse(HttpRequest.from_url("PATCH", API + R + "/pulls/1", body=body))


def test_duplicate_json_key_takes_the_last_like_upstream_parsers() -> None:
    body = b'{"state": "open", "state": "closed"}'
    parsed = GH.parse(HttpRequest.from_url("PATCH", API + R + "/pulls/1", body=body))
    assert parsed.action_type == "github.pr.close"


def test_credential_header() -> None:
    assert GH.auth_headers("ghp_x") == [("Authorization", "token ghp_x")]
    assert GH.auth_header_names == ("authorization",)
    with pytest.raises(ConnectorError):
        GH.auth_headers("a\r\nX-Evil: 1")


def build(data: dict[str, object], base_url: str | None = None) -> HttpRequest:
    return GH.build_request(parse_action_spec(data), base_url=base_url)


def test_build_seed_merge_example() -> None:
    built = build(
        {
            "type": "github.pr.merge",
            "resource": {"provider": "github", "account": "acme", "target": "acme/api"},
            "parameters": {"pull_number": 42},
        }
    )
    assert (built.method, built.url, built.body) == (
        "PUT",
        "https://api.github.com/repos/acme/api/pulls/42/merge",
        b"",
    )
    assert ("Accept", "application/vnd.github+json") in built.headers


@pytest.mark.parametrize(
    ("data", "method", "url", "body"),
    [
        (
            {
                "type": "github.pr.close",
                "resource": {"target": "a/b"},
                "parameters": {"pr_number": 3},
            },
            "PATCH",
            "/repos/a/b/pulls/3",
            {"state": "closed"},
        ),
        (
            {
                "type": "github.pr.comment",
                "resource": {"target": "a/b"},
                "parameters": {"pr_number": 3, "body": "hi"},
            },
            "POST",
            "/repos/a/b/issues/3/comments",
            {"body": "hi"},
        ),
        (
            {
                "type": "github.issue.comment",
                "resource": {"target": "a/b"},
                "parameters": {"issue_number": 4, "body": "hi"},
            },
            "POST",
            "/repos/a/b/issues/4/comments",
            {"body": "hi"},
        ),
        (
            {
                "type": "github.issue.close",
                "resource": {"target": "a/b"},
                "parameters": {"issue_number": 4},
            },
            "PATCH",
            "/repos/a/b/issues/4",
            {"state": "closed"},
        ),
        (
            {
                "type": "github.branch.create",
                "resource": {"target": "a/b"},
                "parameters": {"branch_name": "f", "sha": "s"},
            },
            "POST",
            "/repos/a/b/git/refs",
            {"ref": "refs/heads/f", "sha": "s"},
        ),
        (
            {
                "type": "github.branch.delete",
                "resource": {"target": "a/b"},
                "parameters": {"branch_name": "feat/x"},
            },
            "DELETE",
            "/repos/a/b/git/refs/heads/feat/x",
            None,
        ),
        (
            {
                "type": "github.branch_protection.update",
                "resource": {"target": "a/b"},
                "parameters": {"branch": "release/1.x"},
            },
            "PUT",
            "/repos/a/b/branches/release/1.x/protection",
            None,
        ),
        (
            {
                "type": "github.file.commit",
                "resource": {"target": "a/b"},
                "parameters": {"path": "d/x y.md", "content": "hi", "message": "m"},
            },
            "PUT",
            "/repos/a/b/contents/d/x%20y.md",
            {"content": "aGk=", "message": "m"},
        ),
        (
            {
                "type": "github.release.create",
                "resource": {"target": "a/b"},
                "parameters": {"tag_name": "v1"},
            },
            "POST",
            "/repos/a/b/releases",
            {"tag_name": "v1"},
        ),
        (
            {
                "type": "github.team.create",
                "resource": {"account": "acme"},
                "parameters": {"name": "t"},
            },
            "POST",
            "/orgs/acme/teams",
            {"name": "t"},
        ),
        (
            {
                "type": "github.pr.list",
                "resource": {"target": "a/b"},
                "parameters": {"state": "open"},
            },
            "GET",
            "/repos/a/b/pulls?state=open",
            None,
        ),
    ],
)
def test_build(data: dict[str, object], method: str, url: str, body: object) -> None:
    built = build(data)
    assert built.method == method
    assert built.url == "https://api.github.com" + url
    assert (json.loads(built.body) if built.body else None) == body


def test_build_enterprise_base_url() -> None:
    built = build(
        {"type": "github.pr.get", "resource": {"target": "a/b"}, "parameters": {"number": 1}},
        base_url="https://ghe.example.com/api/v3",
    )
    assert built.url == "https://ghe.example.com/api/v3/repos/a/b/pulls/1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"type": "github.pr.merge", "resource": {"target": "a/b"}},
            "missing parameter `pull_number`",
        ),
        (
            {
                "type": "github.pr.update",
                "resource": {"target": "a/b"},
                "parameters": {"pull_number": 1, "state": "closed"},
            },
            "makes? this `github.pr.close`",
        ),
        (
            {
                "type": "github.file.create",
                "resource": {"target": "a/b"},
                "parameters": {"path": "x", "sha": "s"},
            },
            "`github.file.update`",
        ),
        ({"type": "github.repo.get", "resource": {"target": "../x"}}, "not a valid path part"),
        ({"type": "github.nothing", "resource": {"target": "a/b"}}, "not an action"),
        (
            {
                "type": "github.file.get",
                "resource": {"target": "a/b"},
                "parameters": {"path": "docs/../../../orgs/x"},
            },
            "not a valid path part",
        ),
        (
            {
                "type": "github.branch.delete",
                "resource": {"target": "a/b"},
                "parameters": {"branch_name": "x//y"},
            },
            "not a valid path part",
        ),
        (
            {
                "type": "github.pr.get",
                "resource": {"target": "a/b"},
                "parameters": {"pull_number": "1/../2"},
            },
            "must be an integer",
        ),
    ],
)
def test_build_refuses(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        build(data)


def test_build_then_parse_round_trips_every_row() -> None:
    for method, path, body, action, _, _ in ROWS:
        parsed = GH.parse(req(method, path, body))
        if (parsed.spec.resource.target is None and "{" in path) or "graphql" in action:
            continue  # graphql: the document is not a parameter (see test_build_graphql)
        try:
            built = GH.build_request(parsed.spec)
        except ConnectorError as exc:
            pytest.fail(f"{action}: {exc}")
        again = GH.parse(built)
        assert again.action_type == action, (method, path)


def test_git_smart_http_gets_basic_auth() -> None:
    git = HttpRequest.from_url("POST", "https://github.com/a/b.git/git-receive-pack")
    assert GH.auth_headers_for(git, "ghp_x") == [
        ("Authorization", "Basic eC1hY2Nlc3MtdG9rZW46Z2hwX3g=")
    ]
    api = req("GET", R)
    assert GH.auth_headers_for(api, "ghp_x") == [("Authorization", "token ghp_x")]
    assert GH.auth_headers_for(git, "s", auth_type="bearer") == [("Authorization", "Bearer s")]


@pytest.mark.parametrize(
    ("body", "action", "risk"),
    [
        ({"query": "{ viewer { login } }"}, "github.graphql.query", "low"),
        (
            {"query": 'query Q { repository(owner: "a", name: "b") { id } }'},
            "github.graphql.query",
            "low",
        ),
        (
            {"query": "mutation { deleteRepository(input: {}) { clientMutationId } }"},
            "github.repo.delete",
            "high",
        ),
        (
            {"query": "query A { viewer { login } }\nmutation B { x }", "operationName": "A"},
            "github.graphql.mutate",
            "high",
        ),
    ],
)
def test_graphql_writes_cannot_hide(body: object, action: str, risk: str) -> None:
    for path in ("/graphql", "/api/graphql"):
        parsed = GH.parse(req("POST", path, body))
        assert (parsed.action_type, parsed.risk) == (action, risk)


@pytest.mark.parametrize(
    "body",
    [
        [{"query": "mutation { x }"}],
        {"query": ["mutation"]},
        {"query": "query A { viewer { login } }\nMUTATION B { x }", "operationName": "A"},
    ],
)
def test_graphql_batches_and_odd_documents_are_refused(body: object) -> None:
    with pytest.raises(ConnectorError, match="graphql"):
        GH.parse(req("POST", "/graphql", body))


def test_build_graphql() -> None:
    mutate = build({"type": "github.graphql.mutate", "parameters": {"query": "mutation { x }"}})
    assert (mutate.method, mutate.url) == ("POST", "https://api.github.com/graphql")
    with pytest.raises(
        ConnectorError, match=r"`github\.graphql\.mutate`, not `github\.graphql\.query`"
    ):
        build({"type": "github.graphql.query", "parameters": {"query": "mutation { x }"}})


@pytest.mark.parametrize(("method", "path", "body", "action", "risk", "params"), ROWS)
def test_every_repository_route_has_the_same_action_by_repository_id(
    method: str, path: str, body: object, action: str, risk: str, params: dict[str, object]
) -> None:
    if not path.startswith(R):
        return
    parsed = GH.parse(req(method, "/repositories/99" + path[len(R) :], body))
    assert (parsed.action_type, parsed.risk) == (action, risk)
    assert parsed.spec.parameters == {"repository_id": 99, **params}
    assert parsed.spec.resource.target == "99"


@pytest.mark.parametrize(
    "url",
    [
        "https://uploads.github.com/repos/acme/api/releases/5/assets?name=a.zip&label=Build",
        "https://ghe.example.com/api/uploads/repos/acme/api/releases/5/assets?name=a.zip&label=Build",
    ],
)
def test_release_asset_upload_on_the_uploads_host(url: str) -> None:
    upload = HttpRequest.from_url(
        "POST", url, headers=(("Content-Type", "application/zip"),), body=b"PK\x03\x04\xff" * 50
    )
    parsed = GH.parse(upload)
    assert (parsed.action_type, parsed.risk) == ("github.release_asset.upload", "medium")
    assert parsed.spec.parameters == {"release_id": 5, "name": "a.zip", "label": "Build"}
    assert parsed.spec.resource.target == "acme/api"
    with pytest.raises(ConnectorError, match="duplicate `name`"):
        GH.parse(HttpRequest.from_url("POST", url + "&name=b.zip"))


def test_uploads_host_is_a_github_default_domain() -> None:
    from agentfirewall.connectors.router import ConnectorRouter, RoutedConnector

    router = ConnectorRouter([RoutedConnector("c1", "github")])
    found = router.match("uploads.github.com:443")
    assert found is not None
    assert found.type == "github"


# -- repository settings: every spelling names the same action or is refused -------------

GHE_BASE = "https://ghe.example.com/api/v3"
_VALUES = {"acme", "api", "production"}


def _literal_wise(path: str, change: Callable[[str], str]) -> str:
    """`path` with `change` applied to its literal segments (not to names or ids)."""
    return "/".join(
        part if not part or part in _VALUES or part.isdigit() else change(part)
        for part in path.split("/")
    )


def _at_last_slash(path: str, spelled: str) -> str:
    index = path.rindex("/")
    return path[:index] + spelled + path[index + 1 :]


# The general rules of docs/connectors.md: these spell the same request...
SAME_SPELLINGS: dict[str, Callable[[str], str]] = {
    "plain": lambda path: path,
    "trailing slash": lambda path: path + "/",
    "upper-case literals": lambda path: _literal_wise(path, str.upper),
    "escaped unreserved": lambda path: _literal_wise(path, lambda s: f"%{ord(s[0]):02X}{s[1:]}"),
}
# ...and these are refused: upstreams disagree on what they mean.
REFUSED_SPELLINGS: dict[str, Callable[[str], str]] = {
    "double slash": lambda path: _at_last_slash(path, "//"),
    "encoded slash": lambda path: _at_last_slash(path, "%2F"),
    "encoded slash, lower case": lambda path: _at_last_slash(path, "%2f"),
    "dot segment": lambda path: _at_last_slash(path, "/./"),
    "dot-dot segment": lambda path: path + "/x/..",
}


@pytest.mark.parametrize("spelling", sorted(SAME_SPELLINGS))
@pytest.mark.parametrize(("method", "path", "body", "action", "risk", "params"), SETTINGS_ROWS)
def test_settings_endpoint_is_named_with_its_resource_in_every_spelling(
    method: str,
    path: str,
    body: object,
    action: str,
    risk: str,
    params: dict[str, object],
    spelling: str,
) -> None:
    spelled = SAME_SPELLINGS[spelling](path)
    for parsed in (
        GH.parse(req(method, spelled, body)),
        GH.parse(
            req(method, "/api/v3" + spelled, body, "https://ghe.example.com"), base_url=GHE_BASE
        ),
    ):
        assert (parsed.action_type, parsed.risk) == (action, risk)
        assert parsed.spec.parameters == params
        assert parsed.spec.to_dict()["resource"] == {
            "provider": "github",
            "account": "acme",
            "target": "acme/api",
        }
        assert parsed.spec.risk_hints == {}


@pytest.mark.parametrize("spelling", sorted(REFUSED_SPELLINGS))
@pytest.mark.parametrize(("method", "path", "body"), [row[:3] for row in SETTINGS_ROWS])
def test_settings_endpoint_in_an_ambiguous_spelling_is_refused(
    method: str, path: str, body: object, spelling: str
) -> None:
    with pytest.raises(ConnectorError, match="refused path"):
        GH.parse(req(method, REFUSED_SPELLINGS[spelling](path), body))


@pytest.mark.parametrize("encoded", ["%2F", "%2f", "%252F"])
def test_environment_with_an_encoded_slash_is_refused_or_one_segment(encoded: str) -> None:
    # GitHub wants a slash in an environment name encoded (`prod%2Fus`): refused like
    # every `%2F`; a double-encoded one is one segment, never two
    path = f"{R}/environments/prod{encoded}us/deployment-branch-policies"
    if encoded == "%252F":
        parsed = GH.parse(req("POST", path, {}))
        assert parsed.action_type == "github.environment.update"
        assert parsed.spec.parameters == {"environment_name": "prod%2Fus"}
        return
    with pytest.raises(ConnectorError, match=r"refused path.*encoded `/`"):
        GH.parse(req("POST", path, {}))


def test_environment_with_a_raw_slash_is_not_another_environment() -> None:
    # an environment name is one segment: `prod/us` names no route, so no rule allows it
    parsed = GH.parse(req("POST", R + "/environments/prod/us/deployment-branch-policies", {}))
    assert (parsed.action_type, parsed.route) == ("github.unknown.post", "fallback")


@pytest.mark.parametrize(
    ("parameters", "path"),
    [
        ({"branch_policy_id": 3}, "/environments/prod/deployment-branch-policies/3"),
        ({"protection_rule_id": 8}, "/environments/prod/deployment_protection_rules/8"),
        ({}, "/environments/prod"),
    ],
)
def test_a_built_environment_delete_removes_only_what_it_names(
    parameters: dict[str, object], path: str
) -> None:
    # github.environment.delete names an environment and each part of its protection: a
    # spec naming one branch policy or protection rule never deletes the environment
    data = {"environment_name": "prod", **parameters}
    target = {"provider": "github", "target": "acme/api"}
    built = build({"type": "github.environment.delete", "resource": target, "parameters": data})
    assert (built.method, built.path) == ("DELETE", "/repos/acme/api" + path)


def test_rules_on_the_settings_names_see_the_requests() -> None:
    # named `github.unknown.<method>`, each request was denied whatever the rules said: no
    # allow wildcard grants it, and a rule on the sensible name never saw it
    engine = Engine(
        access_rules=[
            AccessRule("Bot", "github", "github.*", "allow"),
            AccessRule("Bot", "github", "github.deploy_key.delete", "deny"),
            AccessRule("Bot", "github", "github.webhook.update", "require_approval"),
            AccessRule("Bot", "github", "github.environment.update", "require_approval"),
        ]
    )
    now = datetime(2025, 1, 1, tzinfo=UTC)

    def outcome(method: str, path: str, body: object = None) -> str:
        spec = GH.parse(req(method, path, body)).spec
        decision = engine.decide(spec, agent="Bot", mode="proxy", now=now, connector="github")
        return decision.outcome

    assert outcome("GET", R + "/hooks/4/config") == "allow"
    assert outcome("PATCH", R + "/hooks/4", {"config": {}}) == "require_approval"
    assert outcome("PATCH", R + "/hooks/4/config", {"url": "x"}) == "require_approval"
    assert outcome("DELETE", R + "/keys/9") == "deny"
    assert outcome("POST", BRANCH_POLICIES, {"name": "*"}) == "require_approval"
    assert outcome("PUT", BRANCH_POLICIES + "/3", {"name": "*"}) == "require_approval"
