"""How long `tf` takes to start: wall time of whole commands, beside Python's own start-up.

    python benchmarks/cli_startup.py [--runs 15] [--baseline-tree DIR]

Each case runs `python -m agentfirewall_proxy.cli ARGS` (what the `tf` script runs) as a new
process, interleaved with the baselines in every round: a bare `python -c pass` and
`python -c "import httpx, rich, yaml"` (the libraries every command needs). The commands do
no network I/O: `--version`, `--help`, a subcommand's `--help` and a usage error with its
"did you mean". With ``--baseline-tree`` the same commands run from that tree too
(``PYTHONPATH``), so a change is read as a ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (
    ("tf --version", ["--version"]),
    ("tf --help", ["--help"]),
    ("tf policy test --help", ["policy", "test", "--help"]),
    ("tf permisions (typo)", ["permisions"]),
)
BASELINES = (
    ("python -c pass", ["-c", "pass"]),
    ("python: import httpx, rich, yaml", ["-c", "import httpx, rich.console, rich.table, yaml"]),
)


def _wall(argv: list[str], tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=tree, capture_output=True, check=False)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to compare with")
    args = parser.parse_args(argv)
    trees = {"this tree": ROOT}
    if args.baseline_tree:
        trees["baseline tree"] = args.baseline_tree.resolve()
    cases: list[tuple[str, list[str], Path]] = [
        (name, [sys.executable, *extra], ROOT) for name, extra in BASELINES
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
            times[name].append(_wall(command, tree))
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
