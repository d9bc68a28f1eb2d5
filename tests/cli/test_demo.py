"""`tf demo --yes` as CI's smoke test: a throwaway gateway with fake GitHub and Stripe, every
step doing what it shows, lines that fit 80 columns, nothing left behind."""

from __future__ import annotations

import json
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
    done = bare_project.tf("demo", check=False, timeout=180)
    assert done.returncode == 1
    assert "--yes" in done.stderr
