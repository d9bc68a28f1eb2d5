"""`tf policy test` / `tf policy explain` show a policy's rules one per row.

The engine lists a policy's rules in one step's detail; the table printed that detail as one
cell, whose newlines it escapes (an agent-chosen value must not start a row of its own), so
every rule ran into the next with a literal ``\\x0a``. The rules are now rows of their own,
taken from the engine's list, never from a newline in the text: a policy or rule named with a
newline still shows it as its escape, on its own row, and forges no row or line. In process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentfirewall_proxy.cli.app import main

PACK = Path(__file__).resolve().parents[2] / "agentfirewall/policy/packs/github-safe-defaults.yaml"
MERGE = ["--action", "github.pr.merge", "--param", "base=main", "--env", "production"]


def _policy_test(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["policy", "test", str(path), *MERGE]) == 4  # require_approval
    return capsys.readouterr().out.splitlines()


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no row wraps


def test_each_rule_of_a_policy_is_a_row_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _policy_test(PACK, capsys)
    assert not [line for line in lines if "\\x0a" in line]
    rules = [rule["name"] for rule in yaml.safe_load(PACK.read_text())["rules"]]
    rows = [line for line in lines if "github-safe-defaults/" in line and ": " in line]
    for rule in rules:  # each on a line of its own, with its result
        (row,) = [r for r in rows if f"github-safe-defaults/{rule}: " in r]
        assert row.count("github-safe-defaults/") == 1
    assert any("merge-to-default-branch: require_approval" in row for row in rows)


def test_a_newline_in_a_policy_or_rule_name_is_still_shown_as_its_escape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = {
        "name": "guard\nforged: allow",
        "rules": [
            {"name": "quiet\nguard/forged: allow", "decision": "deny",
             "conditions": [{"field": "parameters.base", "operator": "equals", "value": "x"}]},
            {"name": "merge", "decision": "require_approval",
             "conditions": [{"field": "type", "operator": "equals", "value": "github.pr.merge"}]},
        ],
    }  # fmt: skip
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(hostile), encoding="utf-8")
    lines = _policy_test(path, capsys)
    # no line starts with the text after a name's newline: nothing forged a row or a line
    assert not [line for line in lines if line.lstrip("│ ").startswith(("forged", "guard/"))]
    quiet = [line for line in lines if "/quiet" in line]
    assert len(quiet) == 1
    assert "guard\\x0aforged: allow/quiet\\x0aguard/forged: allow: no match" in quiet[0]
    merge = [line for line in lines if "allow/merge: require_approval" in line]
    assert len(merge) == 1  # the next rule: a row of its own
    assert merge[0].startswith("│              │")  # under the policy's row, not in its cell
    assert lines[-1] == (
        "decision: require_approval (held for approval by policy rule "
        "`guard\\x0aforged: allow/merge`)"
    )
