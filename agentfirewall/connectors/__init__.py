"""Connectors: turn HTTP requests into named actions, and actions into requests.

One module per upstream (github, openai, anthropic, stripe, slack, mcp, webhook,
generic, sendgrid), each a table of routes read by one shared matcher
(:mod:`agentfirewall.connectors.routes`), registered explicitly in
:mod:`agentfirewall.connectors.registry`. Pure code: no I/O, no clock.
"""

from __future__ import annotations

from agentfirewall.connectors.base import Connector
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction
from agentfirewall.connectors.registry import action_aliases, connector_types, get_connector
from agentfirewall.connectors.router import ConnectorRouter, RoutedConnector
from agentfirewall.errors import ConnectorError

__all__ = [
    "ActionInfo",
    "Connector",
    "ConnectorError",
    "ConnectorRouter",
    "HttpRequest",
    "ParsedAction",
    "RoutedConnector",
    "action_aliases",
    "connector_types",
    "get_connector",
]
