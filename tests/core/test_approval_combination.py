"""A held action waits for the terms of every require_approval rule that matches.

Deny wins across policies; a stricter approval requirement must too. When several rules
hold one action, an approver must satisfy each rule: the roles are those of the rule whose
lowest role ranks highest (``roles.may_approve`` then admits exactly the roles every rule
admits), the timeout is the shortest one a rule wrote, and ``matched_rules`` names the
rules whose terms make the result. The first rule by priority still gives the reason; a
later rule whose terms could tighten nothing is not run (the engine's fast path).
"""

from __future__ import annotations

from datetime import UTC, datetime
from random import Random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.decisions import ApprovalRequirement, Decision
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, Policy, load_policy
from agentfirewall.policy.engine import _settled
from agentfirewall.policy.globs import dot_prefixes
from agentfirewall.policy.index import _ROLE_RANK
from agentfirewall.policy.unseen import unseen_decision
from agentfirewall_server.roles import DEFAULT_ROLES, ROLES, may_approve
from tests.fuzzscale import examples

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CTX = EvaluationContext(agent="Finance", mode="sdk", now=NOW)
#: every role a person or token can hold, none, and one no rank knows
WHO = [*ROLES, None, "superuser"]


def _transfer(amount: int) -> ActionSpec:
    return parse_action_spec(
        {
            "type": "payment.transfer.initiate",
            "resource": {"provider": "bank"},
            "parameters": {"amount": amount},
        }
    )


def _holding(
    name: str, priority: int, over: int | None, approval: dict[str, Any] | None, **more: Any
) -> Policy:
    """A policy with one require_approval rule `name/r` for transfers over `over`."""
    rule: dict[str, Any] = {"name": "r", "decision": "require_approval", **more}
    if over is not None:
        rule["conditions"] = [{"field": "parameters.amount", "operator": "gt", "value": over}]
    if approval is not None:
        rule["approval"] = approval
    scope = {"action_types": ["payment.*"]}
    document = {"name": name, "priority": priority, "scope": scope, "rules": [rule]}
    return load_policy(document, stored=True)  # stored: a role of any name loads


def _held(decision: Decision) -> ApprovalRequirement:
    assert decision.outcome == "require_approval"
    assert decision.approval is not None
    return decision.approval


def _terms(approval: ApprovalRequirement) -> tuple[str, ...]:
    """The roles the control plane requires (decide.approval_terms)."""
    return (tuple(approval.approver_roles) or DEFAULT_ROLES) if approval.explicit else DEFAULT_ROLES


def _admitted(decision: Decision) -> set[str | None]:
    """Who may approve the held action."""
    return {who for who in WHO if may_approve(who, _terms(_held(decision)))}


BROAD = {"timeout_seconds": 300, "approver_roles": ["member"]}
OWNER = {"timeout_seconds": 300, "approver_roles": ["owner"]}


@pytest.mark.parametrize(("broad", "strict"), [(10, 50), (50, 10)])
def test_a_member_cannot_approve_what_an_owner_only_rule_also_holds(
    broad: int, strict: int
) -> None:
    """The probe: a broad member rule and an owner-only rule for big transfers, in either
    priority order: the $1,000,000 transfer needs an owner."""
    engine = Engine(
        policies=[
            _holding("review-payments", broad, None, BROAD),
            _holding("big-transfers-need-owner", strict, 10_000, OWNER),
        ]
    )
    big = engine.evaluate(_transfer(1_000_000), CTX)
    assert _held(big) == ApprovalRequirement(300, ("owner",))
    assert _held(big).explicit
    assert _admitted(big) == {"owner"}
    if broad < strict:  # the owner rule tightens the member rule's terms: it runs too
        assert big.matched_rules == ("review-payments/r", "big-transfers-need-owner/r")
    else:  # the member rule could tighten nothing: the run stops at the owner rule
        assert big.matched_rules == ("big-transfers-need-owner/r",)
    small = engine.evaluate(_transfer(500), CTX)  # only the broad rule holds it
    assert _held(small) == ApprovalRequirement(300, ("member",))
    assert small.matched_rules == ("review-payments/r",)


def test_three_rules_the_highest_rank_and_the_shortest_timeout() -> None:
    engine = Engine(
        policies=[
            _holding("a", 10, None, {"timeout_seconds": 600, "approver_roles": ["member"]}),
            _holding("b", 20, 100, {"timeout_seconds": 3600, "approver_roles": ["owner"]}),
            _holding("c", 30, 10, {"timeout_seconds": 120, "approver_roles": ["admin", "owner"]}),
        ]
    )
    every = engine.evaluate(_transfer(1_000), CTX)
    assert every.matched_rules == ("a/r", "b/r", "c/r")
    assert _held(every) == ApprovalRequirement(120, ("owner",))
    assert _admitted(every) == {"owner"}
    assert every.reason == "held for approval by policy rule `a/r`"  # the first decides
    two = engine.evaluate(_transfer(50), CTX)  # a and c
    assert two.matched_rules == ("a/r", "c/r")
    assert _held(two) == ApprovalRequirement(120, ("admin", "owner"))
    assert _admitted(two) == {"admin", "owner"}


@pytest.mark.parametrize("unwritten_first", [True, False])
def test_a_rule_without_approval_terms_adds_no_timeout_and_no_role(unwritten_first: bool) -> None:
    """A rule without ``approval:`` waits the control plane's default and admits any
    member: it never loosens a rule with terms, and gives no timeout of its own."""
    written = {"timeout_seconds": 900, "approver_roles": ["admin"]}
    order = (10, 20) if unwritten_first else (20, 10)
    engine = Engine(
        policies=[_holding("plain", order[0], None, None), _holding("own", order[1], 0, written)]
    )
    mixed = engine.evaluate(_transfer(5), CTX)
    assert mixed.matched_rules == (("plain/r", "own/r") if unwritten_first else ("own/r",))
    assert _held(mixed).explicit
    assert _held(mixed).timeout_seconds == 900
    assert _admitted(mixed) == {"admin", "owner"}
    plain = Engine(policies=[_holding("plain", 10, None, None), _holding("other", 20, 0, None)])
    unwritten = plain.evaluate(_transfer(5), CTX)
    assert unwritten.matched_rules == ("plain/r",)  # equal terms: the first one settles
    assert not _held(unwritten).explicit  # the control plane's default timeout
    assert _admitted(unwritten) == {"member", "admin", "owner"}


def test_an_unknown_role_of_a_stored_policy_still_admits_nobody() -> None:
    engine = Engine(
        policies=[
            _holding("broad", 10, None, BROAD),
            _holding("old", 20, 0, {"approver_roles": ["superuser"]}),
        ]
    )
    assert _admitted(engine.evaluate(_transfer(5), CTX)) == set()


def test_an_access_rule_that_holds_adds_the_default_terms() -> None:
    """Access rules carry no approval terms: one that holds the action too changes
    nothing, and is named after the policy rules."""
    permission = AccessRule("Finance", "bank", "payment.*", "require_approval")
    engine = Engine(
        access_rules=[permission],
        policies=[_holding("broad", 10, None, BROAD), _holding("strict", 50, 10_000, OWNER)],
    )
    proxy = EvaluationContext(agent="Finance", mode="proxy", now=NOW, connector="bank")
    decision = engine.evaluate(_transfer(1_000_000), proxy)
    assert decision.matched_rules == ("broad/r", "strict/r", permission.label)
    assert _held(decision) == ApprovalRequirement(300, ("owner",))


def test_a_plan_with_one_approval_rule_still_stops_at_it() -> None:
    """The fast path: a lone require_approval rule, or the last of several, settles the
    run; an earlier one of several does not (the later ones must run)."""

    def settled(*policies: Policy) -> int | None:
        action = "payment.transfer.initiate"
        plan = Engine(policies=policies)._index.plan("Finance", action, None, dot_prefixes(action))
        return _settled(plan, _transfer(5), CTX, 0.0)

    broad, strict = _holding("broad", 10, None, BROAD), _holding("strict", 50, 10_000, OWNER)
    assert settled(broad) == 0
    assert settled(broad, strict) is None  # broad matched: strict must run too
    assert settled(strict.model_copy(update={"priority": 5}), broad) == 1  # only the last
    assert settled(broad, _holding("same", 50, 0, BROAD)) == 0  # equal terms
    assert settled(_holding("first", 5, 0, OWNER), broad) == 0  # the strictest first


def _decide(engine: Engine, amount: int) -> Decision:
    spec = {"type": "payment.transfer.initiate", "resource": {"provider": "bank"},
            "parameters": {"amount": amount}}  # fmt: skip
    return engine.decide(spec, agent="Finance", mode="sdk", now=NOW)


@pytest.mark.parametrize("amounts", [[5, 1_000_000, 5, 1_000_000], [1_000_000, 5, 1_000_000, 5]])
def test_a_remembered_decision_keeps_the_combined_terms(amounts: list[int]) -> None:
    """Both memos (per plan and per route) key the held rules: a decision remembered for
    one rule is never the answer for two, nor the other way round."""
    policies = [_holding("broad", 10, None, BROAD), _holding("strict", 50, 10_000, OWNER)]
    shared = Engine(policies=policies)
    for amount in amounts:
        fresh = Engine(policies=policies).evaluate(_transfer(amount), CTX)
        for decision in (shared.evaluate(_transfer(amount), CTX), _decide(shared, amount)):
            assert decision == fresh
            assert _held(decision).explicit == _held(fresh).explicit


def test_the_core_ranks_roles_as_the_control_plane_does() -> None:
    assert _ROLE_RANK == ROLES


_Terms = tuple[int, list[str]]
_ROLE_LISTS = st.lists(
    st.sampled_from(["owner", "admin", "member", "viewer", "superuser"]), max_size=3, unique=True
)
_RULES = st.lists(
    st.tuples(
        st.sampled_from(["allow", "deny", "require_approval"]),
        st.sampled_from([None, 0, 100, 10_000]),  # transfers over this amount
        st.one_of(st.none(), st.tuples(st.integers(1, 5000), _ROLE_LISTS)),
        st.sampled_from([0, 50, 90]),  # risk_score: some runs walk on for the risk
    ),
    min_size=1,
    max_size=6,
)


def _roles(terms: _Terms | None) -> tuple[str, ...]:
    """The roles one rule alone would require (decide.approval_terms)."""
    return tuple(terms[1]) or DEFAULT_ROLES if terms is not None else DEFAULT_ROLES


@settings(max_examples=examples(200), deadline=None)
@given(_RULES, st.sampled_from([5, 500, 1_000_000]), st.randoms(use_true_random=False))
def test_the_combined_terms_satisfy_every_matching_rule(
    rules: list[tuple[str, int | None, _Terms | None, int]], amount: int, rng: Random
) -> None:
    """Whatever the rules, their priorities and their order: a held action admits exactly
    the approvers every matching require_approval rule admits (never one that a single
    rule would refuse) and waits the shortest timeout they wrote; the rules it names
    among them give the same terms."""
    policies = []
    for n, (decision, over, terms, risk) in enumerate(rules):
        approval = None if terms is None else {"timeout_seconds": terms[0],
                                               "approver_roles": terms[1]}  # fmt: skip
        policy = _holding(f"p{n}", rng.choice([1, 2, 3]), over, approval, risk_score=risk)
        rule = policy.rules[0].model_copy(update={"decision": decision})
        policies.append(policy.model_copy(update={"rules": (rule,)}))
    rng.shuffle(policies)
    engine = Engine(policies=policies)
    got = engine.evaluate(_transfer(amount), CTX)
    assert _decide(engine, amount) == got  # the route memo, once the first answer is known
    assert _decide(engine, amount) == got
    matching = [(f"p{n}/r", d, t) for n, (d, over, t, _) in enumerate(rules)
                if over is None or amount > over]  # fmt: skip
    held = [(label, terms) for label, d, terms in matching if d == "require_approval"]
    if any(d == "deny" for _, d, _ in matching) or not held:
        assert got.outcome != "require_approval"
        return
    named = [(label, terms) for label, terms in held if label in got.matched_rules]
    for rules_held in (held, named):  # all that matched, and those named, give the terms
        for who in WHO:
            each = all(may_approve(who, _roles(terms)) for _, terms in rules_held)
            assert may_approve(who, _terms(_held(got))) == each, who
        written = [terms[0] for _, terms in rules_held if terms is not None]
        assert _held(got).explicit == bool(written)
        if written:
            assert _held(got).timeout_seconds == min(written)


def _unseen(policies: list[Policy]) -> Decision:
    """The decision on a transfer whose body was not read whole (its amount unseen)."""
    engine = Engine(policies=policies)
    spec = parse_action_spec(
        {"type": "payment.transfer.initiate", "resource": {"provider": "bank"},
         "parameters": {}, "risk_hints": {"body_truncated": True}}
    )  # fmt: skip
    return unseen_decision(engine, spec, CTX, engine.evaluate(spec, CTX))


def test_an_unseen_amount_holds_for_every_rule_that_could_apply() -> None:
    """A body not read whole: the owner-only rule for big transfers could apply, so a
    member may not approve what the broad rule holds (the padded-body variant of the
    probe), and a widened allow waits for every rule that could hold it."""
    assert _admitted(_unseen([_holding("broad", 10, None, BROAD), _strict_rule()])) == {"owner"}
    allow = load_policy({"name": "ok", "rules": [{"name": "r", "decision": "allow"}]})
    member = {"timeout_seconds": 600, "approver_roles": ["member"]}
    widened = _unseen([allow, _holding("some", 10, 100, member), _strict_rule(timeout=900)])
    assert _held(widened) == ApprovalRequirement(600, ("owner",))


def _strict_rule(timeout: int = 300) -> Policy:
    return _holding("strict", 50, 10_000, {**OWNER, "timeout_seconds": timeout})
