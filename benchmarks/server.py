"""POST /api/v1/actions throughput beside a bare Starlette + one-SQLite-insert endpoint.

Both servers run the same way (uvicorn, one worker, uvloop + httptools, no access log) and
are measured in the same run by the same closed-loop load generator (asyncio + uvloop, raw
HTTP/1.1 keep-alive, 32 connections by default). Afterwards every acknowledged request is
looked up in the database file: a run counts only if all of them are there.

    python benchmarks/server.py                 # 3 rounds x 8 s per server, 32 connections
    python benchmarks/server.py -d 5 -r 1 -c 32
    python benchmarks/server.py --synchronous NORMAL

Within a round the two servers take turns (8 slices of 1 s each by default), so load from
other work on the machine falls on both alike.

The ratio (ours / bare) is the number to read: absolute figures move between runs. Each
round also prints every server's CPU time (all its threads, from /proc) per answered
request: on a shared machine it moves less than the request rates do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import server_fill
import server_trace

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
_PORT = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


# --- the bare baseline (perf-anchors.md section 3) -------------------------------------


def bare_app(db_path: str) -> Any:
    from pydantic import BaseModel, ConfigDict
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    class Body(BaseModel):
        model_config = ConfigDict(extra="forbid")
        action_spec: dict[str, Any]

    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, body TEXT)")

    async def audit(request: Request) -> JSONResponse:
        body = Body.model_validate_json(await request.body())
        cur = conn.execute("INSERT INTO audit (body) VALUES (?)", (json.dumps(body.action_spec),))
        return JSONResponse({"id": f"act_{cur.lastrowid}", "status": "allowed"})

    return Starlette(routes=[Route("/audit", audit, methods=["POST"])])


def serve_bare(db_path: str) -> None:
    import uvicorn

    uvicorn.run(
        bare_app(db_path),
        host="127.0.0.1",
        port=0,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
    )


# --- servers in subprocesses -----------------------------------------------------------


def _start(cmd: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = _PORT.search(log.read_text("utf-8", "replace"))
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.05)
    raise RuntimeError(f"server did not start: {log.read_text()}")


def start_ours(
    tmp: Path, synchronous: str, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, str, Path]:
    env = {
        **os.environ,
        **(extra or {}),
        "AGENTFIREWALL_SQLITE_SYNCHRONOUS": synchronous,
        "AGENTFIREWALL_LOG_LEVEL": "info",  # the port is read from uvicorn's startup line
    }
    proc, port = _start(
        [
            sys.executable,
            __file__,
            "--serve-ours",
            str(tmp / "trace.jsonl"),
            "--",
            "--port",
            "0",
            "--data-dir",
            str(tmp / "tf"),
        ],
        tmp / "ours.log",
        env,
    )
    url = f"http://127.0.0.1:{port}"
    saved = tmp / "tf" / "bench.key"
    if saved.exists():  # a pre-filled database: its agent exists
        return proc, url, saved.read_text().strip(), tmp / "tf" / "agentfirewall.db"
    admin = (tmp / "tf" / "admin.token").read_text().strip()
    r = httpx.post(
        url + "/api/v1/agents",
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": "Bench", "rate_limit_per_minute": 1_000_000},
    )
    r.raise_for_status()
    saved.write_text(r.json()["api_key"])
    return proc, url, r.json()["api_key"], tmp / "tf" / "agentfirewall.db"


def start_bare(tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    db = tmp / "bare.db"
    proc, port = _start(
        [sys.executable, __file__, "--serve-bare", str(db)], tmp / "bare.log", dict(os.environ)
    )
    return proc, f"http://127.0.0.1:{port}", db


# --- the load generator ----------------------------------------------------------------


async def _one_connection(
    port: int,
    request: bytes,
    stop_at: float,
    latencies: list[tuple[float, float]],
    acked: list[str],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            body = await reader.readexactly(length)
            ended = time.perf_counter()
            latencies.append((ended, ended - started))
            if head.startswith(b"HTTP/1.1 200"):
                acked.append(json.loads(body).get("action_request_id") or json.loads(body)["id"])
    finally:
        writer.close()


async def load(
    url: str, path: str, key: str | None, seconds: float, connections: int
) -> dict[str, Any]:
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps(SPEC).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[tuple[float, float]] = []
    acked: list[str] = []
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(
        *(_one_connection(port, request, stop_at, latencies, acked) for _ in range(connections))
    )
    return {
        "latencies": latencies,
        "elapsed": time.perf_counter() - started,
        "acked": acked,
        "t0": started,
    }


def _missing(db: Path, table: str, ids: list[str]) -> int:
    conn = sqlite3.connect(db)
    try:
        if table == "audit":
            have = {f"act_{r[0]}" for r in conn.execute("SELECT id FROM audit")}
        else:
            have = {r[0] for r in conn.execute("SELECT id FROM action_requests")}
    finally:
        conn.close()
    return sum(1 for i in ids if i not in have)


def _slices(
    targets: list[tuple[str, str, str | None]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One round: the servers take turns in short slices, so both see the same machine.

    Other work on a shared machine comes and goes within seconds; measuring one server
    for the whole round and then the other would credit that noise to one of them.
    """
    import uvloop

    parts: list[list[dict[str, Any]]] = [[] for _ in targets]
    for _ in range(args.slices):
        for i, (url, path, key) in enumerate(targets):
            parts[i].append(
                uvloop.run(load(url, path, key, args.duration / args.slices, args.connections))
            )
    return [_merge(p) for p in parts]


def _sustained(
    targets: list[tuple[str, str, str | None]], args: argparse.Namespace, round_no: int
) -> list[dict[str, Any]]:
    """One round of sustained load: each server alone for the whole duration, no gaps.

    Idle gaps hide stalls (a checkpoint or a collection finishes in the gap), so here each
    server is loaded for `duration` seconds in one piece; the order alternates per round.
    """
    import uvloop

    out: list[dict[str, Any]] = [{} for _ in targets]
    if args.together:  # every server loaded at once: the same moments of the machine for all

        async def everyone() -> list[dict[str, Any]]:
            return await asyncio.gather(
                *(load(u, p, k, args.duration, args.connections) for u, p, k in targets)
            )

        return [{**_merge([part]), "part": part} for part in uvloop.run(everyone())]
    order = list(range(len(targets)))
    if round_no % 2:
        order.reverse()
    for i in order:
        url, path, key = targets[i]
        part = uvloop.run(load(url, path, key, args.duration, args.connections))
        out[i] = {**_merge([part]), "part": part}
    return out


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(x[1] for p in parts for x in p["latencies"])
    return {
        "requests": len(latencies),
        "rps": len(latencies) / sum(p["elapsed"] for p in parts),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "acked": [a for p in parts for a in p["acked"]],
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _variants(args: argparse.Namespace) -> list[tuple[str, dict[str, str]]]:
    """`--variant name:KEY=V,KEY=V` (repeatable): several configurations of ours, one run."""
    if not args.variant:
        return [("ours", {})]
    out = []
    for text in args.variant:
        name, _, envs = text.partition(":")
        out.append((name, dict(e.split("=", 1) for e in envs.split(",") if e)))
    return out


def run(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    variants = _variants(args)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        source = None
        if args.prefill:
            source = server_fill.prepared(
                Path(args.cache), args.prefill, lambda d: start_ours(d, "NORMAL"), _post_one, SPEC
            )
            server_fill.copy_bare(source, tmp)
        try:
            bare, bare_url, bare_db = start_bare(tmp)
            procs.append(bare)
            targets = [(bare_url, "/audit", None)]
            dbs = {"bare": bare_db}
            for name, env in variants:
                (tmp / name).mkdir()
                if source is not None:
                    server_fill.copy_ours(source, tmp / name)
                proc, url, key, db = start_ours(tmp / name, args.synchronous, env)
                procs.append(proc)
                targets.append((url, "/api/v1/actions", key))
                dbs[name] = db
            names = ["bare"] + [n for n, _ in variants]
            for round_no in range(args.rounds):
                cpu_before = [_cpu_seconds(p.pid) for p in procs]
                if args.sustained:
                    samplers = [server_trace.WalSampler(dbs[n]) for n in names]
                    for sampler in samplers:
                        sampler.__enter__()
                    results = _sustained(targets, args, round_no)
                    for sampler in samplers:
                        sampler.__exit__()
                    if not args.quiet:
                        _timelines(tmp, names, results, samplers)
                else:
                    results = _slices(targets, args)
                for res, proc, before in zip(results, procs, cpu_before, strict=True):
                    # the server's CPU (every thread) per answered request in this round
                    res["cpu_us"] = (_cpu_seconds(proc.pid) - before) / res["requests"] * 1e6
                row = dict(zip(names, results, strict=True))
                rows.append(row)
                b = row["bare"]
                print(
                    f"round {round_no + 1}: bare {b['rps']:,.0f} req/s "
                    f"(p50 {b['p50_ms']:.2f}, p99 {b['p99_ms']:.2f}, max {b['max_ms']:.1f} ms, "
                    f"CPU {b['cpu_us']:.0f} µs/request)",
                    flush=True,
                )
                for name in names[1:]:
                    o = row[name]
                    print(
                        f"    {name}: {o['rps']:,.0f} req/s (p50 {o['p50_ms']:.2f}, p99 "
                        f"{o['p99_ms']:.2f}, max {o['max_ms']:.1f} ms, CPU {o['cpu_us']:.0f} "
                        f"µs/request) | throughput {o['rps'] / b['rps']:.2f}x bare, p99 "
                        f"{o['p99_ms'] / b['p99_ms']:.2f}x bare, max "
                        f"{o['max_ms'] / b['max_ms']:.2f}x bare, CPU "
                        f"{o['cpu_us'] / b['cpu_us']:.2f}x bare",
                        flush=True,
                    )
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
        lost = {
            n: sum(
                _missing(dbs[n], "audit" if n == "bare" else "action_requests", r[n]["acked"])
                for r in rows
            )
            for n in names
        }
    print(
        f"\nconnections {args.connections}, SQLite synchronous={args.synchronous} (bare: NORMAL),"
        f" pre-filled {args.prefill:,} actions, {'sustained' if args.sustained else 'sliced'}"
        f"{' (all servers at once)' if args.together else ''}"
        f" load, {args.rounds} rounds of {args.duration:g} s per server; medians over rounds of"
        " each round's ratio to bare:"
    )
    for name in names[1:]:
        tput = [r[name]["rps"] / r["bare"]["rps"] for r in rows]
        cpu = [r[name]["cpu_us"] / r["bare"]["cpu_us"] for r in rows]
        p99 = [r[name]["p99_ms"] / r["bare"]["p99_ms"] for r in rows]
        print(
            f"  {name}: throughput {statistics.median(tput):.2f} (range {min(tput):.2f}-"
            f"{max(tput):.2f}), p99 {statistics.median(p99):.2f} (range {min(p99):.2f}-"
            f"{max(p99):.2f}), p99 {statistics.median(r[name]['p99_ms'] for r in rows):.1f} ms"
            f" vs bare {statistics.median(r['bare']['p99_ms'] for r in rows):.1f} ms, CPU per "
            f"request {statistics.median(r[name]['cpu_us'] for r in rows):.0f} µs vs bare "
            f"{statistics.median(r['bare']['cpu_us'] for r in rows):.0f} µs "
            f"({statistics.median(cpu):.2f}x, range {min(cpu):.2f}-{max(cpu):.2f})"
        )
    print(f"acknowledged but missing after the run: {lost}")


def _post_one(url: str, key: str) -> None:
    r = httpx.post(url + "/api/v1/actions", headers={"Authorization": f"Bearer {key}"}, json=SPEC)
    r.raise_for_status()


def _timelines(
    tmp: Path,
    names: list[str],
    results: list[dict[str, Any]],
    samplers: list[server_trace.WalSampler],
) -> None:
    time.sleep(1.2)  # the servers' probe files are drained twice a second
    for name, res, wal in zip(names, results, samplers, strict=True):
        part = res["part"]
        t0 = part["t0"]
        events = None
        if name != "bare":
            events = server_trace.read_trace(tmp / name / "trace.jsonl", t0, t0 + part["elapsed"])
        server_trace.report(name, part["latencies"], t0, events, wal.samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=8.0)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument(
        "-s", "--slices", type=int, default=8, help="turns per server and round (default 8)"
    )
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s (nox -s benchmarks)")
    parser.add_argument(
        "--sustained",
        action="store_true",
        help="each server loaded for the whole duration without gaps, with a timeline",
    )
    parser.add_argument(
        "--prefill", type=int, default=0, help="actions (and bare rows) in the database first"
    )
    parser.add_argument("--cache", default="/tmp/af-bench-fill", help="where fills are kept")
    parser.add_argument("--quiet", action="store_true", help="no timelines")
    parser.add_argument(
        "--together",
        action="store_true",
        help="with --sustained: load every server at the same time (each its own connections),"
        " so a busy shared machine falls on all alike",
    )
    parser.add_argument(
        "--variant",
        action="append",
        metavar="NAME:KEY=V,...",
        help="a configuration of ours (environment for its process); repeat to compare",
    )
    parser.add_argument("--serve-bare", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--serve-ours", metavar="TRACE", help=argparse.SUPPRESS)
    if "--serve-ours" in sys.argv:
        at = sys.argv.index("--")
        raise SystemExit(server_trace.serve_ours(sys.argv[at - 1], sys.argv[at + 1 :]))
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.slices = 2.0, 1, 2
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    run(args)


if __name__ == "__main__":
    main()
