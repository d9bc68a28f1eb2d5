"""Limits every piece of JSON data must meet before it is trusted, stored or echoed.

Parsers accept more than storage and encoders can take: Python's ``json`` keeps lone
surrogates (``"\\ud800"``) that no UTF-8 encoder accepts, integers of any size that no
database column holds, and nesting deep enough to exhaust the stack of any recursive
walker. (A large integer inside action parameters is fine: policies compare it, and it
is stored as JSON text; only integer fields must fit in 64 bits.) :func:`json_problem`
finds the first such value without recursion, so it is safe on any input, and names
where it is (``records.0.bytes_in``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "flat_and_fine",
    "has_lone_surrogate",
    "int_problem",
    "json_problem",
    "printable",
]

#: Deepest nesting of objects and arrays accepted (a policy's conditions need about ten).
MAX_DEPTH = 64
#: Integers must fit a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT).
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_BAD_UNICODE = "contains invalid unicode (a lone surrogate)"


def has_lone_surrogate(text: str) -> bool:
    """True when `text` cannot be encoded as UTF-8 (it holds a lone surrogate)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def printable(text: str, limit: int = 200) -> str:
    """`text` safe to put in a message: lone surrogates escaped, cut at `limit` characters."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if has_lone_surrogate(text):
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _join(path: str, key: object) -> str:
    part = printable(key, 80) if isinstance(key, str) else str(key)
    return f"{path}.{part}" if path else part


def int_problem(item: int) -> str | None:
    """Why `item` cannot be stored in a 64-bit integer column, or None."""
    if INT_MIN <= item <= INT_MAX:
        return None
    return "is out of range: integers must fit in 64 bits"


def _scalar_problem(item: object, check_ints: bool) -> str | None:
    if isinstance(item, str):
        return _BAD_UNICODE if has_lone_surrogate(item) else None
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return int_problem(item) if check_ints else None
    if isinstance(item, float) and not math.isfinite(item):
        return "must be a finite number (no NaN or Infinity)"
    return None


def json_problem(
    value: object, *, max_depth: int = MAX_DEPTH, check_ints: bool = True
) -> tuple[str, str] | None:
    """The first ``(path, problem)`` of JSON data `value`, or None when it is fine.

    Problems: a string or key with a lone surrogate, a non-finite float, nesting deeper
    than `max_depth`, and (with `check_ints`) an integer outside 64 bits. The path is
    dotted (``a.0.b``); the top level is ``""``.
    """
    if type(value) is dict and max_depth > 0 and flat_and_fine(value, check_ints=check_ints):
        return None  # the common case (a spec's parameters), without building any path
    return _walk(value, max_depth, check_ints)


def flat_and_fine(value: dict[Any, Any], *, check_ints: bool = True) -> bool:
    """True when `value` maps strings to plain scalars (str, int, bool, finite float, None)
    that `json_problem` finds no problem in; False whenever unsure (a nested value, another
    key or value type), so False alone names no problem: `json_problem` then decides."""
    for key, item in value.items():
        # an ASCII string holds no lone surrogate: has_lone_surrogate only for the rest
        if type(key) is not str or (not key.isascii() and has_lone_surrogate(key)):
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii() and has_lone_surrogate(item):
                return False
        elif kind is int:
            if check_ints and not INT_MIN <= item <= INT_MAX:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is not bool and item is not None:
            return False
    return True


def _walk(value: object, max_depth: int, check_ints: bool) -> tuple[str, str] | None:
    stack: list[tuple[object, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= max_depth:
                return path, f"nests deeper than {max_depth} levels"
            children: list[tuple[object, str, int]] = []
            for key, child in item.items():
                if isinstance(key, str) and has_lone_surrogate(key):
                    return _join(path, key), _BAD_UNICODE
                children.append((child, _join(path, key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            if depth >= max_depth:
                return path, f"nests deeper than {max_depth} levels"
            stack.extend((item[i], _join(path, i), depth + 1) for i in range(len(item) - 1, -1, -1))
        else:
            problem = _scalar_problem(item, check_ints)
            if problem is not None:
                return path, problem
    return None
