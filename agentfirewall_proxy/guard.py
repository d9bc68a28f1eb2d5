"""Content guardrails on the request side: scan, hand detections to the engine, redact.

Runs only when a policy reads a content field (``config.guard.request`` is set by
``agentfirewall.policy.guard``): otherwise nothing here is called and a request costs
what it cost before. What is scanned: the URL path, the query parameters, the headers
(not ``Proxy-Authorization`` nor the agent's auth headers the connector replaces with
its own credential: they never leave the gateway) and the body the connector sees (up to
the inspection limit, gzip/deflate decoded). A body not read whole gets the strictest
outcome a content rule could give (``agentfirewall.policy.unseen``).

The detections reach the engine as ``content.secrets`` / ``content.pii`` (names of the
detectors that fired). Where they were (location and offset, never the text) goes in the
flow's reason, so the traffic log and approvals say which detector fired and where.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfirewall.content import (
    Finding,
    Scanner,
    body_pieces,
    content_attributes,
    describe,
    redact_value,
    request_pieces,
    scan_pieces,
)

if TYPE_CHECKING:
    from agentfirewall.connectors import HttpRequest
    from agentfirewall_proxy.flow import Flow

__all__ = [
    "content_attributes",
    "note_findings",
    "redacted_spec",
    "request_findings",
]

#: Never forwarded: not scanned (the connector's own auth header names are added).
_NOT_FORWARDED = ("proxy-authorization", "x-tameflare-agent", "x-tameflare-request-id")


def request_findings(scanner: Scanner, flow: Flow, request: HttpRequest) -> list[Finding]:
    """Every detection in what the request would carry upstream."""
    assert flow.connector is not None
    skip = {n.decode("latin-1") for n in flow.connector.auth_header_names}
    skip.update(_NOT_FORWARDED)
    pieces = request_pieces(request.path, request.query, request.headers, skip)
    if request.body:
        ctype = next((v for k, v in request.headers if k.lower() == "content-type"), "")
        pieces += body_pieces(request.body, ctype)
    return scan_pieces(scanner, pieces)


def note_findings(flow: Flow, findings: list[Finding], what: str) -> None:
    """Say in the flow's reason which detectors fired where (never what they found)."""
    if not findings:
        return
    note = f"{what}: {describe(findings)}"
    base = flow.reason or (flow.decision.reason if flow.decision else "")
    flow.reason = f"{base}; {note}" if base else note


def redacted_spec(scanner: Scanner, spec: dict[str, object]) -> dict[str, object]:
    """An action spec's strings and keys with every detection replaced (what an approver
    sees)."""
    result = redact_value(scanner, spec, scanner.names)
    assert isinstance(result, dict)
    return result
