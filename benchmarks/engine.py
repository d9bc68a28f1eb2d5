"""Policy engine benchmark: agentfirewall vs a naive loop, cedarpy and pycasbin.

One rule set per size (10, 100, 1,000, 10,000 rules) is generated once and translated
for every engine, as in ../shared/reference/perf-anchors.md section 2:

- each rule has an agent (``agent-N``, about ten rules per agent) or ``*`` for up to 20
  global guardrails that always carry a condition; an action pattern: exact
  ``github.pr.merge`` (40%), ``github.pr.*`` (40%), ``github.*`` (18%) or ``*`` (2%);
  optional conditions ``parameters.amount > T`` and/or ``environment == E``; an effect,
  allow or deny;
- a decision is deny if any deny rule matches, else allow if any allow rule matches,
  else deny (Cedar's forbid-overrides). In agentfirewall each rule is one policy
  document (scope agent + action glob, one rule with the conditions), evaluated in
  SDK mode with ``sdk_default: deny``;
- 70% of the requests target an action the agent has a rule for, 30% are random.

Before timing, every engine's decisions are cross-checked against the naive engine
on a sample of requests; any disagreement aborts the run.

    python benchmarks/engine.py            # full run, about 1-2 minutes
    python benchmarks/engine.py --quick    # smaller budgets, sizes 10..1,000
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.policy import (
    AccessRule,
    Engine,
    EvaluationContext,
    Policy,
    load_policy,
)

ACTIONS = [
    "github.pr.merge",
    "github.pr.create",
    "github.pr.get",
    "github.issue.create",
    "github.repo.delete",
    "github.branch.delete",
    "slack.chat.post_message",
    "stripe.transfer.create",
]
ENVS = ["production", "staging", "dev"]
NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class GenRule:
    agent: str  # "*" for a global guardrail
    pattern: str
    min_amount: int | None
    env: str | None
    effect: str  # allow | deny


@dataclass(frozen=True, slots=True)
class Request:
    agent: str
    action: str
    env: str
    amount: int


def generate(n: int, rng: random.Random, deny_share: float = 0.35) -> list[GenRule]:
    agents = max(1, n // 10)
    rules = []
    globals_left = min(20, n // 10)
    for _ in range(n):
        roll = rng.random()
        pattern = (
            "github.pr.merge"
            if roll < 0.4
            else "github.pr.*"
            if roll < 0.8
            else "github.*"
            if roll < 0.98
            else "*"
        )
        amount = rng.choice([None, None, 1000, 10_000, 50_000])
        env = rng.choice([None, None, *ENVS])
        if globals_left and rng.random() < 0.02:
            globals_left -= 1
            agent = "*"
            if amount is None and env is None:
                amount = 50_000
        else:
            agent = f"agent-{rng.randrange(agents)}"
        effect = "deny" if rng.random() < deny_share else "allow"
        rules.append(GenRule(agent, pattern, amount, env, effect))
    return rules


def _action_for(pattern: str, rng: random.Random) -> str:
    matching = [a for a in ACTIONS if fnmatch.fnmatchcase(a, pattern)]
    return rng.choice(matching or ACTIONS)


def requests_for(rules: list[GenRule], count: int, rng: random.Random) -> list[Request]:
    own = [r for r in rules if r.agent != "*"]
    agents = max(1, len(rules) // 10)
    out = []
    for _ in range(count):
        if own and rng.random() < 0.7:
            rule = rng.choice(own)
            agent, action = rule.agent, _action_for(rule.pattern, rng)
        else:
            agent, action = f"agent-{rng.randrange(agents)}", rng.choice(ACTIONS)
        amount = rng.choice([0, 500, 5_000, 20_000, 99_000])
        out.append(Request(agent, action, rng.choice(ENVS), amount))
    return out


# -- naive reference -------------------------------------------------------------------


def naive_engine(rules: list[GenRule]) -> Callable[[Request], str]:
    def decide(req: Request) -> str:
        allowed = False
        for rule in rules:
            if rule.agent != "*" and rule.agent != req.agent:
                continue
            if not fnmatch.fnmatchcase(req.action, rule.pattern):
                continue
            if rule.min_amount is not None and not req.amount > rule.min_amount:
                continue
            if rule.env is not None and rule.env != req.env:
                continue
            if rule.effect == "deny":
                return "deny"
            allowed = True
        return "allow" if allowed else "deny"

    return decide


# -- a plain indexed reference (perf-anchors.md section 2, "indexed") --------------------


def indexed_reference(rules: list[GenRule]) -> Callable[[Request], str]:
    """The same semantics as the naive loop: rules bucketed by agent (plus the global
    bucket), patterns pre-split into exact, prefix or any."""
    buckets: dict[str, list[tuple[int, str, int | None, str | None, bool]]] = {}
    for rule in rules:
        if rule.pattern == "*":
            kind, text = 2, ""
        elif rule.pattern.endswith("*"):
            kind, text = 1, rule.pattern[:-1]
        else:
            kind, text = 0, rule.pattern
        entry = (kind, text, rule.min_amount, rule.env, rule.effect == "deny")
        buckets.setdefault(rule.agent, []).append(entry)
    globals_ = buckets.pop("*", [])

    def decide(req: Request) -> str:
        action, amount, env = req.action, req.amount, req.env
        allowed = False
        for bucket in (buckets.get(req.agent, ()), globals_):
            for kind, text, min_amount, rule_env, deny in bucket:
                if kind == 0:
                    if action != text:
                        continue
                elif kind == 1 and not action.startswith(text):
                    continue
                if min_amount is not None and not amount > min_amount:
                    continue
                if rule_env is not None and rule_env != env:
                    continue
                if deny:
                    return "deny"
                allowed = True
        return "allow" if allowed else "deny"

    return decide


# -- agentfirewall -----------------------------------------------------------------------


def to_policy(index: int, rule: GenRule) -> Policy:
    conditions: list[dict[str, Any]] = []
    if rule.min_amount is not None:
        conditions.append(
            {"field": "action_spec.parameters.amount", "operator": "gt", "value": rule.min_amount}
        )
    if rule.env is not None:
        conditions.append(
            {"field": "resource.environment", "operator": "equals", "value": rule.env}
        )
    return load_policy(
        {
            "name": f"rule-{index}",
            "scope": {"action_types": [rule.pattern], "agents": [rule.agent]},
            "rules": [{"name": "r", "decision": rule.effect, "conditions": conditions or None}],
        }
    )


def agentfirewall_engine(
    rules: list[GenRule],
) -> tuple[Callable[[Any], str], Callable[[Request], Any]]:
    engine = Engine(policies=[to_policy(i, r) for i, r in enumerate(rules)])
    contexts: dict[str, EvaluationContext] = {}

    def prepare(req: Request) -> tuple[ActionSpec, EvaluationContext]:
        spec = parse_action_spec(
            {
                "type": req.action,
                "resource": {"environment": req.env},
                "parameters": {"amount": req.amount},
            }
        )
        ctx = contexts.get(req.agent)
        if ctx is None:
            ctx = contexts[req.agent] = EvaluationContext(
                agent=req.agent, mode="sdk", now=NOW, sdk_default="deny"
            )
        return spec, ctx

    evaluate = engine.evaluate
    return (lambda prepared: evaluate(*prepared).outcome), prepare


def agentfirewall_per_call(
    rules: list[GenRule], parse: Callable[[Any], ActionSpec] = parse_action_spec
) -> tuple[Callable[[Any], str], Callable[[Request], Any]]:
    """What a caller pays per decision: the action spec parsed (validated) from JSON data
    and the evaluation context built, inside the timing."""
    engine = Engine(policies=[to_policy(i, r) for i, r in enumerate(rules)])
    evaluate = engine.evaluate

    def decide(req: Request) -> str:
        spec = parse(
            {
                "type": req.action,
                "resource": {"environment": req.env},
                "parameters": {"amount": req.amount},
            }
        )
        ctx = EvaluationContext(agent=req.agent, mode="sdk", now=NOW, sdk_default="deny")
        return evaluate(spec, ctx).outcome

    return decide, lambda r: r


def agentfirewall_decide(
    rules: list[GenRule], parsed: bool = False
) -> tuple[Callable[[Any], str], Callable[[Request], Any]]:
    """What a caller pays per decision through `Engine.decide`: the action spec's JSON data
    built inside the timing and passed as it is (the engine checks it as
    `parse_action_spec` does, and builds the spec only when it must), the context's fields
    passed straight; with `parsed`, the spec parsed from the data first."""
    engine = Engine(policies=[to_policy(i, r) for i, r in enumerate(rules)])
    decide_fields = engine.decide
    parse = parse_action_spec if parsed else _as_given

    def decide(req: Request) -> str:
        spec = parse(
            {
                "type": req.action,
                "resource": {"environment": req.env},
                "parameters": {"amount": req.amount},
            }
        )
        return decide_fields(spec, agent=req.agent, mode="sdk", now=NOW, sdk_default="deny").outcome

    return decide, lambda r: r


def _as_given(data: dict[str, Any]) -> dict[str, Any]:
    return data


def cedar_per_call(
    rules: list[GenRule],
) -> tuple[Callable[[Any], str], Callable[[Request], Any]]:
    decide, prepare = cedar_engine(rules)
    return (lambda req: decide(prepare(req))), lambda r: r


def access_rule_engine(
    rules: list[GenRule],
) -> tuple[Callable[[Any], str], Callable[[Request], Any]]:
    """Proxy mode with unconditioned access rules only (most-specific-wins semantics)."""
    engine = Engine(
        access_rules=[AccessRule(r.agent, "github", r.pattern, r.effect) for r in rules]
    )  # type: ignore[arg-type]
    contexts: dict[str, EvaluationContext] = {}

    def prepare(req: Request) -> tuple[ActionSpec, EvaluationContext]:
        spec = parse_action_spec({"type": req.action, "parameters": {"amount": req.amount}})
        ctx = contexts.get(req.agent)
        if ctx is None:
            ctx = contexts[req.agent] = EvaluationContext(
                agent=req.agent, mode="proxy", now=NOW, connector="github"
            )
        return spec, ctx

    evaluate = engine.evaluate
    return (lambda prepared: evaluate(*prepared).outcome), prepare


# -- cedarpy -----------------------------------------------------------------------------


def cedar_engine(rules: list[GenRule]) -> tuple[Callable[[Any], str], Callable[[Request], Any]]:
    import cedarpy

    texts = []
    for rule in rules:
        principal = "principal" if rule.agent == "*" else f'principal == Agent::"{rule.agent}"'
        conds = []
        if rule.pattern != "*":
            op = "like" if "*" in rule.pattern else "=="
            conds.append(f'context.action {op} "{rule.pattern}"')
        if rule.min_amount is not None:
            conds.append(f"context.amount > {rule.min_amount}")
        if rule.env is not None:
            conds.append(f'context.env == "{rule.env}"')
        effect = "forbid" if rule.effect == "deny" else "permit"
        when = f" when {{ {' && '.join(conds)} }}" if conds else ""
        texts.append(f'{effect}({principal}, action == Action::"call", resource){when};')
    policies = cedarpy.PolicySet.from_str("\n".join(texts))
    entities = cedarpy.Entities.from_json_str("[]")

    def prepare(req: Request) -> dict[str, Any]:
        return {
            "principal": f'Agent::"{req.agent}"',
            "action": 'Action::"call"',
            "resource": 'Resource::"api"',
            "context": {"action": req.action, "amount": req.amount, "env": req.env},
        }

    def decide(request: dict[str, Any]) -> str:
        result = cedarpy.is_authorized(request, policies, entities)
        return "allow" if result.decision == cedarpy.Decision.Allow else "deny"

    return decide, prepare


# -- pycasbin ----------------------------------------------------------------------------

CASBIN_MODEL = """
[request_definition]
r = sub, act, env, amount

[policy_definition]
p = sub, act, env, min_amount, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = {matcher}
"""
CASBIN_MATCHER = (
    '(p.sub == "*" || r.sub == p.sub) && keyMatch(r.act, p.act)'
    ' && (p.env == "*" || r.env == p.env) && amountGt(r.amount, p.min_amount)'
)


def casbin_engine(rules: list[GenRule]) -> tuple[Callable[[Any], str], Callable[[Request], Any]]:
    import logging

    import casbin

    logging.getLogger("casbin").setLevel(logging.WARNING)
    model = casbin.model.Model()
    model.load_model_from_text(CASBIN_MODEL.format(matcher=CASBIN_MATCHER))
    enforcer = casbin.Enforcer(model)
    enforcer.add_function("amountGt", lambda amount, bound: int(amount) > int(bound))
    enforcer.add_policies(
        [
            [
                r.agent,
                r.pattern,
                r.env or "*",
                str(-1 if r.min_amount is None else r.min_amount),
                r.effect,
            ]
            for r in rules
        ]
    )

    def prepare(req: Request) -> tuple[str, str, str, int]:
        return (req.agent, req.action, req.env, req.amount)

    def decide(request: tuple[str, str, str, int]) -> str:
        return "allow" if enforcer.enforce(*request) else "deny"

    return decide, prepare


# -- measurement -------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    engine: str
    rules: int
    per_second: float
    p50_us: float
    p99_us: float
    build_ms: float
    calls: int
    cold_us: float | None = None
    rates: tuple[float, ...] = ()  # decisions/s in each round, in the order they ran


def measure(
    decide: Callable[[Any], str], prepared: Sequence[Any], budget_s: float, max_calls: int
) -> tuple[float, float, float, int]:
    latencies: list[int] = []
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + budget_s
    index = 0
    total = len(prepared)
    started = clock()
    while index < max_calls:
        item = prepared[index % total]
        t0 = clock()
        decide(item)
        latencies.append(clock() - t0)
        index += 1
        if index % 64 == 0 and time.perf_counter() > deadline:
            break
    elapsed = (clock() - started) / 1e9
    latencies.sort()
    p50 = latencies[len(latencies) // 2] / 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000
    return index / elapsed, p50, p99, index


def cross_check(
    name: str,
    decide: Callable[[Any], str],
    prepare: Callable[[Request], Any],
    reference: Callable[[Request], str],
    sample: list[Request],
) -> None:
    for req in sample:
        expected, got = reference(req), decide(prepare(req))
        if expected != got:
            raise SystemExit(
                f"{name} disagrees with the naive engine on {req}: {got} != {expected}"
            )


def run(
    sizes: list[int],
    budget: float,
    check: int,
    seed: int,
    deny_share: float,
    per_call: bool = False,
    rounds: int = 1,
) -> list[Row]:
    rows: list[Row] = []
    builders: list[
        tuple[
            str,
            Callable[[list[GenRule]], tuple[Callable[[Any], str], Callable[[Request], Any]]],
            bool,
        ]
    ] = [
        ("agentfirewall", agentfirewall_engine, True),
        ("agentfirewall access rules", access_rule_engine, False),
        ("naive Python loop", lambda rules: (naive_engine(rules), lambda r: r), True),
        ("cedarpy", cedar_engine, True),
        ("pycasbin", casbin_engine, True),
    ]
    if per_call:  # every engine gets the raw request and builds its input inside the timing
        builders = [
            ("agentfirewall", agentfirewall_decide, True),
            (
                "agentfirewall, spec parsed, then decide",
                lambda rules: agentfirewall_decide(rules, parsed=True),
                True,
            ),
            ("agentfirewall, spec + context + evaluate", agentfirewall_per_call, True),
            (
                "agentfirewall, model-validated spec (before)",
                lambda rules: agentfirewall_per_call(rules, ActionSpec.model_validate),
                True,
            ),
            ("indexed reference", lambda rules: (indexed_reference(rules), lambda r: r), True),
            ("cedarpy", cedar_per_call, True),
        ]
    for size in sizes:
        rng = random.Random(seed + size)
        rules = generate(size, rng, deny_share)
        requests = requests_for(rules, 2000, rng)
        reference = naive_engine(rules)
        allow_share = sum(reference(r) == "allow" for r in requests[:500]) / 5
        print(
            f"\n{size:,} rules: {allow_share:.0f}% of the sampled requests are allowed", flush=True
        )
        built = []
        for name, build, checked in builders:
            started = time.perf_counter()
            decide, prepare = build(rules)
            build_ms = (time.perf_counter() - started) * 1000
            if checked:
                cross_check(name, decide, prepare, reference, requests[:check])
            prepared = [prepare(r) for r in requests]
            gc.collect()
            gc.freeze()  # the engines' objects are long-lived: keep them out of GC passes
            cold_us = None
            if name.startswith("agentfirewall"):
                # first sight of each (agent, action, environment) builds its plan: time
                # that pass apart, then measure the steady state over the same requests
                first = time.perf_counter()
                for item in prepared:
                    decide(item)
                cold_us = (time.perf_counter() - first) / len(prepared) * 1e6
            built.append((name, decide, prepared, build_ms, checked, cold_us))
        gc.collect()
        gc.freeze()  # and what their first passes built
        # the engines take turns, `rounds` times (a change in the machine's load then
        # reaches every engine alike); each keeps its fastest round
        results: dict[str, list[tuple[float, float, float, int]]] = {b[0]: [] for b in built}
        for _ in range(rounds):
            for name, decide, prepared, *_rest in built:
                max_calls = (200_000 if name.startswith("agentfirewall") else 50_000) // rounds
                results[name].append(measure(decide, prepared, budget / rounds, max_calls))
        gc.unfreeze()
        for name, _decide, _prepared, build_ms, checked, cold_us in built:
            per_second, p50, p99, calls = max(results[name])
            rates = tuple(r[0] for r in results[name])
            rows.append(Row(name, size, per_second, p50, p99, build_ms, calls, cold_us, rates))
            print(
                f"  {name:28} {per_second:>12,.0f}/s  p50 {p50:>9.1f} µs  p99 {p99:>9.1f} µs  build {build_ms:>8.1f} ms  ({calls:,} calls{', cross-checked' if checked else ''}{'' if cold_us is None else f', first pass {cold_us:.1f} µs/decision'})",  # noqa: E501
                flush=True,
            )
    return rows


def print_table(rows: list[Row]) -> None:
    print(
        "\n| engine | rules | decisions/s | p50 µs | p99 µs | first pass µs | build ms | x cedarpy (decisions/s) | x pycasbin |"  # noqa: E501
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cedar = next(r for r in rows if r.rules == row.rules and r.engine == "cedarpy")
        casbin = next(r for r in rows if r.rules == row.rules and r.engine == "pycasbin")
        print(
            f"| {row.engine} | {row.rules:,} | {row.per_second:,.0f} | {row.p50_us:.1f} | {row.p99_us:.1f} | {'-' if row.cold_us is None else f'{row.cold_us:.1f}'} "  # noqa: E501
            f"| {row.build_ms:,.1f} | {row.per_second / cedar.per_second:,.1f}x | {row.per_second / casbin.per_second:,.1f}x |"  # noqa: E501
        )
    ours = [r for r in rows if r.engine == "agentfirewall"]
    print("\ntargets: p99 < 20 µs at 1,000 and 10,000 rules; ≥ 100x cedarpy's decisions/s at 1,000")
    for row in ours:
        cedar = next(r for r in rows if r.rules == row.rules and r.engine == "cedarpy")
        ok = row.p99_us < 20 and (row.rules != 1000 or row.per_second >= 100 * cedar.per_second)
        print(
            f"  {row.rules:>6,} rules: p99 {row.p99_us:.1f} µs, {row.per_second / cedar.per_second:,.0f}x cedarpy -> {'ok' if ok else 'MISSED'}"  # noqa: E501
        )
    if len(ours) > 1:
        print(
            f"  p50 spread across sizes: {min(r.p50_us for r in ours):.1f}-{max(r.p50_us for r in ours):.1f} µs (median {statistics.median(r.p50_us for r in ours):.1f})"  # noqa: E501
        )


def print_per_call(rows: list[Row]) -> None:
    print("\n| rules | agentfirewall dec/s | p50 µs | p99 µs | x cedarpy | x indexed reference |")
    print("|---|---|---|---|---|---|")
    for row in (r for r in rows if r.engine == "agentfirewall"):
        same = {r.engine: r for r in rows if r.rules == row.rules}
        cedar, ref = same["cedarpy"], same["indexed reference"]
        each = sorted(ours / theirs for ours, theirs in zip(row.rates, ref.rates, strict=True))
        print(
            f"| {row.rules:,} | {row.per_second:,.0f} | {row.p50_us:.1f} | {row.p99_us:.1f} | "
            f"{row.per_second / cedar.per_second:,.0f}x | {row.per_second / ref.per_second:.2f}x "
            f"(reference {ref.per_second:,.0f}/s, p99 {ref.p99_us:.1f} µs; rounds "
            f"{each[0]:.2f}-{each[-1]:.2f}x, median {statistics.median(each):.2f}x) |"
        )
    shown = {
        "then decide": "spec parsed, then decide",
        "(before)": "spec through the model",
        "evaluate": "context built, evaluate",
    }
    for suffix, label in shown.items():
        for row in (r for r in rows if r.engine.endswith(suffix)):
            same = {r.engine: r for r in rows if r.rules == row.rules}
            ref, cedar = same["indexed reference"], same["cedarpy"]
            print(
                f"  {label}, {row.rules:,} rules: {row.per_second:,.0f}/s, "
                f"p99 {row.p99_us:.1f} µs, {row.per_second / cedar.per_second:,.0f}x cedarpy, "
                f"{row.per_second / ref.per_second:.2f}x reference"
            )
    print("targets (issue 18) at 1,000 rules: >= 250x cedarpy, p99 <= 10 µs, >= 0.7x reference")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="sizes 10..1,000, short budgets")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="rule counts (default 10 100 1000 10000)"
    )
    parser.add_argument(
        "--budget", type=float, help="seconds per engine and size (default 2.0, quick 0.5)"
    )
    parser.add_argument("--check", type=int, default=300, help="requests cross-checked per engine")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--deny-share", type=float, default=0.35, help="share of deny rules (default 0.35)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="the engines take turns this many times, each keeping its fastest (default 5)",
    )
    parser.add_argument(
        "--per-call",
        action="store_true",
        help="each decision from the raw request (spec and context built inside the timing),"
        " beside cedarpy and a plain indexed Python reference",
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10, 100, 1000] if args.quick else [10, 100, 1000, 10_000])
    budget = args.budget or (0.5 if args.quick else 2.0)
    check = min(args.check, 100) if args.quick else args.check
    print(f"python {sys.version.split()[0]}; sizes {sizes}; {budget}s per engine and size")
    started = time.perf_counter()
    rows = run(sizes, budget, check, args.seed, args.deny_share, args.per_call, args.rounds)
    if args.per_call:
        print_per_call(rows)
    else:
        print_table(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
