"""Framework integrations: ``agentfirewall.integrations.langchain`` and ``.crewai``.

Each wraps tools so that every call first asks the firewall. The frameworks are optional
extras, imported only when an integration module is used.
"""

from __future__ import annotations
