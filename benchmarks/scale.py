"""Scale-out on PostgreSQL: 1 vs 2 replicas, kill-switch propagation, the shared rate limit.

Needs a PostgreSQL server (``--database-url`` or ``$AGENTFIREWALL_TEST_POSTGRES_URL``;
``source .ci/postgres.sh`` starts one); a fresh database is created and dropped.

    python benchmarks/scale.py                       # 3 rounds x 6 s, 32 connections
    python benchmarks/scale.py -d 4 -r 1 --trials 10 --gateways 1,10,50
    python benchmarks/scale.py --quick               # 1 round x 2 s, 5 trials

1. ``POST /api/v1/actions`` on one replica, then spread over two (half the connections
   each, as a round-robin load balancer would), both ``python -m agentfirewall_server``
   processes on the one database; rounds alternate the two set-ups in 1 s slices (the
   load generator is ``benchmarks/server.py``'s). Every acknowledged id is then looked up
   in PostgreSQL. On a 2-core machine that also runs PostgreSQL and the load generator,
   a second replica adds little: the figure shows the cost of sharing, not a cluster.
2. Kill-switch propagation to 1, 10 and 50 gateways: each "gateway" is the real gateway's
   control-plane client (``HttpControl``) in its config long-poll loop, half attached to
   each replica (50 full gateway processes would not fit this machine). The switch is set
   on replica B, alternately on and off; latency runs from just before the owner's POST to
   the moment a client holds the new configuration. Gateways on B are the baseline (the
   in-process hub), those on A get it relayed through LISTEN/NOTIFY.
3. The shared rate-limit check: the one upsert per request beside a ``SELECT 1`` on the
   same connection (the round trip alone), then as the route awaits it
   (``SharedRateLimiter.check``, its own async connections), and the in-memory limiter
   SQLite uses; then 32 concurrent checks on 32 agents and on one agent (its row lock
   queues them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from server import _merge, _start, load

from agentfirewall.tokens import generate_signing_key
from agentfirewall_proxy.control import HttpControl


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# --- the cluster ------------------------------------------------------------------------


class Replica:
    def __init__(self, tmp: Path, name: str, env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "agentfirewall_server", "--port", "0",
               "--data-dir", str(tmp / name)]  # fmt: skip
        self.proc, port = _start(cmd, tmp / f"{name}.log", env)
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = tmp / name

    def token(self, name: str) -> str:
        return (self.data_dir / name).read_text().strip()

    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token('admin.token')}"}
        return httpx.request(method, self.url + path, json=json, headers=headers, timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def create_database(base: str) -> str:
    name = f"af_bench_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base.rpartition('/')[0]}/{name}"


def drop_database(base: str, url: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rpartition('/')[2]} WITH (FORCE)")


# --- 1. throughput ----------------------------------------------------------------------


async def _spread(urls: list[str], key: str, seconds: float, connections: int) -> dict[str, Any]:
    """`connections` split evenly over `urls`, measured as one load."""
    share = max(1, connections // len(urls))
    parts = await asyncio.gather(*(load(u, "/api/v1/actions", key, seconds, share) for u in urls))
    elapsed = max(p["elapsed"] for p in parts)
    merged = {"latencies": [x for p in parts for x in p["latencies"]], "elapsed": elapsed,
              "acked": [a for p in parts for a in p["acked"]]}  # fmt: skip
    return merged


def throughput(a: Replica, b: Replica, key: str, args: argparse.Namespace, url: str) -> None:
    import uvloop

    print(f"\n1. POST /api/v1/actions, {args.connections} connections, {args.duration} s a round")
    ratios: list[float] = []
    acked: list[str] = []
    for round_no in range(args.rounds):
        one: list[dict[str, Any]] = []
        two: list[dict[str, Any]] = []
        for _ in range(args.slices):
            seconds = args.duration / args.slices
            one.append(uvloop.run(_spread([a.url], key, seconds, args.connections)))
            two.append(uvloop.run(_spread([a.url, b.url], key, seconds, args.connections)))
        o, t = _merge(one), _merge(two)
        acked += o["acked"] + t["acked"]
        ratios.append(t["rps"] / o["rps"])
        print(f"   round {round_no + 1}: 1 replica {o['rps']:,.0f} req/s (p50 {o['p50_ms']:.1f} "
              f"ms, p99 {o['p99_ms']:.1f} ms) | 2 replicas {t['rps']:,.0f} req/s (p50 "
              f"{t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms) | ratio "
              f"{t['rps'] / o['rps']:.2f}", flush=True)  # fmt: skip
    with psycopg.connect(url) as conn:
        have = {r[0] for r in conn.execute("SELECT id FROM action_requests")}
    lost = sum(1 for i in acked if i not in have)
    print(f"   median ratio 2/1 replicas: {statistics.median(ratios):.2f}; "
          f"acknowledged {len(acked):,}, missing from the database: {lost}")  # fmt: skip


# --- 2. kill-switch propagation ---------------------------------------------------------


async def _follow(control: HttpControl, want: list[bool], seen: dict[int, float], me: int) -> None:
    """A gateway's config loop: record when the kill switch state it waits for arrives."""
    version: int | None = None
    while True:
        try:
            snapshot = await control.fetch_config(version, 30)
        except Exception:
            await asyncio.sleep(0.2)
            continue
        if snapshot is None:
            continue
        version = int(snapshot["version"])
        if bool(snapshot["kill_switches"]) == want[0] and me not in seen:
            seen[me] = time.perf_counter()


async def propagation(a: Replica, b: Replica, count: int, trials: int) -> dict[str, list[float]]:
    token = a.token("gateway.token")
    controls = [HttpControl(a.url if i % 2 else b.url, token) for i in range(count)]
    want = [False]
    seen: dict[int, float] = {}
    tasks = [asyncio.ensure_future(_follow(c, want, seen, i)) for i, c in enumerate(controls)]
    auth = {"Authorization": f"Bearer {a.token('admin.token')}"}
    admin = httpx.AsyncClient(base_url=b.url, timeout=30, headers=auth)
    out: dict[str, list[float]] = {"relayed": [], "local": []}
    try:
        while len(seen) < count:  # every client has its first config (switch off)
            await asyncio.sleep(0.05)
        for trial in range(trials * 2):
            want[0] = trial % 2 == 0
            seen.clear()
            await asyncio.sleep(0.3)  # every long-poll is parked again
            started = time.perf_counter()
            answer = await admin.post("/api/v1/kill-switch", json={"active": want[0]})
            answer.raise_for_status()
            deadline = time.monotonic() + 10
            while len(seen) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            if want[0]:  # measure switching on; switching off only resets
                for i in range(count):
                    late = seen.get(i, started + 10.0) - started
                    out["relayed" if i % 2 else "local"].append(late)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for control in controls:
            await control.aclose()
        await admin.aclose()
    return out


def kill_switch(a: Replica, b: Replica, counts: list[int], trials: int) -> None:
    import uvloop

    print(f"\n2. kill switch set on replica B, {trials} trials: latency to every gateway client")
    for count in counts:
        got = uvloop.run(propagation(a, b, count, trials))
        every = got["relayed"] + got["local"]
        line = f"   {count:>3} gateways: p50 {_pct(every, 0.5) * 1000:.1f} ms, " \
               f"p99 {_pct(every, 0.99) * 1000:.1f} ms, max {max(every) * 1000:.1f} ms"  # fmt: skip
        for label in ("local", "relayed"):
            if got[label]:
                values, where = got[label], "B" if label == "local" else "A"
                p50, p99 = _pct(values, 0.5) * 1000, _pct(values, 0.99) * 1000
                line += f" | {label} (on {where}) p50 {p50:.1f} / p99 {p99:.1f} ms"
        print(line, flush=True)


# --- 3. the shared rate-limit check -----------------------------------------------------


async def _limit_costs(url: str, n: int) -> None:
    from agentfirewall_server.ratelimit import CHECK_SQL, RateLimiter, SharedRateLimiter
    from agentfirewall_server.store.db import Database

    db = Database(url)
    shared = SharedRateLimiter(db)
    memory = RateLimiter()

    async def timed(fn: Any) -> list[float]:
        out = []
        for _ in range(n):
            started = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - started)
        return out

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    params = {"key": "agt_raw", "limit": 1e6, "rate": 1e6 / 60}

    async def select_one() -> None:
        await conn.execute("SELECT 1")

    async def upsert() -> None:
        await conn.execute(CHECK_SQL, params)

    async def in_memory() -> None:
        memory.check("agt_bench", 1_000_000, time.monotonic())

    try:
        await timed(select_one)  # warm up (psycopg prepares a statement after 5 uses)
        await timed(upsert)
        base = await timed(select_one)
        raw = await timed(upsert)
        check = await timed(lambda: shared.check("agt_bench", 1_000_000))
        mem = await timed(in_memory)
        print(f"\n3. rate-limit check, {n} sequential calls each")
        for label, values in (
            ("SELECT 1 (baseline)", base),
            ("the upsert alone", raw),
            ("check, as the route", check),
            ("in memory (SQLite)", mem),
        ):
            print(
                f"   {label:<20} p50 {_pct(values, 0.5) * 1e6:8.1f} us, "
                f"p99 {_pct(values, 0.99) * 1e6:8.1f} us"
            )
        print(f"   upsert / SELECT 1: {statistics.median(raw) / statistics.median(base):.2f}")
        for keys in (32, 1):
            started = time.perf_counter()
            total = 0
            while time.perf_counter() - started < 2.0:
                await asyncio.gather(
                    *(shared.check(f"agt_{i % keys}", 1_000_000) for i in range(32))
                )
                total += 32
            rate = total / (time.perf_counter() - started)
            print(f"   32 concurrent checks on {keys:>2} agent(s): {rate:,.0f} checks/s")
    finally:
        await conn.close()
        await shared.aclose()
        db.close()


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("AGENTFIREWALL_TEST_POSTGRES_URL"))
    parser.add_argument("-d", "--duration", type=float, default=6.0)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--gateways", default="1,10,50")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="a short run (nox -s benchmarks)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.slices, args.trials, args.checks = 2.0, 1, 2, 5, 300
    if not args.database_url:
        if args.quick:  # nox -s benchmarks on a machine without PostgreSQL
            print("scale.py: skipped, no PostgreSQL (set AGENTFIREWALL_TEST_POSTGRES_URL)")
            return
        parser.error("give --database-url or set AGENTFIREWALL_TEST_POSTGRES_URL")
    base = args.database_url.replace("postgresql+psycopg://", "postgresql://")
    url = create_database(base)
    env = {**os.environ, "AGENTFIREWALL_DATABASE_URL": url, "AGENTFIREWALL_LOG_LEVEL": "info",
           "SIGNING_KEY_PRIVATE": generate_signing_key().to_pem().decode(),
           "SETTINGS_ENCRYPTION_KEY": secrets.token_hex(32)}  # fmt: skip
    replicas: list[Replica] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_text:
            tmp = Path(tmp_text)
            replicas.append(Replica(tmp, "a", env))
            replicas.append(Replica(tmp, "b", env))
            a, b = replicas
            made = a.admin("POST", "/api/v1/agents",
                           json={"name": "Bench", "rate_limit_per_minute": 1_000_000})  # fmt: skip
            made.raise_for_status()
            key = made.json()["api_key"]
            throughput(a, b, key, args, url)
            counts = [int(c) for c in args.gateways.split(",") if c]
            kill_switch(a, b, counts, args.trials)
            import uvloop

            uvloop.run(_limit_costs(url, args.checks))
            for replica in replicas:
                replica.stop()
            replicas.clear()
    finally:
        for replica in replicas:
            replica.stop()
        drop_database(base, url)


if __name__ == "__main__":
    main()
