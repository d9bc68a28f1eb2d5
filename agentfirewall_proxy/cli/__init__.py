"""The `tf` command line: ``agentfirewall_proxy.cli:main`` (see docs/cli.md)."""

from __future__ import annotations

from agentfirewall_proxy.cli.app import main

__all__ = ["main"]
