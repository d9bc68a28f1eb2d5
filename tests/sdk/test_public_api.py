"""The flat public API: `__all__` is sorted, complete and importable; the core stays pure."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import agentfirewall
import agentfirewall.client

IGNORED = {"annotations", "TYPE_CHECKING"}


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name in dir(module)
        if not name.startswith("_")
        and name not in IGNORED
        and not isinstance(getattr(module, name), types.ModuleType)
    } | ({"__version__"} if hasattr(module, "__version__") else set())


@pytest.mark.parametrize("module", [agentfirewall, agentfirewall.client])
def test_all_is_sorted_and_complete(module: types.ModuleType) -> None:
    assert module.__all__ == sorted(module.__all__)
    assert set(module.__all__) == public_names(module)
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_sdk_names_are_exported_flat() -> None:
    for name in (
        "AgentFirewall",
        "AsyncAgentFirewall",
        "ActionResult",
        "Approved",
        "NotApproved",
        "ExecutionResult",
        "DryRunResult",
    ):
        assert name in agentfirewall.__all__
    assert agentfirewall.AgentFirewall is agentfirewall.client.AgentFirewall


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute `nope`"):
        _ = agentfirewall.nope  # type: ignore[attr-defined]


def test_importing_the_core_does_not_load_the_client() -> None:
    code = (
        "import sys, agentfirewall, agentfirewall.actions, agentfirewall.decisions\n"
        "print('httpx' in sys.modules, 'agentfirewall.client' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
