"""Compile a condition tree into one closure ``(spec, ctx) -> bool``.

A leaf reads its field with a getter (fields.py) and applies its operator (operators.py).
A missing field makes a leaf false, except ``not_exists``; ``exists`` is true for a
present, non-null value. ``all`` and ``any`` short-circuit; ``all`` over one child is
that child. No condition means "always".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentfirewall.actions import ActionSpec
from agentfirewall.policy.fields import MISSING, compile_field, direct_key
from agentfirewall.policy.models import (
    AllCondition,
    AnyCondition,
    Condition,
    FieldCondition,
    NotCondition,
)
from agentfirewall.policy.operators import COMPARATORS, compile_operator

if TYPE_CHECKING:
    from agentfirewall.policy.engine import EvaluationContext

__all__ = ["STATIC_FIELDS", "Predicate", "compile_condition", "specialize"]

Predicate = Callable[[ActionSpec, "EvaluationContext"], bool]


def _always(spec: ActionSpec, ctx: EvaluationContext) -> bool:
    return True


def _leaf(node: FieldCondition) -> Predicate:
    get = compile_field(node.field)
    if node.operator == "exists":
        return lambda spec, ctx: (v := get(spec, ctx)) is not MISSING and v is not None
    if node.operator == "not_exists":
        return lambda spec, ctx: (v := get(spec, ctx)) is MISSING or v is None
    test = compile_operator(node.operator, node.value)
    compare = None
    if node.operator in COMPARATORS and isinstance(node.value, int | float):
        compare = (COMPARATORS[node.operator], node.value)
    inline = _inline_leaf(node.field, test, compare)
    if inline is not None:
        return inline

    def leaf(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = get(spec, ctx)
        return value is not MISSING and test(value)

    return leaf


def _parameter_compare(
    key: str,
    compare: tuple[Callable[[Any, Any], bool], float],
    test: Callable[[object], bool],
) -> Predicate:
    """``parameters.<key> gt|gte|lt|lte N`` in one call when the value is an int."""
    check, bound = compare

    def parameter(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = spec.parameters.get(key, MISSING)
        if type(value) is int:
            return check(value, bound)
        return value is not MISSING and test(value)

    return parameter


def _inline_leaf(
    field: str,
    test: Callable[[object], bool],
    compare: tuple[Callable[[Any, Any], bool], float] | None = None,
) -> Predicate | None:
    """The hot fields read without a getter call (one call fewer per condition)."""
    direct = direct_key(field)
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

    def resource(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = getattr(spec.resource, key)
        return value is not None and test(value)

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


def compile_condition(node: Condition | None) -> Predicate:
    """Compile a validated condition tree (None compiles to "always true")."""
    if node is None:
        return _always
    if isinstance(node, FieldCondition):
        return _leaf(node)
    if isinstance(node, AllCondition):
        return _all([compile_condition(child) for child in node.all])
    if isinstance(node, AnyCondition):
        return _any([compile_condition(child) for child in node.any])
    if isinstance(node, NotCondition):
        inner = compile_condition(node.not_)
        return lambda spec, ctx: not inner(spec, ctx)
    raise TypeError(f"unknown condition node `{type(node).__name__}`")


#: Fields fixed for one evaluation plan (agent, action type, environment): conditions on
#: them are decided once per plan instead of once per call.
STATIC_FIELDS = {
    "action_spec.type": "type",
    "type": "type",
    "action_spec.resource.environment": "environment",
    "resource.environment": "environment",
    "context.agent": "agent",
}


def _static_leaf(node: FieldCondition, value: object) -> bool | None:
    """Decide a leaf on a known value; None when it must wait for evaluation time."""
    if node.operator == "exists":
        return value is not MISSING and value is not None
    if node.operator == "not_exists":
        return value is MISSING or value is None
    if value is MISSING:
        return False
    try:
        return bool(compile_operator(node.operator, node.value)(value))
    except Exception:  # let it raise at evaluation time, where it fails closed
        return None


def specialize(node: Condition | None, statics: dict[str, object]) -> bool | Predicate:
    """Partially evaluate `node` with the static field values (``STATIC_FIELDS`` names).

    Returns True or False when the condition is decided by them alone, else the
    predicate of what remains.
    """
    if node is None:
        return True
    if isinstance(node, FieldCondition):
        name = STATIC_FIELDS.get(node.field)
        if name is not None:
            decided = _static_leaf(node, statics.get(name, MISSING))
            if decided is not None:
                return decided
        return _leaf(node)
    if isinstance(node, NotCondition):
        inner = specialize(node.not_, statics)
        if isinstance(inner, bool):
            return not inner
        return lambda spec, ctx: not inner(spec, ctx)
    is_all = isinstance(node, AllCondition)
    children = node.all if isinstance(node, AllCondition) else node.any  # type: ignore[union-attr]
    residual: list[Predicate] = []
    for child in children:
        part = specialize(child, statics)
        if part is (not is_all):  # False in `all`, True in `any`: decided
            return part
        if not isinstance(part, bool):
            residual.append(part)
    if not residual:
        return is_all
    return _all(residual) if is_all else _any(residual)
