"""nox sessions: tests, lint, typing, deep, fuzz, crash, budgets, benchmarks, soak.

With CI=true nox fails on a missing interpreter: name the installed one (`nox -s tests-3.11`).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typing", "tests"]
PYTHONS = ["3.11", "3.12"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff", "import-linter>=2.1", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports", "--no-cache")


@nox.session
def typing(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def deep(session: nox.Session) -> None:
    """Every property-based (Hypothesis) test with TAMEFLARE_FUZZ_SCALE (default 20) times the
    examples CI gives it, and no deadline (tests/fuzzscale.py): the long hunt for the rare
    input. About 25 minutes at 20 on two cores; source .ci/postgres.sh first for the
    PostgreSQL ones. `nox -s deep -- tests/connectors` narrows it."""
    session.install("-e", ".[dev]")
    scale = os.environ.get("TAMEFLARE_FUZZ_SCALE") or "20"
    files = session.posargs or sorted(
        str(path)
        for path in Path("tests").rglob("test_*.py")
        if "from hypothesis" in path.read_text() and path.name != "test_fuzz_api.py"
    )  # the API fuzz test has its own session and count (fuzz)
    session.run("python", "-m", "pytest", "-q", *files, env={"TAMEFLARE_FUZZ_SCALE": scale})


@nox.session
def fuzz(session: nox.Session) -> None:
    """The API fuzz test at length (AGENTFIREWALL_FUZZ_REQUESTS requests, default 200,000), and
    the wrong-type walk and the deep-nesting matrix over every route on both engines (CI
    splits them between the engines, tests/slices.py); source .ci/postgres.sh first."""
    session.install("-e", ".[dev]")
    requests = os.environ.get("AGENTFIREWALL_FUZZ_REQUESTS") or "200000"
    files = [
        "tests/server/test_fuzz_api.py",
        "tests/server/test_api_wrong_types.py",
        "tests/server/test_input_limits.py",
    ]
    env = {"AGENTFIREWALL_FUZZ_REQUESTS": requests, "AGENTFIREWALL_TEST_FUZZ_ALL": "1"}
    session.run("python", "-m", "pytest", *files, "-q", "-s", *session.posargs, env=env)


@nox.session
def crash(session: nox.Session) -> None:
    """Key rotation killed at every step boundary on both engines (CI: the odd ones on
    SQLite, the even ones on PostgreSQL), and the server killed -9 under load after 300
    acknowledged requests (CI: 100); source .ci/postgres.sh first for PostgreSQL."""
    session.install("-e", ".[dev]")
    files = [
        "tests/server/test_rotation_crash.py",
        "tests/server/test_live.py::test_kill_9_under_load_loses_no_acknowledged_request",
    ]
    session.run("python", "-m", "pytest", *files, *session.posargs,
                env={"AGENTFIREWALL_TEST_CRASH_ALL": "1"})  # fmt: skip


@nox.session
def budgets(session: nox.Session) -> None:
    """The long budget and grant runs: 64 concurrent transfers through the gateway on SQLite
    and through two control-plane replicas on PostgreSQL (source .ci/postgres.sh first),
    and grants from the CLI end to end."""
    session.install("-e", ".[dev,proxy]")
    files = ["tests/proxy/test_budgets_live.py", "tests/proxy/test_grants_live.py"]
    session.run("python", "-m", "pytest", "-n", "0", *files, *session.posargs,
                env={"AGENTFIREWALL_TEST_BUDGETS": "1"})  # fmt: skip


@nox.session
def benchmarks(session: nox.Session) -> None:
    session.install("-e", ".[dev,bench]")
    for script in (
        "engine.py",
        "connectors.py",
        "server.py",
        "sdk.py",
        "proxy.py",
        "held.py",
        "tracing.py",
        "budgets.py",
        "scale.py",
    ):
        session.run("python", f"benchmarks/{script}", "--quick")


@nox.session
def soak(session: nox.Session) -> None:
    """benchmarks/soak.py: 30 minutes of mixed traffic (`nox -s soak -- --short`: 2 minutes)."""
    session.install("-e", ".[dev,proxy]")
    session.run("python", "benchmarks/soak.py", *session.posargs)
