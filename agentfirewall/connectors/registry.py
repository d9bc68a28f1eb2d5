"""The explicit registry of connector types.

Each connector module exposes one ``CONNECTOR``; this module lists them by hand, so
what ships is what is written here.
"""

from __future__ import annotations

import functools

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import (
    anthropic,
    aws,
    github,
    mcp,
    methods,
    openai,
    sendgrid,
    slack,
    stripe,
)
from agentfirewall.connectors.base import Connector
from agentfirewall.errors import ConnectorError

__all__ = [
    "action_aliases",
    "connector_types",
    "encoded_parameters",
    "get_connector",
    "performed_as",
    "provider_problem",
]

_REGISTRY: dict[str, Connector] = {
    connector.name: connector
    for connector in (
        github.CONNECTOR,
        openai.CONNECTOR,
        anthropic.CONNECTOR,
        stripe.CONNECTOR,
        slack.CONNECTOR,
        mcp.CONNECTOR,
        methods.WEBHOOK,
        methods.GENERIC,
        sendgrid.CONNECTOR,
        aws.CONNECTOR,
    )
}


def get_connector(type: str) -> Connector:
    """The connector of `type`, or ConnectorError naming the known types."""
    try:
        return _REGISTRY[type]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY))
        raise ConnectorError(
            f"unknown connector type `{str(type)[:100]}`: known types are {known}"
        ) from None


def provider_problem(spec: ActionSpec) -> str | None:
    """Why `spec`'s provider is not the connector that sends it, if it is not: a
    ``webhook.*`` action is the webhook connector's alone (``methods.WEBHOOK`` builds no
    other type), and an SDK action is decided, stopped, held and approved as its provider,
    so one named ``webhook.post`` with the provider ``x`` would be decided as the connector
    ``x`` and sent with the webhook connector's credential. One check on the hot path."""
    if spec.type.startswith("webhook.") and spec.provider != "webhook":
        return (
            "`webhook.*` actions are sent by the webhook connector: set resource.provider"
            " to `webhook` (or leave it out)"
        )
    return None


def connector_types() -> list[str]:
    """Every registered connector type, sorted."""
    return sorted(_REGISTRY)


def action_aliases(action_type: str) -> tuple[str, ...]:
    """Other names access rules may use for `action_type`.

    The generic connector names its actions ``http.<method>``; the seed's examples grant
    ``generic.get`` / ``generic.post``. Both spellings name the same action:
    ``http.get`` → ``("generic.get",)`` and ``generic.get`` → ``("http.get",)``.
    """
    provider, _, rest = action_type.partition(".")
    if provider == "http" and rest:
        return (f"generic.{rest}",)
    if provider == "generic" and rest:
        return (f"http.{rest}",)
    return ()


def performed_as(spec: ActionSpec) -> ActionSpec | None:
    """`spec` named as the action its connector performs, when its type is a build alias
    (``payment.transfer.initiate`` runs as ``stripe.transfer.create``, ``github.pr.comment``
    as ``github.issue.comment``), with the alias's parameter renames; None otherwise.

    Rules written for the action performed must hold for its alias too: the control plane
    decides on both and keeps the stricter answer.
    """
    connector = _REGISTRY.get(spec.provider)
    alias = getattr(connector, "build_aliases", {}).get(spec.type) if connector else None
    if alias is None:
        return None
    parameters = dict(spec.parameters)
    for old, new in alias.renames.items():
        if old in parameters and new not in parameters:
            parameters[new] = parameters.pop(old)
    return spec.model_copy(update={"type": alias.action, "parameters": parameters})


@functools.lru_cache(maxsize=1024)
def encoded_parameters(provider: str | None, action: str) -> tuple[str, ...]:
    """Where the parameters of an action decided from its spec (SDK mode) carry text
    base64-encoded (``parameters.content`` of ``github.file.create``), for the content guard
    to decode (``Connector.encoded_parameters``); () for an unknown provider. No provider:
    the action type's first segment, as ``ActionSpec.provider`` reads it."""
    connector = _REGISTRY.get(provider or action.partition(".")[0])
    return connector.encoded_parameters(action) if connector is not None else ()
