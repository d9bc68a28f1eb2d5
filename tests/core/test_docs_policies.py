"""What docs/policies.md and docs/policy-packs.md show is real: every policy document loads
as written (a user pastes them), every command shown runs and prints what the doc prints,
and the loading rules hold. What the documents *decide* is test_docs_policies_behave.py;
the helpers here read the docs for both (an example is tested as it stands in the doc, and
a test id names the doc line).
"""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path

import pytest

from agentfirewall.__main__ import build_parser, main
from agentfirewall.errors import PolicyError
from agentfirewall.policy import casefile, load_policy, validate_policy_text
from agentfirewall.policy.packs import list_packs

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "docs" / "policies.md"
PACKS = ROOT / "docs" / "policy-packs.md"
_BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.S)


# --- reading the docs (test_docs_policies_behave.py reads them with these too) -----------


def _text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def _line(doc: Path, needle: str) -> int:
    """The line (1-based) of the first occurrence of `needle` in `doc`."""
    text = _text(doc)
    at = text.find(needle)
    assert at >= 0, f"{doc.name} no longer says {needle!r}"
    return text[:at].count("\n") + 1


def _where(doc: Path, needle: str) -> str:
    """``policies.md:123``: where `needle` is, for a test id."""
    return f"{doc.name}:{_line(doc, needle)}"


def _block(doc: Path, needle: str) -> tuple[int, str]:
    """The fenced block holding `needle`: (the line of its first content line, its text)."""
    text = _text(doc)
    for match in re.finditer(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        if needle in match.group(1):
            return text[: match.start(1)].count("\n") + 1, match.group(1)
    raise AssertionError(f"{doc.name} has no block with {needle!r}")


def _paragraph(doc: Path, start: str) -> str:
    """The text from `start` to the end of its paragraph."""
    return _text(doc).split(start, 1)[1].split("\n\n", 1)[0]


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def _table(doc: Path, header: str, *, after: int = 0) -> list[tuple[int, list[str]]]:
    """The rows of the first table after line `after` whose header starts with `header`,
    as (line, cells)."""
    lines = _text(doc).splitlines()
    start = next(i for i, line in enumerate(lines) if i >= after and line.startswith(header))
    rows = []
    for number, line in enumerate(lines[start + 2 :], start + 3):
        if not line.startswith("|"):
            break
        rows.append((number, _cells(line)))
    assert rows, f"{doc.name}: no table under {header!r}"
    return rows


def _ticked(text: str) -> list[str]:
    """The `code` spans of `text`."""
    return re.findall(r"`([^`]+)`", text)


PROTECT_LINE, PROTECT = _block(POLICIES, "name: protect-main")


# --- every policy document loads ---------------------------------------------------------


def _policies() -> list[tuple[str, str]]:
    found = []
    for path in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            block = match.group(1)
            line = text[: match.start()].count("\n") + 2
            if re.search(r"^name:", block, re.M) and re.search(r"^rules:", block, re.M):
                found.append((f"{path.name}:{line}", block))
            elif block.startswith("rules:"):  # an excerpt: the rules of some policy
                found.append((f"{path.name}:{line}", f"name: excerpt\n{block}"))
    return found


@pytest.mark.parametrize(("where", "document"), _policies(), ids=[w for w, _ in _policies()])
def test_a_policy_in_the_docs_loads(where: str, document: str) -> None:
    load_policy(document, source=where)


def test_the_docs_show_policies() -> None:
    assert len(_policies()) >= 4


def test_the_explained_example_file_is_the_documented_policy() -> None:
    """The explain example reads examples/policies/protect-main.yaml: the doc's policy."""
    shown = load_policy((ROOT / "examples/policies/protect-main.yaml").read_text())
    assert shown == load_policy(PROTECT)


# --- Tooling: the commands shown, run ----------------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


def test_the_explain_output_is_what_the_doc_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    line, block = _block(POLICIES, "$ python -m agentfirewall policy explain")
    command, _, shown = block.partition("Bot\n")
    words = shlex.split(command.replace("\\\n", " ") + "Bot")
    assert words[:3] == ["$", "python", "-m"]
    monkeypatch.chdir(ROOT)
    code, out = _run(words[4:], capsys)
    assert code == 0
    assert out == shown, f"policies.md:{line}: the output shown is not the real one"


def test_the_tooling_commands_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies/protect-main.yaml").write_text(PROTECT)
    assert _run(["policy", "validate", "policies/protect-main.yaml"], capsys)[0] == 0
    code, out = _run(["policy", "schema"], capsys)
    assert code == 0
    assert json.loads(out)["$schema"].startswith("https://json-schema.org/")
    code, out = _run(["policy", "packs"], capsys)
    assert code == 0
    assert [row.split(":")[0] for row in out.splitlines()] == [p.name for p in list_packs()]


def test_validate_prints_the_error_the_doc_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """'errors as file:line: `field`: message; exit 1', and the error under Loading rules."""
    shown = re.search(r"``(bad\.yaml:4: .*?)``", _text(POLICIES))
    assert shown is not None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("name: p\nrules:\n  - name: r\n    decision: maybe\n")
    code, out = _run(["policy", "validate", "bad.yaml"], capsys)
    assert (code, out.strip()) == (1, shown.group(1))


def test_the_explain_options_exist() -> None:
    shown = set(re.findall(r"(--[a-z-]+)", _paragraph(POLICIES, "`explain` reads an action")))
    policy = build_parser()._subparsers._group_actions[0].choices["policy"]  # type: ignore[union-attr]
    explain = policy._subparsers._group_actions[0].choices["explain"]  # type: ignore[union-attr]
    assert shown <= set(explain._option_string_actions)


def test_the_case_file_example_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cases = _block(POLICIES, "- name: merge into main waits for a human")
    folder = tmp_path / "tests/policies"
    (folder / "_policies").mkdir(parents=True)
    (folder / "_policies/protect-main.yaml").write_text(PROTECT)
    (folder / "cases.yaml").write_text(cases)
    monkeypatch.chdir(tmp_path)
    code, out = _run(["policy", "test", "tests/policies/"], capsys)
    assert (code, out.splitlines()[-1]) == (0, "2 passed, 0 failed")


def test_the_expect_keys_and_the_default_time_are_the_documented_ones() -> None:
    said = _paragraph(POLICIES, "`expect` keys:").split("for configurations")[0]
    keys = {k.split(":")[0] for k in _ticked(said) if re.fullmatch(r"[a-z_]+(: \{.*)?", k)}
    assert keys - {"default"} == set(casefile._EXPECT_KEYS)
    shared = _ticked(_paragraph(POLICIES, "**Test cases**").split("settings")[1].split("plus")[0])
    assert set(shared) == set(casefile._SHARED)
    assert "Monday\n5 January 2026, 12:00 UTC" in _text(POLICIES)
    assert casefile.DEFAULT_NOW == "2026-01-05T12:00:00+00:00"


def test_the_python_example_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, code = _block(POLICIES, "from agentfirewall.policy import AccessRule")
    (tmp_path / "protect-main.yaml").write_text(PROTECT)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "policies.md", "exec"), {})  # noqa: S102
    first = capsys.readouterr().out.splitlines()[0]
    # no environment: protect-main is out of scope; the pack holds a merge naming no base
    assert first.startswith("require_approval merges into the default branch")
    assert first.endswith(
        "('github-safe-defaults/merge-to-default-branch', 'Bot:github:github.pr.*')"
    )


def test_the_packs_doc_commands(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, block = _block(PACKS, "policy explain - --pack")
    piped = re.search(r"echo '(.*?)'", block)
    assert piped is not None
    monkeypatch.setattr("sys.stdin", io.StringIO(piped.group(1)))
    code, out = _run(["policy", "explain", "-", "--pack", "github-safe-defaults"], capsys)
    assert code == 0
    assert "=> deny: deleting repositories" in out
    for referenced in ("tests/core/policy_corpus/packs.yaml", "tests/proxy/test_packs_e2e.py"):
        assert (ROOT / referenced).is_file()


# --- Loading rules -----------------------------------------------------------------------

# fmt: off
YAML_12 = [  # (a value as written, the value read)
    ('"22:00"', "22:00"), ("22:00", "22:00"), ("2024-01-01", "2024-01-01"), ("true", True),
    ("false", False), ("True", True), ("TRUE", True), ("no", "no"), ("on", "on"), ("NO", "NO"),
    ("yes", "yes"), ("0x1A", 26), ("1_000", 1000),
]
REFUSED = [  # (a document, the error, its line)
    ("name: p\nname: q\nrules: [{name: r, decision: deny}]\n", "duplicate key", 2),
    ("name: &n p\nrules: [{name: *n, decision: deny}]\n", "anchors and aliases", 1),
    ("name: p\ndescription: " + "x" * (1024 * 1024) + "\nrules: [{name: r, decision: deny}]\n",
     "larger than 1 MiB", None),
    ("name: p\nrules:\n\t- {name: r, decision: deny}\n", "indent with spaces", 3),
]
# fmt: on
AT_YAML = _where(POLICIES, "YAML 1.2 way")
AT_REFUSED = _where(POLICIES, "Duplicate keys, anchors")


@pytest.mark.parametrize(("written", "read"), YAML_12, ids=[f"{AT_YAML}:{w}" for w, _ in YAML_12])
def test_scalars_read_the_yaml_1_2_way(written: str, read: object) -> None:
    policy = load_policy(
        "name: p\nrules:\n  - name: r\n    decision: deny\n    conditions:\n"
        f"      - {{field: parameters.x, operator: equals, value: {written}}}\n"
    )
    leaf = policy.rules[0].conditions.all[0]  # type: ignore[union-attr]
    assert leaf.value == read
    assert type(leaf.value) is type(read)


@pytest.mark.parametrize(
    ("text", "message", "line"), REFUSED, ids=[f"{AT_REFUSED}:{m}" for _, m, _ in REFUSED]
)
def test_what_the_loader_refuses(text: str, message: str, line: int | None) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        load_policy(text)
    assert caught.value.line == line


def test_the_misspellings_quoted_are_the_real_errors() -> None:
    """The 'A misspelt key, operator, field or decision' bullet quotes real errors."""
    quoted = re.findall(r"``(.*?)``", _paragraph(POLICIES, "- A misspelt key"))
    shell = "name: p\nrules:\n  - name: r\n    decision: {}\n    {}\n"
    errors = [
        str(e)
        for decision, line in [("deny", "condition: []"), ("block", ""),
                               ("deny", "conditions: [{field: x, operator: greater_than}]")]
        for e in validate_policy_text(shell.format(decision, line), source="p.yaml")
    ]  # fmt: skip
    assert len(quoted) == 3
    for quote in quoted:
        head, _, tail = quote.partition("...")
        assert any(head in error and tail in error for error in errors), quote
