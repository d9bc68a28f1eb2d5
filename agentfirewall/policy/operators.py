"""Condition operators, each compiled once into a test over a field's value.

Every test answers ``False`` for a value of the wrong type (a number where a string is
expected, a list where a number is expected...), so a policy never crashes on odd
input; ``any_matches`` alone raises `EvaluationError` for one (its field is a list of
names, such as a push's refs, whose other shapes it cannot read), failing its rule closed.
Numbers are compared exactly (Python ints are unbounded); a string that spells a plain
decimal number (``"15000"``, ``"-2.5"``) counts as that number, exactly (as a Decimal),
because connectors read form bodies and query strings as text. A float counts as the
decimal it is written as (its shortest repr: ``1e23`` is 10**23), whether it meets an int,
a float or a string. Booleans are never numbers. One longer than ``MAX_INPUT`` characters
is not read: its rule fails closed.

``exists``/``not_exists`` are decided before any operator runs (see conditions.py), and
a missing field makes every other operator false.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import math
import operator
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

from agentfirewall.policy.regexguard import MAX_INPUT, compile_safe_regex
from agentfirewall.policy.timewindow import compile_time_window

__all__ = [
    "COMPARATORS",
    "OPERATORS",
    "EvaluationError",
    "Test",
    "compile_operator",
    "unknown_operator",
]

Test = Callable[[object], bool]

OPERATORS = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "matches",
    "any_matches",
    "glob",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "exists",
    "not_exists",
    "cidr",
    "time_window",
)
COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
#: Operator names other policy languages use, and ours (misspellings are matched apart)
_SPELLED = {
    "==": "equals", "=": "equals", "eq": "equals", "is": "equals",
    "!=": "not_equals", "<>": "not_equals", "ne": "not_equals", "neq": "not_equals",
    ">": "gt", "greater_than": "gt", ">=": "gte", "ge": "gte", "greater_than_or_equal": "gte",
    "<": "lt", "less_than": "lt", "<=": "lte", "le": "lte", "less_than_or_equal": "lte",
    "regex": "matches", "regexp": "matches", "one_of": "in", "none_of": "not_in",
    "range": "between",
}  # fmt: skip
_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")  # ASCII digits only
#: What a string's first characters are when it spells a number: ``1234.`` begins one
_NUMBER_START_RE = re.compile(r"-?[0-9]+(?:\.[0-9]*)?")


def unknown_operator(op: object) -> ValueError:
    """The error for an operator name that is not one, with the closest one when there is."""
    spelled = str(op).strip().lower().replace("-", "_").replace(" ", "_")
    near = _SPELLED.get(spelled) or next(
        iter(difflib.get_close_matches(spelled, OPERATORS, n=1, cutoff=0.6)), None
    )
    hint = f" (did you mean `{near}`?)" if near else ""
    return ValueError(f"unknown operator `{op}`{hint}: expected one of {', '.join(OPERATORS)}")


class EvaluationError(Exception):
    """A condition cannot be decided on this input; the rule fails closed."""


_Number = int | float | Decimal


def _number(value: object) -> _Number | None:
    """The number `value` is (an int, a finite float) or spells (a Decimal, exact), else
    None. A string past `MAX_INPUT` characters that begins as a number is not read (the
    cost stays bounded whatever its length): EvaluationError, its rule fails closed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    if len(value) <= MAX_INPUT:
        return Decimal(value) if _NUMBER_RE.fullmatch(value) else None
    if _NUMBER_START_RE.fullmatch(value, 0, MAX_INPUT + 1):
        raise EvaluationError(f"a number longer than {MAX_INPUT} characters cannot be compared")
    return None


def _operand(value: object) -> _Number | None:
    """A policy's number, read as a value is (a string too), else None."""
    try:
        return _number(value)
    except EvaluationError:
        return None


def _decimal(number: _Number) -> Decimal:
    """`number` as a Decimal: a float as the decimal it is written as (``0.1``, one tenth)."""
    if isinstance(number, Decimal):
        return number
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)


#: Every int up to this size is a float: an int meets a float under it as it is
_FLOAT_INTS = 2**53


def _number_test(bound: _Number, holds: Callable[[Any, Any], bool]) -> Test:
    """A test that ``holds(n, bound)`` for the number `n` a value is or spells, exactly.

    A float counts as the decimal it is written as (a policy's ``0.1`` is one tenth, as its
    author wrote; ``1e23`` is 10**23), beside an int, a float or a Decimal (the number a
    string spells), so the same number as an int, a float or a string gets one verdict.
    Ints and floats under 2**53 meet as they are (Python compares them exactly, and fast):
    the same verdict, as no int lies between such a float and its shortest repr (ints that
    small are floats themselves, and rounding is monotone), and two floats are in the order
    of their reprs. The rest meet as Decimals: a float never meets a Decimal as such, which
    sets a flag in the decimal context (raises, trapped).
    """
    exact, spelled = _decimal(bound), isinstance(bound, Decimal)
    # an int value meets a policy's spelled bound, or a float one past 2**53, as a Fraction
    # of the decimal: a Decimal would convert the int, in time that grows with the square
    # of its length
    large = isinstance(bound, float) and abs(bound) >= _FLOAT_INTS
    whole = Fraction(exact) if spelled or large else bound

    def test(v: object) -> bool:
        if type(v) is int:  # the common case, without the generic coercion
            return holds(v, whole)
        n = _number(v)
        if n is None:
            return False
        if isinstance(n, float) and not spelled and abs(n) < _FLOAT_INTS:
            return holds(n, bound)
        return holds(_decimal(n), exact)

    return test


def _check_json(value: object) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, list):
        for item in value:
            _check_json(item)


def _equals_test(expected: object) -> Test:
    """Equality that keeps booleans, numbers and strings apart."""
    if isinstance(expected, bool) or expected is None:
        return lambda v: v is expected
    if isinstance(expected, int | float):
        return _number_test(expected, operator.eq)
    if isinstance(expected, str):
        text = expected
        return lambda v: type(v) is str and v == text
    return lambda v: type(v) is type(expected) and v == expected


def _kind_test(expected: object) -> Test:
    """True when a value is of the kind `expected` can be compared with."""
    if isinstance(expected, bool):
        return lambda v: type(v) is bool
    if expected is None:
        return lambda v: v is None
    if isinstance(expected, int | float):
        return lambda v: type(v) is not bool and _number(v) is not None
    kind = type(expected)
    return lambda v: type(v) is kind


def _list_value(value: object, op: str) -> list[object]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"`{op}` needs a non-empty list value")
    return value


def _strings(value: object, op: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) for i in items):
        raise ValueError(f"`{op}` needs a string or a list of strings")
    return tuple(items)  # type: ignore[arg-type]


def _membership(value: object, op: str) -> Test:
    tests = [_equals_test(item) for item in _list_value(value, op)]
    items = _list_value(value, op)
    plain = {item for item in items if isinstance(item, str)}
    if len(plain) == len(tests):  # all strings: a set lookup
        return lambda v: type(v) is str and v in plain
    return lambda v: any(t(v) for t in tests)


def _not(test: Test, kinds: list[Test]) -> Test:
    """Negate `test`, but stay false for a value no operand could be compared with."""
    if len(kinds) == 1:
        kind = kinds[0]
        return lambda v: kind(v) and not test(v)
    return lambda v: any(k(v) for k in kinds) and not test(v)


def _contains(value: object) -> Test:
    element = _equals_test(value)
    text = value if isinstance(value, str) else None

    def test(v: object) -> bool:
        if type(v) is str:
            return text is not None and text in v  # type: ignore[operator]
        if type(v) is list:
            return any(element(item) for item in v)  # type: ignore[attr-defined]
        return False

    return test


def _compare(value: object, op: str) -> Test:
    bound = _operand(value)
    if bound is None:
        raise ValueError(f"`{op}` needs a number, got `{value}`")
    return _number_test(bound, COMPARATORS[op])


def _between(value: object) -> Test:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("`between` needs a list of two numbers `[low, high]`")
    low, high = _operand(value[0]), _operand(value[1])
    if low is None or high is None:
        raise ValueError("`between` needs a list of two numbers `[low, high]`")
    if _decimal(low) > _decimal(high):
        raise ValueError(f"`between` bounds are reversed: `{low}` > `{high}`")
    above, below = _number_test(low, operator.ge), _number_test(high, operator.le)
    return lambda v: above(v) and below(v)


def _lower(value: object) -> object:
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list):
        return [_lower(item) for item in value]
    return value


def _matches(value: object, flags: int = 0) -> Test:
    search = compile_safe_regex(value, flags).search

    def test(v: object) -> bool:
        if type(v) is not str:
            return False
        if len(v) > MAX_INPUT:  # type: ignore[arg-type]
            raise EvaluationError(f"value longer than {MAX_INPUT} characters for `matches`")
        return search(v) is not None  # type: ignore[arg-type]

    return test


def _any_matches(value: object, flags: int = 0) -> Test:
    """`matches` over a list of strings: true when the regex search finds a match in one
    of its items (a string is a list of one). A present value of any other shape (an item
    that is not a string, an object, a number, a boolean, null) cannot be read: like an
    item over the input cap, it fails the rule closed, whichever item would match, so the
    answer never depends on the shape or the order of the items."""
    search = compile_safe_regex(value, flags, operator="any_matches").search

    def test(v: object) -> bool:
        items = v if isinstance(v, list) else [v]
        texts = [item for item in items if type(item) is str]
        if len(texts) != len(items):
            odd = next(item for item in items if type(item) is not str)
            kind = _kind_of(odd) if odd is v else f"a list holding {_kind_of(odd)}"
            raise EvaluationError(f"`any_matches` needs a string or a list of strings, not {kind}")
        if any(len(text) > MAX_INPUT for text in texts):
            raise EvaluationError(f"an item longer than {MAX_INPUT} characters for `any_matches`")
        return any(search(text) is not None for text in texts)

    return test


def _kind_of(value: object) -> str:
    """A JSON value's kind, for an error (never the value itself: it may be a secret)."""
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "a number", float: "a number", dict: "an object"}
    return kinds.get(type(value), "a list" if isinstance(value, list) else "another type")


def _glob(value: object, flags: int = 0) -> Test:
    regexes = [re.compile(fnmatch.translate(p), flags) for p in _strings(value, "glob")]

    def test(v: object) -> bool:
        if type(v) is not str:
            return False
        if len(v) > MAX_INPUT:  # type: ignore[arg-type]
            raise EvaluationError(f"value longer than {MAX_INPUT} characters for `glob`")
        return any(r.match(v) for r in regexes)  # type: ignore[arg-type]

    return test


def _cidr(value: object) -> Test:
    networks = []
    for text in _strings(value, "cidr"):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"invalid network `{text}`: expected CIDR like `10.0.0.0/8`") from None

    def test(v: object) -> bool:
        if type(v) is not str or len(v) > 64:  # type: ignore[arg-type]
            return False
        try:
            address = ipaddress.ip_address(v)  # type: ignore[arg-type]
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in networks)

    return test


def _string_test(value: object, op: str) -> Test:
    items = _strings(value, op)
    if op == "starts_with":
        return lambda v: type(v) is str and v.startswith(items)  # type: ignore[attr-defined]
    return lambda v: type(v) is str and v.endswith(items)  # type: ignore[attr-defined]


def _is_list(v: object) -> bool:
    return type(v) is list


def _is_text_or_list(v: object) -> bool:
    return type(v) is str or type(v) is list


#: Operators whose value is a pattern, built with regex flags
_PATTERNS: dict[str, Callable[[object, int], Test]] = {
    "matches": _matches,
    "any_matches": _any_matches,
    "glob": _glob,
}


def compile_operator(op: str, value: object, *, lowered: bool = False) -> Test:
    """Compile operator `op` with its policy `value`; ValueError when either is invalid.

    `lowered`: the test is for a lower-cased field value, so the value's text is compared
    lower-cased too (patterns of `glob`, `matches` and `any_matches` match ignoring case:
    lower-casing their text would change ``[A-Z]`` ranges and ``\\D`` classes).
    """
    _check_json(value)
    if op in _PATTERNS:
        return _PATTERNS[op](value, re.IGNORECASE if lowered else 0)
    if lowered:
        value = _lower(value)
    if op in ("equals", "not_equals"):
        test = _equals_test(value)
        return test if op == "equals" else _not(test, [_kind_test(value)])
    if op in ("in", "not_in"):
        test = _membership(value, op)
        kinds = [_kind_test(item) for item in value]  # type: ignore[attr-defined]
        return test if op == "in" else _not(test, kinds)
    if op in ("contains", "not_contains"):
        test = _contains(value)
        kind = _is_text_or_list if isinstance(value, str) else _is_list
        return test if op == "contains" else _not(test, [kind])
    if op in ("starts_with", "ends_with"):
        return _string_test(value, op)
    if op in ("gt", "gte", "lt", "lte"):
        return _compare(value, op)
    builders: dict[str, Callable[[object], Test]] = {
        "between": _between,
        "cidr": _cidr,
        "time_window": compile_time_window,
    }
    if op in builders:
        return builders[op](value)
    raise unknown_operator(op)
