"""GitHub: the REST API (api.github.com, or GitHub Enterprise under ``/api/v3``) and git
smart-HTTP on github.com, so ``git clone`` / ``git push`` through the proxy are named.

Reads are ``github.<resource>.get`` / ``.list``; ``github.pr.close`` and
``github.issue.close`` are told from ``update`` by the JSON body's ``state``;
``github.file.update`` from ``create`` by a ``sha`` in the body; making a repository
public (``visibility: public`` or ``private: false``) is ``github.repo.make_public``.
GraphQL (``POST /graphql``) is parsed with graphql-core and every mutation is named as the
action it performs, with the same names as REST (``mergePullRequest`` is
``github.pr.merge``; the rows whose path is ``/graphql mutation …`` below): see
``agentfirewall/connectors/github_graphql.py``. A document with several actions is
decided as its riskiest and every one must be allowed; an unknown mutation is
``github.graphql.mutate`` (high), a query ``github.graphql.query`` (low). Batches,
duplicate JSON keys, persisted-query ids without a document and bodies not fully seen
are refused.
A ``git push`` (``POST …/git-receive-pack``) is ``github.repo.push`` with ``refs``, the
ref names its commands update (in order, once each), and ``deleted_refs``, those it deletes
(new oid all zeros; absent when none): only the pkt-line commands before the flush-pkt are
read, never the packfile (see ``agentfirewall/connectors/gitpush.py``). A malformed
command list is refused. Ref discovery (``GET …/info/refs?service=git-receive-pack``) and
git's probe before a large push (a body of ``0000``) update nothing: ``refs`` is empty.
When the commands go past the part of the body the gateway inspected, the push names no
``refs`` and counts as not fully inspected (the strictest rule reading parameters decides).
A file written through the contents API (``PUT``/``DELETE …/contents/{path}``) or GraphQL
``createCommitOnBranch`` is committed to ``branch``, or without one to the default branch
(the body's: a ``?branch=`` in the URL alone names no branch);
``createCommitOnBranch`` names the branch by ``branchName`` (``branch``) or by node id
(``branch_id``, no ``branch``).
A file's content travels base64-encoded in the contents API's ``content``, a git blob's
``content`` (``POST …/git/blobs``, ``github.blob.create``) and ``createCommitOnBranch``'s
``fileChanges.additions[].contents``: content rules scan it decoded (``body.content(base64)``,
``parameters.file_changes.additions.0.contents(base64)``), and a ``redact`` rule re-encodes
the redacted file (a GraphQL document's is refused: it cannot be rewritten in place).
A file read comes back the same way (``content`` of ``github.file.get``,
``github.readme.get`` and ``github.blob.get``, ``GET …/git/blobs/{sha}``): response content
rules scan it decoded (``body.content(base64)``), and a ``redact`` rule re-encodes it.
Release assets are uploaded on ``uploads.github.com`` (GHE: under ``/api/uploads``):
``POST /repos/{owner}/{repo}/releases/{id}/assets?name=…`` is
``github.release_asset.upload`` with the query's ``name`` and ``label``; the body is the
file and is not read.
Every repository route is also matched under ``/repositories/{repository_id}`` (GitHub's
by-id spelling) with the same action; the resource target is then the numeric id.
Branch and tag names may hold slashes, which GitHub takes unencoded:
``PUT /repos/o/r/branches/release/1.x/protection`` is ``github.branch_protection.update``
with branch ``release/1.x`` (``{branch+}`` takes every segment before the route's last
literals), and ``/branches/a/protection`` is the protection of branch ``a``, as GitHub
reads it. An encoded slash (``release%2F1.x``, as Octokit sends a branch name) is refused
like every ``%2F``. Commit refs are read the same way: ``GET /repos/o/r/commits/feature/x``
is ``github.commit.get`` with ref ``feature/x``, ``.../commits/feature/x/status`` the
combined status of ``feature/x``, and ``.../commits/a/status`` the status of ``a`` (not the
commit of a branch ``a/status``). Every part of branch protection
(``.../protection/required_status_checks/contexts``, ``.../protection/restrictions/users``,
…) and every ruleset (REST or GraphQL) is ``github.branch_protection.get`` / ``.list`` to
read it, ``.delete`` to remove it or entries of it, ``.update`` for any other change, so a
rule on ``github.branch_protection.*`` covers them all; so is tag protection
(``.../tags/protection``, deprecated for rulesets). An environment's deployment branch
policies and deployment protection rules are named the same way in
``github.environment.*``, and a webhook's ``.../config`` as the webhook
(``github.webhook.get`` / ``.update``). An environment name with a slash is sent encoded
(``prod%2Fus``), so it is refused like every ``%2F``.
"""

from __future__ import annotations

import base64
from dataclasses import replace

from pydantic import JsonValue

from agentfirewall.connectors.base import make_spec, request_method
from agentfirewall.connectors.bodies import parse_form
from agentfirewall.connectors.github_graphql import encoded_parameters, parse_graphql
from agentfirewall.connectors.github_mutations import MUTATIONS
from agentfirewall.connectors.gitpush import read_push
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction
from agentfirewall.connectors.paths import split_path
from agentfirewall.connectors.routes import Route as R
from agentfirewall.connectors.routes import Variant as V
from agentfirewall.connectors.table import BuildAlias, RouteConnector
from agentfirewall.errors import ConnectorError

__all__ = ["CONNECTOR", "GitHubConnector"]

_GIT_ENDINGS = ("/info/refs", "/git-upload-pack", "/git-receive-pack")

P = "/repos/{owner}/{repo}"
PR = P + "/pulls/{pull_number:int}"
ISSUE = P + "/issues/{issue_number:int}"
RUN = P + "/actions/runs/{run_id:int}"
TEAM = "/orgs/{org}/teams/{team_slug}"
ENV = P + "/environments/{environment_name}"

# fmt: off
_PULLS = (
    R("GET", P + "/pulls", "github.pr.list", "low", "List pull requests", ("state", "base")),
    R("POST", P + "/pulls", "github.pr.create", "low", "Open a pull request",
      ("title", "head", "base", "draft")),
    R("GET", PR, "github.pr.get", "low", "Get a pull request"),
    R("PATCH", PR, "github.pr.update", "low", "Update a pull request", ("state", "title", "base"),
      (V("state", "github.pr.close", "low", ("closed",), description="Close a pull request"),)),
    R("PUT", PR + "/merge", "github.pr.merge", "medium", "Merge a pull request",
      ("merge_method", "sha", "commit_title")),
    R("GET", PR + "/merge", "github.pr_merge.get", "low",
      "Check whether a pull request is merged"),
    R("PUT", PR + "/update-branch", "github.pr.update_branch", "low",
      "Update a pull request branch from its base"),
    R("GET", PR + "/files", "github.pr_file.list", "low", "List files of a pull request"),
    R("GET", PR + "/commits", "github.pr_commit.list", "low", "List commits of a pull request"),
    R("GET", PR + "/reviews", "github.review.list", "low", "List reviews"),
    R("POST", PR + "/reviews", "github.pr.review", "low", "Review a pull request", ("event",)),
    R("GET", PR + "/reviews/{review_id:int}", "github.review.get", "low", "Get a review"),
    R("POST", PR + "/requested_reviewers", "github.pr.request_review", "low", "Request reviewers",
      ("reviewers", "team_reviewers")),
    R("GET", PR + "/comments", "github.review_comment.list", "low", "List review comments"),
    R("POST", PR + "/comments", "github.review_comment.create", "low",
      "Comment on a pull request's diff", ("commit_id", "path")),
)
# fmt: on

# fmt: off
_ISSUES = (
    R("GET", P + "/issues", "github.issue.list", "low", "List issues", ("state", "labels")),
    R("POST", P + "/issues", "github.issue.create", "low", "Open an issue",
      ("title", "labels", "assignees")),
    R("GET", ISSUE, "github.issue.get", "low", "Get an issue"),
    R("PATCH", ISSUE, "github.issue.update", "low", "Update an issue", ("state", "title"),
      (V("state", "github.issue.close", "low", ("closed",), description="Close an issue"),)),
    R("GET", ISSUE + "/comments", "github.comment.list", "low", "List comments"),
    R("POST", ISSUE + "/comments", "github.issue.comment", "low",
      "Comment on an issue or pull request"),
    R("GET", P + "/issues/comments/{comment_id:int}", "github.comment.get", "low",
      "Get a comment"),
    R("PATCH", P + "/issues/comments/{comment_id:int}", "github.comment.update", "low",
      "Edit a comment"),
    R("DELETE", P + "/issues/comments/{comment_id:int}", "github.comment.delete", "medium",
      "Delete a comment"),
    R("POST", ISSUE + "/labels", "github.issue.label", "low", "Add labels", ("labels",)),
    R("PUT", ISSUE + "/lock", "github.issue.lock", "low", "Lock a conversation"),
    R("DELETE", ISSUE + "/lock", "github.issue.unlock", "low", "Unlock a conversation"),
)
# fmt: on

# Every part of branch protection GitHub serves under .../protection/<part>: GET reads it,
# DELETE removes it (or removes entries from its list), any other write changes it. The
# whole family is github.branch_protection.*, as for the protection itself and GraphQL's
# branch protection rules and rulesets, so a rule on that family covers every part.
# (part, what it is, the methods that change it)
_PROTECTION_PARTS = (
    ("enforce_admins", "admin enforcement", ("POST",)),
    ("required_pull_request_reviews", "required pull request reviews", ("PATCH",)),
    ("required_signatures", "required commit signatures", ("POST",)),
    ("required_status_checks", "required status checks", ("PATCH",)),
    ("required_status_checks/contexts", "required status check contexts", ("POST", "PUT")),
    ("restrictions", "push restrictions", ()),
    ("restrictions/apps", "apps allowed to push", ("POST", "PUT")),
    ("restrictions/teams", "teams allowed to push", ("POST", "PUT")),
    ("restrictions/users", "users allowed to push", ("POST", "PUT")),
)


def _protection_routes(path: str, what: str, writes: tuple[str, ...]) -> tuple[R, ...]:
    """The routes of one part of branch protection at `path`."""
    return (
        R("GET", path, "github.branch_protection.get", "low", f"Get {what} (branch protection)"),
        *(
            R(method, path, "github.branch_protection.update", "high",
              f"Change {what} (branch protection)")
            for method in writes
        ),
        R("DELETE", path, "github.branch_protection.delete", "high",
          f"Remove {what} (branch protection)"),
    )  # fmt: skip


def _rulesets(owner: str, kind: str) -> tuple[R, ...]:
    """Rulesets protect branches and tags like branch protection (GraphQL names them so);
    `kind` is ``a repository`` or ``an organisation``."""
    one = owner + "/rulesets/{ruleset_id:int}"
    return (
        R("GET", owner + "/rulesets", "github.branch_protection.list", "low",
          f"List the rulesets of {kind}"),
        R("POST", owner + "/rulesets", "github.branch_protection.update", "high",
          f"Add a ruleset to {kind}"),
        R("GET", one, "github.branch_protection.get", "low", f"Get a ruleset of {kind}"),
        R("PUT", one, "github.branch_protection.update", "high", f"Change a ruleset of {kind}"),
        R("DELETE", one, "github.branch_protection.delete", "high",
          f"Remove a ruleset of {kind}"),
    )  # fmt: skip


def _webhooks(owner: str, kind: str) -> tuple[R, ...]:
    """The webhooks of `kind` (``a repository`` or ``an organisation``: an organisation's hear
    every repository's events), their configuration (URL, secret) and deliveries."""
    hook = owner + "/hooks/{hook_id:int}"
    test = R("POST", hook + "/tests", "github.webhook.test", "medium",
             "Send the latest push event to a webhook")  # fmt: skip
    return (
        R("GET", owner + "/hooks", "github.webhook.list", "low", f"List the webhooks of {kind}"),
        R("POST", owner + "/hooks", "github.webhook.create", "high",
          f"Add a webhook to {kind}"),
        R("GET", hook, "github.webhook.get", "low", f"Get a webhook of {kind}"),
        R("PATCH", hook, "github.webhook.update", "high",
          f"Change a webhook of {kind} (its URL, secret, events)"),
        R("DELETE", hook, "github.webhook.delete", "high", f"Delete a webhook of {kind}"),
        R("GET", hook + "/config", "github.webhook.get", "low",
          f"Get the configuration of a webhook of {kind}"),
        R("PATCH", hook + "/config", "github.webhook.update", "high",
          f"Change the configuration (URL, secret) of a webhook of {kind}"),
        R("POST", hook + "/pings", "github.webhook.ping", "low", "Send a ping event to a webhook"),
        *((test,) if owner == P else ()),  # an organisation's hooks have no /tests
        R("GET", hook + "/deliveries", "github.webhook_delivery.list", "low",
          "List the deliveries of a webhook"),
        R("GET", hook + "/deliveries/{delivery_id:int}", "github.webhook_delivery.get", "low",
          "Get a delivery of a webhook"),
        R("POST", hook + "/deliveries/{delivery_id:int}/attempts",
          "github.webhook_delivery.redeliver", "medium", "Send a webhook delivery again"),
    )  # fmt: skip


# fmt: off
_BRANCHES = (
    R("GET", P + "/branches", "github.branch.list", "low", "List branches"),
    R("GET", P + "/branches/{branch+}", "github.branch.get", "low", "Get a branch"),
    R("GET", P + "/branches/{branch+}/protection", "github.branch_protection.get", "low",
      "Get branch protection"),
    R("PUT", P + "/branches/{branch+}/protection", "github.branch_protection.update", "high",
      "Change branch protection"),
    R("DELETE", P + "/branches/{branch+}/protection", "github.branch_protection.delete", "high",
      "Remove branch protection"),
    *(
        route
        for part, what, writes in _PROTECTION_PARTS
        for route in _protection_routes(P + "/branches/{branch+}/protection/" + part, what, writes)
    ),
    R("GET", P + "/rules/branches/{branch+}", "github.branch_protection.get", "low",
      "Get the rules (rulesets) that apply to a branch"),
    *_rulesets(P, "a repository"),
    *_rulesets("/orgs/{org}", "an organisation"),
    # tag protection (deprecated: GitHub moves it into rulesets, which protect tags too)
    R("GET", P + "/tags/protection", "github.branch_protection.list", "low",
      "List tag protection rules"),
    R("POST", P + "/tags/protection", "github.branch_protection.update", "high",
      "Add a tag protection rule", ("pattern",)),
    R("DELETE", P + "/tags/protection/{tag_protection_id:int}", "github.branch_protection.delete",
      "high", "Remove a tag protection rule"),
    R("POST", P + "/branches/{branch+}/rename", "github.branch.rename", "medium",
      "Rename a branch", ("new_name",)),
    R("POST", P + "/merges", "github.branch.merge", "medium", "Merge a branch into another",
      ("base", "head")),
    R("POST", P + "/git/refs", "github.branch.create", "low", "Create a branch (a git ref)",
      ("ref", "sha"),
      (V("ref", "github.tag.create", "low", prefix="refs/tags/", description="Create a tag"),),
      derive=(("ref", "refs/heads/{branch_name}"),)),
    R("GET", P + "/git/ref/{ref+}", "github.ref.get", "low", "Get a git ref"),
    R("GET", P + "/git/refs/{ref+}", "github.ref.get", "low", "Get a git ref (legacy path)"),
    R("GET", P + "/git/matching-refs/{ref+}", "github.ref.list", "low", "List matching refs"),
    R("PATCH", P + "/git/refs/{ref+}", "github.ref.update", "medium",
      "Move a git ref (force-push)", ("sha", "force")),
    R("DELETE", P + "/git/refs/{ref+}", "github.branch.delete", "high", "Delete a branch",
      derive=(("ref", "heads/{branch_name}"),)),
    R("DELETE", P + "/git/refs/tags/{tag+}", "github.tag.delete", "high", "Delete a tag"),
    R("GET", P + "/tags", "github.tag.list", "low", "List tags"),
    R("GET", P + "/commits", "github.commit.list", "low", "List commits", ("sha",)),
    R("GET", P + "/commits/{ref+}", "github.commit.get", "low", "Get a commit"),
    R("GET", P + "/commits/{ref+}/status", "github.commit_status.get", "low",
      "Get the combined status of a commit"),
    R("GET", P + "/commits/{ref+}/statuses", "github.commit_status.list", "low",
      "List the statuses of a commit"),
    R("POST", P + "/statuses/{sha}", "github.commit_status.create", "medium",
      "Set a commit status (can satisfy a required status check)", ("state", "context")),
    R("GET", P + "/commits/{ref+}/check-runs", "github.check_run.list", "low",
      "List the check runs of a commit"),
    R("GET", P + "/commits/{ref+}/check-suites", "github.check_suite.list", "low",
      "List the check suites of a commit"),
    R("GET", P + "/commits/{ref+}/comments", "github.commit_comment.list", "low",
      "List the comments on a commit"),
    R("POST", P + "/commits/{ref+}/comments", "github.commit_comment.create", "low",
      "Comment on a commit", ("path",)),
    R("GET", P + "/commits/{ref+}/pulls", "github.commit_pr.list", "low",
      "List the pull requests of a commit"),
    R("GET", P + "/commits/{ref+}/branches-where-head", "github.commit_branch.list", "low",
      "List the branches whose head is a commit"),
)
# fmt: on

# fmt: off
_CONTENTS = (
    R("GET", P + "/contents", "github.file.list", "low", "List the repository root"),
    R("GET", P + "/contents/{path+}", "github.file.get", "low", "Get a file or directory",
      ("ref",), response_encoded=("content",)),
    # GitHub reads a write's `branch` from its JSON body only: `?branch=` names no branch
    R("PUT", P + "/contents/{path+}", "github.file.create", "low", "Create a file (commit)",
      ("message", "branch:body", "sha"),
      (V("sha", "github.file.update", "low", description="Update a file (commit)"),),
      encoded=("content",)),
    R("DELETE", P + "/contents/{path+}", "github.file.delete", "medium", "Delete a file",
      ("message", "branch:body", "sha")),
    R("GET", P + "/readme", "github.readme.get", "low", "Get the README",
      response_encoded=("content",)),
    R("GET", P + "/readme/{dir+}", "github.readme.get", "low", "Get a directory's README",
      response_encoded=("content",)),
    # a blob is a file's content in the git database (no commit or branch yet)
    R("POST", P + "/git/blobs", "github.blob.create", "low", "Store a file's content (git blob)",
      encoded=("content",)),
    R("GET", P + "/git/blobs/{file_sha}", "github.blob.get", "low",
      "Read a file's content (git blob)", response_encoded=("content",)),
)
# fmt: on

# fmt: off
_RELEASES = (
    R("GET", P + "/releases", "github.release.list", "low", "List releases"),
    R("POST", P + "/releases", "github.release.create", "medium", "Publish a release",
      ("tag_name", "name", "draft", "prerelease", "target_commitish")),
    R("GET", P + "/releases/latest", "github.release.get", "low", "Get the latest release"),
    R("GET", P + "/releases/tags/{tag+}", "github.release.get", "low", "Get a release by tag"),
    R("GET", P + "/releases/{release_id:int}", "github.release.get", "low", "Get a release"),
    R("PATCH", P + "/releases/{release_id:int}", "github.release.update", "medium",
      "Edit a release", ("tag_name", "draft", "prerelease")),
    R("DELETE", P + "/releases/{release_id:int}", "github.release.delete", "high",
      "Delete a release"),
    R("GET", P + "/releases/{release_id:int}/assets", "github.release_asset.list", "low",
      "List release assets"),
    # uploads.github.com (GHE: /api/uploads): the query names the asset
    R("POST", P + "/releases/{release_id:int}/assets", "github.release_asset.upload", "medium",
      "Upload a release asset (uploads.github.com)"),
    R("GET", P + "/releases/assets/{asset_id:int}", "github.release_asset.get", "low",
      "Get or download a release asset"),
    R("PATCH", P + "/releases/assets/{asset_id:int}", "github.release_asset.update", "medium",
      "Edit a release asset", ("name", "label")),
    R("DELETE", P + "/releases/assets/{asset_id:int}", "github.release_asset.delete", "high",
      "Delete a release asset"),
)
# fmt: on

# fmt: off
_REPOS = (
    R("GET", P, "github.repo.get", "low", "Get a repository"),
    R("PATCH", P, "github.repo.update", "low", "Change repository settings",
      ("name", "visibility", "private", "archived", "default_branch"),
      (V("visibility", "github.repo.make_public", "high", ("public",),
         description="Make a repository public"),
       V("private", "github.repo.make_public", "high", ("false",),
         description="Make a repository public"),
       V("archived", "github.repo.archive", "medium", ("true",),
         description="Archive a repository"))),
    R("DELETE", P, "github.repo.delete", "high", "Delete a repository"),
    R("POST", "/user/repos", "github.repo.create", "medium", "Create a repository",
      ("name", "private", "visibility")),
    R("POST", "/orgs/{org}/repos", "github.repo.create", "medium",
      "Create an organisation repository", ("name", "private", "visibility")),
    R("GET", "/user/repos", "github.repo.list", "low", "List your repositories"),
    R("GET", "/orgs/{org}/repos", "github.repo.list", "low", "List organisation repositories"),
    R("GET", "/users/{username}/repos", "github.repo.list", "low", "List a user's repositories"),
    R("POST", P + "/forks", "github.repo.fork", "low", "Fork a repository", ("organization",)),
    R("POST", P + "/transfer", "github.repo.transfer", "high", "Transfer a repository",
      ("new_owner",)),
    R("POST", P + "/dispatches", "github.repo.dispatch", "medium",
      "Trigger a repository_dispatch event", ("event_type",)),
    R("GET", P + "/collaborators", "github.collaborator.list", "low", "List collaborators"),
    R("PUT", P + "/collaborators/{username}", "github.collaborator.add", "high",
      "Grant a user access", ("permission",)),
    R("DELETE", P + "/collaborators/{username}", "github.collaborator.remove", "high",
      "Remove a collaborator"),
    *_webhooks(P, "a repository"),
    *_webhooks("/orgs/{org}", "an organisation"),
    R("GET", P + "/keys", "github.deploy_key.list", "low", "List deploy keys"),
    R("POST", P + "/keys", "github.deploy_key.create", "high", "Add a deploy key",
      ("title", "read_only")),
    R("GET", P + "/keys/{key_id:int}", "github.deploy_key.get", "low", "Get a deploy key"),
    R("DELETE", P + "/keys/{key_id:int}", "github.deploy_key.delete", "high",
      "Remove a deploy key"),
    R("GET", P + "/actions/secrets", "github.secret.list", "low", "List Actions secrets"),
    R("PUT", P + "/actions/secrets/{secret_name}", "github.secret.update", "high",
      "Create or update an Actions secret"),
    R("DELETE", P + "/actions/secrets/{secret_name}", "github.secret.delete", "high",
      "Delete an Actions secret"),
)
# fmt: on

# fmt: off
_ORGS = (
    R("GET", "/user/orgs", "github.org.list", "low", "List your organisations"),
    R("GET", "/orgs/{org}", "github.org.get", "low", "Get an organisation"),
    R("PATCH", "/orgs/{org}", "github.org.update", "medium", "Change organisation settings"),
    R("GET", "/orgs/{org}/members", "github.member.list", "low", "List organisation members"),
    R("PUT", "/orgs/{org}/memberships/{username}", "github.member.add", "high",
      "Add or change an organisation member", ("role",)),
    R("DELETE", "/orgs/{org}/memberships/{username}", "github.member.remove", "high",
      "Remove an organisation member"),
    R("DELETE", "/orgs/{org}/members/{username}", "github.member.remove", "high",
      "Remove an organisation member"),
    R("GET", "/orgs/{org}/teams", "github.team.list", "low", "List teams"),
    R("POST", "/orgs/{org}/teams", "github.team.create", "low", "Create a team",
      ("name", "privacy")),
    R("GET", TEAM, "github.team.get", "low", "Get a team"),
    R("PATCH", TEAM, "github.team.update", "low", "Edit a team", ("name", "privacy")),
    R("DELETE", TEAM, "github.team.delete", "high", "Delete a team"),
    R("PUT", TEAM + "/memberships/{username}", "github.team.add_member", "medium",
      "Add a team member", ("role",)),
    R("DELETE", TEAM + "/memberships/{username}", "github.team.remove_member", "medium",
      "Remove a team member"),
    R("PUT", TEAM + "/repos/{owner}/{repo}", "github.team.add_repo", "medium",
      "Give a team access to a repository", ("permission",), target="{owner}/{repo}"),
    R("GET", "/user", "github.user.get", "low", "Get the authenticated user"),
    R("GET", "/users/{username}", "github.user.get", "low", "Get a user"),
    R("GET", "/search/{kind}", "github.search.list", "low", "Search code, issues, repositories",
      ("q",)),
)
# fmt: on

_DEPLOYMENT_REJECT = (
    V("state", "github.deployment.reject", "low", ("rejected",),
      description="Reject pending deployments"),
)  # fmt: skip

# fmt: off
_ACTIONS = (
    R("GET", P + "/actions/workflows", "github.workflow.list", "low", "List workflows"),
    R("GET", P + "/actions/workflows/{workflow_id}", "github.workflow.get", "low",
      "Get a workflow"),
    R("POST", P + "/actions/workflows/{workflow_id}/dispatches", "github.workflow.dispatch",
      "medium", "Run a workflow", ("ref",)),
    R("PUT", P + "/actions/workflows/{workflow_id}/enable", "github.workflow.enable", "low",
      "Enable a workflow"),
    R("PUT", P + "/actions/workflows/{workflow_id}/disable", "github.workflow.disable", "medium",
      "Disable a workflow"),
    R("GET", P + "/actions/runs", "github.run.list", "low", "List workflow runs",
      ("status", "branch")),
    R("GET", RUN, "github.run.get", "low", "Get a workflow run"),
    R("POST", RUN + "/rerun", "github.run.rerun", "low", "Re-run a workflow run"),
    R("POST", RUN + "/cancel", "github.run.cancel", "low", "Cancel a workflow run"),
    R("DELETE", RUN, "github.run.delete", "medium", "Delete a workflow run"),
    R("GET", RUN + "/logs", "github.run_log.get", "low", "Download workflow run logs"),
    # A review of a run waiting on a protected environment (its required reviewers) or on
    # a custom deployment protection rule: anything but `state: rejected` is an approval.
    R("POST", RUN + "/pending_deployments", "github.deployment.approve", "high",
      "Approve pending deployments (a protected environment's review)",
      ("state", "environment_ids"), variants=_DEPLOYMENT_REJECT),
    R("POST", RUN + "/deployment_protection_rule", "github.deployment.approve", "high",
      "Approve a deployment held by a custom protection rule",
      ("state", "environment_name"), variants=_DEPLOYMENT_REJECT),
    R("GET", P + "/actions/artifacts", "github.artifact.list", "low", "List artifacts"),
)
# fmt: on

# An environment's deployment branch policies and deployment protection rules guard what
# may deploy to it: like branch protection, every part is github.environment.get / .list to
# read it, .delete to remove it, .update for any other change. Building takes the first
# row of an action whose path variables the parameters fill, so the rows naming an id come
# first: a delete with `branch_policy_id` removes that policy, never the environment.
BRANCH_POLICY = ENV + "/deployment-branch-policies"
PROTECTION_RULE = ENV + "/deployment_protection_rules"
# fmt: off
_ENVIRONMENTS = (
    R("GET", BRANCH_POLICY, "github.environment.list", "low",
      "List the deployment branch policies of an environment"),
    R("GET", BRANCH_POLICY + "/{branch_policy_id:int}", "github.environment.get", "low",
      "Get a deployment branch policy"),
    R("PUT", BRANCH_POLICY + "/{branch_policy_id:int}", "github.environment.update", "high",
      "Change a deployment branch policy (which branches may deploy)", ("name",)),
    R("DELETE", BRANCH_POLICY + "/{branch_policy_id:int}", "github.environment.delete", "high",
      "Remove a deployment branch policy"),
    R("POST", BRANCH_POLICY, "github.environment.update", "high",
      "Add a deployment branch policy (a branch or tag that may deploy)", ("name", "type")),
    R("GET", PROTECTION_RULE, "github.environment.list", "low",
      "List the deployment protection rules of an environment"),
    R("GET", PROTECTION_RULE + "/apps", "github.environment.list", "low",
      "List the apps that can be deployment protection rules"),
    R("GET", PROTECTION_RULE + "/{protection_rule_id:int}", "github.environment.get", "low",
      "Get a deployment protection rule"),
    R("DELETE", PROTECTION_RULE + "/{protection_rule_id:int}", "github.environment.delete",
      "high", "Remove a deployment protection rule"),
    R("POST", PROTECTION_RULE, "github.environment.update", "high",
      "Add a deployment protection rule (an app)", ("integration_id",)),
    R("GET", P + "/environments", "github.environment.list", "low", "List environments"),
    R("GET", ENV, "github.environment.get", "low", "Get an environment"),
    R("PUT", ENV, "github.environment.update", "high",
      "Create or change an environment (reviewers, wait timer, branch policy)"),
    R("DELETE", ENV, "github.environment.delete", "high", "Delete an environment"),
)
# fmt: on

# Parsing never reads these variants (github_graphql.py names each mutation); building
# does: SDK Mode A may send a document, and the built request is parsed back, so a
# `github.graphql.mutate` that is really a merge is refused.
_MUTATION = (
    V(
        "query",
        "github.graphql.mutate",
        "high",
        pattern=r"\bmutation\b",
        description="GraphQL mutation the table does not know",
    ),
)
_GRAPHQL_PATHS = ("/graphql", "/api/graphql")
_GRAPHQL = tuple(
    R("POST", path, "github.graphql.query", "low", "GraphQL query (reads only)",
      ("operationName",), _MUTATION)
    for path in _GRAPHQL_PATHS
)  # fmt: skip

_PUSH = (
    V(
        "service",
        "github.repo.push",
        "high",
        ("git-receive-pack",),
        description="git: push (ref discovery)",
    ),
)
_GIT = tuple(
    route
    for base in ("/{owner}/{repo}.git", "/{owner}/{repo}")
    for route in (
        R(
            "GET",
            base + "/info/refs",
            "github.repo.fetch",
            "low",
            "git: ref discovery (clone, fetch; a push when service=git-receive-pack)",
            variants=_PUSH,
        ),
        R("POST", base + "/git-upload-pack", "github.repo.fetch", "low", "git: clone or fetch"),
        R("POST", base + "/git-receive-pack", "github.repo.push", "high", "git: push"),
    )
)


class GitHubConnector(RouteConnector):
    """The GitHub table, plus Basic auth for git smart-HTTP (``x-access-token:<PAT>``),
    which is what git on github.com accepts instead of ``Authorization: token``, and
    GraphQL documents named mutation by mutation (github_graphql.py)."""

    def parse(self, req: HttpRequest, *, base_url: str | None = None) -> ParsedAction:
        method = request_method(req, self.name)
        segments = self._strip_prefix(split_path(req.path, connector=self.name), base_url)
        match = self.table.match(method, segments)
        if match is None:
            return self._fallback(method, "/" + "/".join(segments))
        if match.route.path in _GRAPHQL_PATHS:  # however the path was spelled
            return parse_graphql(req)
        parsed = self._parsed(req, method, match)
        if match.route.action == "github.release_asset.upload":
            return _with_query(parsed, req, ("name", "label"))
        if parsed.action_type == "github.repo.push":
            return _with_refs(parsed, req, discovery=match.route.method == "GET")
        return parsed

    def encoded_parameters(self, action: str) -> tuple[str, ...]:
        """A route's encoded fields, and those of every GraphQL mutation naming `action`."""
        found = dict.fromkeys(super().encoded_parameters(action))
        for known in MUTATIONS.values():
            if action in (known.action, *(v.action for v in known.variants)):
                found.update(dict.fromkeys(encoded_parameters(known)))
        return tuple(found)

    def actions(self) -> list[ActionInfo]:
        rows = super().actions()
        for field, known in MUTATIONS.items():
            where = f"/graphql mutation {field}"
            rows.append(ActionInfo(known.action, "POST", where, known.risk, known.description))
            for variant in known.variants:
                what = f"{known.description} ({variant.description})"
                rows.append(ActionInfo(variant.action, "POST", where, variant.risk, what))
        return rows

    def auth_headers_for(
        self,
        req: HttpRequest,
        credential: str,
        *,
        auth_type: str | None = None,
        header: str | None = None,
    ) -> list[tuple[str, str]]:
        headers = self.auth_headers(credential, auth_type=auth_type, header=header)
        if auth_type is None and req.path.rstrip("/").endswith(_GIT_ENDINGS):
            basic = base64.b64encode(f"x-access-token:{credential}".encode()).decode("ascii")
            return [("Authorization", f"Basic {basic}")]
        return headers


def _with_query(parsed: ParsedAction, req: HttpRequest, names: tuple[str, ...]) -> ParsedAction:
    """`parsed` with query fields `names` as parameters (an upload's body is the file)."""
    query = parse_form(req.query, connector=CONNECTOR.name) if req.query else {}
    params: dict[str, JsonValue] = {}
    for name in names:
        values = set(query.get(name, ()))
        if len(values) > 1:
            raise ConnectorError(f"duplicate `{name}` with different values", connector="github")
        if values:
            params[name] = values.pop()
    return _with(parsed, params)


def _with_refs(parsed: ParsedAction, req: HttpRequest, *, discovery: bool) -> ParsedAction:
    """A push with the refs it updates (gitpush.py): none for ref discovery or git's probe
    (``0000``). When the body seen is a prefix that ends before the commands do, not every
    ref can be read: the push names no `refs` and is marked truncated, so the gateway
    decides it as the strictest rule reading its parameters could."""
    if discovery:
        return _with(parsed, {"refs": []})
    encoding = (req.header("content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise ConnectorError(
            f"cannot read a `{encoding[:40]}`-encoded git push", connector="github"
        )
    push = read_push(req.body, complete=req.body_complete, connector="github")
    if push is None:
        return _with(parsed, {}, {"body_truncated": True})
    params: dict[str, JsonValue] = {"refs": list(push.refs)}
    if push.deleted:
        params["deleted_refs"] = list(push.deleted)
    return _with(parsed, params)


def _with(
    parsed: ParsedAction,
    params: dict[str, JsonValue],
    hints: dict[str, JsonValue] | None = None,
) -> ParsedAction:
    """`parsed` with more parameters (and risk hints)."""
    old = parsed.spec
    spec = make_spec(
        old.type,
        provider="github",
        account=old.resource.account,
        target=old.resource.target,
        parameters={**old.parameters, **params},
        risk_hints={**old.risk_hints, **(hints or {})},
        connector="github",
        checked=True,
    )
    return ParsedAction(spec, parsed.risk, parsed.connector, parsed.route, parsed.also)


_REPO_ROUTES = (
    *_PULLS, *_ISSUES, *_BRANCHES, *_CONTENTS, *_RELEASES, *_REPOS, *_ACTIONS, *_ENVIRONMENTS
)  # fmt: skip
# GitHub also serves every repository route under /repositories/{id}: same actions.
_BY_ID = tuple(
    replace(
        route,
        path=route.path.replace(P, "/repositories/{repository_id:int}", 1),
        target="{repository_id}",
        listed=False,
    )
    for route in _REPO_ROUTES
    if route.path.startswith(P + "/") or route.path == P
)

CONNECTOR = GitHubConnector(
    name="github",
    description="GitHub REST API (and GitHub Enterprise under /api/v3), git smart-HTTP",
    routes=(
        *_PULLS,
        *_ISSUES,
        *_BRANCHES,
        *_CONTENTS,
        *_RELEASES,
        *_REPOS,
        *_ORGS,
        *_ACTIONS,
        *_ENVIRONMENTS,
        *_GRAPHQL,
        *_GIT,
        *_BY_ID,
    ),
    default_domains=("api.github.com", "github.com", "uploads.github.com"),
    base_url="https://api.github.com",
    body_limit=1024 * 1024,
    truncated="partial",
    accounts=("{owner}", "{org}"),
    targets=("{owner}/{repo}", "{org}"),
    path_prefixes=("/api/v3", "/api/uploads"),
    param_aliases={
        "pull_number": ("pr_number", "number"),
        "issue_number": ("number",),
        "release_id": ("id",),
        "comment_id": ("id",),
        "ref": ("commit_sha",),
    },
    build_aliases={
        "github.pr.comment": BuildAlias(
            "github.issue.comment", {"pr_number": "issue_number", "pull_number": "issue_number"}
        ),
        "github.file.commit": BuildAlias("github.file.create", base64=("content",)),
    },
    build_headers=(
        ("Accept", "application/vnd.github+json"),
        ("X-GitHub-Api-Version", "2022-11-28"),
    ),
    auth_scheme="token",
)
CONNECTOR.notes = __doc__ or ""
#: Which API version reads the request: bound to an approval.
CONNECTOR.bound_headers = ("x-github-api-version",)
# a GraphQL mutation's encoded input fields, as the parameters they become (wherever the
# document spelled them: inline or in variables), by the route its actions name
CONNECTOR.encoded_at.update(
    (f"/graphql {field}", encoded_parameters(known)) for field, known in MUTATIONS.items()
    if known.encoded
)  # fmt: skip
