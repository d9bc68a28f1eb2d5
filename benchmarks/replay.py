"""Replay benchmark: recorded decisions re-evaluated per second on one core, and the size of
a stored decision input.

Generates recorded gateway/SDK decisions (stripe, github and slack actions from 50 agents,
amounts, branches, message text that is withheld), stores each input as the server does
(``record_input`` -> compact JSON), then times, single-threaded:

CPU time of this process is measured (``time.process_time``), so the figures are per core
even on a loaded machine.

- ``restore``: JSON text -> ``(spec, ctx)`` (``json.loads`` + ``restore_input``), what the
  server does once per record read from the store;
- ``replay``: ``agentfirewall.policy.replay.replay`` over restored records, the live and
  the candidate configuration (two evaluations per record, the diff bookkeeping);
- ``baseline``: one plain ``Engine.evaluate`` per record under the live configuration, in
  the same run (the ratio is what replaying costs beyond deciding once).

Before timing, replay under the live configuration on both sides is checked to change
nothing (replay equals live).

    python benchmarks/replay.py                 # 200,000 records
    python benchmarks/replay.py --records 50000
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, load_pack, load_policy
from agentfirewall.policy.record import record_input, restore_input
from agentfirewall.policy.replay import Recorded, replay

ACTIONS = [
    ("stripe", "stripe.transfer.create", "high"),
    ("stripe", "stripe.customer.list", "low"),
    ("stripe", "stripe.refund.create", "high"),
    ("github", "github.pr.merge", "high"),
    ("github", "github.pr.get", "low"),
    ("github", "github.issue.create", "medium"),
    ("slack", "slack.message.send", "medium"),
]
CANDIDATE = """\
name: no-big-transfers
scope: {action_types: ["stripe.*", "github.*"]}
rules:
  - name: big
    conditions:
      all:
        - {field: action_spec.parameters.amount, operator: gt, value: 100000}
    decision: deny
  - name: protect-main
    conditions:
      all:
        - {field: action_spec.parameters.base, operator: equals, value: main}
    decision: require_approval
"""


def generate(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """(agent, stored JSON input) pairs."""
    start = datetime(2026, 11, 20, tzinfo=UTC)
    out = []
    for _ in range(n):
        connector, action, risk = rng.choice(ACTIONS)
        params: dict[str, object] = {}
        if connector == "stripe":
            params = {"amount": rng.randrange(100, 500_000), "currency": "usd",
                      "destination": f"acct_{rng.randrange(50)}"}  # fmt: skip
        elif connector == "github":
            params = {
                "base": rng.choice(["main", "dev", "feature/x"]),
                "number": rng.randrange(999),
            }
        else:
            params = {"channel": f"C{rng.randrange(20)}", "text": "hello " * rng.randrange(1, 40)}
        spec = parse_action_spec({"type": action, "resource": {"provider": connector,
                                  "target": f"acme/repo{rng.randrange(5)}"},
                                  "parameters": params})  # fmt: skip
        agent = f"agent-{rng.randrange(50)}"
        mode = "proxy" if rng.random() < 0.8 else "sdk"
        ctx = EvaluationContext(
            agent=agent, mode=mode, connector=connector, risk=risk if mode == "proxy" else None,
            now=start + timedelta(seconds=rng.randrange(7 * 86400)),
        )  # fmt: skip
        out.append((agent, json.dumps(record_input(spec, ctx), separators=(",", ":"))))
    return out


def live_rules() -> list[AccessRule]:
    return [rule for i in range(50) for rule in (
        AccessRule(f"agent-{i}", "stripe", "stripe.*", "allow"),
        AccessRule(f"agent-{i}", "github", "github.pr.*", "allow"),
        AccessRule(f"agent-{i}", "slack", "slack.*", "allow"))]  # fmt: skip


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def timed(fn: object, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        fn()  # type: ignore[operator]
        runs.append(time.process_time() - started)
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stored = generate(args.records, random.Random(20))
    sizes = [len(text.encode()) for _, text in stored]
    live = Engine(access_rules=live_rules(), policies=[load_pack("slack-safe-defaults")])
    policies = [load_pack("slack-safe-defaults"), load_policy(CANDIDATE)]
    candidate = Engine(access_rules=live_rules(), policies=policies)

    restored: list[Recorded] = []

    def restore() -> None:
        restored.clear()
        for i, (agent, text) in enumerate(stored):
            data = json.loads(text)
            spec, ctx = restore_input(data, agent)
            restored.append(Recorded(str(i), ctx.mode, spec, ctx, partial="w" in data))

    t_restore = timed(restore, args.repeat)
    same = replay(restored, live, live)
    assert same.changes == {}, same.changes  # replay equals live
    report = replay(restored, live, candidate)
    t_replay = timed(lambda: replay(restored, live, candidate), args.repeat)

    def baseline() -> None:
        for item in restored:
            live.evaluate(item.spec, item.ctx)

    t_base = timed(baseline, args.repeat)
    n = len(restored)
    print(f"records: {n:,}  changes under the candidate: {dict(report.changes)}")
    print(f"stored input bytes: mean {statistics.mean(sizes):.0f}, "
          f"p50 {statistics.median(sizes):.0f}, max {max(sizes)}; "
          f"{report.partial:,} records partial (text withheld)")  # fmt: skip
    print(f"baseline: one live evaluation per record   {rate(n, t_base)}")
    ratio = t_replay / t_base
    print(f"replay:   live + candidate, diff           {rate(n, t_replay)} records "
          f"({rate(2 * n, t_replay)} evaluations; {ratio:.2f}x baseline time)")  # fmt: skip
    print(f"restore:  JSON text -> (spec, ctx)         {rate(n, t_restore)}")
    print(f"end to end from stored text: {rate(n, t_restore + t_replay)} records")


if __name__ == "__main__":
    main()
