"""Compile a condition tree into one closure ``(spec, ctx) -> bool``.

A leaf reads its field with a getter (fields.py) and applies its operator (operators.py).
A missing field makes a leaf false, except ``not_exists``; ``exists`` is true for a
present, non-null value. ``all`` and ``any`` short-circuit; ``all`` over one child is
that child. No condition means "always".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agentfirewall.actions import ActionSpec
from agentfirewall.policy.fields import MISSING, compile_field
from agentfirewall.policy.models import (
    AllCondition,
    AnyCondition,
    Condition,
    FieldCondition,
    NotCondition,
)
from agentfirewall.policy.operators import compile_operator

if TYPE_CHECKING:
    from agentfirewall.policy.engine import EvaluationContext

__all__ = ["Predicate", "compile_condition"]

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

    def leaf(spec: ActionSpec, ctx: EvaluationContext) -> bool:
        value = get(spec, ctx)
        return value is not MISSING and test(value)

    return leaf


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
