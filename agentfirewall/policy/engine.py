"""The policy engine: compile once, then decide in microseconds.

Evaluation order, always (DESIGN.md section 3)::

    1 kill switch    all / connector / agent        -> deny `kill_switch_active`
    2 access rules   most specific rule wins        -> deny ends here
                     none: proxy mode denies; SDK mode leaves it to the policies
    3 policies       in scope, by priority           deny > require_approval > allow
                     a rule that raises counts as a deny (fail closed)
    4 enforcement    monitor / soft_enforce / full_enforce (kill switch always enforced)

Steps 2 and 3 combine: the stricter outcome wins (an allowed permission still needs the
policies not to deny or hold). In SDK mode with no access rule and no policy rule, the
agent's ``sdk_default`` answers: allow, "No deny rules matched", or deny.

``Decision.matched_rules[0]`` is the rule that decided (when one did), followed by the
other rules found matching (run.py). ``matched_policies`` lists the policies in scope.
Decisions are immutable and memoised per distinct input signature, so equal inputs may
return the same instance; a decision in which a rule raised is never memoised (it names
the failure, which another input reaching the same rules would not).
The engine is pure: the time comes in ``EvaluationContext.now``; nothing is read or
written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from agentfirewall.actions import ActionSpec, Risk, parse_action_spec, spec_fields, spec_of
from agentfirewall.decisions import (
    ENFORCEMENT_LEVELS,
    ApprovalRequirement,
    Decision,
    EnforcementLevel,
    Outcome,
    apply_enforcement,
)
from agentfirewall.policy.chain import ByParameters, First
from agentfirewall.policy.context import _EMPTY, ROUTE_RISK, EvaluationContext, Mode
from agentfirewall.policy.explain import Explanation, Step
from agentfirewall.policy.globs import dot_prefixes, reserved_floor
from agentfirewall.policy.index import Plan, PolicyIndex
from agentfirewall.policy.models import Policy
from agentfirewall.policy.permissions import (
    KILL_SWITCH_REASON,
    AccessIndex,
    AccessRule,
    KillSwitch,
    KillSwitchIndex,
)
from agentfirewall.policy.run import PolicyRun, run_policies, settled_run, trace_policies

__all__ = ["KILL_SWITCH_REASON", "NO_DENY_REASON", "Engine", "EvaluationContext", "Mode"]

NO_DENY_REASON = "No deny rules matched"
_STRICTNESS: dict[str, int] = {"allow": 0, "require_approval": 1, "deny": 2}
_DEFAULT_APPROVAL = ApprovalRequirement()
_PREFIX_CACHE_LIMIT = 16_384
_DECISION_CACHE_LIMIT = 16_384
#: What `decide` hands the tests of a plan that reads no context field: any read of it
#: raises AttributeError (a bare object has no attributes), and a raise sends the call to
#: the full path with a real context, so a plan flagged wrongly costs time, never a decision
_NO_CONTEXT = cast(EvaluationContext, object())


def _make_room(cache: dict[Any, Any], limit: int) -> None:
    """Empty a memo that holds `limit` entries (a bound on memory, not an eviction order)."""
    if len(cache) >= limit:
        cache.clear()


def _where(agent: str, connector: str) -> str:
    return f"(agent `{agent}`, connector `{connector}`)"


#: What a proxy-mode deny-all default tells the agent to do; a gateway whose rules live in
#: a `--config-file` says where they are instead (``Engine(permission_hint=...)``).
PERMISSION_HINT = "add one with `tf permissions set`"


def _no_permission(ctx: EvaluationContext, action: str, connector: str, hint: str) -> str:
    where = _where(ctx.agent, connector)
    floor = reserved_floor(action)
    if floor:
        return (
            f"no permission for `{action}` {where}: the connector could not name this "
            f"request, and no wildcard allows that; only a rule naming `{floor}*` does"
        )
    return f"no permission for `{action}` {where}: {hint}"


def _killed(switch: KillSwitch, risk: float) -> Decision:
    return Decision(
        "deny", switch.decision_reason, risk_score=risk, matched_rules=(switch.label,),
        kill_switch=True, decided_outcome="deny",
    )  # fmt: skip


def _proxy_default(
    ctx: EvaluationContext, action: str, connector: str, risk: float, hint: str
) -> Decision:
    reason = _no_permission(ctx, action, connector, hint)
    return Decision("deny", reason, risk_score=risk, default_applied=True, decided_outcome="deny")


def _permission_deny(
    rule: AccessRule, ctx: EvaluationContext, connector: str, risk: float
) -> Decision:
    reason = f"denied by permission `{rule.action_pattern}` {_where(ctx.agent, connector)}"
    return Decision(
        "deny", reason, risk_score=risk, matched_rules=(rule.label,), decided_outcome="deny"
    )


def _settled(plan: Plan, spec: ActionSpec, ctx: EvaluationContext, risk: float) -> int | None:
    """The position of the rule that decides, -1 when none matches, or None when the run
    must be made in full (a rule raised, or a later rule could still raise the risk score).

    The same tests in the same order as `run_policies`, without building its result.
    """
    try:
        position = plan.first(spec, ctx)  # the tests in order, in one call (chain.py)
    except Exception:  # run_policies names the failure (fail closed)
        return None
    if position < 0:
        return -1
    score = plan.rules[position].risk_score
    return position if plan.suffix_risk[position + 1] <= (score if score > risk else risk) else None


def _no_rule(spec: ActionSpec, ctx: EvaluationContext) -> int:
    """The first-match function of a plan without rules."""
    return -1


def _no_rule_by_parameters(parameters: dict[str, Any]) -> int:
    """`_no_rule` on the parameters alone."""
    return -1


class _Route:
    """What `Engine.decide` settled for one set of its arguments (agent, mode, connector,
    enforcement level, SDK default, route risk) and of the spec's type, provider and
    environment, when no rule in play reads the context: the plan's first-match function
    (and its function of the parameters alone, when it has one), and the decision built for
    each answer it gave (the position of the rule that matched, -1 for none). An answer
    that does not settle the run (a later rule could raise the risk score), or whose
    decision named an error, is never kept: the full path decides it every time."""

    __slots__ = ("by_parameters", "decisions", "first")

    def __init__(self, first: First, by_parameters: ByParameters | None) -> None:
        self.first = first
        self.by_parameters = by_parameters
        self.decisions: dict[int, Decision] = {}


class Engine:
    """Compiled access rules, policies and kill switches; `evaluate` is the hot path."""

    def __init__(
        self,
        access_rules: Iterable[AccessRule] = (),
        policies: Iterable[Policy] = (),
        kill_switches: Iterable[KillSwitch] = (),
        *,
        permission_hint: str = PERMISSION_HINT,
        connectors: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        self.access_rules = tuple(access_rules)
        self.permission_hint = permission_hint
        self.policies = tuple(policies)
        self.kill_switches = tuple(kill_switches)
        self._access = AccessIndex(self.access_rules)
        self._index = PolicyIndex(self.policies)
        self._kill = KillSwitchIndex(self.kill_switches)
        #: connector type -> the ids and names of the configured connectors of that type
        #: (`connectors`: type, id, name), through which the control plane executes an SDK
        #: action on that provider: a kill switch on any of them stops it, as the gateway
        #: stops the traffic through one (``kill_switch_for``)
        self._executed_by: dict[str, tuple[str, ...]] = {}
        for ctype, ident, name in connectors:
            self._executed_by[ctype] = (*self._executed_by.get(ctype, ()), ident, name)
        self._prefixes: dict[str, tuple[str, ...]] = {}
        self._decisions: dict[tuple[object, ...], Decision] = {}
        self._routes: dict[tuple[object, ...], _Route] = {}

    def evaluate(self, spec: ActionSpec, ctx: EvaluationContext) -> Decision:
        """Decide on one action."""
        return self._decide(spec, ctx, None)

    def decide(
        self,
        spec: ActionSpec | dict[str, Any],
        *,
        agent: str,
        mode: Mode,
        now: datetime,
        connector: str | None = None,
        enforcement_level: EnforcementLevel = "full_enforce",
        sdk_default: Outcome = "allow",
        risk: Risk | None = None,
        attributes: Mapping[str, object] = _EMPTY,
    ) -> Decision:
        """``evaluate(spec, EvaluationContext(agent=agent, mode=mode, now=now, ...))``: the
        same decision or the same error, without building the context when no rule in play
        reads a context field.

        `spec` is an ActionSpec or its JSON data (a dict), checked as `parse_action_spec`
        checks it (an invalid one raises its ActionSpecError). For data in the common shape
        (`actions.spec_fields`) whose fields were decided before, the answer is read from
        what was remembered and no ActionSpec is built.

        The arguments are checked as `EvaluationContext` checks them; whatever this path
        does not cover (a value the context would refuse or normalise, a kill switch, a
        default or permission deny, a plan whose rules read the context, a run a rule
        raised in or a later rule could still change) is decided by `evaluate`'s own path
        with the context built.
        """
        data = None  # JSON data in the common shape: its checked fields
        if type(spec) is not ActionSpec:
            if type(spec) is dict:
                data = spec_fields(spec)
            if data is None:  # anything else: the model checks it (or raises)
                spec = parse_action_spec(spec)
        if data is None:
            fields = spec.__dict__
            action, resource = fields["type"], fields["resource"].__dict__
        else:
            action, resource = data[0], data[1].__dict__
        route_key = (agent, action, resource["environment"], resource["provider"], connector,
                     mode, enforcement_level, sdk_default, risk)  # fmt: skip
        try:
            route = self._routes.get(route_key)
        except TypeError:  # an unhashable argument: the context below refuses it
            route = None
        if route is not None and now.tzinfo is not None and not self._kill.active:
            found = None
            try:  # by the position of the first rule that matches (-1: none)
                if data is None:  # an ActionSpec
                    found = route.decisions.get(route.first(spec, _NO_CONTEXT))  # type: ignore[arg-type]
                elif route.by_parameters is not None:  # the spec is never built
                    found = route.decisions.get(route.by_parameters(data[2]))
            except Exception:  # a test raised: the full path below names the failure
                found = None
            if found is not None:
                return found
        # not answered from memory: JSON data is built into its spec after all
        model = cast(ActionSpec, spec)
        if data is not None:
            model = spec_of(cast(dict[str, Any], spec), data)
        if (
            (mode == "sdk" or mode == "proxy")
            and now.tzinfo is not None
            and enforcement_level in ENFORCEMENT_LEVELS
            and (sdk_default == "allow" or sdk_default == "deny")
            and (risk is None or risk in ROUTE_RISK)
            and not self._kill.active
            and self._index.compiled
        ):
            score = ROUTE_RISK[risk] if risk is not None else 0.0
            where = connector or resource["provider"] or action[: action.index(".")]
            rule = None
            if self._access.size:
                prefixes = self._prefixes.get(action) or self._prefixes_of(action)
                rule = self._access.lookup(agent, where, action, prefixes)
            if (rule is not None or mode == "sdk") and (rule is None or rule.decision != "deny"):
                env = resource["environment"]
                plan = self._index.plans.get((agent, action, env))
                if plan is None:
                    plan = self._index.plan(agent, action, env, self._prefixes_of(action))
                key: tuple[object, ...]
                if not plan.policies:  # as `_decide` without a run
                    key = (id(rule), action, agent, where, sdk_default, score, enforcement_level)
                    found = self._decisions.get(key)
                    if found is None:
                        default = self._combine(
                            rule, None, sdk_default, action, _where(agent, where), score
                        )
                        found = self._enforce(default, enforcement_level)
                        self._remember(key, found)  # no run: no errors
                    self._route(route_key, _no_rule, _no_rule_by_parameters).decisions[-1] = found
                    return found
                if not plan.reads_context:
                    settled = _settled(plan, model, _NO_CONTEXT, score)
                    if settled is not None:
                        key = (id(rule), where, sdk_default, score, enforcement_level, plan,
                               settled)  # fmt: skip
                        found = self._decisions.get(key)
                        if found is None:
                            found = self._settled_decision(
                                key, rule, plan, settled, sdk_default, enforcement_level, action,
                                _where(agent, where), score,
                            )  # fmt: skip
                        if not found.errors:
                            route = self._route(route_key, plan.first, plan.by_parameters)
                            route.decisions[settled] = found
                        return found
        ctx = EvaluationContext(
            agent, mode, now, connector, enforcement_level, sdk_default, risk, attributes
        )
        return self._decide(model, ctx, None)

    def timeless(self, spec: ActionSpec, agent: str) -> bool:
        """True when the decision on `spec` for `agent` reads nothing of the evaluation
        context but what the caller fixes for every request it asks about (mode, connector,
        enforcement level, SDK default, route risk): no kill switch is active and no rule
        of the plan in play reads a context field (``context.``, so the time; ``content.``,
        ``response.``, ``budget.``). The same spec and context fields then get the same
        decision at any time, so a caller may remember it. False whenever unsure."""
        if self._kill.active:
            return False
        fields = spec.__dict__
        action = fields["type"]
        env = fields["resource"].__dict__["environment"]
        plan = self._index.plans.get((agent, action, env))
        if plan is None:
            plan = self._index.plan(agent, action, env, self._prefixes_of(action))
        return not plan.reads_context

    def kill_switch_over(
        self, agent: str, spec: ActionSpec, *, risk: float = 0.0
    ) -> Decision | None:
        """The deny of an active kill switch that covers `agent` acting on `spec` in SDK mode
        (the connector is the spec's provider, or a configured connector of that type, by
        id or name), or None: for an action decided before the switch, about to be handed
        a token or executed."""
        if not self._kill.active:
            return None
        switch = self._kill.find(agent, self._sdk_connectors(spec.provider))
        return None if switch is None else _killed(switch, risk)

    def _sdk_connectors(self, provider: str, *also: str) -> tuple[str, ...]:
        """Every name a kill switch may give the connectors an SDK action on `provider` is
        executed through (`also`, the provider, the ids and names of its type's)."""
        return (*also, provider, *self._executed_by.get(provider, ()))

    @property
    def kill_switch_active(self) -> bool:
        """Whether any kill switch is active."""
        return self._kill.active

    def explain(self, spec: ActionSpec, ctx: EvaluationContext) -> Explanation:
        """Decide on one action and record every step (same result as `evaluate`)."""
        steps: list[Step] = []
        decision = self._decide(spec, ctx, steps)
        return Explanation(decision, steps)

    def _prefixes_of(self, action: str) -> tuple[str, ...]:
        prefixes = self._prefixes.get(action)
        if prefixes is None:
            _make_room(self._prefixes, _PREFIX_CACHE_LIMIT)
            prefixes = self._prefixes[action] = dot_prefixes(action)
        return prefixes

    def _memo(
        self,
        key: tuple[object, ...],
        build: Callable[[], Decision],
        ctx: EvaluationContext,
        trace: list[Step] | None,
    ) -> Decision:
        """Build a decision once per distinct key (decisions are immutable)."""
        if trace is None:
            found = self._decisions.get(key)
            if found is not None:
                return found
        decision = self._enforce(build(), ctx.enforcement_level, trace)
        if not decision.errors:
            self._remember(key, decision)
        return decision

    def _decide(
        self, spec: ActionSpec, ctx: EvaluationContext, trace: list[Step] | None
    ) -> Decision:
        # the fields read straight from the models' __dict__: pydantic's attribute access
        # goes through its __getattr__ hook, a few times the cost of a dict read
        fields = spec.__dict__
        action = fields["type"]
        resource = fields["resource"].__dict__
        agent = ctx.agent
        level = ctx.enforcement_level
        route_risk = ctx.risk
        risk = ROUTE_RISK[route_risk] if route_risk is not None else 0.0
        connector = ctx.connector or resource["provider"] or action[: action.index(".")]
        if self._kill.active:
            names: tuple[str, ...] = (connector, spec.provider)
            if ctx.mode == "sdk" and self._kill.connectors:
                names = self._sdk_connectors(spec.provider, connector)
            switch = self._kill.find(agent, names)
            if switch is not None:
                if trace is not None:
                    trace.append(Step("kill_switch", "active", f"{switch.label}: {switch.reason}"))
                key: tuple[object, ...] = ("kill", switch.label, risk, level)
                return self._memo(key, lambda: _killed(switch, risk), ctx, trace)
        if trace is not None:
            trace.append(Step("kill_switch", "inactive", "no kill switch covers this action"))
        rule = None
        if self._access.size:
            prefixes = self._prefixes.get(action) or self._prefixes_of(action)
            rule = self._access.lookup(agent, connector, action, prefixes)
        if rule is None and ctx.mode == "proxy":
            if trace is not None:
                trace.append(
                    Step(
                        "access_rules",
                        "deny (default)",
                        _no_permission(ctx, action, connector, self.permission_hint),
                    )
                )
            key = ("default", action, agent, connector, risk, level)
            hint = self.permission_hint
            return self._memo(
                key, lambda: _proxy_default(ctx, action, connector, risk, hint), ctx, trace
            )
        if trace is not None:
            self._trace_access(trace, rule, action, _where(agent, connector))
        if rule is not None and rule.decision == "deny":
            key = ("permission", id(rule), agent, connector, risk, level)
            return self._memo(key, lambda: _permission_deny(rule, ctx, connector, risk), ctx, trace)
        run = None
        plan = None
        if self._index.compiled:
            env = resource["environment"]
            plan = self._index.plans.get((agent, action, env))
            if plan is None:
                plan = self._index.plan(agent, action, env, self._prefixes_of(action))
            if plan.policies and trace is None:
                settled = _settled(plan, spec, ctx, risk)
                if settled is not None:  # the plan and the deciding rule fix the run
                    key = (id(rule), connector, ctx.sdk_default, risk, level, plan, settled)
                    found = self._decisions.get(key)
                    if found is not None:
                        return found
                    return self._settled_decision(
                        key, rule, plan, settled, ctx.sdk_default, level, action,
                        _where(agent, connector), risk,
                    )  # fmt: skip
            if plan.policies:
                run = run_policies(plan, spec, ctx, risk)
            if trace is not None:
                self._trace_policies(trace, spec, ctx, self._prefixes_of(action), run)
        # The plan stands for the policies in scope (it hashes by identity, and the key
        # keeps it alive); the decision is looked up before anything is built for it.
        if run is None:
            key = (id(rule), action, agent, connector, ctx.sdk_default, risk, level)
        elif run.errors:  # never memoised: the decision names the rule that failed
            where = _where(agent, connector)
            decision = self._combine(rule, run, ctx.sdk_default, action, where, risk)
            return self._enforce(decision, level, trace)
        else:  # the plan is one (agent, action, environment): they need not be repeated
            key = (id(rule), connector, ctx.sdk_default, risk, level, plan, run.outcome,
                   run.deciding_uid, run.matched, run.risk)  # fmt: skip
        if trace is None:
            found = self._decisions.get(key)
            if found is not None:
                return found
        where = _where(agent, connector)
        decision = self._enforce(
            self._combine(rule, run, ctx.sdk_default, action, where, risk), level, trace
        )
        if not decision.errors:
            self._remember(key, decision)
        return decision

    def _settled_decision(
        self,
        key: tuple[object, ...],
        rule: AccessRule | None,
        plan: Plan,
        settled: int,
        sdk_default: Outcome,
        level: EnforcementLevel,
        action: str,
        where: str,
        risk: float,
    ) -> Decision:
        """Build the decision of a run that `_settled` found settled by rule `settled`.

        The plan (one agent, action and environment) and the position of the deciding
        rule (-1: none) fix the run (`settled_run`), so they key the memo.
        """
        run = settled_run(plan, settled, risk)
        decision = self._enforce(self._combine(rule, run, sdk_default, action, where, risk), level)
        if not decision.errors:
            self._remember(key, decision)
        return decision

    def _route(
        self, key: tuple[object, ...], first: First, by_parameters: ByParameters | None
    ) -> _Route:
        route = self._routes.get(key)
        if route is None:
            _make_room(self._routes, _DECISION_CACHE_LIMIT)
            route = self._routes[key] = _Route(first, by_parameters)
        return route

    def _remember(self, key: tuple[object, ...], decision: Decision) -> None:
        _make_room(self._decisions, _DECISION_CACHE_LIMIT)
        self._decisions[key] = decision

    def _trace_policies(
        self,
        trace: list[Step],
        spec: ActionSpec,
        ctx: EvaluationContext,
        prefixes: tuple[str, ...],
        run: PolicyRun | None,
    ) -> None:
        trace_policies(self._index.candidates(ctx.agent, spec.type, prefixes), spec, ctx, trace)
        scope = ", ".join(run.policies) if run is not None else "none"
        summary = run.outcome if run is not None and run.outcome else "no rule matched"
        detail = f"in scope: {scope}; deny wins, then require_approval, then allow"
        if run is not None and run.deciding:
            detail += f"; decided by `{run.deciding}`"
        trace.append(Step("policies", summary, detail))

    @staticmethod
    def _trace_access(trace: list[Step], rule: AccessRule | None, action: str, where: str) -> None:
        if rule is None:
            detail = f"no permission matches `{action}` {where}; sdk mode: the policies decide"
            trace.append(Step("access_rules", "no match", detail))
        else:
            detail = f"most specific permission: `{rule.label}` ({rule.decision})"
            trace.append(Step("access_rules", rule.decision, detail))

    @staticmethod
    def _combine(
        rule: AccessRule | None,
        run: PolicyRun | None,
        sdk_default: Outcome,
        action: str,
        where: str,
        risk: float,
    ) -> Decision:
        outcome = run.outcome if run is not None else None
        policies = run.policies if run is not None else ()
        matched = run.matched if run is not None else ()
        errors = run.errors if run is not None else ()
        if run is not None:
            risk = run.risk
        if (
            outcome is not None
            and run is not None
            and (rule is None or _STRICTNESS[outcome] >= _STRICTNESS[rule.decision])
        ):
            first = run.deciding
            rules = (first, *(label for label in matched if label != first))
            if rule is not None:
                rules = (*rules, rule.label)
            return Decision(
                outcome, run.reason, risk_score=risk, matched_policies=policies,
                matched_rules=rules, errors=errors, approval=run.approval, decided_outcome=outcome,
            )  # fmt: skip
        if rule is not None:
            if rule.decision == "allow":
                reason = f"allowed by permission `{rule.action_pattern}` {where}"
            else:
                reason = f"permission `{rule.action_pattern}` requires approval {where}"
            approval = _DEFAULT_APPROVAL if rule.decision == "require_approval" else None
            return Decision(
                rule.decision, reason, risk_score=risk, matched_policies=policies,
                matched_rules=(rule.label, *matched), errors=errors, approval=approval,
                decided_outcome=rule.decision,
            )  # fmt: skip
        if sdk_default == "allow":
            reason = NO_DENY_REASON
        else:
            reason = f"no rule allows `{action}` {where} and the agent's sdk default is deny"
        return Decision(
            sdk_default, reason, risk_score=risk, matched_policies=policies,
            default_applied=True, errors=errors, decided_outcome=sdk_default,
        )  # fmt: skip

    @staticmethod
    def _enforce(
        decision: Decision, level: EnforcementLevel, trace: list[Step] | None = None
    ) -> Decision:
        if level == "full_enforce" and trace is None:
            return decision  # built with decided_outcome set: nothing to change
        decision = apply_enforcement(decision, level)
        if trace is not None:
            detail = f"{level}: decided {decision.decided_outcome}, enforced {decision.outcome}"
            if decision.kill_switch:
                detail += " (the kill switch is enforced at every level)"
            trace.append(Step("enforcement", decision.outcome, detail))
        return decision
