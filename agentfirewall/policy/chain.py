"""A plan's rule tests compiled into one first-match function.

``first(spec, ctx)`` returns the position of the first rule whose test is true, or -1,
exactly as the loop ``for position, test in enumerate(tests): if test(spec, ctx): ...``
does, raising what that loop raises. Per decision the loop costs a Python call per rule
tried, and each parameter test reads ``spec.parameters`` again through pydantic's
attribute hook; the function written here reads the parameters once and answers a test on
``parameters.<key>`` inline (the same steps as its predicate: conditions.ParameterLeaf),
calls every other test, and stops at the first rule without a condition.

When every test before the first rule without a condition is a parameter test, the same
answer is also given by ``by_parameters(parameters)`` (`compile_plan` writes both): what
`Engine.decide` calls on a remembered route for JSON data, without building the spec.

The code is written per shape (the sequence of step kinds) and compiled once per shape
(a bounded cache): a plan binds its own keys, comparisons and predicates to it, so a new
plan of a known shape costs no compilation. Plans of more than `_MAX_INLINE` rules use the
loop itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agentfirewall.actions import ActionSpec
from agentfirewall.policy.conditions import Node, ParameterLeaf, Predicate
from agentfirewall.policy.fields import MISSING

if TYPE_CHECKING:
    from agentfirewall.policy.context import EvaluationContext

__all__ = ["ByParameters", "First", "compile_plan"]

First = Callable[[ActionSpec, "EvaluationContext"], int]
ByParameters = Callable[[dict[str, Any]], int]
_MAX_INLINE = 32  # a new shape compiles once: ~0.2 ms at 8 steps, ~0.8 ms at 32
_SHAPE_LIMIT = 1024
_shapes: dict[tuple[tuple[str, ...], bool], Callable[..., Any]] = {}


def _parameter_leaf(tree: Node | None, test: Predicate) -> ParameterLeaf | None:
    """The parameter leaf of `tree` whose predicate is `test` (a rule's test once the
    static fields are decided is its tree's own predicate or one of its nodes')."""
    if tree is None:
        return None
    if tree.predicate is test and tree.parameter is not None:
        return tree.parameter
    for child in tree.children:
        found = _parameter_leaf(child, test)
        if found is not None:
            return found
    return None


def _loop(tests: tuple[Predicate, ...]) -> First:
    def first(spec: ActionSpec, ctx: EvaluationContext) -> int:
        for position, test in enumerate(tests):
            if test(spec, ctx):
                return position
        return -1

    return first


def _source(shape: tuple[str, ...], by_parameters: bool = False) -> str:
    """``def make(<constants>)`` returning ``first`` for one shape: ``always``, ``call``,
    ``param`` (a parameter test) or ``compare`` (a parameter test with an int fast path);
    with `by_parameters`, ``first(p)`` taking the parameters (a shape without ``call``)."""
    names: list[str] = []
    body: list[str] = []
    read = by_parameters  # the parameters are the argument
    for i, kind in enumerate(shape):
        if kind == "always":
            body.append(f"        return {i}")
            break
        if kind == "call":
            names.append(f"f{i}")
            body.append(f"        if f{i}(spec, ctx):\n            return {i}")
            continue
        if not read:  # as late as the first parameter test, as the loop would read them
            body.append("        p = spec.parameters")
            read = True
        body.append(f"        v = p.get(k{i}, MISSING)")
        names += [f"k{i}", f"t{i}"]
        if kind == "compare":
            names += [f"c{i}", f"b{i}"]
            body.append(
                f"        if type(v) is int:\n            if c{i}(v, b{i}):\n"
                f"                return {i}\n"
                f"        elif v is not MISSING and t{i}(v):\n            return {i}"
            )
        else:
            body.append(f"        if v is not MISSING and t{i}(v):\n            return {i}")
    else:
        body.append("        return -1")
    arguments = "p" if by_parameters else "spec, ctx"
    header = f"def make({', '.join(names)}):\n    def first({arguments}):\n"
    return header + "\n".join(body) + "\n    return first\n"


def _maker(shape: tuple[str, ...], by_parameters: bool = False) -> Callable[..., Any]:
    known = _shapes.get((shape, by_parameters))
    if known is not None:
        return known
    namespace: dict[str, Any] = {"MISSING": MISSING}
    exec(compile(_source(shape, by_parameters), "<policy plan>", "exec"), namespace)  # noqa: S102
    make: Callable[..., Any] = namespace["make"]
    if len(_shapes) >= _SHAPE_LIMIT:
        _shapes.clear()
    _shapes[shape, by_parameters] = make
    return make


def compile_plan(
    tests: tuple[Predicate, ...], trees: Sequence[Node | None], always: Predicate
) -> tuple[First, ByParameters | None]:
    """The first-match function of a plan's `tests` (`trees[i]`: rule i's condition tree,
    `always`: the test of a rule without a condition), and the same function of the
    parameters alone, or None when a test before the first rule without a condition reads
    anything else (or the plan has more than `_MAX_INLINE` rules)."""
    if len(tests) > _MAX_INLINE:
        return _loop(tests), None
    shape, constants = _shape(tests, trees, always)
    first: First = _maker(shape)(*constants)
    if "call" in shape:
        return first, None
    by_parameters: ByParameters = _maker(shape, by_parameters=True)(*constants)
    return first, by_parameters


def _shape(
    tests: tuple[Predicate, ...], trees: Sequence[Node | None], always: Predicate
) -> tuple[tuple[str, ...], list[object]]:
    """The step kinds of `tests` up to the first rule without a condition, and the
    constants their code binds."""
    shape: list[str] = []
    constants: list[object] = []
    for test, tree in zip(tests, trees, strict=True):
        if test is always:
            shape.append("always")
            break
        leaf = _parameter_leaf(tree, test)
        if leaf is None:
            shape.append("call")
            constants.append(test)
        elif leaf.compare is None:
            shape.append("param")
            constants += [leaf.key, leaf.test]
        else:
            shape.append("compare")
            constants += [leaf.key, leaf.test, *leaf.compare]
    return tuple(shape), constants
