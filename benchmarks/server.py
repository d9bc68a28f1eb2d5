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

The ratio (ours / bare) is the number to read: absolute figures move between runs.
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


def start_ours(tmp: Path, synchronous: str) -> tuple[subprocess.Popen[bytes], str, str, Path]:
    env = {
        **os.environ,
        "AGENTFIREWALL_SQLITE_SYNCHRONOUS": synchronous,
        "AGENTFIREWALL_LOG_LEVEL": "info",  # the port is read from uvicorn's startup line
    }
    proc, port = _start(
        [
            sys.executable,
            "-m",
            "agentfirewall_server",
            "--port",
            "0",
            "--data-dir",
            str(tmp / "tf"),
        ],
        tmp / "ours.log",
        env,
    )
    url = f"http://127.0.0.1:{port}"
    admin = (tmp / "tf" / "admin.token").read_text().strip()
    r = httpx.post(
        url + "/api/v1/agents",
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": "Bench", "rate_limit_per_minute": 1_000_000},
    )
    r.raise_for_status()
    return proc, url, r.json()["api_key"], tmp / "tf" / "agentfirewall.db"


def start_bare(tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    db = tmp / "bare.db"
    proc, port = _start(
        [sys.executable, __file__, "--serve-bare", str(db)], tmp / "bare.log", dict(os.environ)
    )
    return proc, f"http://127.0.0.1:{port}", db


# --- the load generator ----------------------------------------------------------------


async def _one_connection(
    port: int, request: bytes, stop_at: float, latencies: list[float], acked: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
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
    latencies: list[float] = []
    acked: list[str] = []
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(
        *(_one_connection(port, request, stop_at, latencies, acked) for _ in range(connections))
    )
    return {"latencies": latencies, "elapsed": time.perf_counter() - started, "acked": acked}


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


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(x for p in parts for x in p["latencies"])
    return {
        "rps": len(latencies) / sum(p["elapsed"] for p in parts),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "acked": [a for p in parts for a in p["acked"]],
    }


def run(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        ours, ours_url, key, ours_db = start_ours(tmp, args.synchronous)
        bare, bare_url, bare_db = start_bare(tmp)
        try:
            for round_no in range(args.rounds):
                b, o = _slices(
                    [(bare_url, "/audit", None), (ours_url, "/api/v1/actions", key)], args
                )
                rows.append(
                    {"round": round_no + 1, "bare": b, "ours": o, "ratio": o["rps"] / b["rps"]}
                )
                print(
                    f"round {round_no + 1}: bare {b['rps']:,.0f} req/s "
                    f"(p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms) | ours "
                    f"{o['rps']:,.0f} req/s (p50 {o['p50_ms']:.2f} ms, p99 "
                    f"{o['p99_ms']:.2f} ms) | ratio {o['rps'] / b['rps']:.2f}",
                    flush=True,
                )
        finally:
            for proc in (ours, bare):
                proc.terminate()
                proc.wait(30)
        lost_ours = sum(_missing(ours_db, "action_requests", r["ours"]["acked"]) for r in rows)
        lost_bare = sum(_missing(bare_db, "audit", r["bare"]["acked"]) for r in rows)
    ratio = statistics.median(r["ratio"] for r in rows)
    low, high = min(r["ratio"] for r in rows), max(r["ratio"] for r in rows)
    print(
        f"\nmedian ratio ours/bare: {ratio:.2f} (range {low:.2f}-{high:.2f}, target >= 0.5); "
        f"connections {args.connections}, SQLite synchronous={args.synchronous}"
    )
    print(f"acknowledged but missing after the run: ours {lost_ours}, bare {lost_bare}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=8.0)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument(
        "-s", "--slices", type=int, default=8, help="turns per server and round (default 8)"
    )
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--serve-bare", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    run(args)


if __name__ == "__main__":
    main()
