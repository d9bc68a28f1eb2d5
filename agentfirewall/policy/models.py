"""The policy document: TameFlare's format, as frozen pydantic models.

::

    name: protect-main
    scope: {action_types: ["github.pr.*"], environments: [production], agents: ["*"]}
    priority: 10
    enabled: true
    rules:
      - name: merge-to-main
        conditions:
          all:
            - {field: action_spec.type, operator: equals, value: github.pr.merge}
            - any:
                - {field: action_spec.parameters.base, operator: equals, value: main}
                - not: {field: action_spec.parameters.base, operator: exists}
        decision: requires_approval
        reason: merges to main need a human
        risk_score: 70
        approval: {timeout_seconds: 3600, approver_roles: [admin, owner]}

Conditions are a tree of ``all`` / ``any`` / ``not`` over leaves ``{field, operator,
value}``; a plain list of conditions means ``all``. Every leaf is checked when the
document loads (field path, operator, value shape, regex safety), so a policy that
loads can always be compiled.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentfirewall.decisions import Outcome, normalize_outcome
from agentfirewall.policy.fields import compile_field, misspelt_context
from agentfirewall.policy.globs import compile_glob
from agentfirewall.policy.operators import OPERATORS, compile_operator, unknown_operator
from agentfirewall.policy.timewindow import check_day_names

__all__ = [
    "MAX_APPROVAL_TIMEOUT_SECONDS",
    "AllCondition",
    "AnyCondition",
    "ApprovalSettings",
    "Condition",
    "FieldCondition",
    "NotCondition",
    "Policy",
    "Rule",
    "Scope",
    "field_conditions",
]

DEFAULT_APPROVER_ROLES = ("owner", "admin", "member")
#: The longest a held action may wait for its approval (a rule's `approval.timeout_seconds`):
#: the control plane records a held request's approval for as long (SDK and gateway alike).
MAX_APPROVAL_TIMEOUT_SECONDS = 30 * 86400
#: Operators whose value is one thing even when it is a list (`in`, `starts_with`... take
#: a list of alternatives)
_ONE_VALUE = ("contains", "not_contains")
_Name = Annotated[str, Field(min_length=1, max_length=200)]


def _stored(info: ValidationInfo) -> bool:
    """True for a document a control plane accepted earlier (``load_policy(stored=True)``):
    read as it was accepted then, without the checks added since."""
    return bool(info.context and info.context.get("stored"))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FieldCondition(_Frozen):
    """A leaf: compare one field with a value."""

    field: Annotated[str, Field(min_length=1, max_length=300)]
    operator: str
    value: JsonValue = None

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str, info: ValidationInfo) -> str:
        compile_field(value)
        meant = misspelt_context(value)
        if meant is not None and not _stored(info):  # never filled: the leaf would be false
            raise ValueError(
                f"unknown field `{value}`: did you mean `{meant}`? (`context.` names other "
                "than the built-in ones are the caller's attributes)"
            )
        return value

    @field_validator("operator")
    @classmethod
    def _known_operator(cls, value: str) -> str:
        if value not in OPERATORS:
            raise unknown_operator(value)
        return value

    @model_validator(mode="after")
    def _valid_value(self, info: ValidationInfo) -> FieldCondition:
        if self.operator in ("exists", "not_exists"):
            if self.value not in (None, True):
                raise ValueError(f"`{self.operator}` takes no value")
            return self
        if "value" not in self.model_fields_set:
            raise ValueError(f"`{self.operator}` needs a `value`")
        if self.operator in _ONE_VALUE and isinstance(self.value, list) and not _stored(info):
            # a list is one value here: `contains: [a, b]` looks for the item [a, b], so it
            # is false on every string, where `starts_with: [a, b]` means either one
            group = "any" if self.operator == "contains" else "all"
            raise ValueError(
                f"`{self.operator}` takes one value, not a list: for several, write one "
                f"`{self.operator}` per value under `{group}:`"
            )
        if self.operator == "time_window" and not _stored(info):
            check_day_names(self.value)
        compile_operator(self.operator, self.value)
        return self


class AllCondition(_Frozen):
    """True when every child is true."""

    all: Annotated[tuple[Condition, ...], Field(min_length=1, max_length=1000)]


class AnyCondition(_Frozen):
    """True when at least one child is true."""

    any: Annotated[tuple[Condition, ...], Field(min_length=1, max_length=1000)]


class NotCondition(_Frozen):
    """True when its child is false (a missing field makes the child false)."""

    not_: Condition = Field(alias="not")


def _condition_kind(value: object) -> str | None:
    if isinstance(value, dict):
        if "field" in value or "operator" in value:
            return "leaf"
        for key in ("all", "any", "not"):
            if key in value:
                return key
        return None
    kinds: dict[type, str] = {
        FieldCondition: "leaf",
        AllCondition: "all",
        AnyCondition: "any",
        NotCondition: "not",
    }
    return kinds.get(type(value))


def _list_means_all(value: object) -> object:
    return {"all": value} if isinstance(value, list) else value


Condition = Annotated[
    Annotated[FieldCondition, Tag("leaf")]
    | Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="invalid_condition",
        custom_error_message=(
            "a condition is `{field, operator, value}` or one of `all`, `any`, `not`"
        ),
    ),
]

AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()


def field_conditions(node: Condition | None) -> Iterator[FieldCondition]:
    """Every field condition in a condition tree, whatever ``all``/``any``/``not`` hold it."""
    stack: list[Condition] = [node] if node is not None else []
    while stack:
        item = stack.pop()
        if isinstance(item, AllCondition):
            stack.extend(item.all)
        elif isinstance(item, AnyCondition):
            stack.extend(item.any)
        elif isinstance(item, NotCondition):
            stack.append(item.not_)
        else:
            yield item


_DECISIONS = ("allow", "deny", "require_approval", "requires_approval", "redact")
#: Other words for a decision, and ours
_SAID = {"block": "deny", "reject": "deny", "forbid": "deny", "permit": "allow",
         "hold": "require_approval", "approve": "require_approval", "ask": "require_approval",
         "review": "require_approval"}  # fmt: skip


def _outcome(value: object) -> Outcome:
    if not isinstance(value, str):
        raise ValueError("expected allow, deny, require_approval (or requires_approval) or redact")
    try:
        return normalize_outcome(value)
    except ValueError:
        spelled = value.strip().lower().replace("-", "_").replace(" ", "_")
        near = [_SAID[spelled]] if spelled in _SAID else []
        near = near or difflib.get_close_matches(spelled, _DECISIONS, n=1, cutoff=0.6)
        hint = f": did you mean `{near[0]}`?" if near else ""
        raise ValueError(
            f"unknown decision `{value}`: expected allow, deny, require_approval (or "
            f"requires_approval) or redact{hint}"
        ) from None


OutcomeField = Annotated[Outcome, BeforeValidator(_outcome)]


def _written_as(kind: str) -> Callable[[object, ValidationInfo], object]:
    """A value of a policy's own field must be written as `kind` (`no`, `'5'` are not a
    boolean or a number) — except in a document stored before this was checked
    (``load_policy(..., stored=True)``), read as it was accepted then."""

    def check(value: object, info: ValidationInfo) -> object:
        if _stored(info):
            return value
        if kind == "boolean" and type(value) is not bool:
            raise ValueError("input should be a valid boolean: `true` or `false`")
        if kind == "integer" and type(value) is not int:
            raise ValueError("input should be a valid integer, written as a number")
        if kind == "number" and type(value) not in (int, float):
            raise ValueError("input should be a valid number, written as a number")
        return value

    return check


def _approver(value: object, info: ValidationInfo) -> object:
    if _stored(info):
        return value
    if value not in DEFAULT_APPROVER_ROLES:  # a misspelled role: nobody could approve
        raise ValueError(f"input should be 'owner', 'admin' or 'member', not {value!r}")
    return value


_Approver = Annotated[_Name, BeforeValidator(_approver)]


class ApprovalSettings(_Frozen):
    """How a held action is approved."""

    timeout_seconds: Annotated[int, BeforeValidator(_written_as("integer"))] = Field(
        300, ge=1, le=MAX_APPROVAL_TIMEOUT_SECONDS
    )
    #: who may approve: the roles that can (a viewer cannot; a misspelled role would leave
    #: the action waiting for someone who does not exist)
    approver_roles: tuple[_Approver, ...] = DEFAULT_APPROVER_ROLES


class Rule(_Frozen):
    """One rule: when the conditions hold, the decision applies.

    ``decision: redact`` is an allow that first replaces what the content detectors the
    rule names found (``content.*``: in the request body; ``response.*``: in the
    response) by a marker; it loads as ``decision: allow`` with ``redact: true``.
    """

    name: _Name
    description: str = ""
    conditions: Annotated[Condition | None, BeforeValidator(_list_means_all)] = None
    decision: OutcomeField
    reason: Annotated[str, Field(max_length=2000)] = ""
    risk_score: Annotated[float, BeforeValidator(_written_as("number"))] = Field(0, ge=0, le=100)
    approval: ApprovalSettings | None = None
    redact: Literal[True] | None = None

    @model_validator(mode="before")
    @classmethod
    def _redact_decision(cls, data: Any) -> Any:
        decision = data.get("decision") if isinstance(data, dict) else None
        if isinstance(decision, str) and decision.strip().lower() == "redact":
            data = {**data, "decision": "allow", "redact": True}
        return data


def _action_glob(value: str) -> str:
    compile_glob(value, action=True)
    return value


def _agent_glob(value: str) -> str:
    compile_glob(value, action=False)
    return value


ActionGlob = Annotated[str, AfterValidator(_action_glob)]
AgentGlob = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_agent_glob)]


class Scope(_Frozen):
    """Which actions a policy looks at. Empty environments mean every environment."""

    action_types: tuple[ActionGlob, ...] = Field(("*",), min_length=1)
    environments: tuple[_Name, ...] = ()
    agents: tuple[AgentGlob, ...] = Field(("*",), min_length=1)


class Policy(_Frozen):
    """A policy document."""

    version: Literal[1] | None = None
    name: _Name
    description: Annotated[str, Field(max_length=2000)] = ""
    scope: Scope = Field(default_factory=Scope)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    priority: Annotated[int, BeforeValidator(_written_as("integer"))] = Field(
        100, ge=-1_000_000, le=1_000_000
    )
    enabled: Annotated[bool, BeforeValidator(_written_as("boolean"))] = True
    rules: Annotated[tuple[Rule, ...], Field(min_length=1, max_length=10_000)]

    @model_validator(mode="before")
    @classmethod
    def _lift_metadata_scope(cls, data: Any) -> Any:
        """Some TameFlare examples nest ``scope`` under ``metadata``."""
        if isinstance(data, dict):
            metadata = data.get("metadata")
            if isinstance(metadata, dict) and "scope" in metadata:
                if "scope" in data:
                    raise ValueError("`scope` is given twice (top level and under `metadata`)")
                data = dict(data)
                rest = dict(metadata)
                data["scope"] = rest.pop("scope")
                data["metadata"] = rest
        return data

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name `{rule.name}`")
            seen.add(rule.name)
        return rules

    def to_document(self) -> dict[str, Any]:
        """The policy as plain JSON data that loads back into an equal Policy."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
