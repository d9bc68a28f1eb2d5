"""parse_action_spec's hand-checked path for the common shape gives what the model gives.

For any JSON-ish dict, `parse_action_spec` (which tries the common shape first) must
return a spec equal in every observable way to `ActionSpec.model_validate`, or raise the
same error; the hand-checked path may only decline, never decide differently.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, Resource, parse_action_spec, spec_fields
from agentfirewall.errors import ActionSpecError
from tests.fuzzscale import examples


def _common_spec(data: dict[str, Any]) -> ActionSpec | None:
    """The spec the hand-checked path builds, or None when it declines (`parse_action_spec`
    builds from `spec_fields`' answer whenever there is one)."""
    return None if spec_fields(data) is None else parse_action_spec(data)


types = st.one_of(
    st.sampled_from(["github.pr.merge", "stripe.transfer.create", "a.b", "x-y.z_1.w"]),
    st.text(max_size=20),
    st.integers(),
    st.none(),
)
names = st.one_of(
    st.text(max_size=6),
    st.text(min_size=510, max_size=515, alphabet="ab"),
    st.text(min_size=2046, max_size=2050, alphabet="c"),
    st.integers(),
    st.none(),
    st.just("\ud800"),
)
resource = st.dictionaries(
    st.one_of(st.sampled_from(["provider", "account", "target", "environment"]), st.text()),
    names,
    max_size=5,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.just("bad \udc80 text"),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
flat = st.dictionaries(
    st.one_of(st.text(max_size=6), st.just("\udc80"), st.integers()), values, max_size=4
)
specs = st.fixed_dictionaries(
    {"type": types},
    optional={
        "resource": st.one_of(resource, st.none(), st.integers()),
        "parameters": st.one_of(flat, st.lists(scalars, max_size=2)),
        "risk_hints": flat,
        "extra": st.integers(),
    },
)


def _by_model(data: dict[str, Any]) -> ActionSpec | ActionSpecError:
    try:
        return ActionSpec.model_validate(data)
    except Exception:
        try:
            parse_action_spec(data)
        except ActionSpecError as exc:
            return exc
        raise AssertionError("parse_action_spec accepted what the model refuses") from None


def _same(a: ActionSpec, b: ActionSpec) -> None:
    assert a == b
    assert a.model_dump() == b.model_dump()
    assert a.model_fields_set == b.model_fields_set
    assert a.resource.model_fields_set == b.resource.model_fields_set
    assert a.canonical() == b.canonical()
    assert a.action_hash == b.action_hash
    if _hashable(a):
        assert hash(a) == hash(b)
    assert type(a.parameters) is dict
    assert type(a.risk_hints) is dict


def _hashable(spec: ActionSpec) -> bool:
    try:
        hash(spec)
    except TypeError:
        return False
    return True


@settings(max_examples=examples(150), deadline=None)
@given(specs)
def test_parse_equals_the_model(data: dict[str, Any]) -> None:
    expected = _by_model(data)
    if isinstance(expected, ActionSpecError):
        with pytest.raises(ActionSpecError) as caught:
            parse_action_spec(data)
        assert str(caught.value) == str(expected)
        assert _common_spec(data) is None
        return
    _same(parse_action_spec(data), expected)
    fast = _common_spec(data)
    if fast is not None:
        _same(fast, expected)


#: values the model refuses, drawn often (inside `values` they are rare at the top level)
REFUSED = st.sampled_from([math.nan, math.inf, -math.inf, "\ud800", "bad \udc80 text"])
one_flat = st.dictionaries(
    st.one_of(st.text(max_size=6), st.just("\udc80"), st.integers()),
    REFUSED | scalars | values,
    max_size=4,
)
#: each field's values, for a spec whose other fields take the fast path
ONE_FIELD = {
    "type": types,
    "resource": st.one_of(resource, st.none(), st.integers()),
    "parameters": st.one_of(one_flat, st.lists(scalars, max_size=2)),
    "risk_hints": one_flat,
}


@pytest.mark.parametrize("field", sorted(ONE_FIELD))
@settings(max_examples=examples(150), deadline=None)
@given(draw=st.data())
def test_each_field_is_checked_as_the_model_checks_it(field: str, draw: st.DataObject) -> None:
    """Only one field varies and the others are valid, so every way the fast path can
    refuse (or wrongly accept) that field is reached, lone surrogates included: a spec
    whose every field varies at once almost never reaches a single bad one."""
    data = {"type": "github.pr.merge", "resource": {"environment": "prod"}, "parameters": {"n": 1}}
    data[field] = draw.draw(ONE_FIELD[field], label=field)
    expected = _by_model(data)
    if isinstance(expected, ActionSpecError):
        assert _common_spec(data) is None
        return
    _same(parse_action_spec(data), expected)


def test_the_common_shape_takes_the_fast_path_and_copies_its_input() -> None:
    params = {"amount": 5, "ok": True, "note": "x", "f": 1.5, "none": None}
    data = {"type": "github.pr.merge", "resource": {"environment": "prod"}, "parameters": params}
    fast = _common_spec(data)
    assert fast is not None
    assert fast == ActionSpec.model_validate(data)
    assert fast.parameters is not params  # the model copies too: later edits do not leak in
    params["amount"] = 6
    assert fast.parameters["amount"] == 5
    assert fast.provider == "github"
    assert fast.resource == Resource(environment="prod")


@pytest.mark.parametrize(
    "data",
    [
        {"type": "github.pr.merge", "parameters": {"a": [1]}},  # nested: the model's job
        {"type": "github.pr.merge", "parameters": {"a": math.inf}},
        {"type": "github.pr.merge", "resource": {"environment": ""}},
        {"type": "Github.pr.merge"},
        {"type": "github.pr.merge", "other": 1},
        {"type": "github.pr.merge", "resource": {"provider": "\ud800"}},  # a lone surrogate
        {"type": "github.pr.merge", "resource": {"target": "ok \udfff"}},
    ],
)
def test_other_shapes_are_left_to_the_model(data: dict[str, Any]) -> None:
    assert _common_spec(data) is None
