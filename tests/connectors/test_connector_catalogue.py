"""The registry, the generated catalogue and the package's public surface."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import agentfirewall.connectors as connectors
from agentfirewall.actions import is_action_type
from agentfirewall.connectors import ConnectorError, connector_types, get_connector
from agentfirewall.connectors.catalogue import render_catalogue

DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"

MINIMUM = {"github": 40, "openai": 24, "anthropic": 4, "stripe": 40, "slack": 35}


def test_committed_catalogue_is_the_generated_one() -> None:
    assert DOC.read_text(encoding="utf-8") == render_catalogue(), (
        "docs/connectors.md is stale: run `python -m agentfirewall.connectors > docs/connectors.md`"
    )


def test_module_prints_the_catalogue() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentfirewall.connectors"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert out == render_catalogue()


def test_registry_lists_the_contract_types() -> None:
    assert connector_types() == sorted(
        [
            "github",
            "openai",
            "anthropic",
            "stripe",
            "slack",
            "mcp",
            "webhook",
            "generic",
            "sendgrid",
            "aws",
        ]
    )
    for name in connector_types():
        connector = get_connector(name)
        assert connector.name == name
        assert connector.auth_header_names
        assert all(h == h.lower() for h in connector.auth_header_names)
        assert connector.body_limit >= 0


@pytest.mark.parametrize(("name", "minimum"), sorted(MINIMUM.items()))
def test_action_counts(name: str, minimum: int) -> None:
    actions = get_connector(name).actions()
    assert len({a.type for a in actions}) >= minimum
    for info in actions:
        assert is_action_type(info.type), info.type
        assert info.risk in ("low", "medium", "high")
        assert info.description


def test_facts_write_actions_have_their_documented_risk() -> None:
    documented = {
        "github.pr.create": "low", "github.pr.merge": "medium", "github.pr.update": "low",
        "github.pr.close": "low", "github.pr.review": "low", "github.issue.create": "low",
        "github.issue.update": "low", "github.issue.close": "low", "github.branch.create": "low",
        "github.branch.delete": "high", "github.release.create": "medium",
        "github.release.delete": "high", "github.file.create": "low", "github.file.update": "low",
        "github.file.delete": "medium", "github.repo.create": "medium",
        "github.repo.delete": "high", "github.repo.update": "low", "github.org.update": "medium",
        "github.team.create": "low",
    }  # fmt: skip
    risks = {a.type: a.risk for a in get_connector("github").actions()}
    assert {k: risks[k] for k in documented} == documented


def test_unknown_type() -> None:
    with pytest.raises(ConnectorError, match=r"unknown connector type `gitlab`: known types are "):
        get_connector("gitlab")


def test_public_surface_is_sorted_and_complete() -> None:
    assert connectors.__all__ == sorted(connectors.__all__)
    for name in connectors.__all__:
        assert hasattr(connectors, name)


def test_connectors_import_no_io_libraries() -> None:
    code = (
        "import sys, agentfirewall.connectors\n"
        "bad = {'httpx', 'anyio', 'starlette', 'uvicorn'} & set(sys.modules)\n"
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"
