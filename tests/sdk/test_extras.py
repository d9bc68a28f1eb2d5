"""Without the framework installed, an integration says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("langchain", "langchain_core", "pip install 'tameflare[langchain]'"),
    ("crewai", "crewai", "pip install 'tameflare[crewai]'"),
]


@pytest.mark.parametrize(("module", "blocked", "command"), CASES)
def test_missing_framework_names_the_extra(module: str, blocked: str, command: str) -> None:
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None\n"  # what an uninstalled package looks like
        f"from agentfirewall.integrations.{module} import firewall_tool, guard_tools\n"
        "from agentfirewall import AgentFirewall\n"
        "fw = AgentFirewall(api_key='aaf_test_x')\n"
        "for call in (lambda: firewall_tool(fw), lambda: guard_tools([], fw)):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(out) == 2
    assert all(command in line for line in out)


def test_importing_the_integrations_does_not_import_the_frameworks() -> None:
    code = (
        "import sys\n"
        "import agentfirewall.integrations.langchain, agentfirewall.integrations.crewai\n"
        "print(sorted(m for m in ('langchain_core', 'crewai') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
