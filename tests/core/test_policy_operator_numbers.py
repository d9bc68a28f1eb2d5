"""A number spelled in a string is compared exactly, as docs/policies.md promises.

A security review found such strings read with `float()` and cut at 100 digits: a deny
rule `amount gt 10000` let `"10000.0000000000000001"`, a zero-padded `"000…20000"` and a
101-digit integer through, and `"0.1000000000000000055511151231257827"` equalled `0.1`.
Every numeric operator is held here to `fractions.Fraction` arithmetic.
"""

from __future__ import annotations

import decimal
import math
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.operators import EvaluationError, compile_operator
from agentfirewall.policy.regexguard import MAX_INPUT
from tests.fuzzscale import examples

TENTH = "0.1000000000000000055511151231257827"  # 0.1's float, cut: not 0.1, not that float


def _short(value: object) -> str | None:
    """A test id for a long string: its start and its length."""
    return f"{value[:6]}…{len(value)}" if isinstance(value, str) and len(value) > 30 else None


@contextmanager
def _no_float_meets_a_decimal() -> Iterator[None]:
    """A decimal context where mixing a float with a Decimal raises (it sets a flag else)."""
    with decimal.localcontext() as context:
        context.traps[decimal.FloatOperation] = True
        yield


@pytest.mark.parametrize(
    ("op", "bound", "value", "expected"),
    [
        ("gt", 10_000, "10000.0000000000000001", True),  # float() read it as 10000.0
        ("gt", 10_000, "0" * 100 + "20000", True),  # over 100 digits: not a number before
        ("gt", 10_000, "9" * 101, True),
        ("gt", 10_000, "9" * MAX_INPUT, True),
        ("gt", 10_000, "0" * (MAX_INPUT - 5) + "10001", True),
        ("lte", 10_000, "0" * (MAX_INPUT - 5) + "10000", True),
        ("lt", 0, "-0." + "0" * (MAX_INPUT - 4) + "1", True),
        ("lt", 0, "-0", False),
        ("gte", 0, "-0.000", True),
        ("equals", 0.1, "0.1", True),  # a policy's 0.1 is one tenth, as written
        ("equals", 0.1, "0.100000", True),
        ("equals", 0.1, TENTH, False),  # float() read it as 0.1
        ("lt", 0.1, "0.1", False),
        ("gt", 0.1, "0.1000000000000000000001", True),
        ("lte", 0.1, "0.1000000000000000000001", False),
        ("equals", 10**40, "1" + "0" * 40 + ".000", True),
        ("equals", 10**40, "1" + "0" * 39 + "1", False),
        ("gt", 10**40, "1" + "0" * 40 + ".0000000000000000000001", True),
        ("not_equals", 10_000, "10000.0000000000000001", True),
        ("not_equals", 10_000, "010000.00", False),
        ("in", [1, 2], "2.0", True),
        ("in", [0.1, 5], TENTH, False),
        ("not_in", [0.1], TENTH, True),
        ("not_in", [0.1], "0.10", False),
        ("between", [0, 10_000], "10000.0000000000000001", False),
        ("between", [0, 10_000], "10000.0000", True),
        ("between", [0.1, 0.2], "0.1", True),
        # a policy that writes its bound as a string: exact too, against any value
        ("gt", "10000", "10000.0000000000000001", True),
        ("gt", "0.1", 0.1, False),  # the float 0.1 meets a decimal as one tenth
        ("gte", "0.1", 0.1, True),
        ("lt", "10000.0000000000000001", 10_000, True),
        ("lt", "10000.5", 10**400, False),
        ("between", ["0.1", "0.2"], 0.1, True),
        # ints and floats under 2**53 compare as they always did
        ("gt", 10_000, 10000.000000000002, True),
        ("equals", 0.1, 0.1, True),
        ("lt", 2**53 + 1, 2.0**53, True),
        # past 2**53 a float is the decimal it is written as too, beside an int or a string
        ("gt", 1e23, 99999999999999995000000, False),  # 1e23's binary value is below it
        ("gt", 1e23, "99999999999999995000000", False),
        ("equals", 1e23, 10**23, True),
        ("equals", 10**23, 1e23, True),
        ("gte", "100000000000000000000000", 1e23, True),
        ("lt", 2**60 + 1, 2.0**60, False),  # 2.0**60 is written 1.152921504606847e+18
        ("equals", 2.0**60, 2**60, False),
        ("lt", -1e23, -99999999999999995000000, False),
    ],
    ids=_short,
)
def test_a_spelled_number_compares_exactly(
    op: str, bound: object, value: object, expected: bool
) -> None:
    with _no_float_meets_a_decimal():
        assert compile_operator(op, bound)(value) is expected


NOT_NUMBERS = ["1e400", "1E2", "+5", ".5", "5.", "1_000", " 5", "5 ", "0x10", "Infinity",
               "NaN", "-", "", "1.2.3", "--1", "\uff11\uff15", "5\n"]  # fmt: skip


@pytest.mark.parametrize("text", NOT_NUMBERS)
@pytest.mark.parametrize(
    ("op", "bound"),
    [("gt", -(10**9)), ("lt", 10**9), ("equals", 5), ("not_equals", 5), ("in", [5, 0.5]),
     ("not_in", [5]), ("between", [-(10**9), 10**9])],
)  # fmt: skip
def test_a_string_that_is_no_plain_decimal_is_no_number(op: str, bound: object, text: str) -> None:
    """No operator holds on it, not even a negated one (it is of the wrong type)."""
    assert compile_operator(op, bound)(text) is False


LONG_NUMBERS = [
    "9" * (MAX_INPUT + 1),
    "0" * MAX_INPUT + "20000",
    "-" + "1" * MAX_INPUT,
    "1." + "0" * MAX_INPUT,
    "1" * (MAX_INPUT + 1) + "x",  # never read past the cap, whatever follows
    "1" * (16 << 20),  # the gateway's inspection limit
]


@pytest.mark.parametrize("text", LONG_NUMBERS, ids=_short)
@pytest.mark.parametrize(
    ("op", "bound"),
    [("gt", 10_000), ("lt", 10_000), ("equals", 5), ("not_equals", 5), ("in", [5]),
     ("not_in", [5]), ("between", [0, 10_000]), ("contains", 5)],
)  # fmt: skip
def test_a_number_longer_than_the_cap_fails_its_rule_closed(
    op: str, bound: object, text: str
) -> None:
    """Read whole, a 16 MiB string would cost milliseconds per condition; cut, it would be
    another number: past MAX_INPUT characters a string that begins as a number is not read."""
    value = [text] if op == "contains" else text
    with pytest.raises(EvaluationError, match=f"longer than {MAX_INPUT} characters"):
        compile_operator(op, bound)(value)


@pytest.mark.parametrize("text", ["x" * (MAX_INPUT + 1), "12" + "x" * MAX_INPUT, "1" * 9 + "e9"])
def test_a_long_text_that_is_no_number_is_still_of_the_wrong_type(text: str) -> None:
    assert compile_operator("gt", 0)(text) is False
    assert compile_operator("not_equals", 5)(text) is False


def test_a_policy_bound_past_the_cap_is_refused_when_it_loads() -> None:
    with pytest.raises(ValueError, match="needs a number"):
        compile_operator("gt", "9" * (MAX_INPUT + 1))
    with pytest.raises(ValueError, match="reversed"):
        compile_operator("between", ["0.2", 0.1])


POLICY = """
name: payments
rules:
  - name: over-limit
    conditions: [{field: parameters.amount, operator: gt, value: 10000}]
    decision: deny
  - name: small-ones
    conditions: [{field: parameters.amount, operator: lte, value: 100}]
    decision: allow
"""


@pytest.mark.parametrize(
    ("amount", "outcome"),
    [
        ("10000.0000000000000001", "deny"),
        ("0" * 100 + "20000", "deny"),
        ("9" * 101, "deny"),
        ("100.0000000000000001", "deny"),  # neither rule: the SDK default
        ("0" * (MAX_INPUT - 3) + "100", "allow"),
        ("0" * MAX_INPUT + "100", "deny"),  # past the cap: fails closed, though small
    ],
    ids=_short,
)
def test_a_spelled_amount_never_escapes_a_deny_nor_slips_into_an_allow(
    amount: str, outcome: str
) -> None:
    engine = Engine(policies=[load_policy(POLICY)])
    ctx = EvaluationContext(
        agent="Bot", mode="sdk", now=datetime(2026, 1, 5, tzinfo=UTC), sdk_default="deny"
    )
    spec = parse_action_spec({"type": "stripe.transfer.create", "parameters": {"amount": amount}})
    decision = engine.evaluate(spec, ctx)
    assert decision.outcome == outcome
    assert bool(decision.errors) is (len(amount) > MAX_INPUT)


# -- property: every numeric operator agrees with Fraction arithmetic ----------------------


@st.composite
def _decimal_texts(draw: st.DrawFn, longest: int = MAX_INPUT) -> str:
    """A plain decimal of any length up to `longest`: a sign, leading zeros, digits (with a
    run of one digit, for length), a fraction."""
    sign = draw(st.sampled_from(["", "-"]))
    digits = draw(st.text("0123456789", min_size=1, max_size=25))
    digits += draw(st.sampled_from("09")) * draw(st.integers(0, longest))
    fraction = draw(st.text("0123456789", max_size=25))
    text = sign + "0" * draw(st.integers(0, 30)) + digits + ("." + fraction if fraction else "")
    return text[:longest].rstrip(".")


def _spelled(bound: int | float | str) -> str:
    """`bound` as a plain decimal (a float as it is written)."""
    if isinstance(bound, float):
        return format(decimal.Decimal(repr(bound)), "f")
    return str(bound)


@st.composite
def _near(draw: st.DrawFn, bound: int | float | str) -> str:
    """A plain decimal at `bound`, or a digit past it at any depth up to the cap."""
    whole, _, fraction = _spelled(bound).partition(".")
    fraction += "0" * draw(st.integers(0, MAX_INPUT - len(whole) - len(fraction) - 3))
    if draw(st.booleans()):
        fraction += draw(st.sampled_from("19"))
    return f"{whole}.{fraction}" if fraction else whole


_INTS = st.integers() | st.integers(-(10**60), 10**60) | st.sampled_from([0, 10_000, 2**53 + 1])
#: floats past 2**53, where a float's binary value and the decimal it is written as differ
_LARGE_FLOATS = (
    st.sampled_from([1e23, -1e23, 2.0**53, 2.0**53 + 2, 2.0**60, 1.2345678901234567e19])
    | st.floats(min_value=2.0**53, max_value=1e40)
    | st.floats(min_value=-1e40, max_value=-(2.0**53))
)
_FLOATS = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.1, 1e-7, 2.0**53 - 1])
    | _LARGE_FLOATS
)
_BOUNDS = _INTS | _FLOATS | _decimal_texts(longest=40)
_ORDERS = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "equals": operator.eq,
}


def _exact(x: int | float | str) -> Fraction:
    """What `x` counts as: a string the decimal it spells, a float the decimal it is
    written as (its shortest repr), beside anything."""
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


def _holds(name: str, value: int | float | str, bound: int | float | str) -> bool:
    return _ORDERS[name](_exact(value), _exact(bound))


def _ints_near(number: int | float | str) -> st.SearchStrategy[int]:
    """Ints at `number` or next to it; for a float also at and between its binary value
    and the decimal it is written as (apart past 2**53)."""
    ends = [int(Fraction(_spelled(number)))]
    if isinstance(number, float) and math.isfinite(number):
        ends.append(int(number))
    return st.integers(min(ends) - 2, max(ends) + 2)


@given(st.data(), _BOUNDS, _BOUNDS)
@settings(max_examples=examples(300))
def test_every_numeric_operator_agrees_with_fraction_arithmetic(
    data: st.DataObject, bound: int | float | str, other: int | float | str
) -> None:
    """Random plain decimals (any length up to the cap, leading zeros, signs, at a bound or
    a digit past it), ints and floats, against bounds of each kind; no decimal context flag
    is touched on the way (a float never meets a Decimal)."""
    near = _near(bound) | _near(other) | _ints_near(bound) | _ints_near(other)
    value = data.draw(near | _decimal_texts() | _INTS | _FLOATS)
    cases: list[tuple[str, object, bool]] = [
        (name, bound, _holds(name, value, bound)) for name in ("gt", "gte", "lt", "lte")
    ]
    low, high = sorted([bound, other], key=lambda b: Fraction(_spelled(b)))
    within = _holds("gte", value, low) and _holds("lte", value, high)
    cases.append(("between", [low, high], within))
    numbers = [b for b in (bound, other) if not isinstance(b, str)]  # (a string equals text)
    if numbers:
        equal = [_holds("equals", value, b) for b in numbers]
        cases += [("equals", numbers[0], equal[0]), ("not_equals", numbers[0], not equal[0])]
        cases += [("in", numbers, any(equal)), ("not_in", numbers, not any(equal))]
    with _no_float_meets_a_decimal():
        for name, operand, expected in cases:
            assert compile_operator(name, operand)(value) is expected, name


def _forms(number: int | float | str) -> list[int | float | str]:
    """`number` as each kind of value that writes it: a plain decimal string, an int when it
    is whole, a float when one is written as it (its shortest repr)."""
    exact = _exact(number)
    forms: list[int | float | str] = [_spelled(number)]
    if exact.denominator == 1:
        forms.append(int(exact))
    if abs(exact) < 2**1000 and Fraction(repr(float(exact))) == exact:
        forms.append(float(exact))
    return forms


@given(st.data(), _BOUNDS)
@settings(max_examples=examples(300))
def test_the_same_number_as_an_int_a_float_or_a_string_gets_one_verdict(
    data: st.DataObject, bound: int | float | str
) -> None:
    """Values and bounds each in every form that writes the same number (past 2**53 too,
    where a float's binary value is not the decimal it is written as): one verdict."""
    number = data.draw(_ints_near(bound) | _FLOATS | _INTS | _near(bound))
    values, bounds = _forms(number), _forms(bound)
    for name in ("gt", "gte", "lt", "lte", "equals", "not_equals"):
        spelled = name not in ("equals", "not_equals")  # (a string equals text)
        operands = [b for b in bounds if spelled or not isinstance(b, str)]
        verdicts = {compile_operator(name, b)(v) for b in operands for v in values}
        assert len(verdicts) <= 1, (name, values, operands)  # (none: no number operand)
