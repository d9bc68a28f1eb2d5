"""Creating held approvals through the control plane: one call each vs the gateway's batches.

A real server (subprocess, SQLite, default durability) and, in this process, the gateway's
own client (`HttpControl`): N approvals asked for at once, as N held requests would. The
baseline in the same run is the single route (`POST /v1/gateway/approvals`, one call per
approval, 32 in flight); then the batched path (`HttpControl.create_approval`, which sends
the approvals of one loop iteration in one `POST /v1/gateway/approvals/batch`). Rounds
alternate the two; every created approval is counted back from the server.

    python benchmarks/approvals.py              # 3 rounds x 2,000 approvals
    python benchmarks/approvals.py -n 10000 -r 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentfirewall.actions import parse_action_spec
from agentfirewall_proxy.control import HttpControl
from tests.livesrv import LiveServer


def payload(i: int) -> dict[str, Any]:
    spec = parse_action_spec({"type": "github.pr.merge", "parameters": {"pull_number": i}})
    return {
        "agent": "Bench",
        "connector": "github",
        "action_spec": spec.to_dict(),
        "action_hash": spec.action_hash,
        "risk_score": 50,
        "reason": "held by a benchmark",
        "request": {"method": "PUT", "host": "api.github.com", "path": f"/pulls/{i}/merge"},
        "timeout_seconds": 3600,
    }


async def single(server: LiveServer, n: int, start: int, inflight: int) -> float:
    control = HttpControl(server.url, server.gateway_token)
    gate = asyncio.Semaphore(inflight)
    bodies = [payload(start + i) for i in range(n)]  # what the gateway has at hand

    async def one(body: dict[str, Any]) -> None:
        async with gate:
            r = await control._call("POST", "/v1/gateway/approvals", json_body=body)
            assert r.json()["status"] == "pending"

    began = time.perf_counter()
    await asyncio.gather(*(one(body) for body in bodies))
    took = time.perf_counter() - began
    await control.aclose()
    return n / took


async def batched(server: LiveServer, n: int, start: int) -> float:
    control = HttpControl(server.url, server.gateway_token)
    bodies = [payload(start + i) for i in range(n)]
    began = time.perf_counter()
    rows = await asyncio.gather(*(control.create_approval(body) for body in bodies))
    took = time.perf_counter() - began
    assert all(r["status"] == "pending" for r in rows)
    await control.aclose()
    return n / took


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=2000, help="approvals per case")
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=32, help="single route: calls at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer.start(Path(tmp) / "tf")
        try:
            rates: dict[str, list[float]] = {"single": [], "batched": []}
            per_cpu: dict[str, list[float]] = {"single": [], "batched": []}
            assert server.process is not None
            pid = server.process.pid
            made = 0
            for round_no in range(args.rounds):
                order = ["single", "batched"] if round_no % 2 == 0 else ["batched", "single"]
                for case in order:
                    cpu = cpu_seconds(pid)
                    if case == "single":
                        rate = asyncio.run(single(server, args.count, made, args.inflight))
                    else:
                        rate = asyncio.run(batched(server, args.count, made))
                    made += args.count
                    rates[case].append(rate)
                    per_cpu[case].append(args.count / max(cpu_seconds(pid) - cpu, 0.01))
                print(
                    f"round {round_no + 1}: one call each {rates['single'][-1]:,.0f}/s, "
                    f"batched {rates['batched'][-1]:,.0f}/s "
                    f"({rates['batched'][-1] / rates['single'][-1]:.1f}x); per server "
                    f"CPU-second: {per_cpu['single'][-1]:,.0f} vs {per_cpu['batched'][-1]:,.0f}",
                    flush=True,
                )
            listed = server.admin("GET", "/v1/approvals?status=pending").json()
            pending = len(next(v for v in listed.values() if isinstance(v, list)))
        finally:
            server.stop()
    ratio = statistics.median(b / s for b, s in zip(rates["batched"], rates["single"], strict=True))
    print(
        f"\n{args.count:,} approvals per case, {args.rounds} rounds: one call each "
        f"{statistics.median(rates['single']):,.0f}/s, batched "
        f"{statistics.median(rates['batched']):,.0f}/s (median ratio {ratio:.1f}x; target "
        f">= 1,000/s); per server CPU-second {statistics.median(per_cpu['single']):,.0f} vs "
        f"{statistics.median(per_cpu['batched']):,.0f}; {made:,} created, "
        f"server lists {pending:,} pending"
    )


if __name__ == "__main__":
    main()
