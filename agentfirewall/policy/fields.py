"""Field paths: what a condition looks at, compiled to small getter closures.

Addressable fields (``action_spec.`` is optional in front of the action's own fields)::

    action_spec.type                    the action type
    action_spec.parameters.<path>       a parameter; dotted paths walk nested objects and
                                        lists (``parameters.files.0.path``)
    action_spec.resource.<name>         provider, account, target, environment
    action_spec.risk_hints.<path>       a risk hint sent by the caller
    context.agent                       the agent's name
    context.time                        the evaluation time (EvaluationContext.now)
    context.mode / connector / risk / enforcement_level
    context.<attribute>                 any other key of EvaluationContext.attributes
    content.secrets / content.pii       names of the detectors that fired on the request
    response.secrets / response.injection   ... on the upstream's response (gateway only)

A getter returns :data:`MISSING` when the field is absent, so every operator can
answer false instead of raising.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from agentfirewall.actions import ActionSpec

if TYPE_CHECKING:
    from agentfirewall.policy.context import EvaluationContext

__all__ = [
    "CONTENT_FIELDS",
    "FIELD_ROOTS",
    "MISSING",
    "Getter",
    "compile_field",
    "direct_key",
    "misspelt_context",
    "reads_context",
]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: Marker for an absent field (distinct from JSON null).
MISSING: Final = _Missing()

Getter = Callable[[ActionSpec, "EvaluationContext"], object]

FIELD_ROOTS = (
    "action_spec.type",
    "action_spec.parameters.<path>",
    "action_spec.resource.<name>",
    "action_spec.risk_hints.<path>",
    "context.agent",
    "context.time",
    "context.<attribute>",
    "content.secrets",
    "content.pii",
    "response.secrets",
    "response.injection",
    "budget.<name>.remaining",
    "budget.<name>.used",
)
#: Fields the gateway fills from its content detectors (``agentfirewall.content``), in
#: ``EvaluationContext.attributes`` under the same name; absent when nothing fired.
CONTENT_FIELDS = frozenset(
    ("content.secrets", "content.pii", "response.secrets", "response.injection")
)
_RESOURCE_NAMES = ("provider", "account", "target", "environment")
_CONTEXT_ATTRS = ("agent", "mode", "connector", "risk", "enforcement_level")
_MAX_PATH = 16
#: the context's own names, as a condition reads them (``context.<name>``)
_CONTEXT_NAMES = ("time", *_CONTEXT_ATTRS)


def _walk(value: object, path: tuple[str, ...]) -> object:
    for key in path:
        if type(value) is dict:
            value = value.get(key, MISSING)
        elif type(value) is list and key.isdigit():
            index = int(key)
            value = value[index] if index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def _path_getter(root: str, path: tuple[str, ...]) -> Getter:
    if root == "parameters":
        if len(path) == 1:
            key = path[0]
            return lambda spec, ctx: spec.parameters.get(key, MISSING)
        return lambda spec, ctx: _walk(spec.parameters, path)
    if len(path) == 1:
        key = path[0]
        return lambda spec, ctx: spec.risk_hints.get(key, MISSING)
    return lambda spec, ctx: _walk(spec.risk_hints, path)


def _resource_getter(name: str) -> Getter:
    def get(spec: ActionSpec, ctx: EvaluationContext) -> object:
        value = getattr(spec.resource, name)
        return MISSING if value is None else value

    return get


def _context_getter(name: str) -> Getter:
    if name == "time":
        return lambda spec, ctx: ctx.now
    if name in _CONTEXT_ATTRS:

        def get(spec: ActionSpec, ctx: EvaluationContext) -> object:
            value = getattr(ctx, name)
            return MISSING if value is None else value

        return get
    return lambda spec, ctx: ctx.attributes.get(name, MISSING)


#: The roots whose getters read the EvaluationContext; every other field reads the spec only.
_CONTEXT_ROOTS = ("context", "content", "response", "budget")


def reads_context(field: str) -> bool:
    """True when `field`'s getter reads the evaluation context (not the spec alone)."""
    return field.split(".", 1)[0] in _CONTEXT_ROOTS


def direct_key(field: str) -> tuple[str, str] | None:
    """``("parameters", key)``, ``("resource", name)`` or ``("type", "")`` for the fields
    a condition can read inline (one dict or attribute lookup); None for the rest."""
    parts = field.split(".")
    rest = parts[1:] if parts[0] == "action_spec" else parts
    if rest == ["type"]:
        return ("type", "")
    if len(rest) == 2 and rest[0] == "parameters":
        return ("parameters", rest[1])
    if len(rest) == 2 and rest[0] == "resource" and rest[1] in _RESOURCE_NAMES:
        return ("resource", rest[1])
    return None


def misspelt_context(field: str) -> str | None:
    """The built-in context field `field` was most likely meant to be (``context.time`` for
    ``context.now``, ``context.agent`` for ``context.agnet``), else None.

    Any other ``context.<name>`` reads the caller's attribute of that name, so a misspelt
    built-in one loads and is absent at every evaluation: its leaf is always false.
    """
    root, _, name = field.partition(".")
    if root != "context" or not name or "." in name or name in _CONTEXT_NAMES:
        return None
    if name.lower() in ("now", "timestamp", "datetime"):  # EvaluationContext.now is `time`
        return "context.time"
    near = difflib.get_close_matches(name.lower(), _CONTEXT_NAMES, n=1, cutoff=0.8)
    return f"context.{near[0]}" if near else None


def _meant(parts: tuple[str, ...]) -> str | None:
    """The field an unknown path most likely meant (``action_spec.parameters.base`` for
    ``action_spec.paramters.base``, ``resource.environment`` for ``resource.env``)."""
    if parts[0] in ("content", "response"):
        near = difflib.get_close_matches(".".join(parts), sorted(CONTENT_FIELDS), n=1)
        return near[0] if near else None
    spec = len(parts) > 1 and difflib.get_close_matches(parts[0], ("action_spec",), cutoff=0.7)
    head = ("action_spec",) if spec else ()
    rest = parts[1:] if spec else parts
    if len(rest) == 1 and rest[0] in _CONTEXT_NAMES:  # `agent`: a context field
        return f"context.{rest[0]}"
    if rest[0] == "resource" and len(rest) == 2:
        named = [n for n in _RESOURCE_NAMES if n.startswith(rest[1].lower())]
        named = named or difflib.get_close_matches(rest[1].lower(), _RESOURCE_NAMES, n=1)
        return ".".join((*head, "resource", named[0])) if named else None
    near = difflib.get_close_matches(rest[0], ("type", "parameters", "risk_hints", "resource"), n=1)
    meant = ".".join((*head, near[0], *rest[1:])) if near else None
    return meant if meant != ".".join(parts) else None


def _unknown(field: str, parts: tuple[str, ...]) -> ValueError:
    meant = _meant(parts)
    hint = f" (did you mean `{meant}`?)" if meant and meant != field else ""
    return ValueError(f"unknown field `{field}`{hint}: expected one of {', '.join(FIELD_ROOTS)}")


def compile_field(field: str) -> Getter:
    """Compile a field path into a getter; raise ValueError naming the field when unknown."""
    if not isinstance(field, str) or not field:
        raise ValueError("a field must be a non-empty string like `action_spec.type`")
    parts = tuple(field.split("."))
    if len(parts) > _MAX_PATH or any(not p for p in parts):
        raise ValueError(f"invalid field path `{field}`")
    if parts[0] in ("content", "response"):
        if field not in CONTENT_FIELDS:
            raise _unknown(field, parts)
        return lambda spec, ctx: ctx.attributes.get(field, MISSING)
    if parts[0] == "budget":  # the gateway fills them from the control plane (budgets.py)
        if len(parts) != 3 or parts[2] not in ("remaining", "used"):
            raise ValueError(f"unknown field `{field}`: budget fields are "
                             "`budget.<name>.remaining` and `budget.<name>.used`")  # fmt: skip
        return lambda spec, ctx: ctx.attributes.get(field, MISSING)
    if parts[0] == "context":
        if len(parts) != 2:
            raise ValueError(f"unknown field `{field}`: context fields are `context.<name>`")
        return _context_getter(parts[1])
    rest = parts[1:] if parts[0] == "action_spec" else parts
    if rest == ("type",):
        return lambda spec, ctx: spec.type
    if len(rest) >= 2 and rest[0] in ("parameters", "risk_hints"):
        return _path_getter(rest[0], rest[1:])
    if len(rest) == 2 and rest[0] == "resource" and rest[1] in _RESOURCE_NAMES:
        return _resource_getter(rest[1])
    raise _unknown(field, parts)
