"""The action model: what an agent wants to do, in one canonical shape.

An :class:`ActionSpec` is exactly the JSON of the seed's raw-HTTP example::

    {"type": "github.pr.merge",
     "resource": {"provider": "github", "account": "acme",
                  "target": "acme/api", "environment": "production"},
     "parameters": {"pull_number": 42},
     "risk_hints": {"irreversible": true}}

Action types are dotted lowercase names, ``provider.resource.verb`` (two or more
segments; each segment is ``[a-z0-9_-]``). The canonical form is sorted, compact
JSON of the normalised spec; its SHA-256 is the ``action_hash`` that approvals and
decision tokens are bound to.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, field_validator
from pydantic import ValidationError as PydanticValidationError

from agentfirewall.errors import ActionSpecError
from agentfirewall.jsonlimits import flat_and_fine, has_lone_surrogate, json_problem, printable

__all__ = [
    "ACTION_TYPE_PATTERN",
    "ActionSpec",
    "ActionType",
    "Resource",
    "Risk",
    "action_hash",
    "canonical_json",
    "is_action_type",
    "parse_action_spec",
    "validate_action_type",
]

#: Dotted lowercase: at least two segments of letters, digits, ``_`` or ``-``.
ACTION_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}(?:\.[a-z0-9_-]{1,63}){1,7}$"
_ACTION_TYPE_RE = re.compile(ACTION_TYPE_PATTERN)

#: Static risk label a connector route carries.
Risk = Literal["low", "medium", "high"]


def is_action_type(value: str) -> bool:
    """True when `value` follows the action type grammar."""
    return bool(_ACTION_TYPE_RE.fullmatch(value))


def validate_action_type(value: str) -> str:
    """Return `value` when it is a well-formed action type, else raise ActionSpecError."""
    if not isinstance(value, str) or not is_action_type(value):
        shown = printable(value) if isinstance(value, str) else repr(value)
        raise ActionSpecError(
            f"invalid action type `{shown}`: expected dotted lowercase like "
            "`github.pr.merge` (2-8 segments of a-z, 0-9, _ or -)",
            field="type",
        )
    return value


ActionType = Annotated[str, AfterValidator(validate_action_type)]


def _storable_text(value: str) -> str:
    """Text every store holds: no NUL (no PostgreSQL text column does)."""
    if "\x00" in value:
        raise ValueError("holds a NUL character (`\\u0000`)")
    return value


_NAME = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_storable_text)]
_TARGET = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_storable_text)]


class Resource(BaseModel):
    """What the action touches. Every field is optional; unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: _NAME | None = None
    account: _NAME | None = None
    target: _TARGET | None = None
    environment: _NAME | None = None


class ActionSpec(BaseModel):
    """One action an agent asks to perform."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ActionType
    resource: Resource = Field(default_factory=Resource)
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    risk_hints: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("parameters", "risk_hints")
    @classmethod
    def _storable(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        """Finite numbers, valid unicode, bounded depth: every spec has a canonical form."""
        found = json_problem(value, check_ints=False)
        if found is not None:
            path, problem = found
            raise ValueError(f"`{path}` {problem}" if path else problem)
        return value

    @property
    def provider(self) -> str:
        """The resource's provider, else the action type's first segment."""
        return self.resource.provider or self.type.split(".", 1)[0]

    def canonical(self) -> bytes:
        """Sorted, compact JSON of the normalised spec (None fields dropped)."""
        return canonical_json(self.to_dict())

    @property
    def action_hash(self) -> str:
        """Hex SHA-256 of the canonical form."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data, without empty resource fields."""
        return self.model_dump(mode="json", exclude_none=True)


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal data gives equal bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def action_hash(spec: ActionSpec | dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical form of `spec` (a model or its JSON data)."""
    model = spec if isinstance(spec, ActionSpec) else parse_action_spec(spec)
    return model.action_hash


def parse_action_spec(data: object) -> ActionSpec:
    """Validate JSON data (dict or JSON text) into an ActionSpec or raise ActionSpecError."""
    if type(data) is dict:
        fields = spec_fields(data)
        if fields is not None:
            return spec_of(data, fields)
    try:
        if isinstance(data, str | bytes):
            return ActionSpec.model_validate_json(data)
        return ActionSpec.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "action_spec"
        ctx = first.get("ctx") or {}
        inner = ctx.get("error")
        message = str(inner) if isinstance(inner, ActionSpecError) else first["msg"]
        raise ActionSpecError(f"invalid action spec: `{loc}`: {message}", field=loc) from None


# -- the common shape, checked by hand ------------------------------------------------------
# A caller deciding per call (SDK, gateway, benchmarks/engine.py --per-call) pays the model's
# validation on every decision (~5 µs, most of a decision). Most specs are a type, a few
# resource names and flat scalar parameters: that shape is checked here by the same rules
# as the model and built without it (same fields, same values, same fields-set); anything
# else, and every invalid spec, goes through the model, which words the errors.

_SPEC_KEYS = frozenset(("type", "resource", "parameters", "risk_hints"))
_RESOURCE_MAX = {"provider": 512, "account": 512, "target": 2048, "environment": 512}
_ABSENT: dict[str, Any] = {}  # read, never stored: a field the spec leaves out
_CACHE_LIMIT = 4096
_RESOURCES: dict[tuple[tuple[Any, Any], ...], Resource] = {}  # validated resources
_TYPES: set[str] = set()  # action types that passed the grammar
_new = object.__new__
# BaseModel's own slots, stored through their descriptors (as `model_construct` does with
# object.__setattr__, one lookup fewer each)
_MODEL_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
_SET_DICT, _SET_FIELDS_SET, _SET_EXTRA, _SET_PRIVATE = (
    vars(BaseModel)[name].__set__ for name in _MODEL_SLOTS
)


def _built(cls: type[BaseModel], values: dict[str, Any], given: set[str]) -> Any:
    """A model instance from values already valid, as `model_construct` leaves it."""
    model = _new(cls)
    _SET_DICT(model, values)
    _SET_FIELDS_SET(model, given)
    _SET_EXTRA(model, None)
    _SET_PRIVATE(model, None)
    return model


def _resource(value: object) -> Resource | None:
    if type(value) is not dict:
        return None
    try:
        key = tuple(value.items())
        known = _RESOURCES.get(key)
    except TypeError:  # an unhashable value: not a resource name anyway
        return None
    if known is not None:  # frozen: one instance serves every equal resource
        return known
    fields: dict[str, Any] = dict.fromkeys(_RESOURCE_MAX)
    for name, item in value.items():
        limit = _RESOURCE_MAX.get(name) if type(name) is str else None
        if limit is None:
            return None
        if item is not None and (
            type(item) is not str
            or not 1 <= len(item) <= limit
            or "\x00" in item
            or (not item.isascii() and has_lone_surrogate(item))  # the model refuses those
        ):
            return None
        fields[name] = item
    resource: Resource = _built(Resource, fields, set(value))
    if len(_RESOURCES) >= _CACHE_LIMIT:
        _RESOURCES.clear()
    _RESOURCES[key] = resource
    return resource


#: A spec's type, resource, parameters and risk hints, checked (see `spec_fields`).
SpecFields = tuple[str, Resource, dict[str, Any], dict[str, Any]]


def spec_fields(data: dict[Any, Any]) -> SpecFields | None:
    """The type, resource, parameters and risk hints of JSON data in the common shape (a
    type, resource names, flat scalar parameters and hints), checked by the model's rules;
    None for anything else, valid or not (the model then decides, and words the errors).

    The parameters and hints are `data`'s own dicts, not copies (`spec_of` copies them
    into the spec it builds). `Engine.decide` answers a remembered route from
    these fields without building a spec.
    """
    # per decision: the steps of `_resource` (on a known resource) are written out here
    if not _SPEC_KEYS.issuperset(data):
        return None
    kind = data.get("type")
    if type(kind) is not str:
        return None
    if kind not in _TYPES:
        if not _ACTION_TYPE_RE.fullmatch(kind):
            return None
        if len(_TYPES) >= _CACHE_LIMIT:
            _TYPES.clear()
        _TYPES.add(kind)
    named = data.get("resource", _ABSENT)
    resource = None
    if type(named) is dict:
        try:
            resource = _RESOURCES.get(tuple(named.items()))
        except TypeError:  # an unhashable value: not a resource name anyway
            return None
    if resource is None:
        resource = _resource(named)
    # parameters and risk hints: flat dicts of plain scalars the model keeps unchanged
    parameters = data.get("parameters", _ABSENT)
    hints = data.get("risk_hints", _ABSENT)
    if (
        resource is None
        or type(parameters) is not dict
        or type(hints) is not dict
        or not flat_and_fine(parameters, check_ints=False)  # the model bounds no int
        or (hints and not flat_and_fine(hints, check_ints=False))
    ):
        return None
    return kind, resource, parameters, hints


def spec_of(data: dict[Any, Any], fields: SpecFields) -> ActionSpec:
    """The ActionSpec of `data`, given its `spec_fields`: built without the model (the same
    fields, values and fields-set), the parameters and hints copied."""
    kind, resource, parameters, hints = fields
    spec: ActionSpec = _new(ActionSpec)
    _SET_DICT(
        spec,
        {"type": kind, "resource": resource, "parameters": parameters.copy(),
         "risk_hints": hints.copy() if hints else {}},
    )  # fmt: skip
    _SET_FIELDS_SET(spec, set(data))
    _SET_EXTRA(spec, None)
    _SET_PRIVATE(spec, None)
    return spec
