"""`POST /api/v1/actions` in process: the event loop's CPU per request, tree against tree.

    python benchmarks/server_inproc.py --tree base=/tmp/base --tree new=. [-n 6400] [-c 32]
                                       [--rounds 3] [--profile cumulative]

Each tree runs in its own subprocess (``PYTHONPATH`` on the tree; e.g. a baseline made with
``git -C /work/main archive <commit> | tar -x -C /tmp/base``), trees alternating round by
round. The subprocess starts the real app (``create_app`` and its lifespan: the SQLite store
with its writer thread, synchronous=FULL, keys, snapshot) on uvloop, creates the agent
`Bench`, warms up, freezes the heap as the server does, and then drives `-c` concurrent
callers through the ASGI app with `-n` requests in all: no sockets, no uvicorn, no load
generator. It reports the event-loop thread's CPU per request (``time.thread_time``),
the process's (loop + writer thread) and the wall time. Without the sockets and the
load generator these figures move far less on a shared machine than `server.py`'s: use
it to see what a change to the handler, the store or the signer costs the loop, then
confirm with `server.py`. ``--profile KEY`` prints cProfile's top functions (one round).
``--calls`` counts the Python and builtin function calls per request (cProfile's count over
the measured requests; one round): it does not depend on the machine's load at all, a
proxy for "less Python per request" where the CPU figures are too noisy to show a few %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "action_spec": {
        "type": "github.pr.merge",
        "resource": {
            "provider": "github",
            "account": "acme",
            "target": "acme/api",
            "environment": "production",
        },
        "parameters": {"pull_number": 42},
    }
}


async def _call(app: Any, path: str, token: str, body: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", b"Bearer " + token.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    return sent


async def _measure(
    requests: int, callers: int, profile: str | None, calls: bool = False
) -> dict[str, float]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tf-bench-inproc-") as tmp:
        return await _measure_in(Path(tmp), requests, callers, profile, calls)


async def _measure_in(
    data_dir: Path, requests: int, callers: int, profile: str | None, calls: bool
) -> dict[str, float]:
    import asyncio
    import gc
    import time

    from agentfirewall_server.app import create_app
    from agentfirewall_server.settings import Settings

    app = create_app(Settings(data_dir=data_dir))
    body = json.dumps(SPEC).encode()
    async with app.router.lifespan_context(app):
        admin = (data_dir / "admin.token").read_text().strip()
        agent = json.dumps({"name": "Bench", "rate_limit_per_minute": 1_000_000}).encode()
        sent = await _call(app, "/api/v1/agents", admin, agent)
        key = json.loads(sent[1]["body"])["api_key"]

        async def caller(count: int) -> None:
            for _ in range(count):
                answer = await _call(app, "/api/v1/actions", key, body)
                if answer[0]["status"] != 200:
                    raise RuntimeError(f"unexpected answer: {answer}")

        await asyncio.gather(*(caller(max(1, 400 // callers)) for _ in range(callers)))
        gc.collect()
        gc.freeze()  # as the server does once started (main.settle_gc)
        per_caller = requests // callers
        wall, loop_cpu, cpu = time.perf_counter(), time.thread_time(), time.process_time()
        if profile or calls:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        await asyncio.gather(*(caller(per_caller) for _ in range(callers)))
        done = per_caller * callers
        extra: dict[str, float] = {}
        if profile or calls:
            import pstats

            profiler.disable()
            stats = pstats.Stats(profiler)
            extra["calls"] = stats.total_calls / done  # type: ignore[attr-defined]
            if profile:
                stats.sort_stats(profile).print_stats(40)
        return {
            **extra,
            "loop_us": 1e6 * (time.thread_time() - loop_cpu) / done,
            "process_us": 1e6 * (time.process_time() - cpu) / done,
            "wall_us": 1e6 * (time.perf_counter() - wall) / done,
        }


def _child(args: argparse.Namespace) -> None:
    import asyncio

    import uvloop

    uvloop.install()
    result = _measure(args.requests, args.callers, args.profile, args.calls)
    print(json.dumps(asyncio.run(result)))


def _run_tree(tree: str, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": tree, "AGENTFIREWALL_LOG_LEVEL": "warning"}
    cmd = [sys.executable, __file__, "--child", "-n", str(args.requests), "-c", str(args.callers)]
    if args.profile:
        cmd += ["--profile", args.profile]
    if args.calls:
        cmd.append("--calls")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    if args.profile:
        print(out)
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", action="append", metavar="NAME=DIR", default=[])
    parser.add_argument("-n", "--requests", type=int, default=6400)
    parser.add_argument("-c", "--callers", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", metavar="SORT", help="cProfile, sorted by SORT")
    parser.add_argument("--calls", action="store_true", help="function calls per request")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    trees = [t.split("=", 1) for t in args.tree] or [["this", str(ROOT)]]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    for round_ in range(1 if args.profile or args.calls else args.rounds):
        order = trees if round_ % 2 == 0 else trees[::-1]
        for name, tree in order:
            r = _run_tree(str(Path(tree).resolve()), args)
            results[name].append(r)
            calls = f", {r['calls']:.1f} calls/request" if "calls" in r else ""
            print(
                f"round {round_ + 1} {name}: loop {r['loop_us']:.1f} µs/request, "
                f"process {r['process_us']:.1f}, wall {r['wall_us']:.1f}{calls}",
                flush=True,
            )
    first = trees[0][0]
    base = statistics.median(r["loop_us"] for r in results[first])
    print(f"\n{args.requests} requests, {args.callers} callers; medians over rounds:")
    for name, _ in trees:
        loop_us = statistics.median(r["loop_us"] for r in results[name])
        process_us = statistics.median(r["process_us"] for r in results[name])
        print(
            f"  {name}: loop {loop_us:.1f} µs/request ({loop_us / base:.2f}x {first}), "
            f"process {process_us:.1f} µs/request"
        )


if __name__ == "__main__":
    main()
