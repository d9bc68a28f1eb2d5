"""What happened inside the server while `server.py` measured it, and when.

* `serve_ours` runs the control plane with two probes: every garbage collection (start,
  end, generation, from `gc.callbacks`) and every writer batch (start, commit start, end,
  records, from `store.db.TRACE`). Both write to a
  JSON-lines file, drained by a thread twice a second.
* `WalSampler` reads the WAL file's size and its header's checkpoint sequence number (bytes
  12-16, incremented each time SQLite restarts the log after a checkpoint) every 20 ms.
* `report` prints a per-second timeline and, for the slowest requests, what overlapped them.

Timestamps are `time.perf_counter()` (CLOCK_MONOTONIC on Linux, shared by processes).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def serve_ours(trace_path: str, argv: list[str]) -> int:
    import gc

    from agentfirewall_server import main as server_main
    from agentfirewall_server.main import main
    from agentfirewall_server.store import db

    # the collector's settings after start-up, switchable to measure them:
    # BENCH_GC=default|freeze|freeze:T0/T1/T2 (main.settle_gc)
    mode = os.environ.get("BENCH_GC")
    if mode is not None:
        server_main.GC_FREEZE = mode.startswith("freeze")
        server_main.GC_THRESHOLDS = (
            tuple(int(x) for x in mode.split(":", 1)[1].split("/")) if ":" in mode else None  # type: ignore[assignment]
        )

    # the interpreter's switch interval (seconds), switchable to measure it: BENCH_SWITCH=0.02
    switch = os.environ.get("BENCH_SWITCH")
    if switch is not None:
        sys.setswitchinterval(float(switch))

    events: collections.deque[tuple[Any, ...]] = collections.deque()
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            events.append(("gc", started[0], time.perf_counter(), info["generation"]))

    gc.callbacks.append(on_gc)
    db.TRACE = events.append

    def drain() -> None:
        with open(trace_path, "a", encoding="utf-8") as out:
            while True:
                time.sleep(0.5)
                while events:
                    out.write(json.dumps(events.popleft()) + "\n")
                out.flush()

    threading.Thread(target=drain, daemon=True).start()
    try:
        return main(argv)
    finally:
        time.sleep(0.6)


class WalSampler:
    """Samples (time, WAL bytes, checkpoint sequence) of a database every 20 ms."""

    def __init__(self, db: Path) -> None:
        self.wal = Path(str(db) + "-wal")
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WalSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                with open(self.wal, "rb") as f:
                    head = f.read(16)
                    size = os.fstat(f.fileno()).st_size
            except OSError:
                continue
            seq = int.from_bytes(head[12:16], "big") if len(head) == 16 else -1
            self.samples.append((time.perf_counter(), size, seq))


def read_trace(path: Path, t0: float, t1: float) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {"gc": [], "batch": []}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if t0 <= item[1] <= t1:
            out.setdefault(item[0], []).append(tuple(item[1:]))
    return out


def _q(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else 0.0


def report(
    name: str,
    done: list[tuple[float, float]],
    t0: float,
    trace: dict[str, list[tuple[Any, ...]]] | None,
    wal: list[tuple[float, int, int]] | None,
    *,
    worst: int = 8,
) -> None:
    """Per-second timeline (requests, p50, p99, max; GC, batches, WAL) and the worst stalls."""
    buckets: dict[int, list[float]] = collections.defaultdict(list)
    for end, latency in done:
        buckets[int(end - t0)].append(latency * 1000)
    trace = trace or {"gc": [], "batch": []}
    print(f"\n{name}: per-second timeline (ms; gc = total pause / longest, gen2 count)")
    print(
        "  s   req   p50    p99    max |  gc ms  gc max g2 | batches  max ms  commit max |"
        " WAL MiB ckpts"
    )
    for second in sorted(buckets):
        lat = sorted(buckets[second])
        lo, hi = t0 + second, t0 + second + 1
        gcs = [g for g in trace["gc"] if lo <= g[0] < hi]
        bat = [b for b in trace["batch"] if lo <= b[0] < hi]
        line = (
            f"{second:3d} {len(lat):5d} {_q(lat, 0.5):5.1f} {_q(lat, 0.99):6.1f} {lat[-1]:6.1f} |"
            f" {sum(g[1] - g[0] for g in gcs) * 1000:6.1f} "
            f"{max((g[1] - g[0] for g in gcs), default=0) * 1000:6.1f} "
            f"{sum(1 for g in gcs if g[2] == 2):2d} |"
            f" {len(bat):5d} {max((b[2] - b[0] for b in bat), default=0) * 1000:7.1f}"
            f" {max((b[2] - b[1] for b in bat), default=0) * 1000:7.1f}    |"
        )
        if wal:
            inside = [w for w in wal if lo <= w[0] < hi]
            if inside:
                seqs = {w[2] for w in inside}
                line += f" {inside[-1][1] / 2**20:7.1f} {len(seqs) - 1:3d}"
        print(line)
    slow: list[tuple[float, float]] = []
    for end, latency in sorted(done, key=lambda d: -d[1]):  # one per stall
        if all(abs(end - e) > 0.1 for e, _ in slow):
            slow.append((end, latency))
        if len(slow) == worst:
            break
    print(f"{name}: the {worst} worst stalls (slowest request of each) and what overlapped them")
    for end, latency in slow:
        start = end - latency
        gcs = [g for g in trace["gc"] if g[1] > start and g[0] < end]
        bat = [b for b in trace["batch"] if b[2] > start and b[0] < end]
        longest = max(bat, key=lambda b: b[2] - b[0], default=None)
        resets = {w[2] for w in wal or [] if start - 0.02 <= w[0] <= end + 0.02}
        print(
            f"  {latency * 1000:6.1f} ms at {start - t0:6.2f} s: "
            f"gc {sum(g[1] - g[0] for g in gcs) * 1000:5.1f} ms "
            f"(gens {sorted({g[2] for g in gcs})}), {len(bat)} batches"
            + (
                f", longest {(longest[2] - longest[0]) * 1000:.1f} ms "
                f"(commit {(longest[2] - longest[1]) * 1000:.1f} ms, {longest[3]} records)"
                if longest
                else ""
            )
            + (", WAL restarted" if len(resets) > 1 else "")
        )
    commits = sorted((b[2] - b[1]) * 1000 for b in trace["batch"])
    if commits:
        print(
            f"{name}: {len(commits)} writer batches, commit p50 {_q(commits, 0.5):.1f} ms, p99 "
            f"{_q(commits, 0.99):.1f} ms, max {commits[-1]:.1f} ms; "
            f"{sum(1 for c in commits if c > 10)} commits over 10 ms; gc: "
            + ", ".join(
                f"gen{g} {sum(1 for x in trace['gc'] if x[2] == g)}x max "
                f"{max(((x[1] - x[0]) * 1000 for x in trace['gc'] if x[2] == g), default=0):.1f} ms"
                for g in (0, 1, 2)
            )
        )
