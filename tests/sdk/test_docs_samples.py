"""The Python samples of docs/sdk.md, run as written (only the environment is the test's).

A sample a user pastes must run: every name it uses imported or defined, every file it
opens in this repository. Each block is taken from the document itself, so editing the
docs without keeping them runnable fails here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.sdk.liveagent import ExecutingServer

REPO = Path(__file__).resolve().parents[2]
_BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "sdk.md").read_text(), re.S)


def _block(containing: str) -> str:
    found = [block for block in _BLOCKS if containing in block]
    assert len(found) == 1, f"one block of docs/sdk.md should contain {containing!r}"
    return found[0]


def _run(source: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO)
    namespace: dict[str, Any] = {"__name__": "docs_sample"}
    exec(compile(source, "docs/sdk.md", "exec"), namespace)  # noqa: S102
    return namespace


def test_the_errors_sample_runs(mode_a: ExecutingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    mode_a.clear()
    agent = mode_a.agent("docs")
    ran = _run(_block("except ServerError as exc:"), agent.env(), monkeypatch)
    ran["tf"].close()
    assert ran["result"].status == "allowed"
    assert mode_a.fake("stripe").received("POST", "/v1/transfers")  # executed, once
    assert len(mode_a.fake("stripe").received("POST", "/v1/transfers")) == 1


def test_the_langchain_sample_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AAF_API_KEY": "aaf_test_" + "0" * 32, "AAF_BASE_URL": "http://127.0.0.1:9/api"}
    ran = _run(_block("guard_tools(["), env, monkeypatch)  # defining tools sends nothing
    assert [t.name for t in ran["tools"]] == ["merge_pull_request", "search_issues"]
    ran["firewall"].close()


def test_the_testing_sample_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AAF_API_KEY", raising=False)
    ran = _run(_block("FirewallTransport(policies="), dict(os.environ), monkeypatch)
    assert ran["held"].status == "pending_approval"
    assert ran["approved"]
