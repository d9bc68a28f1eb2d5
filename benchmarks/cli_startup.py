"""How long `tf` takes to start: wall time of whole commands, beside Python's own start-up.

    python benchmarks/cli_startup.py [--runs 15] [--baseline-tree DIR]

Each case runs `python -m agentfirewall_proxy.cli ARGS` (what the `tf` script runs) as a new
process, interleaved with the baselines in every round: a bare `python -c pass`,
`python -c "import rich, yaml"` (the libraries every command needs) and the same GET the
server commands make, with httpx (import, client, request). The commands: `--version`,
`--help`, a subcommand's `--help`, a usage error with its "did you mean", and two that talk
to a running `tf up` (started in a temporary project first): `tf status --json` and
`tf kill-switch status --json`, which also prove the server is this project's (its JWKS).
With ``--baseline-tree`` the same commands run from that tree too (``PYTHONPATH``), so a
change is read as a ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trees import ROOT, parse_trees

COMMANDS = (
    ("tf --version", ["--version"]),
    ("tf --help", ["--help"]),
    ("tf policy test --help", ["policy", "test", "--help"]),
    ("tf permisions (typo)", ["permisions"]),
    ("tf status --json (server)", ["status", "--json"]),
    ("tf kill-switch status --json (server)", ["kill-switch", "status", "--json"]),
)
_HTTPX_GET = (
    "import httpx, rich.console, rich.table, yaml, sys\n"
    "with httpx.Client(trust_env=False) as c: c.get(sys.argv[1] + '/health')"
)
BASELINES = (
    ("python -c pass", ["-c", "pass"]),
    ("python: import rich, yaml", ["-c", "import rich.console, rich.table, yaml"]),
    ("python: import rich, yaml + httpx GET", ["-c", _HTTPX_GET]),
)


@contextlib.contextmanager
def _project() -> Iterator[tuple[Path, str]]:
    """A `tf init` project with its `tf up` running (free ports): its directory and server."""
    with tempfile.TemporaryDirectory(prefix="tf-bench-cli-") as root:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        tf = [sys.executable, "-m", "agentfirewall_proxy.cli"]
        subprocess.run([*tf, "init"], cwd=root, env=env, capture_output=True, check=True)
        up = subprocess.Popen(
            [*tf, "up", "--port", "0", "--proxy-port", "0"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            state = Path(root) / ".tf" / "up.json"
            deadline = time.monotonic() + 60
            while not state.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            yield Path(root), str(json.loads(state.read_text())["server_url"])
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=30)


def _wall(argv: list[str], tree: Path, cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args, trees = parse_trees(__doc__.split("\n\n")[0], 15, argv)
    with _project() as (project, server_url):
        return _measure(args, trees, project, server_url)


def _measure(args: argparse.Namespace, trees: dict[str, Path], project: Path, url: str) -> int:
    cases: list[tuple[str, list[str], Path]] = [
        (name, [sys.executable, *extra, url], ROOT) for name, extra in BASELINES
    ]
    for label, tree in trees.items():
        for name, extra in COMMANDS:
            cases.append(
                (
                    f"{name} ({label})",
                    [sys.executable, "-m", "agentfirewall_proxy.cli", *extra],
                    tree,
                )
            )
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(args.runs):  # interleaved: the machine's load falls on every case alike
        for name, command, tree in cases:
            times[name].append(_wall(command, tree, project))
    bare = statistics.median(times[BASELINES[0][0]])
    print(f"\n{args.runs} rounds, median wall time per process")
    print("| case | median ms | min ms | x python -c pass |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.0f} | {min(values) * 1000:.0f} | {median / bare:.1f} |")
    if args.baseline_tree:
        print("\nthis tree / baseline tree (median):")
        for name, _ in COMMANDS:
            ours = statistics.median(times[f"{name} (this tree)"])
            theirs = statistics.median(times[f"{name} (baseline tree)"])
            print(f"  {name}: {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
