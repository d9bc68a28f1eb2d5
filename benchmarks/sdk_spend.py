"""`POST /api/v1/actions` covered by a budget, beside the same request no budget covers.

One server (uvicorn, SQLite, as `benchmarks/server.py` runs it), two agents: `Bench` (no
budget covers it: the batched hot path) and `Spender` (a `count` budget with a limit it
never reaches covers it: the reservation is made in the write that records the action).
Both are loaded by the same closed-loop generator, taking turns in short slices so other
work on the machine falls on both alike. The ratio (covered / uncovered) is the number to
read; every acknowledged action is looked up in the database afterwards.

    python benchmarks/sdk_spend.py                # 3 rounds x 8 s per agent, 32 connections
    python benchmarks/sdk_spend.py -d 4 -r 1 -c 16
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import server


def _spender(url: str, data_dir: Path) -> str:
    admin = {"Authorization": f"Bearer {(data_dir / 'admin.token').read_text().strip()}"}
    made = httpx.post(url + "/api/v1/agents", headers=admin,
                      json={"name": "Spender", "rate_limit_per_minute": 1_000_000})  # fmt: skip
    made.raise_for_status()
    budget = {"agents": ["Spender"], "connector": "github", "action": "github.pr.*",
              "measure": "count", "window": "day", "limit": 1e12}  # fmt: skip
    httpx.put(url + "/api/v1/budgets/bench", headers=admin, json=budget).raise_for_status()
    key: str = made.json()["api_key"]
    return key


def _counted(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        actions = conn.execute("SELECT count(*) FROM action_requests").fetchone()[0]
        reserved = conn.execute("SELECT count(*) FROM budget_usage").fetchone()[0]
    finally:
        conn.close()
    return int(actions), int(reserved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--duration", type=float, default=8.0, help="seconds per agent")
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("--slices", type=int, default=8)
    args = parser.parse_args()
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        proc, url, bench_key, db = server.start_ours(tmp, "FULL")
        try:
            spender_key = _spender(url, tmp / "tf")
            path = "/api/v1/actions"
            targets = [(url, path, bench_key), (url, path, spender_key)]
            acked = 0
            for _ in range(args.rounds):
                plain, covered = server._slices(targets, args)
                rows.append((plain, covered))
                acked += len(plain["acked"]) + len(covered["acked"])
            covered_acked = sum(len(c["acked"]) for _, c in rows)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        actions, reserved = _counted(db)
    print(f"{'round':<6} {'uncovered req/s':>16} {'covered req/s':>14} {'ratio':>6} "
          f"{'p50 ms (u/c)':>14} {'p99 ms (u/c)':>14}")  # fmt: skip
    ratios = []
    for index, (plain, covered) in enumerate(rows, 1):
        ratio = covered["rps"] / plain["rps"]
        ratios.append(ratio)
        print(f"{index:<6} {plain['rps']:>16,.0f} {covered['rps']:>14,.0f} {ratio:>6.2f} "
              f"{plain['p50_ms']:>6.1f}/{covered['p50_ms']:<7.1f} "
              f"{plain['p99_ms']:>6.1f}/{covered['p99_ms']:<7.1f}")  # fmt: skip
    print(f"median ratio covered/uncovered: {statistics.median(ratios):.2f}")
    print(f"acknowledged {acked}, recorded {actions}; covered acknowledged {covered_acked}, "
          f"reservations {reserved}")  # fmt: skip
    if actions < acked or reserved < covered_acked:
        sys.exit("an acknowledged action or reservation is missing")


if __name__ == "__main__":
    main()
