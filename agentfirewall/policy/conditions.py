"""Compile a condition tree into one closure ``(spec, ctx) -> bool``.

A leaf reads its field with a getter (fields.py) and applies its operator (operators.py).
A missing field makes a leaf false, except ``not_exists``; ``exists`` is true for a
present, non-null value. ``all`` and ``any`` short-circuit; ``all`` over one child is
that child. No condition means "always".

A leaf on a content field (``content.*``, ``response.*``) whose value holds what the
detectors could not read (``unreadable_encoding``, ``mime_too_deep``) answers as
:data:`UNREAD_ANSWERS` says, before its operator runs: what was not read may hold any
detection, so a question of presence is yes (``contains card_number``, ``in``,
``equals``, ``exists``...) and one of absence no (``not_contains``, ``not_exists``...):
fail closed, for every rule that reads the field, on both sides, whoever asks (the
gateway, the SDK, a replay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentfirewall.actions import ActionSpec
from agentfirewall.policy.fields import (
    CONTENT_FIELDS,
    MISSING,
    Getter,
    compile_field,
    direct_key,
    reads_context,
)
from agentfirewall.policy.models import (
    AllCondition,
    AnyCondition,
    Condition,
    FieldCondition,
    NotCondition,
)
from agentfirewall.policy.operators import COMPARATORS, Test, compile_operator

if TYPE_CHECKING:
    from agentfirewall.policy.context import EvaluationContext

__all__ = [
    "STATIC_FIELDS",
    "UNREAD_ANSWERS",
    "Node",
    "ParameterLeaf",
    "Predicate",
    "compile_condition",
    "compile_tree",
    "specialize",
]

Predicate = Callable[[ActionSpec, "EvaluationContext"], bool]


def _always(spec: ActionSpec, ctx: EvaluationContext) -> bool:
    return True


def _exists(v: object) -> bool:
    return v is not None


def _null(v: object) -> bool:
    return v is None


#: What a leaf on a content field answers, by its operator, when the field holds what could
#: not be read: True for a question of presence, False for one of absence (fail closed);
#: None where no detection could change the answer (a list of names is never an address
#: or a time): the operator decides. A new operator is decided here (a test checks).
UNREAD_ANSWERS: dict[str, bool | None] = {
    # presence: a detection (any, one named, so many) is there
    "exists": True, "contains": True, "in": True, "equals": True, "any_matches": True,
    "matches": True, "glob": True, "starts_with": True, "ends_with": True,
    "gt": True, "gte": True, "between": True,
    # absence: none is (or not that one, or fewer than so many)
    "not_exists": False, "not_contains": False, "not_in": False, "not_equals": False,
    "lt": False, "lte": False,
    # neither
    "cidr": None, "time_window": None,
}  # fmt: skip


def _leaf(node: FieldCondition) -> tuple[Predicate, Test]:
    """The leaf's predicate, and its test over a field value (for static fields)."""
    get = compile_field(node.field)
    if node.field in CONTENT_FIELDS:
        return _content_leaf(node, get)
    if node.operator == "exists":
        return (lambda spec, ctx: (v := get(spec, ctx)) is not MISSING and v is not None), _exists
    if node.operator == "not_exists":
        return (lambda spec, ctx: (v := get(spec, ctx)) is MISSING or v is None), _exists
    test = compile_operator(node.operator, node.value)
    return _leaf_predicate(node, get, test), test


def _content_leaf(node: FieldCondition, get: Getter) -> tuple[Predicate, Test]:
    """A leaf on a content field: :data:`UNREAD_ANSWERS` where the field holds what could
    not be read, else as any leaf (missing: false, except ``not_exists``)."""
    # (imported here: only a policy reading a content field loads the detectors)
    from agentfirewall.content.locate import UNREAD, UNREADABLE

    operator = node.operator
    absent = operator == "not_exists"
    if operator in ("exists", "not_exists"):
        test: Test = _exists if operator == "exists" else _null
    else:
        test = _found_test(operator, node.value)
    unread = UNREAD_ANSWERS[operator]
    if unread is None:
        return _leaf_predicate(node, get, test), test

    def leaf(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = get(spec, ctx)
        if value is MISSING:
            return absent
        if isinstance(value, list | tuple) and (UNREADABLE in value or UNREAD in value):
            return unread
        return test(value)

    return leaf, test


def _found_test(operator: str, value: object) -> Test:
    """The test of a content field's value (the names of the detections found) by
    `operator`: `equals NAME` and `in [NAMES]` ask whether that detection (any of them) was
    found, as `contains` does, and their negations whether it was not (a list of names is
    never equal to a name: `content.pii in [card_number]` would never match a card number)."""
    test = compile_operator(operator, value)  # (validates the value as for any field)
    names: frozenset[object]
    if operator in ("equals", "not_equals") and isinstance(value, str):
        names = frozenset((value,))
    elif operator in ("in", "not_in") and isinstance(value, list):
        names = frozenset(v for v in value if isinstance(v, str))
    else:
        return test
    wanted = operator in ("equals", "in")

    def found(v: object) -> bool:
        if not isinstance(v, list | tuple):
            return test(v)
        return any(name in names for name in v) is wanted

    return found


#: Providers whose upstream reads account and repository names in any case (GitHub serves
#: ``ACME/Prod`` as ``acme/prod``): a condition on ``resource.account`` or
#: ``resource.target`` of their actions compares both sides lower-cased, so no spelling
#: of a name escapes a rule written in another.
CASELESS_PROVIDERS = frozenset({"github"})
_CASELESS_NAMES = ("account", "target")

Compare = tuple[Callable[[Any, Any], bool], float]


def _compare_of(node: FieldCondition) -> Compare | None:
    """``(operator.gt, N)`` for a numeric comparison the int fast path can answer."""
    if node.operator in COMPARATORS and isinstance(node.value, int | float):
        return (COMPARATORS[node.operator], node.value)
    return None


def _parameter_of(node: FieldCondition, test: Test) -> ParameterLeaf | None:
    """What a leaf on ``parameters.<key>`` (inlined by `_inline_leaf`) reads and tests."""
    if node.operator in ("exists", "not_exists"):
        return None
    direct = direct_key(node.field)
    if direct is None or direct[0] != "parameters":
        return None
    return ParameterLeaf(direct[1], _compare_of(node), test)


def _leaf_predicate(node: FieldCondition, get: Getter, test: Test) -> Predicate:
    compare = _compare_of(node)
    inline = _inline_leaf(node, test, compare)
    if inline is not None:
        return inline

    def leaf(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = get(spec, ctx)
        return value is not MISSING and test(value)

    return leaf


def _parameter_compare(key: str, compare: Compare, test: Callable[[object], bool]) -> Predicate:
    """``parameters.<key> gt|gte|lt|lte N`` in one call when the value is an int."""
    check, bound = compare

    def parameter(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = spec.parameters.get(key, MISSING)
        if type(value) is int:
            return check(value, bound)
        return value is not MISSING and test(value)

    return parameter


def _inline_leaf(
    node: FieldCondition, test: Callable[[object], bool], compare: Compare | None = None
) -> Predicate | None:
    """The hot fields read without a getter call (one call fewer per condition)."""
    direct = direct_key(node.field)
    if direct is None:
        return None
    kind, key = direct
    if kind == "type":
        return lambda spec, ctx: test(spec.type)
    if kind == "parameters":
        if compare is not None:
            return _parameter_compare(key, compare, test)

        def parameter(spec: ActionSpec, ctx: EvaluationContext) -> bool:
            value = spec.parameters.get(key, MISSING)
            return value is not MISSING and test(value)

        return parameter
    if key in _CASELESS_NAMES:
        caseless = compile_operator(node.operator, node.value, lowered=True)
        return _caseless_resource(key, test, caseless)

    def resource(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = getattr(spec.resource, key)
        return value is not None and test(value)

    return resource


def _caseless_resource(key: str, test: Test, caseless: Test) -> Predicate:
    """A leaf on ``resource.account|target``, lower-cased for a `CASELESS_PROVIDERS` one."""

    def resource(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = getattr(spec.resource, key)
        if value is None:
            return False
        provider = spec.resource.provider or spec.type.partition(".")[0]
        if provider in CASELESS_PROVIDERS:
            return caseless(value.lower())
        return test(value)

    return resource


def _all(children: list[Predicate]) -> Predicate:
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        first, second = children
        return lambda spec, ctx: first(spec, ctx) and second(spec, ctx)
    return lambda spec, ctx: all(child(spec, ctx) for child in children)


def _any(children: list[Predicate]) -> Predicate:
    if len(children) == 1:
        return children[0]
    return lambda spec, ctx: any(child(spec, ctx) for child in children)


@dataclass(frozen=True, slots=True)
class ParameterLeaf:
    """A leaf on ``parameters.<key>``, as its predicate answers it: the value (MISSING when
    absent) is false when MISSING; an int with `compare` set is ``compare[0](value,
    compare[1])``; anything else is ``test(value)``. chain.py writes it out inline."""

    key: str
    compare: Compare | None
    test: Test


@dataclass(frozen=True, slots=True)
class Node:
    """A compiled condition: its predicate plus what `specialize` needs to re-plan it."""

    kind: str  # leaf | all | any | not
    predicate: Predicate
    children: tuple[Node, ...] = ()
    static: str | None = None  # a leaf on a STATIC_FIELDS field: its static name
    operator: str = ""
    test: Test | None = None
    has_static: bool = False  # some leaf below reads a static field
    reads_context: bool = False  # some leaf below reads the context (fields.reads_context)
    parameter: ParameterLeaf | None = None  # a leaf whose predicate is a parameter's test


#: Fields fixed for one evaluation plan (agent, action type, environment): conditions on
#: them are decided once per plan instead of once per call.
STATIC_FIELDS = {
    "action_spec.type": "type",
    "type": "type",
    "action_spec.resource.environment": "environment",
    "resource.environment": "environment",
    "context.agent": "agent",
}


def compile_tree(node: Condition) -> Node:
    """Compile a validated condition tree once."""
    if isinstance(node, FieldCondition):
        predicate, test = _leaf(node)
        static = STATIC_FIELDS.get(node.field)
        return Node(
            "leaf", predicate, (), static, node.operator, test, static is not None,
            reads_context(node.field), _parameter_of(node, test),
        )  # fmt: skip
    if isinstance(node, AllCondition | AnyCondition):
        items = node.all if isinstance(node, AllCondition) else node.any
        children = tuple(compile_tree(child) for child in items)
        combine = _all if isinstance(node, AllCondition) else _any
        kind = "all" if isinstance(node, AllCondition) else "any"
        has_static = any(c.has_static for c in children)
        context = any(c.reads_context for c in children)
        predicate = combine([c.predicate for c in children])
        return Node(kind, predicate, children, has_static=has_static, reads_context=context)
    if isinstance(node, NotCondition):
        child = compile_tree(node.not_)
        inner = child.predicate
        negated: Predicate = lambda spec, ctx: not inner(spec, ctx)  # noqa: E731
        return Node(
            "not", negated, (child,), has_static=child.has_static,
            reads_context=child.reads_context,
        )  # fmt: skip
    raise TypeError(f"unknown condition node `{type(node).__name__}`")


def compile_condition(node: Condition | None) -> Predicate:
    """Compile a validated condition tree (None compiles to "always true")."""
    return _always if node is None else compile_tree(node).predicate


def _static_leaf(node: Node, value: object) -> bool | None:
    """Decide a leaf on a known value; None when it must wait for evaluation time."""
    if node.operator == "exists":
        return value is not MISSING and value is not None
    if node.operator == "not_exists":
        return value is MISSING or value is None
    if value is MISSING or node.test is None:
        return False
    try:
        return bool(node.test(value))
    except Exception:  # let it raise at evaluation time, where it fails closed
        return None


def specialize(node: Node | None, statics: dict[str, object]) -> bool | Predicate:
    """Partially evaluate `node` with the static field values (``STATIC_FIELDS`` names).

    Returns True or False when the static values decide the condition, else the
    predicate of what remains (the node's own predicate when nothing was decided).
    """
    if node is None:
        return True
    if not node.has_static:
        return node.predicate
    if node.kind == "leaf":
        if node.static is not None:
            decided = _static_leaf(node, statics.get(node.static, MISSING))
            if decided is not None:
                return decided
        return node.predicate
    if node.kind == "not":
        inner = specialize(node.children[0], statics)
        if isinstance(inner, bool):
            return not inner
        if inner is node.children[0].predicate:
            return node.predicate
        return lambda spec, ctx: not inner(spec, ctx)
    is_all = node.kind == "all"
    residual: list[Predicate] = []
    unchanged = True
    for child in node.children:
        part = specialize(child, statics)
        if part is (not is_all):  # False in `all`, True in `any`: decided
            return part
        if isinstance(part, bool):
            unchanged = False
        else:
            unchanged = unchanged and part is child.predicate
            residual.append(part)
    if not residual:
        return is_all
    if unchanged:
        return node.predicate
    return _all(residual) if is_all else _any(residual)
