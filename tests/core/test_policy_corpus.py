"""The policy corpus: every YAML case under policy_corpus/ runs through one test."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentfirewall.policy.casefile import Case, load_cases, run_case

CORPUS = Path(__file__).parent / "policy_corpus"
CASES = load_cases(CORPUS)


def _case_id(case: Case) -> str:
    return f"{case.file.stem}: {case.name}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_corpus_case(case: Case) -> None:
    result = run_case(case)
    assert result.passed, result.message


def test_corpus_size_and_coverage() -> None:
    assert len(CASES) >= 60
    expectations = [case.data["expect"] for case in CASES]
    broken = [e for e in expectations if "error" in e]
    assert len(broken) >= 10, "one case per broken configuration"
    outcomes = {e.get("outcome") for e in expectations}
    assert {"allow", "deny", "require_approval"} <= outcomes


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    case_file = tmp_path / "wrong.yaml"
    case_file.write_text(
        "name: wrong on purpose\n"
        "action: {type: email.send}\n"
        "expect: {outcome: deny, rule: nothing/here}\n",
        encoding="utf-8",
    )
    (case,) = load_cases(case_file)
    result = run_case(case)
    assert not result.passed
    assert "outcome: expected `deny`, got `allow`" in result.message
    assert "rule: expected `nothing/here`, got `default`" in result.message
