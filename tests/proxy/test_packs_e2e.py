"""Every rule of every built-in pack, proven end to end (issue 12, item 6).

One real gateway, the fake upstreams, and one agent per pack (each pack's scope narrowed
to its agent, every action allowed by the agent's access rules): for each rule, real
requests (httpx through CONNECT + interception) that the rule must catch, and at least
one it must let pass. "Forwarded" is what the fake upstream recorded, not what the
gateway said. A hold is answered by denying the approval it created. `BYPASSES` holds
the same changes spelled as other actions, which each passed its pack once.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
import yaml

from agentfirewall.policy.packs import list_packs, load_pack
from agentfirewall.policy.timewindow import DAYS
from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.support import RunningGateway, ca_bundle, rule, snapshot, start_gateway

PACKS_DIR = "agentfirewall/policy/packs"
GH, OA, SL, ST = (
    "https://api.github.com",
    "https://api.openai.com",
    "https://slack.com",
    ("https://api.stripe.com"),
)
R = GH + "/repos/acme/api"
UPLOAD = "https://uploads.github.com/repos/acme/api/releases/5/assets?name=a.zip"
MERGE_DOC = {"query": 'mutation { mergePullRequest(input: {pullRequestId: "P"}) { x } }'}
DELETE_REF_DOC = {"query": 'mutation { deleteRef(input: {refId: "R"}) { x } }'}
MERGE_BRANCH_DOC = {"query": 'mutation { mergeBranch(input: {repositoryId: "R", base: "main", '
                    'head: "agent"}) { clientMutationId } }'}  # fmt: skip
UPDATE_REF_DOC = {"query": 'mutation { updateRef(input: {refId: "R", oid: "a", force: true}) '
                  "{ x } }"}  # fmt: skip
TEAMS_REPO_DOC = {"query": 'mutation { updateTeamsRepository(input: {repositoryId: "R", '
                  'teamIds: ["T"], permission: ADMIN}) { x } }'}  # fmt: skip
ENQUEUE_DOC = {"query": 'mutation { enqueuePullRequest(input: {pullRequestId: "P"}) { x } }'}
SHA = "a" * 40
GIT = "https://github.com/acme/api.git"


def _push(*commands: tuple[str, str, str]) -> bytes:
    """A git-receive-pack body as git writes it: pkt-lines (four hex digits of length),
    capabilities after a NUL on the first, a flush-pkt, then the packfile."""
    lines = [f"{old} {new} {ref}" + ("\0report-status side-band-64k" if i == 0 else "")
             for i, (old, new, ref) in enumerate(commands)]  # fmt: skip
    return b"".join(b"%04x" % (len(x) + 4) + x.encode() for x in lines) + b"0000PACK\0\0\0\2"


ZERO, NEW = "0" * 40, "b" * 40
PUSH_MAIN = _push((SHA, NEW, "refs/heads/feature"), (SHA, NEW, "refs/heads/main"))
PUSH_FEATURE = _push((ZERO, NEW, "refs/heads/agent/fix"))
PUSH_DELETE = _push((SHA, ZERO, "refs/heads/release"))
COMMIT_MAIN_DOC = {"query": 'mutation { createCommitOnBranch(input: {branch: {repositoryNameWith'
                   'Owner: "acme/api", branchName: "main"}, message: {headline: "m"}, '
                   'expectedHeadOid: "a", fileChanges: {additions: []}}) { x } }'}  # fmt: skip
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "<!here> deploy"}}]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# pack agent, rule, expected outcome, method, url, json body or form text
Case = tuple[str, str, str, str, str, Any]
CASES: list[Case] = [
    # github-safe-defaults
    ("github-safe-defaults", "deny-destructive-deletes", "deny", "DELETE", R, None),
    ("github-safe-defaults", "deny-destructive-deletes", "deny", "DELETE",
     R + "/git/refs/heads/feature", None),
    ("github-safe-defaults", "deny-destructive-deletes", "deny", "DELETE",
     R + "/git/refs/tags/v1", None),
    ("github-safe-defaults", "deny-destructive-deletes", "deny", "DELETE", R + "/releases/5", None),
    ("github-safe-defaults", "deny-destructive-deletes", "deny", "DELETE",
     R + "/releases/assets/9", None),
    ("github-safe-defaults", "deny-destructive-deletes", "deny", "POST", GH + "/graphql",
     DELETE_REF_DOC),
    ("github-safe-defaults", "deny-destructive-deletes", "allow", "DELETE",
     R + "/issues/comments/1", None),
    ("github-safe-defaults", "deny-destructive-deletes", "deny", "POST",
     GIT + "/git-receive-pack", PUSH_DELETE),
    ("github-safe-defaults", "commits-to-default-branch", "hold", "POST",
     GIT + "/git-receive-pack", PUSH_MAIN),
    ("github-safe-defaults", "commits-to-default-branch", "hold", "PUT", R + "/contents/a.md",
     {"message": "m", "content": "aGk=", "branch": "main"}),
    ("github-safe-defaults", "commits-to-default-branch", "allow", "POST",
     GIT + "/git-receive-pack", PUSH_FEATURE),
    ("github-safe-defaults", "commits-to-default-branch", "allow", "GET",
     GIT + "/info/refs?service=git-receive-pack", None),
    ("github-safe-defaults", "commits-to-default-branch", "allow", "PUT", R + "/contents/a.md",
     {"message": "m", "content": "aGk=", "branch": "agent/fix"}),
    ("github-safe-defaults", "merge-to-default-branch", "hold", "PUT", R + "/pulls/7/merge",
     {"merge_method": "squash"}),
    ("github-safe-defaults", "merge-to-default-branch", "hold", "POST", GH + "/graphql",
     MERGE_DOC),
    ("github-safe-defaults", "merge-to-default-branch", "allow", "POST", R + "/pulls",
     {"title": "t", "head": "f", "base": "main"}),
    ("github-safe-defaults", "merge-to-default-branch", "allow", "POST", UPLOAD, b"PK\x03\x04"),
    ("github-safe-defaults", "protection-changes", "hold", "PATCH",
     R + "/branches/release/1.x/protection/required_pull_request_reviews",
     {"required_approving_review_count": 0}),
    ("github-safe-defaults", "protection-changes", "hold", "DELETE",
     R + "/branches/main/protection/enforce_admins", None),
    ("github-safe-defaults", "protection-changes", "hold", "PUT", R + "/rulesets/7",
     {"enforcement": "disabled"}),
    ("github-safe-defaults", "protection-changes", "allow", "GET",
     R + "/branches/main/protection/required_status_checks", None),
    ("github-safe-defaults", "access-changes", "hold", "POST", R + "/keys",
     {"title": "ci", "key": "ssh-ed25519 AAAA", "read_only": False}),
    ("github-safe-defaults", "access-changes", "hold", "PUT", R + "/collaborators/mallory",
     {"permission": "admin"}),
    ("github-safe-defaults", "access-changes", "hold", "PATCH", GH + "/orgs/acme/hooks/4/config",
     {"url": "https://collector.example"}),
    ("github-safe-defaults", "access-changes", "hold", "DELETE",
     R + "/environments/production/deployment_protection_rules/3", None),
    ("github-safe-defaults", "access-changes", "allow", "GET", R + "/hooks", None),
    ("github-safe-defaults", "merge-to-default-branch", "allow", "POST", R + "/merges",
     {"base": "feature", "head": "agent"}),
    ("github-safe-defaults", "merge-to-default-branch", "allow", "PATCH",
     R + "/git/refs/heads/feature", {"sha": SHA, "force": True}),
    ("github-safe-defaults", "unnamed-changes", "hold", "POST", R + "/merge-upstream",
     {"branch": "main"}),
    ("github-safe-defaults", "unnamed-changes", "allow", "GET", GH + "/fake/unnamed", None),
    ("github-safe-defaults", "unnamed-changes", "allow", "POST", GH + "/graphql",
     {"query": "query { viewer { login } }"}),
    # openai-safe-defaults
    ("openai-safe-defaults", "deny-file-and-model-deletes", "deny", "DELETE",
     OA + "/v1/files/file-1", None),
    ("openai-safe-defaults", "deny-file-and-model-deletes", "deny", "DELETE",
     OA + "/v1/models/ft:gpt-4o:acme:x", None),
    ("openai-safe-defaults", "deny-file-and-model-deletes", "allow", "GET", OA + "/v1/files",
     None),
    ("openai-safe-defaults", "other-deletes", "hold", "DELETE",
     OA + "/v1/vector_stores/vs_1", None),
    ("openai-safe-defaults", "other-deletes", "allow", "POST", OA + "/v1/chat/completions",
     {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    ("openai-safe-defaults", "costly-jobs", "hold", "POST", OA + "/v1/fine_tuning/jobs",
     {"model": "gpt-4o-mini", "training_file": "file-1"}),
    ("openai-safe-defaults", "costly-jobs", "hold", "POST", OA + "/v1/batches",
     {"input_file_id": "file-1", "endpoint": "/v1/chat/completions",
      "completion_window": "24h"}),
    ("openai-safe-defaults", "costly-jobs", "allow", "GET", OA + "/v1/fine_tuning/jobs", None),
    # slack-safe-defaults
    ("slack-safe-defaults", "deny-admin-api", "deny", "POST", SL + "/api/admin.users.invite",
     {"email": "a@b.c", "team_id": "T1", "channel_ids": "C1"}),
    ("slack-safe-defaults", "deny-admin-api", "deny", "POST", SL + "/api/admin.teams.create",
     {"team_domain": "x", "team_name": "x"}),
    ("slack-safe-defaults", "deny-admin-api", "allow", "POST", SL + "/api/auth.test", None),
    ("slack-safe-defaults", "destructive-changes", "hold", "POST",
     SL + "/api/conversations.archive", {"channel": "C1"}),
    ("slack-safe-defaults", "destructive-changes", "hold", "POST", SL + "/api/chat.delete",
     {"channel": "C1", "ts": "1.2"}),
    ("slack-safe-defaults", "destructive-changes", "allow", "POST",
     SL + "/api/conversations.list", None),
    ("slack-safe-defaults", "broadcast-mentions", "hold", "POST", SL + "/api/chat.postMessage",
     {"channel": "C1", "text": "<!channel> lunch"}),
    ("slack-safe-defaults", "broadcast-mentions", "hold", "POST", SL + "/api/chat.postMessage",
     "channel=C1&text=%3C%21here%7Chere%3E+now"),
    ("slack-safe-defaults", "broadcast-mentions", "hold", "POST", SL + "/api/chat.postMessage",
     {"channel": "C1", "blocks": BLOCKS}),
    ("slack-safe-defaults", "broadcast-mentions", "allow", "POST", SL + "/api/chat.postMessage",
     {"channel": "C1", "text": "lunch at noon"}),
    # stripe-safe-defaults
    ("stripe-safe-defaults", "large-money-movement", "hold", "POST", ST + "/v1/transfers",
     "amount=60000&currency=usd&destination=acct_1"),
    ("stripe-safe-defaults", "large-money-movement", "hold", "POST", ST + "/v1/refunds",
     "charge=ch_1"),
    ("stripe-safe-defaults", "large-money-movement", "hold", "POST", ST + "/v1/payouts",
     "amount=50001&currency=usd"),
    ("stripe-safe-defaults", "large-money-movement", "allow", "POST", ST + "/v1/transfers",
     "amount=100&currency=usd&destination=acct_1"),
    ("stripe-safe-defaults", "large-money-movement", "allow", "POST", ST + "/v1/customers",
     "email=a%40b.c"),
    # read-only
    ("read-only", "deny-writes", "deny", "POST", R + "/issues", {"title": "x"}),
    ("read-only", "deny-writes", "deny", "POST", SL + "/api/chat.postMessage",
     {"channel": "C1", "text": "x"}),
    ("read-only", "deny-writes", "deny", "GET", GH + "/fake/unnamed", None),  # github.unknown.get
    ("read-only", "deny-writes", "deny", "GET", SL + "/api/chat.postMessagez?text=x", None),
    ("read-only", "deny-writes", "allow", "GET", R, None),
    ("read-only", "deny-writes", "allow", "GET", OA + "/v1/models", None),
    # maintenance-window: its window moved around now (and, for "mw-off", 12 hours away)
    ("maintenance-window", "freeze-writes", "deny", "POST", R + "/issues", {"title": "x"}),
    ("maintenance-window", "freeze-writes", "allow", "GET", R, None),
    ("mw-off", "freeze-writes", "allow", "POST", R + "/issues", {"title": "x"}),
    # what a pack guards, spelled as other actions: their passing twins
    ("slack-safe-defaults", "broadcast-mentions", "allow", "POST", SL + "/api/chat.postMessage",
     {"channel": "C1", "text": "@channel lunch", "parse": "none"}),
    ("slack-safe-defaults", "broadcast-mentions", "allow", "POST",
     SL + "/api/files.completeUploadExternal",
     {"files": [{"id": "F1"}], "channel_id": "C1", "initial_comment": "the report"}),
    ("stripe-safe-defaults", "large-money-movement", "allow", "POST",
     ST + "/v1/charges/ch_1/refunds", "amount=100"),
    ("stripe-safe-defaults", "large-money-movement", "allow", "POST", ST + "/v1/quotes",
     "customer=cus_1"),
    ("openai-safe-defaults", "costly-jobs", "allow", "POST",
     OA + "/v1/fine_tuning/jobs/ftjob-1/cancel", None),
]  # fmt: skip

# The same change as a guarded action, spelled as another action the connectors name (the
# security review's probes): each of these once passed its pack.
BYPASSES: list[Case] = [
    # a merge into main: a branch merge (REST, GraphQL) or main's ref moved, forced or not
    ("github-safe-defaults", "merge-to-default-branch", "hold", "POST", R + "/merges",
     {"base": "main", "head": "agent"}),
    ("github-safe-defaults", "merge-to-default-branch", "hold", "POST", GH + "/graphql",
     MERGE_BRANCH_DOC),
    ("github-safe-defaults", "merge-to-default-branch", "hold", "PATCH",
     R + "/git/refs/heads/main", {"sha": SHA, "force": True}),
    ("github-safe-defaults", "merge-to-default-branch", "hold", "PATCH",
     R + "/git/refs/heads/master", {"sha": SHA}),
    ("github-safe-defaults", "merge-to-default-branch", "hold", "POST", GH + "/graphql",
     UPDATE_REF_DOC),
    # new commits on main without a merge: a file written to the default branch (named or
    # not) through the contents API or GraphQL (a git push: in CASES)
    ("github-safe-defaults", "commits-to-default-branch", "hold", "PUT", R + "/contents/a.md",
     {"message": "m", "content": "aGk=", "sha": SHA}),
    ("github-safe-defaults", "commits-to-default-branch", "hold", "DELETE", R + "/contents/a.md",
     {"message": "m", "sha": SHA, "branch": "master"}),
    ("github-safe-defaults", "commits-to-default-branch", "hold", "POST", GH + "/graphql",
     COMMIT_MAIN_DOC),
    # an access grant: organisation membership, teams, settings, visibility, ownership
    ("github-safe-defaults", "access-changes", "hold", "PUT", GH + "/orgs/acme/memberships/mallory",
     {"role": "admin"}),
    ("github-safe-defaults", "access-changes", "hold", "PUT",
     GH + "/orgs/acme/teams/core/repos/acme/api", {"permission": "admin"}),
    ("github-safe-defaults", "access-changes", "hold", "PUT",
     GH + "/orgs/acme/teams/core/memberships/mallory", {"role": "member"}),
    ("github-safe-defaults", "access-changes", "hold", "POST", GH + "/graphql", TEAMS_REPO_DOC),
    ("github-safe-defaults", "access-changes", "hold", "POST", GH + "/orgs/acme/teams",
     {"name": "core2", "repo_names": ["acme/api"], "maintainers": ["mallory"]}),
    ("github-safe-defaults", "access-changes", "hold", "PATCH", GH + "/orgs/acme",
     {"default_repository_permission": "admin"}),
    ("github-safe-defaults", "access-changes", "hold", "PATCH", R, {"private": False}),
    ("github-safe-defaults", "access-changes", "hold", "POST", R + "/transfer",
     {"new_owner": "mallory"}),
    # an agent approving a deployment its environment's reviewers gate; rejecting passes
    ("github-safe-defaults", "deployment-approvals", "hold", "POST",
     R + "/actions/runs/42/pending_deployments", {"environment_ids": [1], "state": "approved"}),
    ("github-safe-defaults", "deployment-approvals", "allow", "POST",
     R + "/actions/runs/42/pending_deployments", {"environment_ids": [1], "state": "rejected"}),
    # a change the connector cannot name: a merge through the merge queue
    ("github-safe-defaults", "unnamed-changes", "hold", "POST", GH + "/graphql", ENQUEUE_DOC),
    # a channel-wide mention in a shared file's comment, or linked by parse=full
    ("slack-safe-defaults", "broadcast-mentions", "hold", "POST",
     SL + "/api/files.completeUploadExternal",
     {"files": [{"id": "F1"}], "channel_id": "C1", "initial_comment": "<!channel> deploy now"}),
    ("slack-safe-defaults", "broadcast-mentions", "hold", "POST", SL + "/api/files.upload",
     "channels=C1&content=x&initial_comment=%3C%21everyone%3E"),
    ("slack-safe-defaults", "broadcast-mentions", "hold", "POST", SL + "/api/chat.postMessage",
     {"channel": "C1", "text": "@channel deploy", "parse": "full"}),
    ("slack-safe-defaults", "broadcast-mentions", "hold", "POST", SL + "/api/chat.postMessage",
     "channel=C1&link_names=TRUE&text=%40here"),
    ("slack-safe-defaults", "broadcast-mentions", "hold", "POST", SL + "/api/chat.startStream",
     {"channel": "C1", "markdown_text": "<!here>"}),
    ("slack-safe-defaults", "deny-admin-api", "deny", "POST", SL + "/api/Admin.users.list", {}),
    # a refund on the charge or payment intent, or one the connector cannot name
    ("stripe-safe-defaults", "large-money-movement", "hold", "POST", ST + "/v1/charges/ch_1/refund",
     ""),
    ("stripe-safe-defaults", "large-money-movement", "hold", "POST",
     ST + "/v1/charges/ch_1/refunds", "amount=99999999"),
    ("stripe-safe-defaults", "large-money-movement", "hold", "POST",
     ST + "/v1/payment_intents/pi_1/refund", ""),
    ("stripe-safe-defaults", "large-money-movement", "hold", "POST",
     ST + "/v1/application_fees/fee_1/refunds", "amount=100"),
    # a fine-tuning job restarted by a call the connector cannot name
    ("openai-safe-defaults", "costly-jobs", "hold", "POST",
     OA + "/v1/fine_tuning/jobs/ftjob-1/resume", None),
]  # fmt: skip
ALL_CASES = [*CASES, *BYPASSES]

HOSTS = {GH: "github", OA: "openai", SL: "slack", ST: "stripe", UPLOAD[:26]: "github",
         GIT: "git"}  # fmt: skip


def _key(agent: str) -> str:
    return "aaf_live_" + hashlib.sha256(agent.encode()).hexdigest()[:32]


def _window(now: datetime, shift: timedelta) -> dict[str, Any]:
    start = now + shift - timedelta(hours=1)
    end = now + shift + timedelta(hours=1)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"),
            "days": [DAYS[start.weekday()]], "timezone": "UTC"}  # fmt: skip


def _pack_document(name: str, agent: str, now: datetime) -> dict[str, Any]:
    with open(f"{PACKS_DIR}/{name}.yaml", encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    document["name"] = f"{name}-{agent}"
    document["scope"]["agents"] = [agent]
    if name == "maintenance-window":
        shift = timedelta(hours=12) if agent == "mw-off" else timedelta(0)
        document["rules"][0]["conditions"]["all"][0]["value"] = _window(now, shift)
    return document


AGENTS = {case[0] for case in ALL_CASES}


@pytest.fixture(scope="module")
def gateway(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, StaticControl]]:
    now = datetime.now(UTC)
    agents = [
        {"id": f"agt_{i}", "name": agent, "status": "active", "enforcement_level": "full_enforce",
         "key_hashes": [hashlib.sha256(_key(agent).encode()).hexdigest()], "proxy_port": None}
        for i, agent in enumerate(sorted(AGENTS))
    ]  # fmt: skip
    permissions = [rule("*", "allow", agent=agent) for agent in AGENTS]
    # so the pack, not the default deny, is what stops requests no route names (unknown
    # admin.* or chat.* methods, GitHub writes, refunds, fine-tuning calls)
    permissions += [rule(f"{c}.unknown.*", "allow", agent=f"{c}-safe-defaults")
                    for c in ("github", "openai", "slack", "stripe")]  # fmt: skip
    # so the pack, not the default deny, is what stops requests no route names
    permissions += [rule(f"{c}.unknown.*", "allow", agent="read-only") for c in ("github", "slack")]
    policies = [
        {"name": f"{a}", "document": _pack_document("maintenance-window" if a == "mw-off" else a,
                                                    a, now)}
        for a in AGENTS
    ]  # fmt: skip
    connectors = [
        {"id": f"conn_{kind}", "type": kind, "name": kind, "domains": [], "base_url": None,
         "auth_type": None, "auth_header": None, "credential": f"real-{kind}-credential"}
        for kind in ("github", "openai", "slack", "stripe")
    ]  # fmt: skip
    snap = snapshot(permissions, connectors=connectors, agents=agents, policies=policies)
    running, control = start_gateway(tmp_path_factory.mktemp("packs"), fakes, snap)
    yield running, control
    running.stop()


def _send(running: RunningGateway, agent: str, method: str, url: str, body: Any) -> httpx.Response:
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs["content"] = body
    elif isinstance(body, str):
        kwargs.update(content=body.encode(), headers=FORM)
    elif body is not None:
        kwargs["json"] = body
    context = ssl.create_default_context(cafile=str(bundle))
    proxy = running.proxy_url(_key(agent), agent)
    with httpx.Client(proxy=proxy, verify=context, trust_env=False, timeout=20) as http:
        return http.request(method, url, **kwargs)


def _outcome(
    running: RunningGateway, control: StaticControl, agent: str, method: str, url: str, body: Any
) -> tuple[str, httpx.Response | None, dict[str, Any] | None]:
    out: list[httpx.Response] = []
    errors, held = _held_while(control, agent, lambda: out.append(
        _send(running, agent, method, url, body)))  # fmt: skip
    if errors:
        raise errors[0]
    answer = out[0] if out else None
    if held is not None:
        return "hold", answer, held
    if (
        answer is not None
        and answer.status_code == 403
        and answer.headers.get("content-type") == "application/json"  # not git's own 403
        and "reason" in answer.json()
    ):
        return "deny", answer, None
    return "allow", answer, None


def _held_while(
    control: StaticControl, agent: str, call: Callable[[], object]
) -> tuple[list[BaseException], dict[str, Any] | None]:
    """Run `call` in a thread; deny the approval it creates for `agent`, if any."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    held = None
    while thread.is_alive():
        mine = [a for a in control.pending() if a.get("agent") == agent]
        if mine:
            held = mine[0]
            control.deny(held["id"])
            break
        thread.join(0.02)
    thread.join(20)
    return errors, held


@pytest.mark.parametrize(
    ("agent", "rule_name", "expected", "method", "url", "body"),
    ALL_CASES,
    ids=[f"{c[0]}/{c[1]}/{c[2]}/{c[3]} {c[4].split('//')[1][:60]}" for c in ALL_CASES],
)
def test_pack_rule_end_to_end(
    gateway: tuple[RunningGateway, StaticControl],
    fakes: FakeUpstreams,
    agent: str,
    rule_name: str,
    expected: str,
    method: str,
    url: str,
    body: Any,
) -> None:
    running, control = gateway
    fake = fakes[next(kind for prefix, kind in HOSTS.items() if url.startswith(prefix))]
    before = len(fake.received())
    outcome, answer, held = _outcome(running, control, agent, method, url, body)
    assert outcome == expected, answer.text if answer is not None else None
    forwarded = len(fake.received()) > before
    assert forwarded == (expected == "allow")
    pack = "maintenance-window" if agent == "mw-off" else agent
    reason = next(r.reason for r in load_pack(pack).rules if r.name == rule_name) or ""
    assert answer is not None
    if expected == "deny":
        assert answer.status_code == 403
        assert reason[:40] in answer.json()["reason"]
    if expected == "hold":
        assert held is not None
        assert reason[:40] in str(held.get("reason"))
        assert answer.status_code == 403


def test_every_rule_of_every_pack_has_a_catch_and_a_pass() -> None:
    covered: dict[tuple[str, str], set[str]] = {}
    for agent, rule_name, expected, *_ in ALL_CASES:
        pack = "maintenance-window" if agent == "mw-off" else agent
        covered.setdefault((pack, rule_name), set()).add(expected)
    for info in list_packs():
        for pack_rule in load_pack(info.name).rules:
            seen = covered.get((info.name, pack_rule.name), set())
            assert "allow" in seen, (info.name, pack_rule.name)
            assert seen & {"deny", "hold"}, (info.name, pack_rule.name)


def test_packs_say_so_where_the_request_lacks_the_information() -> None:
    merge = next(r for r in load_pack("github-safe-defaults").rules if r.name.startswith("merge"))
    assert "does not name its base branch" in (merge.reason or "")
    broadcast = next(
        r for r in load_pack("slack-safe-defaults").rules if r.name == "broadcast-mentions"
    )
    assert "cannot read mentions" in (broadcast.reason or "")
    money = load_pack("stripe-safe-defaults").rules[0]
    assert "carries no amount" in (money.reason or "")
    assert money.decision == "require_approval"


def test_real_sdks_meet_the_packs(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams
) -> None:
    """The official clients, in-process through the gateway: openai's file delete is
    denied, stripe's large transfer and slack_sdk's @channel message are held."""
    import openai
    import stripe
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    running, control = gateway
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    context = ssl.create_default_context(cafile=str(bundle))
    before = {kind: len(fakes[kind].received()) for kind in ("openai", "stripe", "slack")}

    agent = "openai-safe-defaults"
    http = httpx.Client(proxy=running.proxy_url(_key(agent), agent), verify=context,
                        trust_env=False)  # fmt: skip
    client = openai.OpenAI(api_key="sk-placeholder", http_client=http, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.files.delete("file-1")
    assert "openai-safe-defaults" in denied.value.response.text
    http.close()

    agent = "stripe-safe-defaults"
    session = requests.Session()
    session.trust_env = False
    stripe_client = stripe.StripeClient(
        "sk_test_placeholder",
        http_client=stripe.RequestsClient(
            session=session, proxy=running.proxy_url(_key(agent), agent)
        ),
        max_network_retries=0,
    )
    saved, stripe.ca_bundle_path = stripe.ca_bundle_path, str(bundle)  # type: ignore[attr-defined]
    errors, held = _held_while(control, agent, lambda: stripe_client.v1.transfers.create(
        params={"amount": 60000, "currency": "usd", "destination": "acct_1"}))  # fmt: skip
    stripe.ca_bundle_path = saved  # type: ignore[attr-defined]
    assert held is not None, errors
    assert held["action_spec"]["parameters"]["amount"] == 60000
    assert errors
    assert isinstance(errors[0], stripe.StripeError)

    agent = "slack-safe-defaults"
    slack = WebClient(token="xoxb-placeholder", proxy=running.proxy_url(_key(agent), agent),
                      ssl=context, timeout=30)  # fmt: skip
    errors, held = _held_while(
        control, agent, lambda: slack.chat_postMessage(channel="C1", text="<!channel> lunch")
    )
    assert held is not None
    assert held["action_spec"]["parameters"]["text"] == "<!channel> lunch"
    assert errors
    assert isinstance(errors[0], SlackApiError)

    assert {kind: len(fakes[kind].received()) for kind in before} == before
