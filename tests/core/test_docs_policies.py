"""Every policy document shown in the docs loads as written: a user pastes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentfirewall.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.S)


def _policies() -> list[tuple[str, str]]:
    found = []
    for path in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            block = match.group(1)
            # a whole document: a top-level name and rules (excerpts start at `rules:`)
            if re.search(r"^name:", block, re.M) and re.search(r"^rules:", block, re.M):
                line = text[: match.start()].count("\n") + 2
                found.append((f"{path.name}:{line}", block))
    return found


@pytest.mark.parametrize(("where", "document"), _policies(), ids=[w for w, _ in _policies()])
def test_a_policy_in_the_docs_loads(where: str, document: str) -> None:
    load_policy(document, source=where)


def test_the_docs_show_policies() -> None:
    assert len(_policies()) >= 3
