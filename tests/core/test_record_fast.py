"""``record_input``'s cheap paths give exactly what the plain definition gives.

The gateway records every decision's input, so ``record_input`` reads the resource field
by field (not through ``model_dump``), sizes printable ASCII strings without encoding
them to JSON, and scans values only when detectors fired (names are cached; an object or a
list is withheld by the names inside it). The reference below is the definition those
shortcuts replace.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.content import masked
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import _ALWAYS, CONTENT_PARAMETERS, MAX_VALUE_BYTES, _storable
from agentfirewall.policy.record import record_input as fast_record_input
from tests.fuzzscale import examples


def reference_storable(value: object) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8")) <= MAX_VALUE_BYTES


def names_in(value: object) -> list[str]:
    if isinstance(value, dict):
        return [n for name, inner in value.items() for n in (name, *names_in(inner))]
    return [n for inner in value for n in names_in(inner)] if isinstance(value, list) else []


def reference_record_input(
    spec: ActionSpec, ctx: EvaluationContext, unseen: bool, detected: bool
) -> Any:
    detected = detected or any(name.startswith("content.") for name in ctx.attributes)

    def secret_name(name: str) -> bool:
        return name.lower() in _ALWAYS or masked(f"{name}=x0") != f"{name}=x0"

    def secret(name: str, value: object) -> bool:
        """Masked as approvers see it: by its name or a name inside it, or by what detectors
        found in it."""
        if secret_name(name) or any(map(secret_name, names_in(value))):
            return True
        if not detected or value is None or isinstance(value, bool | int | float):
            return False
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return masked(text) != text

    def split(values: dict[str, Any], content: frozenset[str]) -> tuple[dict[str, Any], list[str]]:
        kept: dict[str, Any] = {}
        withheld: list[str] = []
        for name, value in values.items():
            if name in content or not reference_storable(value) or secret(name, value):
                withheld.append(name)
            else:
                kept[name] = value
        return kept, withheld

    content = CONTENT_PARAMETERS.get(ctx.connector or spec.resource.provider or "", frozenset())
    params, withheld = split(spec.parameters, content)
    hints, hidden = split(spec.risk_hints, frozenset())
    out: dict[str, Any] = {"v": 1, "t": spec.type, "m": ctx.mode}
    resource = {k: v for k, v in spec.resource.model_dump().items() if v is not None}
    secrets = [k for k, v in resource.items() if detected and masked(v) != v]
    resource = {k: v for k, v in resource.items() if k not in secrets}
    if resource:
        out["r"] = resource
    if params:
        out["p"] = params
    if hints:
        out["h"] = hints
    names = withheld + [f"risk_hints.{h}" for h in hidden] + [f"resource.{k}" for k in secrets]
    if names:
        out["w"] = [masked(name) for name in names]
    if ctx.connector is not None:
        out["c"] = ctx.connector
    out["l"] = ctx.enforcement_level
    if ctx.mode == "sdk":
        out["d"] = ctx.sdk_default
    if ctx.risk is not None:
        out["k"] = ctx.risk
    if ctx.attributes:
        out["a"] = {k: v for k, v in ctx.attributes.items() if reference_storable(v)}
    if unseen:
        out["u"] = 1
    out["n"] = round(ctx.now.timestamp(), 6)
    return out


#: names inside an object: any, and names that say secret or body (`"password": ...`)
_NAMES = st.text(max_size=8) | st.sampled_from(["password", "apiKey", "Content", "x_token"])


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.dictionaries(_NAMES, inner, max_size=4)


BASE = datetime(2026, 12, 3, tzinfo=UTC)


# strings around the size limit, with the characters JSON escapes and non-ASCII ones
_CHARS = st.sampled_from(["a", '"', "\\", "\n", "\x00", "\x7f", "é", "€", "😀", " ", "~"])
texts = st.one_of(
    st.text(max_size=300),
    st.lists(_CHARS, max_size=300).map("".join),
    st.integers(0, 40).flatmap(
        lambda n: st.lists(_CHARS, max_size=n).map(lambda c: "x" * (254 - n) + "".join(c))
    ),
)
#: values with what a detector finds: a GitHub token alone, inside a sentence, a card number
_SECRETS = st.sampled_from(["ghp_" + "A1b2C3d4E5" * 3 + "Q7r8S9",
                            "deploy key ghp_" + "z9Y8x7W6v5" * 3 + "u4T3s2",
                            "card 4111 1111 1111 1111", "password=hunter2"])  # fmt: skip
texts = texts | _SECRETS
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts)
_SURROGATE = st.just("a\ud800b")
values = st.recursive(
    scalars | _SURROGATE,
    _containers,
    max_leaves=12,
)


#: What a spec may hold: finite numbers, valid unicode (``ActionSpec`` checks it).
spec_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False), texts,
)  # fmt: skip
spec_values = st.recursive(
    spec_scalars,
    _containers,
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=examples(250), deadline=None)
@given(values)
def test_storable_equals_its_json_definition(value: object) -> None:
    assert _outcome(_storable, value) == _outcome(reference_storable, value)


def _outcome(function: Any, value: object) -> object:
    """The answer, or the type of error raised (a lone surrogate, an infinity)."""
    try:
        return function(value)
    except (ValueError, UnicodeEncodeError) as exc:
        return type(exc)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[ActionSpec, EvaluationContext, bool, bool]:
    provider = draw(st.sampled_from(["slack", "openai", "github", "generic", "mcp"]))
    names = st.sampled_from(["text", "Token", "host", "path", "n", "model", "arguments", "x",
                             "access_token", "clientSecret", "max_tokens"])  # fmt: skip
    resource = {
        "provider": provider,
        **draw(st.fixed_dictionaries({}, optional={
            "account": st.sampled_from(["acct_1", "org", "AKIA" + "Q3V7WZ2MXK4PLRTY"]),
            "target": st.sampled_from(["127.0.0.1", "api.github.com", "x" * 300,
                                       "acme/ghp_" + "A1b2C3d4E5" * 3 + "Q7r8S9"]),
            "environment": st.sampled_from(["production", "dev"]),
        })),
    }  # fmt: skip
    spec = parse_action_spec({
        "type": f"{provider}.thing.get",
        "resource": resource,
        "parameters": draw(st.dictionaries(names, spec_values, max_size=5)),
        "risk_hints": draw(st.dictionaries(names, spec_scalars, max_size=2)),
    })  # fmt: skip
    mode = draw(st.sampled_from(["proxy", "sdk"]))
    ctx = EvaluationContext(
        agent="Bot",
        mode=mode,
        now=BASE + timedelta(microseconds=draw(st.integers(0, 10**12))),
        connector=draw(st.sampled_from([None, provider, "slack"])),
        risk=draw(st.sampled_from([None, "low", "high"])),
        attributes=draw(st.dictionaries(st.sampled_from(["content.secrets", "ip"]), spec_values,
                                        max_size=2)),
    )  # fmt: skip
    return spec, ctx, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=examples(150), deadline=None)
@given(inputs())
def test_record_input_equals_its_plain_definition(
    found: tuple[ActionSpec, EvaluationContext, bool, bool],
) -> None:
    spec, ctx, unseen, detected = found
    fast = fast_record_input(spec, ctx, unseen=unseen, detected=detected)
    slow = reference_record_input(spec, ctx, unseen, detected)
    assert fast == slow
    assert json.dumps(fast) == json.dumps(slow)  # same keys in the same order: same bytes
