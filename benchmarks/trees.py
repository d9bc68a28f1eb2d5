"""The trees a start-up benchmark compares: this checkout, and the one `--baseline-tree`
names (another checkout, e.g. `git archive <commit> | tar -x -C DIR`), measured in the same
interleaved rounds."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_trees(
    description: str, runs: int, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, dict[str, Path]]:
    """The script's arguments (`--runs`, `--baseline-tree`) and its trees by label."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=runs, help=f"rounds (default {runs})")
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to compare with")
    args = parser.parse_args(argv)
    trees = {"this tree": ROOT}
    if args.baseline_tree:
        trees["baseline tree"] = args.baseline_tree.resolve()
    return args, trees
