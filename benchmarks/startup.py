"""How long `tf up` takes to be ready, beside Python's own start-up and the bare imports.

    python benchmarks/startup.py [--runs 5] [--baseline-tree DIR]

In a temporary project (`tf init` done once, as a user's is), each round starts
`python -m agentfirewall_proxy.cli up --port 0 --proxy-port 0` (what the `tf` script runs) and
measures the wall time from the spawn to `.tf/up.json` (polled every 5 ms, as
tests/cli/conftest.py `Project.up` waits for it) and to the first 200 from the server's
`/api/health` (its URL read from up.json), then stops it with SIGINT and measures the time to
its exit (what a user waits for after Ctrl-C, and a test after each `tf up`).
Interleaved with it in every round: `python -c pass` and `python -c "import
agentfirewall_server.app, agentfirewall_proxy.main"` (the bare cost of the imports). With
``--baseline-tree`` the same `tf up` runs from that tree too (``PYTHONPATH``) on its own
project, so a change reads as a ratio measured in the same run. Each tree's packages are
byte-compiled first (``compileall``), as an installed package is: with
``PYTHONDONTWRITEBYTECODE`` set, a module edited since its last compile would otherwise be
compiled from source on every start. Ratios, not assertions.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trees import ROOT, parse_trees

IMPORTS = "import agentfirewall_server.app, agentfirewall_proxy.main"
POLL = 0.005
PACKAGES = ("agentfirewall", "agentfirewall_server", "agentfirewall_proxy")


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "NO_COLOR": "1"}


def _wall(argv: list[str], tree: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=_env(tree), cwd=tree, capture_output=True, check=True)
    return time.perf_counter() - started


def _health(url: str, deadline: float) -> None:
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(POLL)
    raise RuntimeError(f"{url}/api/health did not answer 200")


def _up(project: Path, tree: Path) -> tuple[float, float, float]:
    """Seconds from the spawn to `.tf/up.json`, to the first 200 from `/api/health`, and
    from SIGINT to the exit."""
    up_file = project / ".tf" / "up.json"
    argv = [sys.executable, "-m", "agentfirewall_proxy.cli", "up", "--port", "0"]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*argv, "--proxy-port", "0"],
        cwd=project,
        env=_env(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = started + 60
        info: dict[str, str] | None = None
        while info is None:
            if time.perf_counter() > deadline or process.poll() is not None:
                raise RuntimeError(f"tf up did not start: {process.communicate()[1]!r}")
            try:
                info = json.loads(up_file.read_text())
            except (OSError, ValueError):  # not there yet, or half written
                time.sleep(POLL)
        to_file = time.perf_counter() - started
        _health(info["server_url"], deadline)
        to_health = time.perf_counter() - started
        stopping = time.perf_counter()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        return to_file, to_health, time.perf_counter() - stopping
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _init(tree: Path, into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *(str(tree / p) for p in PACKAGES)],
        capture_output=True,
        check=True,
    )
    into.mkdir()
    subprocess.run(
        [sys.executable, "-m", "agentfirewall_proxy.cli", "init"],
        cwd=into,
        env=_env(tree),
        capture_output=True,
        check=True,
    )
    _up(into, tree)  # the first start makes the database: not what a user waits for daily
    return into


def _row(name: str, values: list[float], bare: float) -> str:
    median = statistics.median(values)
    p90 = statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else median
    return (
        f"| {name} | {median * 1000:.0f} | {p90 * 1000:.0f} | {min(values) * 1000:.0f} "
        f"| {median / bare:.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    args, trees = parse_trees(__doc__.split("\n\n")[0], 5, argv)
    times: dict[str, list[float]] = {"python -c pass": []}
    for label in trees:
        times[f"python: {IMPORTS} ({label})"] = []
        times[f"tf up: spawn to up.json ({label})"] = []
        times[f"tf up: spawn to /health 200 ({label})"] = []
        times[f"tf up: SIGINT to exit ({label})"] = []
    with tempfile.TemporaryDirectory(prefix="tf-startup-") as tmp:
        projects = {
            label: _init(tree, Path(tmp) / str(i)) for i, (label, tree) in enumerate(trees.items())
        }
        for _ in range(args.runs):  # interleaved: the machine's load falls on every case alike
            times["python -c pass"].append(_wall([sys.executable, "-c", "pass"], ROOT))
            for label, tree in trees.items():
                imports = [sys.executable, "-c", IMPORTS]
                times[f"python: {IMPORTS} ({label})"].append(_wall(imports, tree))
                to_file, to_health, to_exit = _up(projects[label], tree)
                times[f"tf up: spawn to up.json ({label})"].append(to_file)
                times[f"tf up: spawn to /health 200 ({label})"].append(to_health)
                times[f"tf up: SIGINT to exit ({label})"].append(to_exit)
    bare = statistics.median(times["python -c pass"])
    print(f"\n{args.runs} rounds, wall time per process")
    print("| case | median ms | p90 ms | min ms | x python -c pass |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        print(_row(name, values, bare))
    if args.baseline_tree:
        print("\nthis tree / baseline tree (median):")
        for what in ("spawn to up.json", "spawn to /health 200", "SIGINT to exit"):
            ours = statistics.median(times[f"tf up: {what} (this tree)"])
            theirs = statistics.median(times[f"tf up: {what} (baseline tree)"])
            print(f"  tf up, {what}: {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
