"""A guard for the ``matches`` and ``any_matches`` operators against catastrophic regular
expressions.

Python's ``re`` backtracks, so some patterns take exponential time on crafted input.
At load time a pattern is refused when it has:

- a quantified group that holds another unbounded quantifier (``(a+)+``, ``(a*)*``,
  ``(\\w+\\s?)*``) — the classic exponential shape;
- a quantified alternation whose branches may start alike (``(a|ab)*``, ``(\\w|\\d)+``);
- a backreference (``(a)\\1``);
- more than four unbounded quantifiers, or more than 1,000 characters.

At evaluation time the input is capped (:data:`MAX_INPUT`); a longer value makes the
rule fail closed rather than be matched slowly or skipped. This is a guard, not a
proof: polynomial blow-ups remain possible, and the cap bounds them.
"""

from __future__ import annotations

import re
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

__all__ = ["MAX_INPUT", "MAX_PATTERN", "compile_safe_regex"]

MAX_PATTERN = 1000
MAX_INPUT = 4096
_MAX_UNBOUNDED = 4
_REPEATS = {sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)}
_UNBOUNDED = 10  # a repeat allowing more than this many iterations counts as unbounded


class _Unsafe(ValueError):
    pass


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-patterns nested in one parsed item."""
    if op in _REPEATS:
        return [av[2]]
    if op is sre_c.SUBPATTERN:
        return [av[-1]]
    if op is sre_c.BRANCH:
        return list(av[1])
    if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
        return [av[1]]
    if op is getattr(sre_c, "ATOMIC_GROUP", None):
        return [av]
    return []


def _first_literal(sub: Any) -> int | None:
    items = list(sub)
    while items:
        op, av = items[0]
        if op is sre_c.LITERAL:
            return int(av)
        if op is sre_c.SUBPATTERN:
            items = list(av[-1])
            continue
        return None
    return None


def _scan(sub: Any, inside_repeat: bool, counter: list[int]) -> None:
    for op, av in sub:
        if op in (sre_c.GROUPREF, sre_c.GROUPREF_EXISTS):
            raise _Unsafe("backreferences are not allowed")
        if op in _REPEATS:
            unbounded = av[1] > _UNBOUNDED
            if unbounded:
                counter[0] += 1
                if inside_repeat:
                    raise _Unsafe("nested quantifiers like `(a+)+` are not allowed")
            _scan(av[2], inside_repeat or unbounded, counter)
            continue
        if op is sre_c.BRANCH and inside_repeat:
            firsts = [_first_literal(branch) for branch in av[1]]
            if None in firsts or len(set(firsts)) != len(firsts):
                raise _Unsafe(
                    "a repeated alternation must have branches starting with distinct "
                    "literal characters, e.g. `(foo|bar)+`"
                )
        for child in _children(op, av):
            _scan(child, inside_repeat, counter)


def compile_safe_regex(
    pattern: object, flags: int = 0, *, operator: str = "matches"
) -> re.Pattern[str]:
    """Compile `pattern` (with `flags`) for `operator`, or raise ValueError saying why it
    is refused."""
    if not isinstance(pattern, str):
        raise ValueError(f"`{operator}` needs a regular expression string")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"regular expression longer than {MAX_PATTERN} characters")
    try:
        compiled = re.compile(pattern, flags)
        parsed = sre_parse.parse(pattern, flags)
    except re.error as exc:
        raise ValueError(f"invalid regular expression `{pattern}`: {exc}") from None
    counter = [0]
    try:
        _scan(parsed, False, counter)
    except _Unsafe as exc:
        raise ValueError(f"unsafe regular expression `{pattern}`: {exc}") from None
    if counter[0] > _MAX_UNBOUNDED:
        raise ValueError(
            f"unsafe regular expression `{pattern}`: more than {_MAX_UNBOUNDED} "
            "unbounded quantifiers"
        )
    return compiled
