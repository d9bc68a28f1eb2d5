"""Shadow benchmark: what judging decisions under a shadow configuration costs the control
plane, per core, beside one live evaluation measured in the same run.

The records are ``benchmarks/replay.py``'s (Stripe, GitHub and Slack actions from 50 agents,
stored as the server stores them); the shadow configuration is its candidate policy. Timed,
single-threaded, in CPU time of this process (``time.process_time``):

- ``baseline``: one live ``Engine.evaluate`` per record (restored beforehand);
- ``gateway``: ``shadow.judge_traffic`` over batches of 500 traffic rows, as
  ``POST /api/v1/gateway/traffic`` runs it: parse each stored input, evaluate it under the
  live and the shadow configuration, set the columns, count the metric;
- ``sdk``: ``shadow.judge_action`` per action (one shadow evaluation beside the live one
  the route has already made) and the metric.

    python benchmarks/shadow.py                  # 100,000 records
    python benchmarks/shadow.py --records 20000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay import CANDIDATE, generate, live_rules, rate, timed

from agentfirewall.policy import Engine, load_pack, load_policy
from agentfirewall.policy.record import restore_input
from agentfirewall_server.metrics import Metrics
from agentfirewall_server.shadow import (
    ShadowConfig,
    count,
    judge_action,
    judge_traffic,
    shadow_engine,
)

_BATCH = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stored = generate(args.records, random.Random(20))
    pack = load_pack("slack-safe-defaults")
    live = Engine(access_rules=live_rules(), policies=[pack])
    shadow = ShadowConfig(
        shadow_engine([(pack.name, True, pack)], [load_policy(CANDIDATE)], live_rules(), [], []),
        [],
        [],
    )
    restored = [restore_input(json.loads(text), agent) for agent, text in stored]
    metrics = Metrics()

    def baseline() -> None:
        for spec, ctx in restored:
            live.evaluate(spec, ctx)

    def gateway() -> None:
        for start in range(0, len(stored), _BATCH):
            rows = [{"agent": a, "decision_input": t} for a, t in stored[start : start + _BATCH]]
            judge_traffic(live, shadow, rows)

    decided = [(spec, ctx, live.evaluate(spec, ctx)) for spec, ctx in restored]

    def sdk() -> None:
        for spec, ctx, decision in decided:
            judged = judge_action(shadow, spec, ctx, decision)
            if judged is not None:
                count(metrics, judged, "sdk")

    t_base = timed(baseline, args.repeat)
    t_gateway = timed(gateway, args.repeat)
    t_sdk = timed(sdk, args.repeat)
    rows = [{"agent": a, "decision_input": t} for a, t in stored]
    judge_traffic(live, shadow, rows)
    diverged = sum(1 for r in rows if r["shadow_diverged"])
    n = len(stored)
    print(f"records: {n:,}  diverged under the shadow: {diverged:,}")
    print(f"baseline: one live evaluation per record    {rate(n, t_base)}")
    print(f"gateway:  judge_traffic (parse, live+shadow) {rate(n, t_gateway)} "
          f"({t_gateway / t_base:.2f}x baseline time)")  # fmt: skip
    print(f"sdk:      judge_action (one more evaluation) {rate(n, t_sdk)} "
          f"({t_sdk / t_base:.2f}x baseline time)")  # fmt: skip


if __name__ == "__main__":
    main()
