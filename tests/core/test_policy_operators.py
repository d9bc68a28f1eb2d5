"""Operators, field paths, the regex guard and time windows, edge case by edge case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.errors import PolicyError
from agentfirewall.policy import load_policy
from agentfirewall.policy.fields import MISSING, compile_field
from agentfirewall.policy.operators import OPERATORS, EvaluationError, compile_operator
from agentfirewall.policy.regexguard import MAX_INPUT, compile_safe_regex
from agentfirewall.policy.timewindow import compile_time_window
from tests.core.conftest import MakeContext
from tests.fuzzscale import examples

HUGE = 10**40


@pytest.mark.parametrize(
    ("op", "value", "field_value", "expected"),
    [
        ("equals", "main", "main", True),
        ("equals", "main", "MAIN", False),
        ("equals", 1, True, False),
        ("equals", True, 1, False),
        ("equals", 42, "42", True),
        ("equals", HUGE, HUGE, True),
        ("equals", HUGE, HUGE + 1, False),
        ("equals", None, None, True),
        ("equals", "日本", "日本", True),
        ("not_equals", "main", "dev", True),
        ("not_equals", "main", 5, False),
        ("in", ["a", "b"], "b", True),
        ("in", ["a", 2], 2.0, True),
        ("in", [1, 2], True, False),
        ("not_in", ["a", "b"], "c", True),
        ("not_in", ["a", "b"], 3, False),
        ("contains", "ü", "grüße", True),
        ("contains", "x", ["y", "x"], True),
        ("contains", 5, "abc5", False),
        ("not_contains", "secret", "public", True),
        ("not_contains", "secret", 12, False),
        ("starts_with", ["release/", "hotfix/"], "hotfix/1", True),
        ("ends_with", ".exe", b"a.exe", False),
        ("gt", 10_000, "10000.5", True),
        ("gt", 10_000, HUGE, True),
        ("gt", 10_000, "1e9", False),
        ("gt", 10_000, float("inf"), False),
        ("gte", -HUGE, -HUGE, True),
        ("lt", 0, -1e-300, True),
        ("lte", 1.5, 1.5, True),
        ("between", [1, 10], 10, True),
        ("between", [1, 10], "5", True),
        ("between", [1, 10], 11, False),
        ("glob", ["prod-*", "live-?"], "live-1", True),
        ("glob", "prod-*", "staging", False),
        ("matches", r"^\d{3}$", "123", True),
        ("matches", r"é+", "café", True),
        ("any_matches", r"^refs/heads/main$", ["refs/tags/v1", "refs/heads/main"], True),
        ("any_matches", r"^refs/heads/main$", ["refs/heads/main-old", "refs/tags/v1"], False),
        ("any_matches", r"^refs/heads/main$", "refs/heads/main", True),  # a list of one
        ("any_matches", r"^refs/heads/main$", "refs/heads/main-old", False),
        ("any_matches", "x", [], False),
        ("cidr", "10.0.0.0/8", "10.255.0.1", True),
        ("cidr", "10.0.0.0/8", "11.0.0.1", False),
        ("cidr", "2001:db8::/32", "2001:db8::1", True),
        ("cidr", "10.0.0.0/8", "::ffff:10.0.0.1", True),
        ("cidr", "10.0.0.0/8", "not an ip", False),
    ],
)
def test_operator_cases(op: str, value: object, field_value: object, expected: bool) -> None:
    assert compile_operator(op, value)(field_value) is expected


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("equals", "x"),
        ("in", ["x"]),
        ("contains", "x"),
        ("starts_with", "x"),
        ("ends_with", "x"),
        ("matches", "x"),
        ("glob", "x*"),
        ("gt", 0),
        ("gte", 0),
        ("lt", 0),
        ("lte", 0),
        ("between", [0, 1]),
        ("cidr", "10.0.0.0/8"),
        ("time_window", {"start": "09:00", "end": "17:00"}),
    ],
)
def test_positive_operators_are_false_for_wrong_types(op: str, value: object) -> None:
    test = compile_operator(op, value)
    numeric = op in ("gt", "gte", "lt", "lte", "between")
    wrong: list[object] = [True, [], {}, b"x"]
    wrong += ["text", None] if numeric else [3.5]
    if op == "contains":
        wrong.remove([])  # an empty list does not contain "x": false anyway
    for item in wrong:
        assert test(item) is False, item


@pytest.mark.parametrize(
    ("op", "value", "message"),
    [
        ("nope", 1, "unknown operator"),
        ("in", "not a list", "non-empty list"),
        ("in", [], "non-empty list"),
        ("gt", "ten", "needs a number"),
        ("gt", True, "needs a number"),
        ("between", [1], "two numbers"),
        ("between", [5, 1], "reversed"),
        ("starts_with", 5, "string or a list of strings"),
        ("cidr", "10.0.0.0/33", "invalid network"),
        ("equals", float("nan"), "finite"),
        ("matches", "(", "invalid regular expression"),
        ("any_matches", ["a", "b"], "`any_matches` needs a regular expression string"),
        ("any_matches", "(a+)+$", "nested quantifiers"),
        ("time_window", "22:00-06:00", "mapping"),
    ],
)
def test_invalid_operator_values(op: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_operator(op, value)


def test_the_operator_list_is_complete() -> None:
    required = {
        "equals", "not_equals", "in", "not_in", "contains", "not_contains", "starts_with",
        "ends_with", "matches", "any_matches", "glob", "gt", "gte", "lt", "lte", "between",
        "exists", "not_exists", "cidr", "time_window",
    }  # fmt: skip
    assert required <= set(OPERATORS)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(a+)+$", "nested quantifiers"),
        ("(a*)*", "nested quantifiers"),
        (r"(\w+\s?)*$", "nested quantifiers"),
        ("(a|ab)*c", "repeated alternation"),
        (r"(a)\1", "backreferences"),
        ("a*b*c*d*e*", "more than 4"),
        ("x" * 1001, "longer than"),
    ],
)
def test_regex_guard_rejects_catastrophic_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_safe_regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [r"^DROP\s+TABLE", "(foo|bar)+", r"^[a-z]+(\.[a-z]+){1,7}$", "a{2,5}b", r"\d+-\d+"],
)
def test_regex_guard_accepts_ordinary_patterns(pattern: str) -> None:
    assert compile_safe_regex(pattern).pattern == pattern


def test_matches_caps_its_input() -> None:
    test = compile_operator("matches", "x$")
    assert test("a" * (MAX_INPUT - 1) + "x") is True
    with pytest.raises(EvaluationError, match="longer than"):
        test("a" * (MAX_INPUT + 1))


def test_any_matches_caps_every_item_wherever_it_stands() -> None:
    test = compile_operator("any_matches", "x$")
    assert test(["a" * (MAX_INPUT - 1) + "x", "b"]) is True
    long = "a" * (MAX_INPUT + 1)
    for items in (["x", long], [long, "x"], [long]):  # even when another item matches
        with pytest.raises(EvaluationError, match="longer than"):
            test(items)


# `refs` as an SDK action may write it: each shape but a string or a list of strings
UNREADABLE_REFS: list[object] = [
    [["refs/heads/main"]],  # not flattened
    {"0": "refs/heads/main"},
    {"main": True},
    ["refs/heads/feature", None],
    ["refs/heads/main", 1],  # even when another item matches
    [None, "refs/heads/main"],
    0,
    1.5,
    True,
    False,
    None,
    b"refs/heads/main",
]


@pytest.mark.parametrize("refs", UNREADABLE_REFS, ids=repr)
def test_any_matches_fails_closed_on_a_value_it_cannot_read(refs: object) -> None:
    """It used to skip what was not a list, and the items that were not strings: a push
    whose SDK action wrote `refs` as `{'0': 'refs/heads/main'}` passed the pack's hold."""
    with pytest.raises(EvaluationError, match="needs a string or a list of strings, not "):
        compile_operator("any_matches", "^refs/heads/main$")(refs)


def test_any_matches_names_the_shape_it_cannot_read_never_the_value() -> None:
    test = compile_operator("any_matches", "x")
    for value, kind in [({"k": "secret"}, "an object"), (["a", None], "a list holding null"),
                        ([["secret"]], "a list holding a list"), (7, "a number"),
                        (True, "a boolean")]:  # fmt: skip
        with pytest.raises(EvaluationError) as failed:
            test(value)
        assert str(failed.value).endswith(f"not {kind}")
        assert "secret" not in str(failed.value)


_JSON = st.recursive(
    st.one_of(st.text("ab/", max_size=6), st.integers(), st.floats(), st.booleans(), st.none()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=8,
)


@given(
    st.one_of(st.lists(st.text("ab/", max_size=6), max_size=8), st.text("ab/", max_size=6), _JSON),
    st.sampled_from(["^a", "b$", "a/b", "^$", "(?i)A"]),
)
@settings(max_examples=examples(200))
@example([], "^$")
@example("", "^$")
def test_any_matches_is_matches_on_some_item_or_fails_closed(value: object, pattern: str) -> None:
    """any_matches(list of strings) == any(matches(item)), a string is a list of one, and any
    other value raises (the rule fails closed): never a quiet false. `matches` itself is
    unchanged (false on a list), so no allow rule written with it reads more than before."""
    matches = compile_operator("matches", pattern)
    any_matches = compile_operator("any_matches", pattern)
    items = value if isinstance(value, list) else [value]
    if all(type(item) is str for item in items):
        assert any_matches(value) is any(map(matches, items))
    else:
        with pytest.raises(EvaluationError):
            any_matches(value)
    assert matches(items) is False


def test_any_matches_on_a_caseless_field_ignores_case_without_lowering_the_pattern() -> None:
    r"""A lower-cased field value (conditions.CASELESS_PROVIDERS) is searched ignoring case:
    ``\D`` stays a non-digit class (lower-cased it would be ``\d``)."""
    test = compile_operator("any_matches", r"^ACME/\D", lowered=True)
    assert test(["acme/prod"]) is True
    assert test(["acme/1"]) is False


class TestTimeWindow:
    window = staticmethod(compile_time_window)

    def test_plain_window(self) -> None:
        test = self.window({"start": "09:00", "end": "17:00"})
        assert test(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
        assert not test(datetime(2026, 1, 5, 17, 0, tzinfo=UTC))

    def test_wrapping_window_and_days(self) -> None:
        test = self.window({"start": "22:00", "end": "06:00", "days": ["fri"]})
        assert test(datetime(2026, 1, 9, 23, 0, tzinfo=UTC))  # Friday night
        assert test(datetime(2026, 1, 10, 5, 59, tzinfo=UTC))  # Saturday morning
        assert not test(datetime(2026, 1, 10, 23, 0, tzinfo=UTC))  # Saturday night
        assert not test(datetime(2026, 1, 9, 5, 0, tzinfo=UTC))  # Friday morning

    @pytest.mark.parametrize("day", ["fri", "FRI", "Friday", "friday", "FRIDAY"])
    def test_a_day_by_its_abbreviation_or_its_full_name(self, day: str) -> None:
        test = self.window({"start": "00:00", "end": "24:00", "days": [day]})
        assert test(datetime(2026, 1, 9, 12, 0, tzinfo=UTC))  # a Friday
        assert not test(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))

    def test_tues_and_thurs_are_days(self) -> None:
        test = self.window({"start": "00:00", "end": "24:00", "days": ["Tues", "thur", "THURS"]})
        assert test(datetime(2026, 1, 6, 12, 0, tzinfo=UTC))  # Tuesday
        assert test(datetime(2026, 1, 8, 12, 0, tzinfo=UTC))  # Thursday
        assert not test(datetime(2026, 1, 7, 12, 0, tzinfo=UTC))  # Wednesday

    @pytest.mark.parametrize("day", ["fridge", "sunny", "Fridays", "monkey"])
    def test_a_new_document_names_days_only_by_their_names(self, day: str) -> None:
        """`fridge` read as Friday (the first three letters); a document is refused now,
        while one a control plane stored before reads as it was accepted then."""
        condition = {"field": "context.time", "operator": "time_window",
                     "value": {"start": "00:00", "end": "24:00", "days": [day]}}  # fmt: skip
        document = {"name": "p", "rules": [{"name": "r", "conditions": condition,
                                            "decision": "deny"}]}  # fmt: skip
        with pytest.raises(PolicyError, match=f"unknown day `{day}`"):
            load_policy(document)
        stored = load_policy(document, stored=True)
        friday = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
        assert self.window(condition["value"])(friday) is day.lower().startswith("fri")
        assert stored.rules[0].name == "r"

    def test_whole_days_end_at_24_00(self) -> None:
        weekend = self.window({"start": "00:00", "end": "24:00", "days": ["sat", "sun"]})
        assert weekend(datetime(2026, 1, 10, 0, 0, tzinfo=UTC))  # Saturday's first minute
        assert weekend(datetime(2026, 1, 11, 23, 59, 59, tzinfo=UTC))  # Sunday's last
        assert not weekend(datetime(2026, 1, 12, 0, 0, tzinfo=UTC))  # Monday
        assert not weekend(datetime(2026, 1, 9, 23, 59, tzinfo=UTC))  # Friday
        evening = self.window({"start": "18:00", "end": "24:00"})
        assert evening(datetime(2026, 1, 5, 23, 59, 30, tzinfo=UTC))
        assert not evening(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))

    def test_timezones(self) -> None:
        paris = self.window({"start": "09:00", "end": "10:00", "timezone": "Europe/Paris"})
        assert paris(datetime(2026, 1, 5, 8, 30, tzinfo=UTC))
        offset = self.window({"start": "09:00", "end": "10:00", "timezone": "+05:30"})
        assert offset(datetime(2026, 1, 5, 9, 30, tzinfo=timezone(timedelta(hours=5.5))))

    def test_strings_and_naive_times(self) -> None:
        test = self.window({"start": "09:00", "end": "17:00"})
        assert test("2026-01-05T10:00:00+00:00")
        assert not test("2026-01-05T10:00:00")  # naive: never matches
        assert not test("yesterday")
        assert not test(12)

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ({"start": "22:00"}, "`end`"),
            ({"start": "25:00", "end": "01:00"}, "`start`"),
            ({"start": "01:00", "end": "01:00"}, "differ"),
            ({"start": "24:00", "end": "01:00"}, "`start`"),  # 24:00 ends a day only
            ({"start": "01:00", "end": "24:01"}, "`end`"),
            ({"start": "01:00", "end": "02:00", "days": ["someday"]}, "unknown day"),
            ({"start": "01:00", "end": "02:00", "days": ["mo"]}, "unknown day `mo`"),
            ({"start": "01:00", "end": "02:00", "days": [1]}, "unknown day `1`"),
            ({"start": "01:00", "end": "02:00", "timezone": "Mars/Base"}, "unknown timezone"),
            ({"start": "01:00", "end": "02:00", "at": 1}, "unknown time_window key"),
        ],
    )
    def test_invalid(self, value: object, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            self.window(value)


class TestFields:
    spec = parse_action_spec(
        {
            "type": "github.pr.merge",
            "resource": {"provider": "github", "environment": "production"},
            "parameters": {"base": "main", "files": [{"path": "a.py"}], "n": None},
            "risk_hints": {"irreversible": True},
        }
    )

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("action_spec.type", "github.pr.merge"),
            ("type", "github.pr.merge"),
            ("action_spec.parameters.base", "main"),
            ("parameters.files.0.path", "a.py"),
            ("parameters.files.5.path", MISSING),
            ("parameters.base.deeper", MISSING),
            ("parameters.n", None),
            ("parameters.absent", MISSING),
            ("resource.environment", "production"),
            ("action_spec.resource.account", MISSING),
            ("risk_hints.irreversible", True),
            ("context.agent", "Bot"),
            ("context.mode", "sdk"),
            ("context.connector", MISSING),
            ("context.source_ip", "10.0.0.1"),
            ("context.unknown_attr", MISSING),
        ],
    )
    def test_paths(self, make_ctx: MakeContext, path: str, expected: object) -> None:
        ctx = make_ctx(attributes={"source_ip": "10.0.0.1"})
        assert compile_field(path)(self.spec, ctx) == expected

    def test_context_time_is_the_given_clock(self, make_ctx: MakeContext) -> None:
        ctx = make_ctx()
        assert compile_field("context.time")(self.spec, ctx) is ctx.now

    @pytest.mark.parametrize(
        "path",
        ["", "action.type", "resource.color", "context", "context.a.b", "parameters", "a..b"],
    )
    def test_unknown_paths(self, path: str) -> None:
        with pytest.raises(ValueError, match="field"):
            compile_field(path)


_NON_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@given(
    st.lists(st.sampled_from("0123456789") | _NON_ASCII_DIGITS, min_size=1, max_size=8).filter(
        lambda digits: not all(d.isascii() for d in digits)
    ),
    st.sampled_from(["gt", "gte", "lt", "lte", "equals"]),
)
@settings(max_examples=examples(150))
@example(list("\uff11\uff15\uff10\uff10\uff10"), "gt")  # fullwidth: read as 15000 before
@example(list("\u0661\u0665\u0660\u0660\u0660"), "lt")  # Arabic-Indic
def test_a_number_is_spelled_in_ascii_digits_only(digits: list[str], op: str) -> None:
    """A string of digits from another script is text, as the API behind it reads it: no
    comparison holds on it, in either direction (and `int()` would have accepted it)."""
    text = "".join(digits)
    assert int(text) >= 0  # Python reads it as a number...
    for bound in (-(10**9), 0, 5, 10**9):
        assert compile_operator(op, bound)(text) is False  # ...a policy does not
