"""Replayable decision inputs: what the engine was given, stored so it can be evaluated again.

:func:`record_input` turns the ``(spec, ctx)`` of one live decision into a small JSON-able
dict; :func:`restore_input` rebuilds them for :mod:`agentfirewall.policy.replay`. Stored:
the action type, resource, the evaluation context (mode, connector, enforcement level, SDK
default, route risk, content detector names, time) and the parameters a rule may read; for
a request the gateway decided as several actions (a GraphQL document, a JSON-RPC batch, an
S3 copy), each other action too (``"x"``, :func:`restore_also`).

Never stored: header values, bodies, parameter values that carry content, and secrets. A
parameter is *withheld* (only its name kept, under ``"w"``) when its connector lists it in
:data:`CONTENT_PARAMETERS` (message text, prompts, email subjects) or its action's
parameters are all content but a few (:data:`CONTENT_ACTIONS`: an MCP tool call's, its
arguments), when its name says it holds a secret whatever it looks like
(``access_token``, ``clientSecret``: the rule approvers are shown by,
``agentfirewall.content.credential_name``; or written before a value as a query writes
it, it is masked as approvers see it) or it is an object or a list with such a name (or
``body``) anywhere inside, when the decision's content detectors fired (the live or the
shadow policies') and its value holds what they find, or when its JSON form is longer
than :data:`MAX_VALUE_BYTES`; when they fired, a resource field holding what they find is
withheld too (``"w"``: ``resource.target``). A replayed rule reading a withheld field sees
it absent (never a marker), and the replay report counts such records as ``partial``. A
name listed under ``"w"`` is shown as approvers see it (a secret in it masked).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, get_args
from urllib.parse import unquote, unquote_plus

from agentfirewall.actions import ActionSpec, Risk, parse_action_spec
from agentfirewall.content import credential_name, masked
from agentfirewall.policy.engine import EvaluationContext

__all__ = [
    "CONTENT_ACTIONS",
    "CONTENT_PARAMETERS",
    "MAX_VALUE_BYTES",
    "RECORD_VERSION",
    "record_input",
    "restore_also",
    "restore_input",
    "shown_input",
    "withheld_credentials",
    "withheld_values",
]

RECORD_VERSION: Final = 1
#: A parameter whose JSON form is longer than this is withheld (it is content, not a knob).
MAX_VALUE_BYTES: Final = 256
#: Per connector (and for SDK actions, per provider): parameters that carry what a message
#: or a prompt says. Their values are never stored, whatever their size.
CONTENT_PARAMETERS: Final[dict[str, frozenset[str]]] = {
    "slack": frozenset({"text", "blocks", "attachments"}),
    "openai": frozenset({"messages", "input", "prompt", "instructions"}),
    "anthropic": frozenset({"messages", "system", "prompt"}),
    "sendgrid": frozenset({"subject", "body", "content"}),
    "email": frozenset({"subject", "body", "content"}),
    # MCP: a prompt's `arguments`, a completion's `argument` and the `arguments` in its
    # `context`, a batch's `members` (each member's parameters); a tool call's arguments are
    # its action's parameters (CONTENT_ACTIONS)
    "mcp": frozenset({"arguments", "argument", "context", "members"}),
}
#: Per connector (and for SDK actions, per provider): the actions (a type prefix) whose every
#: parameter carries content but the ones named: an MCP tool call's parameters are the
#: tool's arguments, beside ``tool``, its name.
CONTENT_ACTIONS: Final[dict[str, tuple[str, frozenset[str]]]] = {
    "mcp": ("mcp.tools.", frozenset({"tool"})),
}
_NOTHING: Final = frozenset[str]()
_RISKS: Final = frozenset(get_args(Risk))
#: Withheld for every connector: names that are bodies or secrets wherever they appear.
_ALWAYS: Final = frozenset(
    {"body", "content", "password", "secret", "token", "api_key", "authorization"}
)
_CONTAINERS: Final = (dict, list)


def _storable(value: object) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    if type(value) is str and value.isascii() and value.isprintable():
        # printable ASCII: its JSON form is itself, quoted, with `"` and `\` escaped
        extra = 2 + value.count('"') + value.count("\\")
        return len(value) + extra <= MAX_VALUE_BYTES
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8")) <= MAX_VALUE_BYTES


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    """Whether a value under `name` is withheld whatever it is: its name says credential,
    by the rule approvers are shown by (:func:`~agentfirewall.content.credential_name`), or
    `name` written before a value as a query writes it (``name=x0``) is masked as approvers
    see it: a detection in it (``AKIA…``), a URL's password, or a random run that the value
    after it makes a generic secret (``tokens=Ab3dEf5hIj7lMn9``)."""
    if credential_name(name):
        return True
    written = f"{name}=x0"
    return masked(written) != written


def _hidden(name: str) -> bool:
    """Whether a value under `name` is never stored (a body, a secret), wherever it is."""
    return name.lower() in _ALWAYS or _secret_name(name)


@functools.lru_cache(maxsize=4096)
def _shown_name(name: str) -> str:
    """A withheld name as approvers see it: a secret in it (``AKIA…``) masked."""
    return masked(name)


def _secret_value(value: object) -> bool:
    """Whether `value` holds what a detector finds (or a secret named inside it)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return masked(text) != text


def _names(value: object) -> Iterator[str]:
    """The names of the objects in `value`, at any depth."""
    if isinstance(value, dict):
        for name, inner in value.items():
            yield name
            yield from _names(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _names(inner)


def _content(key: str, action: object, params: dict[str, Any]) -> frozenset[str]:
    """The names of `params` whose values carry content, for an `action` of connector (or
    provider) `key`: those :data:`CONTENT_PARAMETERS` lists, and for an action of
    :data:`CONTENT_ACTIONS` every name but the ones it keeps."""
    content = CONTENT_PARAMETERS.get(key, _NOTHING)
    found = CONTENT_ACTIONS.get(key)
    if found is None or not isinstance(action, str) or not action.startswith(found[0]):
        return content
    return content.union([name for name in params if name not in found[1]])


def _split(
    values: dict[str, Any], content: frozenset[str], detected: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The values kept and the names withheld: a value under a name that says body or
    secret, or an object or a list with such a name inside, whatever it holds; with
    `detected` (the decision's content detectors fired), every value holding what
    :func:`masked` masks too. Values are scanned only then, as names are cached: a flat
    parameter costs no scan (the common case)."""
    kept: dict[str, Any] = {}
    withheld: list[str] = []
    for name, value in values.items():
        if (
            name in content
            or name.lower() in _ALWAYS
            or _secret_name(name)
            or not _storable(value)
            or (type(value) in _CONTAINERS and any(map(_hidden, _names(value))))
            or (detected and value is not None and not isinstance(value, bool | int | float)
                and _secret_value(value))
        ):  # fmt: skip
            withheld.append(name)
        else:
            kept[name] = value
    return kept, withheld


def record_input(
    spec: ActionSpec,
    ctx: EvaluationContext,
    *,
    unseen: bool = False,
    also: Sequence[tuple[ActionSpec, Risk]] = (),
    detected: bool = False,
) -> dict[str, Any]:
    """The replayable input of one decision (``unseen``: the gateway widened it because the
    body was not inspected whole, ``agentfirewall.policy.unseen``). `also`: the other
    actions of a request decided as several (each with its route risk; the strictest
    decision won), under ``"x"``: each one's type, parameters and risk hints withheld alike
    (their names under ``"w"`` as ``x<index>.<name>``), its risk, and its resource where
    it is not `spec`'s. `detected`: content detectors fired on the action, those of
    policies `ctx` does not hold the findings of too (the shadow policies'); a `ctx` with
    ``content.*`` fields is detected whatever it says."""
    key = ctx.connector or spec.resource.provider or ""
    if not detected and ctx.attributes:  # (most contexts hold no attribute)
        detected = any(name.startswith("content.") for name in ctx.attributes)
    out: dict[str, Any] = {"v": RECORD_VERSION, "t": spec.type, "m": ctx.mode}
    withheld = _action(out, spec, key, detected)
    if also:
        out["x"] = members = []
        for index, (other, risk) in enumerate(also):
            member: dict[str, Any] = {"t": other.type, "k": risk}
            withheld += [f"x{index}.{name}" for name in _action(member, other, key, detected)]
            if member.get("r", {}) == out.get("r", {}):
                member.pop("r", None)  # (restored from `spec`'s)
            else:
                member.setdefault("r", {})
            members.append(member)
    if withheld:
        out["w"] = [_shown_name(name) for name in withheld]
    if ctx.connector is not None:
        out["c"] = ctx.connector
    out["l"] = ctx.enforcement_level
    if ctx.mode == "sdk":
        out["d"] = ctx.sdk_default
    if ctx.risk is not None:
        out["k"] = ctx.risk
    if ctx.attributes:
        out["a"] = {k: v for k, v in ctx.attributes.items() if _storable(v)}
    if unseen:
        out["u"] = 1
    out["n"] = round(ctx.now.timestamp(), 6)
    return out


def _action(out: dict[str, Any], spec: ActionSpec, key: str, detected: bool) -> list[str]:
    """`spec`'s resource, parameters and risk hints into `out` (``r``, ``p``, ``h``), as
    :func:`_split` keeps them for connector (or provider) `key`; the names withheld."""
    resource = {k: v for k, v in spec.resource.__dict__.items() if v is not None}
    params = spec.parameters
    content = _content(key, spec.type, params)
    return _kept(out, resource, params, spec.risk_hints, content, detected)


def _kept(
    out: dict[str, Any],
    resource: dict[str, Any],
    params: dict[str, Any],
    hints: dict[str, Any],
    content: frozenset[str],
    detected: bool,
) -> list[str]:
    """`resource`, `params` and `hints` into `out` (``r``, ``p``, ``h``; the last two left
    out when nothing of them is kept) as :func:`_split` keeps them, and with `detected` a
    resource field holding what :func:`masked` masks withheld too; the names withheld."""
    params, withheld = _split(params, content, detected)
    hints, hidden = _split(hints, frozenset(), detected) if hints else ({}, [])
    withheld += [f"risk_hints.{h}" for h in hidden]
    if detected:
        secret = [k for k, v in resource.items() if _secret_value(v)]
        resource = {k: v for k, v in resource.items() if k not in secret}
        withheld += [f"resource.{k}" for k in secret]
    if resource or "r" in out:  # (a member's empty resource is not `spec`'s: kept)
        out["r"] = resource
    for key, kept in (("p", params), ("h", hints)):
        if kept:
            out[key] = kept
        else:
            out.pop(key, None)
    return withheld


def shown_input(data: Any) -> Any:
    """A stored record as it may be shown: what a version before secrets or content were
    withheld on record stored of one (a value with a secret name inside, a detection in a
    decision whose detectors fired, a secret in a withheld name, an MCP tool call's
    arguments) withheld or masked now, as :func:`record_input` does, in each action of
    ``"x"`` too."""
    if not isinstance(data, dict):
        return data
    attributes = data.get("a")
    detected = isinstance(attributes, dict) and any(n.startswith("content.") for n in attributes)
    out = dict(data)
    resource = out.get("r")
    key = out.get("c") or (resource.get("provider") if isinstance(resource, dict) else None)
    key = key if isinstance(key, str) else ""
    listed = out.pop("w", None)
    withheld = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
    withheld += _shown(out, key, detected)
    members = out.get("x")
    if isinstance(members, list):
        out["x"] = [dict(m) if isinstance(m, dict) else m for m in members]
        for index, member in enumerate(out["x"]):
            if isinstance(member, dict):
                withheld += [f"x{index}.{name}" for name in _shown(member, key, detected)]
    if withheld:
        out["w"] = [_shown_name(name) for name in withheld]
    return out


def _shown(out: dict[str, Any], key: str, detected: bool) -> list[str]:
    """One action of a stored record (its ``r``, ``p``, ``h``) as :func:`_kept` keeps it for
    connector (or provider) `key`."""
    parts = [out.get(part) for part in ("r", "p", "h")]
    if not any(isinstance(part, dict) and part for part in parts):
        return []
    resource, params, hints = (part if isinstance(part, dict) else {} for part in parts)
    content = _content(key, out.get("t"), params)
    return _kept(out, resource, params, hints, content, detected)


#: The parts of a stored action that hold its values, and how a value's name is written
#: under ``"w"`` when it is withheld.
_PARTS: Final = {"r": "resource.", "p": "", "h": "risk_hints."}


def withheld_credentials(data: Any) -> Any:
    """A stored record with each value that holds a credential withheld (its name under
    ``"w"``), whether or not content detectors fired, in each action of ``"x"`` too: what a
    gateway's traffic record stores of its decision (``agentfirewall_server.routes.
    trafficrows``), where the request's path and host are values (``resource.target``,
    ``path``) an agent writes a token into. A value is read as written and decoded (a URL's
    escapes, ``/x%3Faccess_token%3D…``, as its upstream reads them). Withholding what is
    withheld changes nothing."""
    return withheld_values(data, _holds_credential)


def withheld_values(data: Any, hidden: Callable[[str, str, object], bool]) -> Any:
    """A stored record with each value for which ``hidden(part, name, value)`` is true
    withheld, its name under ``"w"`` (shown as approvers see it), in each action of ``"x"``
    too; `part` is ``"r"`` (resource), ``"p"`` (parameters) or ``"h"`` (risk hints). A part
    left empty is removed, but a resource: an action of ``"x"`` without one takes the
    first's."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    withheld = _withhold(out, hidden)
    members = out.get("x")
    if isinstance(members, list):
        out["x"] = [dict(m) if isinstance(m, dict) else m for m in members]
        for index, member in enumerate(out["x"]):
            if isinstance(member, dict):
                withheld += [f"x{index}.{name}" for name in _withhold(member, hidden)]
    if withheld:
        listed = out.get("w")
        out["w"] = [*(listed if isinstance(listed, list) else []), *map(_shown_name, withheld)]
    return out


def _withhold(action: dict[str, Any], hidden: Callable[[str, str, object], bool]) -> list[str]:
    """The names of the values of `action` that `hidden` withholds, each taken out of it."""
    withheld: list[str] = []
    for key, prefix in _PARTS.items():
        part = action.get(key)
        if not isinstance(part, dict):
            continue
        secret = [name for name, value in part.items() if hidden(key, name, value)]
        if secret:
            withheld += [prefix + name for name in secret]
            action[key] = {n: v for n, v in part.items() if n not in secret}
            if not action[key] and key != "r":
                del action[key]
    return withheld


def _holds_credential(_part: str, name: str, value: object) -> bool:
    if _credential_text(name):
        return True
    if value is None or isinstance(value, bool | int | float):
        return False
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _credential_text(text)


@functools.lru_cache(maxsize=4096)
def _credential_text(text: str) -> bool:
    """Whether :func:`masked` finds something in `text`, as written or decoded."""
    return any(masked(read) != read for read in {text, unquote(text), unquote_plus(text)})


def restore_input(data: dict[str, Any], agent: str) -> tuple[ActionSpec, EvaluationContext]:
    """Rebuild ``(spec, ctx)`` from :func:`record_input`'s dict (raises ValueError when it is
    not one)."""
    if not isinstance(data, dict) or data.get("v") != RECORD_VERSION:
        raise ValueError("not a decision input record")
    spec = parse_action_spec(
        {
            "type": data["t"],
            "resource": data.get("r") or {},
            "parameters": data.get("p") or {},
            "risk_hints": data.get("h") or {},
        }
    )
    ctx = EvaluationContext(
        agent=agent,
        mode=data["m"],
        now=datetime.fromtimestamp(float(data["n"]), UTC),
        connector=data.get("c"),
        enforcement_level=data.get("l", "full_enforce"),
        sdk_default=data.get("d", "allow"),
        risk=data.get("k"),
        attributes=data.get("a") or {},
    )
    return spec, ctx


def restore_also(
    data: dict[str, Any], spec: ActionSpec, ctx: EvaluationContext
) -> tuple[tuple[ActionSpec, EvaluationContext], ...]:
    """The other actions of a request decided as several (:func:`record_input`'s ``also``),
    each with the context it was decided in, beside `spec` and `ctx` (:func:`restore_input`'s);
    ValueError when ``"x"`` is not what it wrote."""
    members = data.get("x", [])
    if not isinstance(members, list):
        raise ValueError("not a list of actions")
    restored = []
    for member in members:
        if not isinstance(member, dict) or member.get("k") not in _RISKS:
            raise ValueError("not a recorded action")
        other = parse_action_spec(
            {
                "type": member["t"],
                "resource": member.get("r", spec.resource.__dict__),
                "parameters": member.get("p") or {},
                "risk_hints": member.get("h") or {},
            }
        )
        restored.append((other, replace(ctx, risk=member["k"])))
    return tuple(restored)
