"""Content guardrails on the request side: scan, hand detections to the engine, redact.

Runs only when a policy reads a content field (``config.guard.request`` is set by
``agentfirewall.policy.guard``): otherwise nothing here is called and a request costs
what it cost before. What is scanned: the URL path, the query parameters, the headers
(not ``Proxy-Authorization`` nor the agent's auth headers the connector replaces with
its own credential: they never leave the gateway) and the body the connector sees (up to
the inspection limit, gzip/deflate decoded), and the text of each field the connector
names as carrying it base64-encoded (``Connector.encoded``: GitHub's contents API
``content``, a git blob, ``createCommitOnBranch``'s additions, read from the action's
parameters wherever the document spelled them), decoded (``agentfirewall.content.encoded``).
A body not read whole gets the strictest outcome a content rule could give
(``agentfirewall.policy.unseen``).

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
    decoded_pieces,
    describe,
    encoded_body_pieces,
    redact_value,
    request_pieces,
    scan_pieces,
    value_pieces,
)

if TYPE_CHECKING:
    from agentfirewall.connectors import HttpRequest, ParsedAction
    from agentfirewall.content.locate import Piece
    from agentfirewall_proxy.flow import Flow

__all__ = [
    "content_attributes",
    "note_findings",
    "redacted_spec",
    "request_findings",
]

#: Never forwarded: not scanned (the connector's own auth header names are added).
_NOT_FORWARDED = ("proxy-authorization", "x-tameflare-agent", "x-tameflare-request-id")


def request_findings(
    scanner: Scanner, flow: Flow, request: HttpRequest, parsed: ParsedAction | None = None
) -> list[Finding]:
    """Every detection in what the request would carry upstream (`parsed`: the action it
    names, whose connector says which fields carry text base64-encoded)."""
    assert flow.connector is not None
    skip = {n.decode("latin-1") for n in flow.connector.auth_header_names}
    skip.update(_NOT_FORWARDED)
    pieces = request_pieces(request.path, request.query, request.headers, skip)
    ctype = ""
    body: list[Piece] = []
    if request.body:
        ctype = next((v for k, v in request.headers if k.lower() == "content-type"), "")
        body = body_pieces(request.body, ctype)
        pieces += body
    if parsed is not None:
        connector = flow.connector.impl
        encoded = connector.encoded(parsed)
        if parsed.also:  # (several actions: each one's)
            more = [loc for action in parsed.also for loc in connector.encoded(action)]
            encoded = tuple(dict.fromkeys([*encoded, *more]))
        if encoded:  # (none: the common case, nothing more to do)
            pieces += _decoded(parsed, encoded, request.body, ctype, body)
    return scan_pieces(scanner, pieces)


def _decoded(
    parsed: ParsedAction, encoded: tuple[str, ...], data: bytes, ctype: str, body: list[Piece]
) -> list[Piece]:
    """The decoded text of the fields `parsed`'s actions carry base64-encoded (`encoded`):
    in the body, or among an action's parameters (a GraphQL mutation's, inline or in
    variables)."""
    out = encoded_body_pieces(data, ctype, encoded, body)
    wanted = [loc for loc in encoded if loc.startswith("parameters.")]
    for action in (parsed, *parsed.also) if wanted else ():
        out += decoded_pieces(value_pieces(action.spec.parameters, "parameters"), wanted)
    return out


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
