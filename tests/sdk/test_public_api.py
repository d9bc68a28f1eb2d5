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


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    probe = f"import sys\n{code}\nprint(*[m in sys.modules for m in {modules!r}])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [
        name for name, loaded in zip(modules, done.stdout.split(), strict=True) if loaded == "True"
    ]


def test_light_modules_load_neither_pydantic_nor_the_engine() -> None:
    """`tf` and the SDK import errors, decisions and globs at start-up: the packages' names
    are lazy (agentfirewall._lazy), so those imports load none of the heavy parts."""
    heavy = ("pydantic", "agentfirewall.actions", "agentfirewall.policy.engine", "httpx")
    code = (
        "import agentfirewall.errors, agentfirewall.decisions, agentfirewall.policy.globs\n"
        "import agentfirewall.policy.packs\n"
        "assert agentfirewall.policy.packs.safe_default_packs()"
    )
    assert _loaded_after(code, heavy) == []


def test_lazy_names_are_the_defining_modules_objects() -> None:
    import agentfirewall.policy as policy
    from agentfirewall.policy import engine, packs

    for name in ("Engine", "EvaluationContext", "load_pack"):
        assert getattr(policy, name) is getattr(engine if name != "load_pack" else packs, name)
    assert set(policy.__all__) <= set(dir(policy))
    with pytest.raises(AttributeError, match="no attribute `nope`"):
        _ = policy.nope  # type: ignore[attr-defined]
