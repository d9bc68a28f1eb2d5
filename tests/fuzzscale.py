"""How many examples a property test tries: the count written beside it, times a scale.

CI runs every Hypothesis test with the count written in its ``@settings`` (a bounded slice,
minutes in all). ``nox -s deep`` sets ``TAMEFLARE_FUZZ_SCALE`` (20 unless given) and runs
every property test that many times longer and without a deadline: the long hunt for the
rare input, kept out of CI's time budget. ``tests/conftest.py`` loads the matching profile
for the tests that name no count.
"""

from __future__ import annotations

import os


def _scale() -> int:
    raw = os.environ.get("TAMEFLARE_FUZZ_SCALE") or "1"
    try:
        scale = int(raw)
    except ValueError:
        scale = 0
    if scale < 1:
        raise SystemExit(f"TAMEFLARE_FUZZ_SCALE must be a whole number >= 1, not {raw!r}")
    return scale


SCALE = _scale()


def examples(count: int) -> int:
    """`count` examples in CI; `count` times TAMEFLARE_FUZZ_SCALE in a deep run."""
    return count * SCALE
