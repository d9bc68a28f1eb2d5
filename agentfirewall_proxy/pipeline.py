"""The per-request lifecycle as plain functions over a :class:`Flow` (no sockets here).

``exchange.py`` and ``connection.py`` call these in order::

    target_of / tunnel_target   where the request goes (refuses host mismatches)
    authenticate                which agent (407 when no valid proxy credential)
    snapshot.route              which connector (none: deny, the seed's deny-all)
    credential_target           where its credential may go: plain http upgraded to TLS or
                                refused, a tunnel to another port than the connector's refused
    clean_path                  one canonical path (dot-segments, %2e, control bytes)
    http_request                the connector's view (a gzip/deflate body decoded, capped;
                                one it cannot read one way only: 415)
    decide                      connector.parse -> content scan (when a rule reads it; the
                                fields the action carries base64 decoded) -> engine.evaluate
                                (fail closed; a body not fully inspected gets the strictest
                                outcome a rule could give, 413 where a redact rule could
                                apply, and is never allowed when a method-override
                                middleware reads it)
    check_upgrade               a WebSocket handshake: refused where a content rule could
                                apply (its messages go unread)
    bind_request                what an approval binds: method, host, path, query, the headers
                                its connector says matter, body digest
    serving                     after every wait, as it is sent (and before a held request's
                                approval is spent): the connector serving its host now
                                (removed, or of another type: refused; rotated: the new one)
    upstream_headers            agent auth replaced by the connector credential, X-TameFlare-*
    refusal                     the JSON answer for 403/407/408/4xx
    traffic_record              what is shipped to the control plane (no secrets, no bodies;
                                a path on which detectors fired masked: recorded_path)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentfirewall.connectors import Connector, HttpRequest
from agentfirewall.connectors.base import override_readable
from agentfirewall.connectors.upstream import UpstreamRefused, credential_upstream
from agentfirewall.content import (
    body_preview,
    request_pieces,
    scan_pieces,
    shown_path,
    shown_target,
)
from agentfirewall.content.shown import HEADERS_SHOWN, shown_headers
from agentfirewall.decisions import Decision
from agentfirewall.errors import AgentFirewallError
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.guard import redactions
from agentfirewall.policy.record import record_input
from agentfirewall.policy.unseen import (
    UNREDACTABLE,
    UNSEEN_REASON,
    content_rule,
    unseen_decision,
)
from agentfirewall_proxy.codings import content_codings, decoded_body, read_as_sent
from agentfirewall_proxy.flow import Flow, Refusal
from agentfirewall_proxy.guard import content_attributes, request_findings
from agentfirewall_proxy.http1 import Head, serialize_response_head
from agentfirewall_proxy.snapshot import Remembered

if TYPE_CHECKING:
    from agentfirewall.actions import ActionSpec, Risk
    from agentfirewall.connectors import ParsedAction
    from agentfirewall_proxy.entries import AgentEntry, ConnectorEntry
    from agentfirewall_proxy.snapshot import CompiledConfig

__all__ = [
    "BAD_CREDENTIAL",
    "Flow",
    "KeyRefused",
    "Refusal",
    "authenticate",
    "bind_request",
    "check_upgrade",
    "clean_path",
    "created_at",
    "credential_target",
    "decide",
    "normalize_host",
    "recorded_path",
    "refusal",
    "scan_path",
    "serving",
    "split_authority",
    "target_of",
    "traffic_record",
    "upstream_headers",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_HOST = re.compile(r"[/\\@?#%\s\[]")
#: Hop-by-hop and proxy headers never forwarded upstream.
_DROP_UP = frozenset(
    {
        b"proxy-authorization",
        b"proxy-connection",
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"content-length",
        b"upgrade",
        b"http2-settings",
        b"expect",
        b"host",
        b"x-tameflare-agent",
        b"x-tameflare-request-id",
    }
)
#: Asked of the upstream only when no credential is injected: compression and extensions
#: would hide a secret from the scrubber, ranges would hand it out piece by piece.
_UNSEARCHABLE = frozenset({b"accept-encoding", b"sec-websocket-extensions", b"range", b"if-range"})
#: What binds the headers of a request no connector names (every one but the volatile).
_UNKNOWN_API = Connector()


def normalize_host(host: str) -> str:
    """Lowercase, no brackets, no trailing dot: ``API.GitHub.com.`` -> ``api.github.com``."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host[:-1] if host.endswith(".") else host


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) -> (normalized host, port); Refusal if malformed."""
    host, port = authority, default_port
    if authority.startswith("["):
        end = authority.find("]")
        rest = authority[end + 1 :]
        host = authority[: end + 1]
        if rest:
            if not rest.startswith(":"):
                raise Refusal(400, "bad_request", f"invalid authority `{authority}`")
            port = _port(rest[1:], authority)
    elif ":" in authority:
        host, _, text = authority.rpartition(":")
        port = _port(text, authority)
    host = normalize_host(host)
    if not host or _BAD_HOST.search(host):
        raise Refusal(400, "bad_request", f"invalid host `{authority}`")
    return host, port


def _port(text: str, authority: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise Refusal(400, "bad_request", f"invalid port in `{authority}`")
    return int(text)


def target_of(head: Head) -> tuple[str, str, int, str]:
    """(scheme, host, port, path-and-query) of an absolute-form proxy request.

    The ``Host`` header, when present, must name the same authority as the URL: a request
    may not be decided for one host and delivered to another.
    """
    target = head.target.decode("latin-1")
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if not sep or scheme != "http":
        raise Refusal(
            400,
            "bad_request",
            "expected an absolute http:// url (use CONNECT for https)",
        )
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in authority:
        raise Refusal(400, "bad_request", "credentials in the request url are refused")
    host, port = split_authority(authority, 80)
    check_host_header(head, host, port, "http", authority)
    return scheme, host, port, path


def check_host_header(
    head: Head, host: str, port: int, scheme: str, authority: str | None = None
) -> None:
    """Refuse (421) a Host header naming another authority than the one decided on.

    `authority`: the text `host` and `port` were read from (with this scheme's default
    port); a Host header of the very same text names them too.
    """
    if head.names.count(b"host") > 1:
        raise Refusal(400, "bad_request", "more than one Host header")
    value = head.get(b"host")
    if value is None or value.decode("latin-1") == authority:
        return
    try:
        got_host, got_port = split_authority(value.decode("latin-1"), _DEFAULT_PORTS[scheme])
    except Refusal:
        raise Refusal(421, "misdirected_request", "invalid Host header") from None
    if (got_host, got_port) != (host, port):
        raise Refusal(
            421,
            "misdirected_request",
            f"Host header `{value.decode('latin-1')}` does not match `{host}:{port}`",
        )


def credential_target(
    connector: ConnectorEntry, scheme: str, host: str, port: int
) -> tuple[str, int]:
    """(scheme, port) upstream for a `scheme` request to `host`:`port` that carries
    `connector`'s credential: the rule every path applies
    (``agentfirewall.connectors.upstream.credential_upstream``). A plain ``http://``
    request is upgraded to the connector's TLS upstream, or stays plain on an admin's
    declared ``http://`` port; a tunnel goes only to the connector's TLS port for the host
    (its ``https://`` base URL's, else 443). Elsewhere, 403 ``cleartext_refused`` or
    ``port_refused``, saying why; a connector that injects nothing goes as asked."""
    try:
        return credential_upstream(
            scheme,
            host,
            port,
            declared=connector.base_url,
            default=connector.impl.base_url,
            credential=connector.has_credential,
            name=connector.name,
        )
    except UpstreamRefused as exc:
        raise Refusal(403, exc.code, str(exc)) from None


def serving(config: CompiledConfig, flow: Flow) -> ConnectorEntry:
    """The connector whose credential `flow` carries when it is sent now, after its waits
    (a hold, a budget, a token, its upstream connection): the one `config` routes its host
    to, whose credential (rotated meanwhile: the new one) may go to the flow's scheme and
    port (:func:`credential_target`). Refused (403), never sent with the credential it was
    decided with: its host served by no connector any more (``no_connector``: removed, or
    its domains changed), or by one of another type or base URL (``connector_changed``: it
    would name the request otherwise than the decision did)."""
    decided = flow.connector
    assert decided is not None
    found = config.route(flow.host)
    if found is decided:  # the config it was decided in
        return found
    if found is None:
        raise Refusal(403, "no_connector", f"no connector serves `{flow.host}` any more (its "
                      f"connector `{decided.name}` was removed or its domains changed while "
                      "the request waited): the request was not sent")  # fmt: skip
    if found.type != decided.type or found.base_url != decided.base_url:
        raise Refusal(403, "connector_changed", f"`{flow.host}` is served by connector "
                      f"`{found.name}` now, not `{decided.name}` that decided the request (it "
                      "changed while the request waited): the request was not sent; send "
                      "it again")  # fmt: skip
    credential_target(found, flow.scheme, flow.host, flow.port)
    return found


_PCT_DOT = ("%2e", "%2E")
#: Space, DEL and the control characters: never in a request path.
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def clean_path(target: str) -> tuple[str, str]:
    """(path, query) with dot-segments resolved; refuses what upstreams might read otherwise.

    ``%2e`` is decoded to ``.`` before resolving (so ``/a/%2e%2e/b`` is ``/b``), and the
    cleaned path is what is both decided on and forwarded. Backslashes, NUL/control
    bytes, fragments and an encoded ``/`` or ``\\`` inside ``..`` tricks are refused.
    """
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        raise Refusal(400, "bad_request", "expected an origin-form path starting with `/`")
    if "#" in target or "\\" in path or _CONTROL.search(path):
        raise Refusal(400, "bad_request", "invalid characters in the request path")
    lowered = path.lower()
    if "%5c" in lowered or "%00" in lowered:
        raise Refusal(400, "bad_request", "encoded backslash or NUL in the request path")
    for token in _PCT_DOT:
        path = path.replace(token, ".")
    if "/." in path:
        path = _remove_dot_segments(path)
    return path, query


def _remove_dot_segments(path: str) -> str:
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        elif segment == ".":
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


#: The one 407 reason for any key that does not let its holder in (``gateway`` uses it too).
BAD_CREDENTIAL = "invalid proxy credential"


class KeyRefused(Refusal):
    """The 407 for a well-formed key the configuration does not let in (unknown, revoked,
    past its lease, or its agent not active): perhaps a key made (or renewed) a moment ago,
    which a fresh look at the configuration may find. Its answer is the one 407, like any
    other."""

    def __init__(self) -> None:
        super().__init__(407, "proxy_auth_required", BAD_CREDENTIAL)


def authenticate(config: CompiledConfig, value: bytes | None) -> AgentEntry:
    """The agent whose API key is in ``Proxy-Authorization: Basic`` (password part)."""
    return agent_for_key(config, proxy_key_hash(value))


def proxy_key_hash(value: bytes | None) -> str:
    """The SHA-256 of the API key in ``Proxy-Authorization: Basic`` (407 when there is none)."""
    if not value:
        raise Refusal(407, "proxy_auth_required", "proxy credential required")
    scheme, _, encoded = value.partition(b" ")
    if scheme.lower() != b"basic":
        raise Refusal(407, "proxy_auth_required", "expected Basic proxy credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(407, "proxy_auth_required", "malformed proxy credentials") from None
    _, _, key = decoded.partition(b":")
    return hashlib.sha256(key).hexdigest()


def agent_for_key(config: CompiledConfig, key_hash: str, now: float | None = None) -> AgentEntry:
    """The active agent holding the key of `key_hash` in `config`, else :class:`KeyRefused`.

    A tunnel calls this for every request inside it, so a key revoked or past its lease (at
    `now`, the gateway's clock by default), an agent suspended or its enforcement level
    changed takes effect on connections already open.
    """
    agent = config.agent_for_key(key_hash, now)
    if agent is None or agent.status != "active":
        raise KeyRefused  # one answer for an unknown key and a suspended one's: no oracle
    return agent


def http_request(
    flow: Flow, head: Head, body: bytes, complete: bool, limit: int = 0
) -> HttpRequest:
    """The connector's view of the request (secret-bearing headers included: parse only).

    A body read to decide on (`limit`: the inspection limit) is seen as the upstream will
    read it: a ``gzip`` or ``deflate`` body is decoded (at most `limit` bytes: more is a
    prefix) and ``Content-Encoding`` dropped from this view, so the connector and the
    content guard read the same bytes. A body the gateway cannot decode completely and
    unambiguously is refused (415, ``codings.decoded_body``).
    """
    headers = tuple([(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers])
    if body and limit and b"content-encoding" in head.names:
        codings = content_codings(head)
        if not read_as_sent(codings):
            body, complete = decoded_body(codings, body, complete, limit)
            headers = tuple(h for h in headers if h[0].lower() != "content-encoding")
    return HttpRequest(
        method=flow.method,
        scheme=flow.scheme,
        host=flow.host,
        port=flow.port,
        path=flow.path,
        query=flow.query,
        headers=headers,
        body=body,
        body_complete=complete,
    )


def decide(config: CompiledConfig, flow: Flow, request: HttpRequest) -> Decision:
    """Parse the action and evaluate it; any failure is a deny (fail closed).

    When the connector read a body it did not see whole (``risk_hints.body_truncated``:
    beyond the inspection limit), the outcome is the strictest one a rule reading request
    data could give (``agentfirewall.policy.unseen``); where that is a redact rule, which
    cannot rewrite what was not read, the request is refused (413, :class:`Refusal`) at
    every level, as the redaction step refuses such a body; a body a method-override
    middleware reads is never allowed unseen (``_override_unseen``). A request decided as
    several actions records each (``record_input``'s `also`: replay decides it as live).

    A request without a body, decided without content or budget attributes, by rules that
    read no context field (``Engine.timeless``: so not the time), is decided the same way
    whenever it comes again under this snapshot: its action, decision and input record are
    remembered the second time it comes (``config.decided``, keyed by agent and connector
    entry, method, scheme, host, port, path, query and every header) and the next ones
    are answered from there, each input stamped with its own time.
    """
    assert flow.agent is not None
    assert flow.connector is not None
    now = datetime.now(UTC)
    scanner = config.guard.request
    key = None  # a decision on no body, no content and no budget: perhaps remembered
    plain = scanner is None and not flow.content and not flow.budget_view
    if plain and not request.body and request.body_complete:
        key = (id(flow.agent), id(flow.connector), request.method, request.scheme, request.host,
               request.port, request.path, request.query, request.headers)  # fmt: skip
        found = config.decided.get(key)
        if found is not None and found.agent is flow.agent and found.connector is flow.connector:
            return _remembered(found, flow, now)
    first = None
    if scanner is not None:  # a policy reads content fields: scan what would be sent
        first = _parse(flow, request)  # (which of its fields carry base64: decoded too)
        flow.findings = tuple(request_findings(scanner, flow, request, first))
        flow.content = content_attributes(list(flow.findings))
    attributes = flow.content
    if flow.budget_view:
        attributes = {**flow.budget_view, **(flow.content or {})}
    parsed, decision, evaluated = config.decide(
        flow.agent, flow.connector, request, now, attributes, first
    )
    unseen = scanner is not None and not request.body_complete
    if parsed is not None and (unseen or parsed.spec.risk_hints.get("body_truncated")):
        ctx = EvaluationContext(
            agent=flow.agent.name,
            mode="proxy",
            now=now,
            connector=flow.connector.type,
            enforcement_level=flow.agent.level,
            risk=parsed.risk,
            attributes=attributes or {},
        )
        decision = unseen_decision(config.engine, parsed.spec, ctx, decision)
    if (
        decision.outcome == "allow"
        and flow.connector.impl.any_upstream
        and _override_unseen(request)
    ):
        decision = Decision("deny", _OVERRIDE_UNSEEN, decided_outcome="deny",
                            errors=(_OVERRIDE_UNSEEN,))  # fmt: skip
    if parsed is not None and flow.content and config.guard.redact_request:
        ctx = EvaluationContext(
            agent=flow.agent.name, mode="proxy", now=now, connector=flow.connector.type,
            enforcement_level=flow.agent.level, risk=parsed.risk, attributes=attributes or {},
        )  # fmt: skip
        flow.redact = redactions(config.engine, config.guard, parsed.spec, ctx)[0]
    flow.parsed, flow.decision = parsed, decision
    flow.action = parsed.spec.type if parsed else None
    if parsed is not None and evaluated is not None:  # the context `parsed` was decided in
        widened = unseen or bool(parsed.spec.risk_hints.get("body_truncated"))
        also = _others(flow, request, first, parsed) if parsed.also else ()
        flow.input = record_input(parsed.spec, evaluated, unseen=widened, also=also)
    if key is not None and config.asked_before(key) and _timeless(config, flow.agent.name, parsed):
        config.remember(key, Remembered(flow.agent, flow.connector, parsed, decision, flow.input))
    if UNREDACTABLE in decision.errors and request.body:  # (not the head alone: no body yet)
        raise Refusal(413, "body_too_large", decision.reason)  # whatever the level, as redacting
    return decision


def _others(
    flow: Flow, request: HttpRequest, first: ParsedAction | None, parsed: ParsedAction
) -> list[tuple[ActionSpec, Risk]]:
    """The actions besides `parsed` (the deciding one) that the request of several was
    decided on (``snapshot.decide``: the strictest wins): the request's own (as `first`, or
    parsed again: a JSON-RPC batch decided as one member no longer holds it) and each
    other in ``also``."""
    whole = first if first is not None else _parse(flow, request)
    actions = [(a.spec, a.risk) for a in (whole, *whole.also)] if whole is not None else []
    for index, (spec, _) in enumerate(actions):
        if spec == parsed.spec:
            del actions[index]
            return actions
    return [(a.spec, a.risk) for a in parsed.also]  # (not parsed alike again: what it holds)


#: Why an upgrade is refused where a content rule could apply (:func:`check_upgrade`).
_UNREAD = "content rules cannot inspect WebSocket messages"


def check_upgrade(config: CompiledConfig, flow: Flow, decision: Decision) -> Decision:
    """`decision` on a request switching protocols (a WebSocket handshake), refused (403)
    when a content rule could apply to its action: the messages of an upgraded connection
    are relayed unread, so a rule denying, holding, cutting or redacting on what the
    detectors find in them, either way, could not (fail closed,
    ``agentfirewall.policy.unseen.content_rule``). At ``monitor`` level nothing is blocked:
    it passes, recorded ``would_deny``."""
    guard, parsed, agent = config.guard, flow.parsed, flow.agent
    if (guard.request is None and guard.response is None) or parsed is None or agent is None:
        return decision
    label = content_rule(config.engine, parsed.spec, agent.name)
    if label is None:
        return decision
    reason = (f"{_UNREAD}: rule `{label}` could apply to what they carry: use the HTTP API, "
              "or scope the rule's policy away from this action or agent")  # fmt: skip
    refused = Decision("deny", reason, risk_score=decision.risk_score,
                       matched_policies=decision.matched_policies, matched_rules=(label,),
                       errors=(_UNREAD,), enforcement_level=agent.level,
                       decided_outcome="deny")  # fmt: skip
    if agent.level == "monitor":  # nothing is blocked: what enforcing would do is recorded
        flow.decision = replace(refused, outcome="allow")
        return flow.decision
    flow.decision = refused
    raise Refusal(403, "denied", reason)


_OVERRIDE_UNSEEN = (
    f"{UNSEEN_REASON}: past the inspection limit it cannot be checked for a `_method` override"
)


def _override_unseen(request: HttpRequest) -> bool:
    """Whether `request` carries a body a method-override middleware reads
    (``base.override_readable``) that was not seen whole: a ``_method`` past the inspection
    limit would make the upstream perform another action than the one named. On a
    connector of any API (``Connector.any_upstream``: generic, webhook) such a request is
    never allowed (a rule that denies or holds it stands: a held one cannot bind its body,
    413)."""
    return (
        bool(request.body)
        and not request.body_complete
        and override_readable(request.method, request.header("content-type"))
    )


def _parse(flow: Flow, request: HttpRequest) -> ParsedAction | None:
    """The action `request` names, or None where the connector cannot name it (the decision
    that follows parses again, and denies)."""
    assert flow.connector is not None
    try:
        return flow.connector.impl.parse(request, base_url=flow.connector.base_url)
    except AgentFirewallError:
        return None


def _timeless(config: CompiledConfig, agent: str, parsed: ParsedAction | None) -> bool:
    """Whether the same request is decided the same way at any time (config.decided)."""
    if parsed is None:  # the connector could not name it: no engine, no time
        return True
    engine = config.engine
    if not engine.timeless(parsed.spec, agent):
        return False
    return not parsed.also or all(engine.timeless(other.spec, agent) for other in parsed.also)


def _remembered(found: Remembered, flow: Flow, now: datetime) -> Decision:
    """`decide` of a request decided before (same agent, connector, method, target and
    headers, no body): its action, decision and input record, stamped `now`."""
    parsed = found.parsed
    flow.parsed, flow.decision = parsed, found.decision
    flow.action = parsed.spec.type if parsed is not None else None
    if found.input is not None:  # (record_input's keys, "n" last, in the same order)
        flow.input = {**found.input, "n": round(now.timestamp(), 6)}
    return found.decision


def bind_request(flow: Flow, head: Head, body: bytes) -> dict[str, object]:
    """What an approval for `flow` binds, and what its approver is shown (no credential in
    the path, the query, a header or the body's preview: ``agentfirewall.content.shown``).
    `digest` covers method, scheme, host, port, path, raw query, ``Content-Type``,
    ``Content-Encoding``, the headers that change what the upstream does (:func:`bound_headers`)
    and the exact body bytes: any other request, even the same body re-encoded or the same
    upload with ``x-amz-acl: public-read``, has another digest.

    ``Content-Type`` and ``Content-Encoding`` are bound with every line sent, in order (one
    per line in the digest: a value holds no line break), as the upstream reads them all:
    the same bytes with a second ``Content-Encoding: gzip`` line are another request. Their
    approver sees the lines joined with ``, ``."""
    ctypes = [v.decode("latin-1") for v in head.get_list(b"content-type")]
    encodings = [v.decode("latin-1") for v in head.get_list(b"content-encoding")]
    ctype, encoding = "\n".join(ctypes), "\n".join(encodings)
    headers = bound_headers(flow, head)
    digest = hashlib.sha256()
    parts = (flow.method, flow.scheme, flow.host, str(flow.port), flow.path, flow.query)
    pairs = [part for pair in headers for part in pair]
    for part in (*parts, ctype, encoding, str(len(headers)), *pairs):
        data = part.encode("utf-8", "surrogateescape")
        digest.update(b"%d:%b;" % (len(data), data))
    digest.update(b"%d:" % len(body))
    digest.update(body)
    path, query = shown_target(flow.path, flow.query, detected=bool(flow.findings))
    declared = "*" not in _binding(flow).bound_headers  # (else every one: an unknown API)
    shown = {"headers": shown_headers(headers, declared=declared)} if headers else {}
    return {
        "method": flow.method,
        "host": flow.host,
        "path": path[:8192],
        "query": query[:8192],
        "content_type": ", ".join(ctypes)[:300],
        "content_encoding": ", ".join(encodings)[:100],
        "body_size": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_preview": body_preview(body, flow.findings),  # no credential, no detected text
        **shown,
        "digest": digest.hexdigest(),
    }


def bound_headers(flow: Flow, head: Head) -> list[tuple[str, str]]:
    """The request headers an approval for `flow` binds: those forwarded as sent (not the
    credential the gateway replaces, nor hop-by-hop ones) that its connector says change
    what the upstream does (``Connector.binds_header``). Names lower-case, sorted; a name
    sent more than once keeps its values in order. More than ``HEADERS_SHOWN`` (100): 431,
    they could not all be shown to the approver."""
    entry = flow.connector
    dropped = _DROP_UP | entry.auth_header_names if entry is not None else _DROP_UP
    connector = _binding(flow)
    found = []
    for raw, value in head.headers:
        name = raw.lower().decode("latin-1")
        if raw.lower() not in dropped and connector.binds_header(name):
            found.append((name, value.decode("latin-1")))
    if len(found) > HEADERS_SHOWN:
        message = f"more than {HEADERS_SHOWN} headers would bind this request to an approval"
        raise Refusal(431, "bad_request", message)
    return sorted(found, key=lambda pair: pair[0])


def _binding(flow: Flow) -> Connector:
    """The connector that says which headers an approval for `flow` binds."""
    return flow.connector.impl if flow.connector is not None else _UNKNOWN_API


def upstream_headers(
    head: Head,
    flow: Flow,
    host_header: bytes,
    content_length: int | None,
    *,
    chunked: bool,
    searchable: bool = False,
) -> list[tuple[bytes, bytes]]:
    """Forwarded headers: hop-by-hop and proxy headers dropped, agent auth replaced.

    The body framing is the caller's (at most one of `content_length` and `chunked`): the
    client's own ``Content-Length`` / ``Transfer-Encoding`` never pass. `searchable`: only
    what can be searched may come back (no compression, extensions or ranges asked for;
    ``Accept-Encoding: identity`` last).
    """
    assert content_length is None or not chunked
    connector = flow.connector
    assert connector is not None
    assert flow.agent is not None
    drop = _DROP_UP | connector.auth_header_names
    auth = connector.auth_headers
    if searchable:
        drop |= _UNSEARCHABLE
        # (the names of `auth` are among its lowercase `auth_header_names`)
        if not _UNSEARCHABLE.isdisjoint(connector.auth_header_names):
            auth = tuple([(k, v) for k, v in auth if k.lower() not in _UNSEARCHABLE])
    headers = [(b"Host", host_header)]
    headers.extend(
        [pair for pair, low in zip(head.headers, head.names, strict=True) if low not in drop]
    )
    headers.extend(auth)
    headers.append((b"X-TameFlare-Agent", flow.agent.name_header))
    headers.append((b"X-TameFlare-Request-Id", flow.request_id.encode("ascii")))
    if content_length is not None:
        headers.append((b"Content-Length", b"%d" % content_length))
    elif chunked:
        headers.append((b"Transfer-Encoding", b"chunked"))
    if searchable:
        headers.append((b"Accept-Encoding", b"identity"))
    return headers


def refusal(
    status: int, body: dict[str, Any], *, kill_switch: bool = False, close: bool = False
) -> bytes:
    """A complete JSON response (head and body) the gateway answers itself."""
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers = [
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"%d" % len(payload)),
        (b"Cache-Control", b"no-store"),
    ]
    if status == 407:
        headers.append((b"Proxy-Authenticate", b'Basic realm="TameFlare"'))
    if kill_switch:
        headers.append((b"X-TameFlare-Kill-Switch", b"active"))
    if "request_id" in body:
        headers.append((b"X-TameFlare-Request-Id", str(body["request_id"]).encode("ascii")))
    if close:
        headers.append((b"Connection", b"close"))
    return serialize_response_head(status, b"", headers) + payload


def traffic_record(flow: Flow) -> dict[str, Any]:
    """The Traffic row for `flow` (docs/api.md): never a header value, never a body.

    ``latency_ms`` is the whole exchange; ``held_ms`` the time its approval hold took
    (None: not held); ``overhead_ms`` the gateway's own time, until the request was about
    to go upstream or the gateway's own answer to be written, the hold excepted (None for
    a passthrough tunnel's record, whose exchange is the tunnel's whole life).
    """
    decision = flow.decision
    now = time.monotonic()
    # (milliseconds to the microsecond as round(ms, 3), at half its cost: per request)
    hold = flow.hold  # (ended 0: it ends held, the client gone or the gateway stopping)
    held = None if hold is None else (hold[1] or now) - hold[0]
    overhead = None
    if flow.method != "CONNECT" or flow.status != 200:
        own = (flow.handed_off or now) - flow.started - (held or 0.0)
        overhead = round(own * 1e6) / 1e3 if own > 0 else 0.0
    return {
        "request_id": flow.request_id,
        "agent": flow.agent.name if flow.agent else None,
        "agent_id": flow.agent.id if flow.agent else None,
        "connector": flow.connector.type if flow.connector else None,
        "action": flow.action,
        "method": flow.method,
        "host": flow.host,
        "path": recorded_path(flow),
        "decision": "killed" if flow.killed else (decision.outcome if decision else "deny"),
        "would_outcome": decision.would_outcome if decision else None,
        "status_code": flow.status,
        "latency_ms": round((now - flow.started) * 1e6) / 1e3,
        "overhead_ms": overhead,
        "held_ms": None if held is None else round(held * 1e6) / 1e3,
        "bytes_in": flow.bytes_in,
        "bytes_out": flow.bytes_out,
        "reason": (flow.reason or (decision.reason if decision else ""))[:1000],
        "input": flow.input,
        "created_at": created_at(time.time_ns()),
    }


def recorded_path(flow: Flow) -> str:
    """`flow`'s path as the traffic log keeps it (at most 2,048 characters): as sent, or,
    when content detectors fired on the request (on its path alone: :func:`scan_path`,
    whatever refused it before the rest was scanned), as its approver is shown it
    (``shown_target``): decoded, every detection of any detector and every credential
    masked. The control plane masks every credential in what it stores
    (``agentfirewall_server.routes.trafficrows``; masking every path here would cost each
    request tens of microseconds), but it cannot find one cut in two: a path longer than
    is kept is masked (``shown_path``) before it is cut."""
    if not flow.findings:
        path = flow.path
        return path if len(path) <= _RECORDED else shown_path(path)[:_RECORDED]
    return shown_target(flow.path, "", detected=True)[0][:_RECORDED]


#: The longest path a traffic record keeps.
_RECORDED = 2048


def scan_path(config: CompiledConfig, flow: Flow) -> None:
    """Where content rules are in force, the detections in `flow`'s path alone, as soon as
    it is known: a request refused before ``decide`` scans it whole (no connector for its
    host, the kill switch, a malformed upgrade) is recorded with that path masked too
    (:func:`recorded_path`). No content rule: nothing is scanned."""
    scanner = config.guard.request
    if scanner is not None:
        flow.findings = tuple(scan_pieces(scanner, request_pieces(flow.path, "", ())))


_second: tuple[int, str] = (-1, "")


def created_at(ns: int) -> str:
    """``%Y-%m-%dT%H:%M:%S.%fZ`` (UTC) of `ns` nanoseconds since the epoch; the part up to
    the second is formatted once per second."""
    global _second
    seconds, micros = divmod(ns // 1000, 1_000_000)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds)))
    return f"{_second[1]}{micros:06d}Z"
