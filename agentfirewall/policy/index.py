"""Compiled policies, indexed by agent and by action-type prefix.

Each enabled policy is compiled once: its rules' conditions become closures
(conditions.py) and its scope is split into index keys. A policy scoped to agent ``Bot``
and actions ``github.pr.*`` is stored under ``Bot`` → prefix ``github.pr.``; one scoped
to ``*`` agents goes to the shared bucket. Finding the policies that apply to
(agent, action) probes a few dicts, and the answer is memoised per (agent, action) in a
bounded cache, so the policies that cannot match cost nothing per decision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfirewall.actions import ActionSpec
from agentfirewall.decisions import ApprovalRequirement, Outcome
from agentfirewall.policy.chain import ByParameters, First, compile_plan
from agentfirewall.policy.conditions import Node, Predicate, compile_tree, specialize
from agentfirewall.policy.globs import Glob, compile_glob
from agentfirewall.policy.models import Policy

if TYPE_CHECKING:
    from agentfirewall.policy.context import EvaluationContext

__all__ = ["CompiledPolicy", "CompiledRule", "Plan", "PolicyIndex", "approver_rank"]

_CACHE_LIMIT = 16_384


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule ready to run; `label` is ``policy/rule``."""

    label: str
    decision: Outcome
    reason: str
    risk_score: float
    approval: ApprovalRequirement | None
    test: Predicate
    tree: Node | None = None
    uid: tuple[int, int] = (0, 0)  # (policy order, rule position): unique in one engine


_CLASS = {"deny": 0, "require_approval": 1, "allow": 2}
#: Approver roles ranked as the control plane ranks them (agentfirewall_server/roles.py; a
#: test keeps the two equal): a rule's `approver_roles` admit their lowest-ranked role and
#: every role above it, never below a member; a role not ranked here admits nobody.
_ROLE_RANK: dict[str, int] = {"viewer": 1, "member": 2, "admin": 3, "owner": 4}
_MEMBER = _ROLE_RANK["member"]
_NOBODY = 99


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """The rules to run for one (agent, action type, environment), in decision order.

    `rules` holds the rules of the policies in scope that can still match once the
    static fields (type, environment, agent) are known, sorted by class (deny, then
    require_approval, then allow), then by policy priority: the first rule that
    matches decides. `suffix_risk[i]` is the highest risk_score from rule i on, so
    evaluation can stop once no later rule could raise the risk score — or infinite, for
    a require_approval rule that a run held by an earlier one must still run: a held
    action waits for the terms of every require_approval rule that matches (run.py), so
    the run goes on while a later rule could tighten the terms of an earlier one (see
    `_tightening`). Rules with equal terms, or the strictest first, stop as early as
    ever. `tests` are the
    rules' predicates, in the same order (the hot loop reads no attribute).
    `first(spec, ctx)` is the position of the first rule whose test is true, else -1: the
    tests in one function (chain.py); `by_parameters(parameters)` gives the same position
    when the tests that can decide read the parameters alone (else None). `reads_context`
    is false when no rule's condition reads a context field (``context.``, ``content.``,
    ``response.``, ``budget.``): the tests then read the spec alone.

    A plan compares and hashes by identity: the engine keys its decisions on the plan
    object itself (which the key keeps alive), not on the names of its policies.
    """

    policies: tuple[str, ...]
    rules: tuple[CompiledRule, ...]
    suffix_risk: tuple[float, ...]
    tests: tuple[Predicate, ...]
    first: First
    reads_context: bool = True
    by_parameters: ByParameters | None = None


def _specialized(rule: CompiledRule, statics: dict[str, object]) -> CompiledRule | None:
    """The rule with its static conditions decided; None when it can never match."""
    test = specialize(rule.tree, statics)
    if test is False:
        return None
    if test is True:
        test = _always
    if test is rule.test:
        return rule
    return CompiledRule(
        rule.label, rule.decision, rule.reason, rule.risk_score, rule.approval, test, rule.tree,
        rule.uid,
    )  # fmt: skip


def approver_rank(approval: ApprovalRequirement | None) -> int:
    """The lowest role rank that may approve under `approval` (None: the defaults)."""
    roles = approval.approver_roles if approval is not None else ()
    lowest = min([_ROLE_RANK.get(role, _NOBODY) for role in roles]) if roles else _MEMBER
    return lowest if lowest > _MEMBER else _MEMBER


def _written_timeout(approval: ApprovalRequirement | None) -> float:
    return approval.timeout_seconds if approval is not None and approval.explicit else math.inf


def _tightening(held: list[CompiledRule]) -> list[bool]:
    """For each require_approval rule of a plan, in order: whether a run held by an
    earlier one must still run it, because a rule from it on could tighten the terms of
    an earlier one (a higher approver rank, or a shorter written timeout)."""
    ranks = [approver_rank(rule.approval) for rule in held]
    timeouts = [_written_timeout(rule.approval) for rule in held]
    strictest = [0] * (len(held) + 1)  # from rule i on: the highest rank, shortest timeout
    shortest = [math.inf] * (len(held) + 1)
    for index in range(len(held) - 1, -1, -1):
        strictest[index] = max(strictest[index + 1], ranks[index])
        shortest[index] = min(shortest[index + 1], timeouts[index])
    result = [False] * len(held)
    weakest, longest = _NOBODY, 0.0  # before rule i: the lowest rank, longest timeout
    for index in range(len(held)):
        result[index] = strictest[index] > weakest or shortest[index] < longest
        weakest, longest = min(weakest, ranks[index]), max(longest, timeouts[index])
    return result


def _plan(candidates: tuple[CompiledPolicy, ...], agent: str, action: str, env: str | None) -> Plan:
    in_scope = [p for p in candidates if p.environments is None or env in p.environments]
    statics: dict[str, object] = {"type": action, "agent": agent}
    if env is not None:
        statics["environment"] = env
    # candidates come sorted by (priority, order): bucketing by class keeps that order
    buckets: tuple[list[CompiledRule], ...] = ([], [], [])
    for policy in in_scope:
        for rule in policy.rules:
            live = _specialized(rule, statics)
            if live is not None:
                buckets[_CLASS[rule.decision]].append(live)
    rules = (*buckets[0], *buckets[1], *buckets[2])
    suffix: list[float] = [0.0] * (len(rules) + 1)
    for index in range(len(rules) - 1, -1, -1):
        suffix[index] = max(suffix[index + 1], rules[index].risk_score)
    start = len(buckets[0])  # the require_approval rules follow the deny rules
    for offset, tightens in enumerate(_tightening(buckets[1])):
        if tightens:
            suffix[start + offset] = math.inf
    tests = tuple(rule.test for rule in rules)
    # a condition the static fields decided left `_always`: it reads nothing any more
    context = any(
        rule.test is not _always and rule.tree is not None and rule.tree.reads_context
        for rule in rules
    )
    trees = [rule.tree for rule in rules]
    first, by_parameters = compile_plan(tests, trees, _always)
    names = tuple(p.name for p in in_scope)
    return Plan(names, rules, tuple(suffix), tests, first, context, by_parameters)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """One policy ready to run, with the scope checks left for evaluation time."""

    name: str
    priority: int
    order: int
    environments: frozenset[str] | None
    rules: tuple[CompiledRule, ...]


def _always(spec: ActionSpec, ctx: EvaluationContext) -> bool:
    return True


_VERBS = {"allow": "allowed", "deny": "denied", "require_approval": "held for approval"}


def _default_reason(decision: Outcome, label: str) -> str:
    return f"{_VERBS[decision]} by policy rule `{label}`"


def compile_policy(policy: Policy, order: int) -> CompiledPolicy:
    """Compile a validated policy (conditions to closures)."""
    rules = []
    for position, rule in enumerate(policy.rules):
        tree = compile_tree(rule.conditions) if rule.conditions is not None else None
        approval = None
        if rule.approval is not None:
            approval = ApprovalRequirement(
                timeout_seconds=rule.approval.timeout_seconds,
                approver_roles=tuple(rule.approval.approver_roles),
                explicit=True,
            )
        elif rule.decision == "require_approval":
            approval = ApprovalRequirement()
        rules.append(
            CompiledRule(
                label=f"{policy.name}/{rule.name}",
                decision=rule.decision,
                reason=rule.reason or _default_reason(rule.decision, f"{policy.name}/{rule.name}"),
                risk_score=float(rule.risk_score),
                approval=approval,
                test=tree.predicate if tree is not None else _always,
                tree=tree,
                uid=(order, position),
            )
        )
    environments = frozenset(policy.scope.environments) or None
    return CompiledPolicy(policy.name, policy.priority, order, environments, tuple(rules))


@dataclass(slots=True)
class _ActionIndex:
    exact: dict[str, list[CompiledPolicy]]
    prefix: dict[str, list[CompiledPolicy]]
    complex: list[tuple[Glob, CompiledPolicy]]

    def add(self, glob: Glob, policy: CompiledPolicy) -> None:
        if glob.kind == "exact":
            self.exact.setdefault(glob.pattern, []).append(policy)
        elif glob.kind == "prefix":
            self.prefix.setdefault(glob.literal, []).append(policy)
        else:
            self.complex.append((glob, policy))

    def collect(
        self, action: str, prefixes: tuple[str, ...], out: dict[int, CompiledPolicy]
    ) -> None:
        for policy in self.exact.get(action, ()):
            out[policy.order] = policy
        for prefix in prefixes:
            for policy in self.prefix.get(prefix, ()):
                out[policy.order] = policy
        for glob, policy in self.complex:
            if glob.matches(action):
                out[policy.order] = policy


def _new_index() -> _ActionIndex:
    return _ActionIndex({}, {}, [])


class PolicyIndex:
    """Enabled policies by agent and action prefix; `candidates` is memoised."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self._by_agent: dict[str, _ActionIndex] = {}
        self._shared = _new_index()
        self._agent_globs: list[tuple[Glob, _ActionIndex]] = []
        self._cache: dict[tuple[str, str], tuple[CompiledPolicy, ...]] = {}
        self.plans: dict[tuple[str, str, str | None], Plan] = {}
        self.compiled: list[CompiledPolicy] = []
        for order, policy in enumerate(policies):
            if policy.enabled:
                self._add(policy, order)

    def _add(self, policy: Policy, order: int) -> None:
        compiled = compile_policy(policy, order)
        self.compiled.append(compiled)
        globs = [compile_glob(p) for p in policy.scope.action_types]
        for agent in dict.fromkeys(policy.scope.agents):
            agent_glob = compile_glob(agent, action=False)
            if agent == "*":
                target = self._shared
            elif agent_glob.kind == "exact":
                target = self._by_agent.setdefault(agent, _new_index())
            else:
                target = _new_index()
                self._agent_globs.append((agent_glob, target))
            for glob in globs:
                target.add(glob, compiled)

    def candidates(
        self, agent: str, action: str, prefixes: tuple[str, ...]
    ) -> tuple[CompiledPolicy, ...]:
        """Policies whose agent and action scope cover (agent, action), by priority."""
        key = (agent, action)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found: dict[int, CompiledPolicy] = {}
        self._shared.collect(action, prefixes, found)
        own = self._by_agent.get(agent)
        if own is not None:
            own.collect(action, prefixes, found)
        for glob, index in self._agent_globs:
            if glob.matches(agent):
                index.collect(action, prefixes, found)
        result = tuple(sorted(found.values(), key=lambda p: (p.priority, p.order)))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result

    def plan(self, agent: str, action: str, env: str | None, prefixes: tuple[str, ...]) -> Plan:
        """The memoised evaluation plan for (agent, action, environment)."""
        key = (agent, action, env)
        found = self.plans.get(key)
        if found is None:
            found = _plan(self.candidates(agent, action, prefixes), agent, action, env)
            if len(self.plans) >= _CACHE_LIMIT:
                self.plans.clear()
            self.plans[key] = found
        return found
