"""Per-call decision cost, split into its parts, this tree beside a baseline tree.

    python benchmarks/engine_percall.py [--baseline-tree DIR] [--rounds 5] [--rules 1000]

What a caller pays per decision (issue 18): parse the action spec from a dict
(``parse_action_spec``), build the ``EvaluationContext``, ``Engine.evaluate`` (``full`` is
the three); ``decide`` is the whole call through ``Engine.decide`` (the spec parsed, the
context's fields passed straight; a tree without it times ``full`` again); ``data`` is the
whole call with the JSON data itself passed to ``Engine.decide`` (which checks it as
``parse_action_spec`` does, and builds no spec when it answers from a remembered route; a
tree without it times ``decide`` again); and, in the same process, the plain indexed
reference of ``benchmarks/engine.py`` over the same requests.
Each round runs one fresh process per tree, alternating (so a change in the machine's load
hits both alike), and times each part as CPU time (``time.process_time``: time spent
waiting for the other tenants of a shared machine is not counted), the best of 25 passes
over 2,000 requests; ``unseen`` is the whole call (``decide``) over requests never decided
before (after 5 fresh draws of 2,000 that fill the plans, the median of 5 more, each timed
once: nothing repeats for the memo to exploit; through ``data``), ``no_memo`` the whole
call (``data``) with the decision memos emptied before each call (every decision built).
Printed: per-part medians over the rounds, and the ratios that matter, ``full /
reference``, ``decide / reference``, ``data / reference``, ``unseen / reference`` and
``baseline / this`` (reference time over ours: higher is faster).

``--baseline-tree`` is a checkout of an older commit, e.g.
``git archive 636d064 agentfirewall | tar -x -C /tmp/base`` (only its ``agentfirewall``
package is used; the request generator and the reference come from this tree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTS = (
    "parse", "context", "evaluate", "full", "decide", "data", "no_memo", "unseen", "reference"
)  # fmt: skip

# Runs in a child process whose sys.path starts with the tree under test.
CHILD = r"""
import gc, json, random, sys, time
import agentfirewall  # the tree under test (cwd): imported before engine.py edits sys.path
from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import Engine, EvaluationContext
sys.path.insert(1, sys.argv[1])  # benchmarks/ of this tree: generator and reference
import engine as bench

rng = random.Random(int(sys.argv[3]))
rules = bench.generate(int(sys.argv[2]), rng, 0.35)
requests = bench.requests_for(rules, 2000, rng)
engine = Engine(policies=[bench.to_policy(i, r) for i, r in enumerate(rules)])
now = bench.NOW
data = [
    {"type": r.action, "resource": {"environment": r.env}, "parameters": {"amount": r.amount}}
    for r in requests
]
ctx_of = lambda r: EvaluationContext(agent=r.agent, mode="sdk", now=now, sdk_default="deny")
pairs = [(parse_action_spec(d), ctx_of(r)) for d, r in zip(data, requests)]
reference = bench.indexed_reference(rules)
evaluate = engine.evaluate


def full(item):
    d, r = item
    spec = parse_action_spec(d)
    ctx = EvaluationContext(agent=r.agent, mode="sdk", now=now, sdk_default="deny")
    return evaluate(spec, ctx).outcome


if hasattr(engine, "decide"):  # the context's fields passed straight (round 5 on)
    decide_fields = engine.decide

    def decide(item):
        d, r = item
        spec = parse_action_spec(d)
        return decide_fields(spec, agent=r.agent, mode="sdk", now=now, sdk_default="deny").outcome
else:  # an older tree: its only path
    decide = full

try:  # JSON data passed to `Engine.decide` (a spec built only when needed): 2026-12-05 on
    from agentfirewall.actions import spec_fields  # noqa: F401

    def data_call(item):
        d, r = item
        return decide_fields(d, agent=r.agent, mode="sdk", now=now, sdk_default="deny").outcome
except ImportError:  # an older tree: the spec parsed first
    data_call = decide


items = list(zip(data, requests))
for item in items:  # first sight builds the plans: not part of the steady state
    expected = reference(item[1])
    if full(item) != expected or decide(item) != expected or data_call(item) != expected:
        raise SystemExit(f"disagrees with the reference on {item[1]}")
gc.collect()
gc.freeze()


def best(fn, xs):
    times = []
    for _ in range(25):
        started = time.process_time()
        for x in xs:
            fn(x)
        times.append((time.process_time() - started) / len(xs) * 1e6)
    return min(times)


def unseen():
    # requests never decided before, each decided once (no repetition for the memo to
    # exploit): fresh draws from the same generator. The first 5 draws only fill the plans
    # (one per agent, action and environment: a bounded set, compiled once, as in a
    # server); the next 5 are timed in one pass each, and the median is kept
    seed = int(sys.argv[3]) * 1000
    passes = []
    for draw in range(10):
        fresh = bench.requests_for(rules, 2000, random.Random(seed + draw))
        xs = [({"type": r.action, "resource": {"environment": r.env},
                "parameters": {"amount": r.amount}}, r) for r in fresh]
        started = time.process_time()
        for x in xs:
            data_call(x)
        if draw >= 5:
            passes.append((time.process_time() - started) / len(xs) * 1e6)
    return sorted(passes)[len(passes) // 2]


routes = getattr(engine, "_routes", {})  # what decide settled per set of fields (newer trees)


def no_memo(item):
    engine._decisions.clear()  # every decision built afresh (the clears: ~60 ns)
    routes.clear()
    return data_call(item)


print(json.dumps({
    "package": agentfirewall.__file__,
    "parse": best(parse_action_spec, data),
    "context": best(ctx_of, requests),
    "evaluate": best(lambda p: evaluate(p[0], p[1]), pairs),
    "full": best(full, items),
    "decide": best(decide, items),
    "data": best(data_call, items),
    "no_memo": best(no_memo, items),
    "unseen": unseen(),
    "reference": best(reference, requests),
}))
"""


def measure(tree: Path, rules: int, seed: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(HERE), str(rules), str(seed)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr.strip() or done.stdout.strip()}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    package = Path(result.pop("package"))
    if not package.is_relative_to(tree):
        raise SystemExit(f"measured {package}, not the tree {tree}")
    return {part: float(result[part]) for part in PARTS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-tree", metavar="DIR", help="an older checkout to compare")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    trees = {"this": ROOT}
    if args.baseline_tree:
        trees = {"baseline": Path(args.baseline_tree).resolve(), **trees}
    seed = args.seed + args.rules  # the same rule set and requests as engine.py
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for round_ in range(1, args.rounds + 1):
        for name, tree in trees.items():
            runs[name].append(measure(tree, args.rules, seed))
            shown = "  ".join(f"{part} {runs[name][-1][part]:.2f}" for part in PARTS)
            print(f"round {round_} {name:8} µs: {shown}", flush=True)
    print(f"\n{args.rules:,} rules, medians of {args.rounds} rounds (CPU µs per call, best of 25)")
    print(
        "| tree | parse | context | evaluate | full per call | decide per call"
        " | data per call | no memo | unseen | reference | full / reference | decide / reference"
        " | data / reference | unseen / reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    medians = {
        name: {part: statistics.median(r[part] for r in rows) for part in PARTS}
        for name, rows in runs.items()
    }
    for name, m in medians.items():
        ratio = statistics.median(r["reference"] / r["full"] for r in runs[name])
        straight = statistics.median(r["reference"] / r["decide"] for r in runs[name])
        raw = statistics.median(r["reference"] / r["data"] for r in runs[name])
        fresh = statistics.median(r["reference"] / r["unseen"] for r in runs[name])
        cells = " | ".join(f"{m[part]:.2f}" for part in PARTS)
        print(f"| {name} | {cells} | {ratio:.2f}x | {straight:.2f}x | {raw:.2f}x | {fresh:.2f}x |")
    if "baseline" in medians:
        base, this = medians["baseline"], medians["this"]
        speedups = ", ".join(f"{part} {base[part] / this[part]:.2f}x" for part in PARTS[:8])
        print(f"\nbaseline / this (higher is faster): {speedups}")
        paired = ", ".join(
            f"{part} {statistics.median(b[part] / t[part] for b, t in zip(runs['baseline'], runs['this'], strict=True)):.2f}x"  # noqa: E501
            for part in PARTS[:8]
        )
        print(f"the same, median of each round's ratio (the two runs of one round): {paired}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
