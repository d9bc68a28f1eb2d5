"""The engine agrees with the naive reference, cedarpy and pycasbin on generated rule sets.

The same generator and translations as benchmarks/engine.py: this is its cross-check,
run as a test on small sizes.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("cedarpy")
pytest.importorskip("casbin")

BENCH = Path(__file__).parents[2] / "benchmarks" / "engine.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_engine"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [10, 100, 400])
def test_every_engine_agrees(size: int) -> None:
    bench = _bench()
    rng = random.Random(size)
    rules = bench.generate(size, rng)
    requests = bench.requests_for(rules, 150, rng)
    reference = bench.naive_engine(rules)
    expected = [reference(r) for r in requests]
    assert {"allow", "deny"} <= set(expected) or size == 10
    for build in (bench.agentfirewall_engine, bench.cedar_engine, bench.casbin_engine):
        decide, prepare = build(rules)
        assert [decide(prepare(r)) for r in requests] == expected, build.__name__
        # a second pass goes through the engine's caches and must not change a thing
        assert [decide(prepare(r)) for r in requests] == expected, build.__name__
