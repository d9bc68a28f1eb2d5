"""Connectors: turn HTTP requests into named actions, and actions into requests.

One module per upstream (github, openai, anthropic, stripe, slack, mcp, webhook,
generic, sendgrid), each a table of routes read by one shared matcher
(:mod:`agentfirewall.connectors.routes`), registered explicitly in
:mod:`agentfirewall.connectors.registry`. Pure code: no I/O, no clock.

How the parts fit, bottom-up (a module imports only from the lines below its own;
`.importlinter` holds the same order)::

    model, paths, bodies, awshosts,  request and action types; path and body parsing; AWS
      computed_doc, github_mutations   hosts; data (catalogue text, GraphQL mutations)
    routes, scan, awss3              the route matcher; the large-body JSON scanner; S3 naming
    base, build                      the Connector base class; building the request for an
                                       action (it names its connector by a Protocol)
    table, github_graphql            RouteConnector: a route table plus settings; GraphQL
    github, openai, stripe, aws,     one module per upstream (mostly data for RouteConnector);
      mcp, methods, ...                webhook and generic
    registry                         every connector, registered explicitly
    router                           which configured connector serves a host
    catalogue, __main__              the catalogue page (docs/connectors.md) and its command
"""

from __future__ import annotations

from agentfirewall.connectors.base import Connector
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction
from agentfirewall.connectors.registry import (
    action_aliases,
    connector_types,
    encoded_parameters,
    get_connector,
    performed_as,
    provider_problem,
)
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
    "encoded_parameters",
    "get_connector",
    "performed_as",
    "provider_problem",
]
