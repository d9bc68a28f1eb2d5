"""The GitHub GraphQL mutations the gateway names, as data (github_graphql.py reads it).

Each mutation maps to the action REST names for the same effect (``mergePullRequest`` is
``github.pr.merge``) with the same risk; a few have no REST twin and get a name of
their own (``deleteIssue`` is ``github.issue.delete``). A variant turns a mutation into a
riskier action when its input says so (``updatePullRequest`` with ``state: CLOSED`` is
``github.pr.close``). ``enablePullRequestAutoMerge`` is a merge: it merges once checks
pass, without asking again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentfirewall.actions import Risk

__all__ = ["MUTATIONS", "Mutation", "MutationVariant"]

_ZERO_OID = "0" * 40
Test = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class MutationVariant:
    """`action` (with `risk`) when `test` holds for the mutation's input."""

    action: str
    risk: Risk
    test: Test
    description: str


@dataclass(frozen=True, slots=True)
class Mutation:
    """One known mutation: its action and risk, parameter renames (GraphQL input field →
    REST parameter), parameters whose enum values are lower-cased, variants, and the input
    fields that carry text base64-encoded (``fileChanges.additions.*.contents``)."""

    action: str
    risk: Risk
    description: str
    renames: Mapping[str, str] = field(default_factory=dict)
    enums: frozenset[str] = frozenset()
    variants: tuple[MutationVariant, ...] = ()
    reshape: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    encoded: tuple[str, ...] = ()

    def input_fields(self, given: dict[str, Any]) -> dict[str, Any]:
        """The input fields parameters and variants are read from: `given`, or what
        `reshape` makes of it (an input object a rule must read flattened)."""
        return given if self.reshape is None else self.reshape(given)

    def action_for(self, fields: Mapping[str, Any]) -> tuple[str, Risk]:
        for variant in self.variants:
            if variant.test(fields):
                return variant.action, variant.risk
        return self.action, self.risk


def _is(name: str, *values: str) -> Test:
    return lambda fields: isinstance(fields.get(name), str) and fields[name].upper() in values


def _starts(name: str, prefix: str) -> Test:
    return lambda fields: isinstance(fields.get(name), str) and fields[name].startswith(prefix)


def _deletes_refs(fields: Mapping[str, Any]) -> bool:
    updates = fields.get("refUpdates")
    if not isinstance(updates, list):
        return True  # not readable: read as the riskier action
    return any(not isinstance(u, dict) or u.get("afterOid") == _ZERO_OID for u in updates)


def _deletes_files(fields: Mapping[str, Any]) -> bool:
    changes = fields.get("fileChanges")
    return isinstance(changes, dict) and bool(changes.get("deletions"))


def _committed_branch(fields: dict[str, Any]) -> dict[str, Any]:
    """createCommitOnBranch's ``branch`` (a CommittableBranch object) read flat: its
    ``branchName`` is the ``branch`` committed to, as in REST's contents API. A branch
    named by node ``id`` (which GitHub reads first) has no readable name: no ``branch``
    then, only ``branch_id``, and the pack holds the commit as one to the default branch."""
    flat = {key: value for key, value in fields.items() if key != "branch"}
    branch = fields.get("branch")
    if not isinstance(branch, dict):
        return flat
    if branch.get("id") is not None:
        flat["branchId"] = branch["id"]
    elif isinstance(branch.get("branchName"), str):
        flat["branch"] = branch["branchName"]
    if branch.get("repositoryNameWithOwner") is not None:
        flat["repositoryNameWithOwner"] = branch["repositoryNameWithOwner"]
    return flat


_PR = {"pullRequestId": "pull_request_id", "baseRefName": "base", "headRefName": "head"}
_MERGE = {**_PR, "mergeMethod": "merge_method", "expectedHeadOid": "sha",
          "commitHeadline": "commit_title"}  # fmt: skip
_CLOSE_PR = MutationVariant("github.pr.close", "low", _is("state", "CLOSED"),
                            "state CLOSED")  # fmt: skip
_CLOSE_ISSUE = MutationVariant("github.issue.close", "low", _is("state", "CLOSED"),
                               "state CLOSED")  # fmt: skip
_PUBLIC = MutationVariant("github.repo.make_public", "high", _is("visibility", "PUBLIC"),
                          "visibility PUBLIC")  # fmt: skip
_TAG = MutationVariant("github.tag.create", "low", _starts("name", "refs/tags/"),
                       "name starts with refs/tags/")  # fmt: skip
_VIS = frozenset({"visibility"})
M = Mutation

# fmt: off
MUTATIONS: dict[str, Mutation] = {
    # pull requests
    "mergePullRequest": M("github.pr.merge", "medium", "Merge a pull request", _MERGE,
                          frozenset({"merge_method"})),
    "enablePullRequestAutoMerge": M("github.pr.merge", "medium",
                                    "Merge a pull request once checks pass", _MERGE,
                                    frozenset({"merge_method"})),
    "disablePullRequestAutoMerge": M("github.pr.update", "low", "Cancel auto-merge", _PR),
    "closePullRequest": M("github.pr.close", "low", "Close a pull request", _PR),
    "reopenPullRequest": M("github.pr.update", "low", "Reopen a pull request", _PR),
    "createPullRequest": M("github.pr.create", "low", "Open a pull request", _PR),
    "updatePullRequest": M("github.pr.update", "low", "Update a pull request", _PR,
                           frozenset({"state"}), (_CLOSE_PR,)),
    "updatePullRequestBranch": M("github.pr.update_branch", "low",
                                 "Update a pull request branch from its base", _PR),
    "markPullRequestReadyForReview": M("github.pr.update", "low", "Mark ready for review", _PR),
    "convertPullRequestToDraft": M("github.pr.update", "low", "Convert to a draft", _PR),
    "revertPullRequest": M("github.pr.create", "low", "Open a revert pull request", _PR),
    "addPullRequestReview": M("github.pr.review", "low", "Review a pull request", _PR,
                              frozenset({"event"})),
    "submitPullRequestReview": M("github.pr.review", "low", "Submit a review", _PR,
                                 frozenset({"event"})),
    "dismissPullRequestReview": M("github.review.dismiss", "medium", "Dismiss a review"),
    "deletePullRequestReview": M("github.review.delete", "low", "Delete a pending review"),
    "requestReviews": M("github.pr.request_review", "low", "Request reviewers", _PR),
    "addPullRequestReviewComment": M("github.review_comment.create", "low",
                                     "Comment on a pull request's diff"),
    "deletePullRequestReviewComment": M("github.review_comment.delete", "medium",
                                        "Delete a review comment"),
    # issues and comments
    "createIssue": M("github.issue.create", "low", "Open an issue"),
    "closeIssue": M("github.issue.close", "low", "Close an issue"),
    "reopenIssue": M("github.issue.update", "low", "Reopen an issue"),
    "updateIssue": M("github.issue.update", "low", "Update an issue", {}, frozenset({"state"}),
                     (_CLOSE_ISSUE,)),
    "deleteIssue": M("github.issue.delete", "high", "Delete an issue"),
    "transferIssue": M("github.issue.transfer", "medium", "Move an issue to another repository"),
    "addComment": M("github.issue.comment", "low", "Comment on an issue or pull request"),
    "updateIssueComment": M("github.comment.update", "low", "Edit a comment"),
    "deleteIssueComment": M("github.comment.delete", "medium", "Delete a comment"),
    "minimizeComment": M("github.comment.update", "low", "Hide a comment"),
    "addLabelsToLabelable": M("github.issue.label", "low", "Add labels"),
    "lockLockable": M("github.issue.lock", "low", "Lock a conversation"),
    "unlockLockable": M("github.issue.unlock", "low", "Unlock a conversation"),
    # refs, branches, commits
    "createRef": M("github.branch.create", "low", "Create a branch or tag (a git ref)",
                   {"oid": "sha", "name": "ref"}, variants=(_TAG,)),
    "updateRef": M("github.ref.update", "medium", "Move a git ref (force-push)",
                   {"oid": "sha"}),
    "updateRefs": M("github.ref.update", "medium", "Move git refs", {},
                    variants=(MutationVariant("github.branch.delete", "high", _deletes_refs,
                                              "an update to the zero oid"),)),
    "deleteRef": M("github.branch.delete", "high", "Delete a branch or tag (a git ref)"),
    "createLinkedBranch": M("github.branch.create", "low", "Create a branch for an issue",
                            {"oid": "sha"}),
    "mergeBranch": M("github.branch.merge", "medium", "Merge a branch into another"),
    "createCommitOnBranch": M("github.file.update", "low", "Commit file changes",
                              variants=(MutationVariant("github.file.delete", "medium",
                                                        _deletes_files, "deletes files"),),
                              reshape=_committed_branch,
                              encoded=("fileChanges.additions.*.contents",)),
    # branch protection and rulesets
    "createBranchProtectionRule": M("github.branch_protection.update", "high",
                                    "Add branch protection"),
    "updateBranchProtectionRule": M("github.branch_protection.update", "high",
                                    "Change branch protection"),
    "deleteBranchProtectionRule": M("github.branch_protection.delete", "high",
                                    "Remove branch protection"),
    "createRepositoryRuleset": M("github.branch_protection.update", "high", "Add a ruleset"),
    "updateRepositoryRuleset": M("github.branch_protection.update", "high",
                                 "Change a ruleset"),
    "deleteRepositoryRuleset": M("github.branch_protection.delete", "high",
                                 "Remove a ruleset"),
    # releases
    "createRelease": M("github.release.create", "medium", "Publish a release"),
    "updateRelease": M("github.release.update", "medium", "Edit a release"),
    "deleteRelease": M("github.release.delete", "high", "Delete a release"),
    # repositories
    "createRepository": M("github.repo.create", "medium", "Create a repository", {}, _VIS),
    "cloneTemplateRepository": M("github.repo.create", "medium",
                                 "Create a repository from a template", {}, _VIS),
    "updateRepository": M("github.repo.update", "low", "Change repository settings", {},
                          _VIS, (_PUBLIC,)),
    "updateRepositoryVisibility": M("github.repo.update", "low",
                                    "Change repository visibility", {}, _VIS, (_PUBLIC,)),
    "archiveRepository": M("github.repo.archive", "medium", "Archive a repository"),
    "unarchiveRepository": M("github.repo.update", "low", "Unarchive a repository"),
    "deleteRepository": M("github.repo.delete", "high", "Delete a repository"),
    "transferRepository": M("github.repo.transfer", "high", "Transfer a repository"),
    "updateTeamsRepository": M("github.team.add_repo", "medium",
                               "Give teams access to a repository"),
    "removeOutsideCollaborator": M("github.member.remove", "high",
                                   "Remove an outside collaborator"),
    # workflows and deployments
    "rerequestCheckSuite": M("github.run.rerun", "low", "Re-run a check suite"),
    "approveDeployments": M("github.deployment.approve", "high",
                            "Approve pending deployments"),
    "rejectDeployments": M("github.deployment.reject", "low", "Reject pending deployments"),
}
# fmt: on
