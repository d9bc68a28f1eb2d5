"""`tf demo --yes` as CI's smoke test: a throwaway gateway with fake GitHub and Stripe, every
step doing what it shows, lines that fit 80 columns, nothing left behind."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

from tests.cli.conftest import Project


def test_demo_tour_runs_and_reads_at_80_columns(bare_project: Project, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"COLUMNS": "80", "TMPDIR": str(scratch)}  # no project, no server, no network needed
    done = bare_project.tf("demo", "--yes", env=env, timeout=180)
    lines = done.stdout.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    marks = [line.split()[:2] for line in lines if line.startswith(("✓", "✗"))]
    assert marks == [["✓", "allow"], ["✓", "deny"], ["✓", "hold"], ["✓", "kill"],
                     ["✓", "allow"], ["✓", "audit"], ["✓", "check"]]  # fmt: skip
    text = done.stdout
    assert "X-TameFlare-Kill-Switch: active" in text
    assert "denied by permission `github.repo.delete`" in " ".join(text.split())
    assert "never the DELETE" in text
    assert "ghp_demo" not in text + done.stderr  # the connectors' keys are never shown
    assert list(scratch.iterdir()) == []  # the throwaway state is gone
    assert not (bare_project.root / ".tf").exists()

    as_json = json.loads(bare_project.tf("demo", "--yes", "--json", env=env, timeout=180).stdout)
    assert as_json["ok"] is True
    assert [s["name"] for s in as_json["steps"]] == [
        "allow", "deny", "hold", "kill", "allow", "audit", "check"
    ]  # fmt: skip


def test_demo_without_a_terminal_asks_for_yes(bare_project: Project) -> None:
    for extra in ([], ["--json"]):  # stdin is not a terminal here (`echo y | tf demo`)
        done = bare_project.tf("demo", *extra, check=False, timeout=180)
        assert done.returncode == 1
        assert "add --yes" in done.stderr
        assert "Traceback" not in done.stderr  # refused before anything started
        assert "starting" not in done.stdout + done.stderr


def test_demo_asks_in_the_terminal_and_a_no_is_a_403(bare_project: Project) -> None:
    """The held merge waits for a person at a real terminal (a pty); answering `n` denies it."""
    controller, terminal = pty.openpty()
    env = {**bare_project.env, "COLUMNS": "80"}
    process = subprocess.Popen(["tf", "demo"], cwd=bare_project.root, env=env, stdin=terminal,
                               stdout=terminal, stderr=terminal, close_fds=True)  # fmt: skip
    os.close(terminal)
    seen = b""
    answered = False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the demo ended
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"approve it? [Y/n]" in seen:
            os.write(controller, b"n\r")
            answered = True
    os.close(controller)
    assert process.wait(60) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "dashboard/setup?token=" in text  # or approve it in the dashboard
    assert "✓ hold   the merge, once denied → 403" in text
    assert "the approval was denied" in text
