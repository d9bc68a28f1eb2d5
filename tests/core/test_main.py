"""`python -m agentfirewall policy ...`: validate, test, explain, schema, packs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentfirewall.__main__ import main

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples" / "policies"
CORPUS = Path(__file__).parent / "policy_corpus"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    assert main(["policy", "validate", *files]) == 0
    out = capsys.readouterr().out
    assert "ok: policy `protect-main`" in out
    assert "ok: policy `transfers-over-10k`" in out


def test_validate_reports_file_line_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: p\nrules:\n  - name: r\n    decision: maybe\n", encoding="utf-8")
    assert main(["policy", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:4: `rules[0].decision`: unknown decision `maybe`" in out
    assert main(["policy", "validate", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read file" in capsys.readouterr().out


def test_test_runs_the_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", str(CORPUS), "-q"]) == 0
    assert ", 0 failed" in capsys.readouterr().out


def test_test_fails_on_a_wrong_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "case.yaml").write_text(
        "name: expects the impossible\naction: {type: email.send}\nexpect: {outcome: deny}\n",
        encoding="utf-8",
    )
    assert main(["policy", "test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out
    assert "expects the impossible" in out
    assert "0 passed, 1 failed" in out


def test_explain_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "policy", "explain", str(EXAMPLES / "merge-to-main.json"),
            "--policy", str(EXAMPLES / "protect-main.yaml"), "--agent", "Bot",
            "--now", "2026-01-05T12:00:00+00:00",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "1. kill_switch: inactive" in out
    assert "protect-main/merge-to-main: require_approval" in out
    assert "=> require_approval: merges to main need a human" in out


def test_explain_json_with_rules_packs_and_kill_switch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"action_spec": {"type": "github.repo.delete"}}), "utf-8")
    args = ["policy", "explain", str(spec), "--mode", "proxy", "--agent", "Bot", "--json"]
    args += ["--rule", "Bot:github:github.*=allow", "--pack", "github-safe-defaults"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["decision"]["outcome"] == "deny"
    assert data["decision"]["matched_rules"][0] == "github-safe-defaults/deny-destructive-deletes"
    assert [s["step"] for s in data["explanation"]][:2] == ["kill_switch", "access_rules"]
    assert main([*args, "--kill-switch", "agent:Bot", "--fail-on-deny"]) == 1
    assert json.loads(capsys.readouterr().out)["decision"]["reason"] == "kill_switch_active"


def test_explain_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text('{"type": "Not A Type"}', "utf-8")
    assert main(["policy", "explain", str(spec)]) == 1
    assert "invalid action type" in capsys.readouterr().err
    spec.write_text('{"type": "a.b"}', "utf-8")
    assert main(["policy", "explain", str(spec), "--rule", "nonsense"]) == 1
    assert "invalid access rule `nonsense`" in capsys.readouterr().err


def test_schema_and_packs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert main(["policy", "packs"]) == 0
    assert "github-safe-defaults: " in capsys.readouterr().out


def test_module_entry_point_and_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentfirewall", "policy", "explain", "--help"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    assert "examples:" in result.stdout
    assert "--rule" in result.stdout
    piped = subprocess.run(
        [sys.executable, "-m", "agentfirewall", "policy", "explain", "-", "--sdk-default", "deny"],
        input='{"type": "email.send"}', capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert piped.returncode == 0
    assert "=> deny: no rule allows `email.send`" in piped.stdout


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["policy"])
    assert caught.value.code == 2


@pytest.mark.parametrize(
    ("spec", "policy", "agent", "outcome"),
    [
        ("merge-to-main.json", "protect-main.yaml", "Bot", "require_approval"),
        ("stripe-transfer.json", "transfers-over-10k.yaml", "Finance Bot", "require_approval"),
    ],
)
def test_every_example_explains(
    spec: str, policy: str, agent: str, outcome: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["policy", "explain", str(EXAMPLES / spec), "--policy", str(EXAMPLES / policy)]
    assert main([*args, "--agent", agent, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["outcome"] == outcome


def test_examples_are_all_covered() -> None:
    names = {p.name for p in EXAMPLES.iterdir()}
    assert names == {
        "merge-to-main.json",
        "protect-main.yaml",
        "stripe-transfer.json",
        "transfers-over-10k.yaml",
    }
