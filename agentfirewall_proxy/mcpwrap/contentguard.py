"""Content guardrails over stdio, as the gateway keeps them over HTTP (docs/policies.md,
"Content guardrails"; ``agentfirewall.policy.guard``): only when a policy reads a content
field (``config.guard``); otherwise nothing here is called and nothing is scanned.

- A client message is scanned as the JSON body the server reads (re-serialised: what is
  forwarded), with the core's readers (``body_pieces``, ``scan_pieces``), as the gateway
  scans an MCP request's body: its detections reach the engine as ``content.secrets`` /
  ``content.pii`` (:func:`scan_request`). What a matching ``redact`` rule names is replaced
  before it goes (:func:`redact_request`): the body rewritten (``redact_body``) and read
  again; what is still found, or a rewrite that would change what names the message (a
  method, a tool's name, an id: guarantee 2), is refused (fail closed).
- A server message is scanned the same way and decided by the rules that read
  ``response.*`` (``response_verdict``), for the action of the request it answers (with
  that request's content fields) or, when it answers none (a notification, the server's
  own request), for ``mcp.stream.open`` (the stream such messages come on over HTTP):
  :func:`check_response` passes it, redacts it (rewritten and read again) or cuts it. In
  ``monitor`` nothing is cut or redacted, only flagged. A message that cannot be checked
  is cut (fail closed).

The mcp connector names no field as carrying text base64-encoded (``Connector.encoded``,
``response_encoded``), so a message's pieces are all there is to read, as over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentfirewall.connectors.bodies import parse_json
from agentfirewall.content import (
    Finding,
    Scanner,
    body_pieces,
    content_attributes,
    describe,
    redact_body,
    scan_pieces,
)
from agentfirewall.errors import AgentFirewallError
from agentfirewall.policy.guard import redactions, response_verdict
from agentfirewall_proxy.flow import Flow, Refusal
from agentfirewall_proxy.mcpwrap import messages as rpc

if TYPE_CHECKING:
    from collections.abc import Mapping

    from agentfirewall_proxy.mcpwrap.gate import Gate

__all__ = ["Checked", "check_response", "redact_request", "scan_request"]

#: How a message is read: as the JSON body of an MCP request or answer over HTTP.
_JSON = "application/json"


def _findings(scanner: Scanner, body: bytes) -> list[Finding]:
    return scan_pieces(scanner, body_pieces(body, _JSON))


def scan_request(scanner: Scanner, message: Any) -> list[Finding]:
    """Every detection in client `message` as it would be forwarded."""
    return _findings(scanner, rpc.dumps(message))


def _rewritten(
    scanner: Scanner, message: Any, names: frozenset[str]
) -> tuple[Any, int, list[Finding]]:
    """`message` with what the detectors `names` find replaced: (the message, how many
    replacements, what reading it again still finds: the caller refuses)."""
    body, count = redact_body(scanner, rpc.dumps(message), _JSON, names)
    left = [f for f in _findings(scanner, body) if f.detector in names]
    return (None if left else parse_json(body, connector="mcp")), count, left


def _named(message: Any) -> list[tuple[object, ...]]:
    """What names each member of `message`: its method, id and tool (or prompt) name."""
    out: list[tuple[object, ...]] = []
    for member in message if isinstance(message, list) else [message]:
        if not isinstance(member, dict):
            out.append((member,))
            continue
        params = member.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        out.append((member.get("method"), rpc.id_key(member.get("id")), name))
    return out


def redact_request(gate: Gate, flow: Flow, message: Any, attributes: Mapping[str, object]) -> Any:
    """`message` as it is to be forwarded: itself, or with what the ``redact`` rules that
    match it name replaced (``flow.redact``, ``flow.redacted``); Refusal (403) when that
    cannot be done (module docstring). `attributes`: what it was decided with."""
    config, agent, parsed = gate.config, gate.agent(), flow.parsed
    if config is None or agent is None or parsed is None or not flow.content:
        return message
    guard = config.guard
    if guard.request is None or not guard.redact_request:
        return message
    ctx = gate.context(agent, parsed, attributes)
    names = redactions(config.engine, guard, parsed.spec, ctx)[0]
    targeted = [f for f in flow.findings if f.detector in names]
    if not targeted:
        return message
    flow.redact = names
    try:
        out, count, left = _rewritten(guard.request, message, names)
    except AgentFirewallError:  # (two keys redacted alike: a key given twice)
        out, count, left = None, 0, targeted
    if out is None:
        raise Refusal(403, "denied", f"a redact rule cannot rewrite {describe(left)}")
    if _named(out) != _named(message):
        raise Refusal(403, "denied", f"a redact rule cannot rewrite {describe(targeted)}: "
                      "it names the message (its method, tool or id)")  # fmt: skip
    flow.redacted = count
    return out


@dataclass(frozen=True, slots=True)
class Checked:
    """What becomes of a server message (:func:`check_response`)."""

    #: ``pass``, ``redact`` or ``cut`` (as enforced: monitor passes).
    outcome: str
    #: The message as relayed (None when cut).
    message: Any
    #: ``response cut|redacted|flagged by rule `x`: <where>`` ("": nothing was found).
    note: str = ""
    #: The deciding rule's label ("" when none).
    rule: str = ""
    #: What the rules decided (``cut`` at monitor level too: recorded as would_deny).
    decided: str = "pass"


def check_response(gate: Gate, scanner: Scanner, message: Any, asked: Flow | None) -> Checked:
    """Server `message` checked by the response rules, as the answer to the request that
    went in `asked` (None: it answers none); any failure cuts (fail closed)."""
    try:
        return _checked(gate, scanner, message, asked)
    except Exception as exc:
        note = f"response cut: the content rules could not check it ({type(exc).__name__})"
        return Checked("cut", None, note, decided="cut")


def _checked(gate: Gate, scanner: Scanner, message: Any, asked: Flow | None) -> Checked:
    findings = _findings(scanner, rpc.dumps(message))
    if not findings:
        return Checked("pass", message)
    config, agent = gate.config, gate.agent()
    if config is None or agent is None or agent.status != "active":
        return Checked("cut", None, f"response cut: {describe(findings)}: its agent is not "
                       "active", decided="cut")  # fmt: skip
    parsed = asked.parsed if asked is not None and asked.parsed is not None else None
    parsed = parsed or gate.stream_action()
    content = asked.content if asked is not None else None
    attributes = {**(content or {}), **content_attributes(findings, "response")}
    ctx = gate.context(agent, parsed, attributes)
    decided, label, names = response_verdict(config.engine, config.guard, parsed.spec, ctx)
    outcome, shown = decided, label
    if agent.level == "monitor" and outcome != "pass":
        outcome, names, shown = "pass", frozenset(), f"{label} (monitor: not enforced)"
    what = {"cut": "cut", "redact": "redacted", "pass": "flagged"}[outcome]
    rule = f" by rule `{shown}`" if shown else ""
    note = f"response {what}{rule}: {describe(findings)}"
    if outcome == "cut":
        return Checked("cut", None, note, label, decided)
    if outcome == "pass":
        return Checked("pass", message, note, label, decided)
    out, _, left = _rewritten(scanner, message, names)
    if out is None:  # what a rewrite cannot reach (a number, a normalised reading): cut
        note = f"response cut{rule}: a redact rule cannot rewrite {describe(left)}"
        return Checked("cut", None, note, label, "cut")
    return Checked("redact", out, note, label, decided)
