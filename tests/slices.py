"""The bounded slice of a long matrix that CI runs; the whole matrix under a nox session.

A matrix that kills or fuzzes at every step, field or endpoint is run whole by a nox
session that sets its environment variable to ``1``: ``nox -s crash`` sets
``AGENTFIREWALL_TEST_CRASH_ALL``, ``nox -s fuzz`` sets ``AGENTFIREWALL_TEST_FUZZ_ALL``.
The default run (CI) runs every other item of it on each engine, the odd ones (1st, 3rd,
...) on SQLite and the even ones on PostgreSQL, so the two together cover every item once
(the rule of the rotation crash matrix, ``tests/server/test_rotation_crash.py``); where
no PostgreSQL is configured, SQLite runs them all.

A property test each of whose examples is expensive (requests to an app, users with
hashed passwords) may run fewer examples in CI (`expensive_examples`); ``nox -s deep``
still runs the count written beside it times ``TAMEFLARE_FUZZ_SCALE``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

from tests.fuzzscale import SCALE, examples

CRASH_ALL_ENV = "AGENTFIREWALL_TEST_CRASH_ALL"  # nox -s crash
FUZZ_ALL_ENV = "AGENTFIREWALL_TEST_FUZZ_ALL"  # nox -s fuzz
_PG_ENV = "AGENTFIREWALL_TEST_POSTGRES_URL"  # (tests/server/conftest.py: PG_ENV)

T = TypeVar("T")


def whole_matrix(env: str) -> bool:
    """Whether the nox session of `env` asks for the whole matrix."""
    return os.environ.get(env) == "1"


def engine_half(items: Sequence[T], database_url: str, env: str) -> list[T]:
    """All of `items` under the nox session of `env` (or without PostgreSQL), else every
    other one: the odd ones on SQLite, the even ones on PostgreSQL. `items` must come in
    the same order on both engines (sort them)."""
    if whole_matrix(env) or not os.environ.get(_PG_ENV):
        return list(items)
    return list(items)[0 if database_url.startswith("sqlite") else 1 :: 2]


def expensive_examples(count: int, ci: int) -> int:
    """`ci` examples in CI; `count` times TAMEFLARE_FUZZ_SCALE under nox -s deep."""
    return ci if SCALE == 1 else examples(count)
