"""UsageReader reads what `json.loads` reads, in bounded memory: for any JSON document, cut
anywhere, spelled any way (whitespace, escaped keys), the `usage` and `model` at the top (or
in `message` / `response`) and nothing else: not a `usage` nested deeper, not one inside a
string. A document too large to parse whole is walked (`_WHOLE` set to 0 walks every one).

Before: a JSON answer past 8 MiB was dropped whole and counted 0 tokens.
"""

from __future__ import annotations

import json
import random
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy import llmusage
from agentfirewall_proxy.llmusage import UsageReader

NAMES = ["usage", "model", "message", "response", "choices", "prompt_tokens", "x"]
#: Strings that look like what is read, to be read as strings only.
DECOYS = ['"usage": {"prompt_tokens": 999}', '{"usage":', '\\"model\\": \\"', "}}]]", "\\"]
TEXT = st.one_of(st.sampled_from(DECOYS), st.text(max_size=12), st.sampled_from(NAMES))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False), TEXT,
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.sampled_from(NAMES), TEXT), inner, max_size=4)
    ),
    max_leaves=8,
)
USAGES = st.one_of(
    st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens"]),
                    st.integers(0, 10**9), max_size=3),
    VALUES,
)  # fmt: skip


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A top-level object with `usage` and `model` here and there, decoys around them."""
    top: dict[str, Any] = draw(st.dictionaries(TEXT, VALUES, max_size=3))
    for holder in ("message", "response"):
        if draw(st.booleans()):
            inner = draw(st.dictionaries(TEXT, VALUES, max_size=2))
            if draw(st.booleans()):
                inner["usage"] = draw(USAGES)
            if draw(st.booleans()):
                inner["model"] = draw(st.one_of(TEXT, VALUES))
            top[holder] = inner
    if draw(st.booleans()):
        top["usage"] = draw(USAGES)
    if draw(st.booleans()):
        top["model"] = draw(st.one_of(TEXT, VALUES))
    keys = list(top)
    draw(st.randoms()).shuffle(keys)
    return {key: top[key] for key in keys}


def dump(value: object, rnd: random.Random) -> str:
    """`value` as JSON with random whitespace, and keys' letters escaped at random."""
    space = rnd.choice(["", " ", "\n  ", "\t"])
    if isinstance(value, dict):
        items = [
            f"{space}{key_text(k, rnd)}{space}:{space}{dump(v, rnd)}" for k, v in value.items()
        ]
        return "{" + ",".join(items) + space + "}"
    if isinstance(value, list):
        return "[" + ",".join(space + dump(v, rnd) for v in value) + space + "]"
    return json.dumps(value, ensure_ascii=rnd.random() < 0.5)


def key_text(key: str, rnd: random.Random) -> str:
    if rnd.random() < 0.7:
        return json.dumps(key)
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in key) + '"'


def expected(documents: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """What the reader must say: the documents read with `json.loads` (as the reader of one
    whole body always did)."""
    usage: dict[str, Any] = {}
    model = None
    for document in documents:
        for part in (document, document.get("message"), document.get("response")):
            if isinstance(part, dict):
                llmusage._merge(usage, part.get("usage"))
        for part in (document, document.get("message"), document.get("response")):
            found = part.get("model") if isinstance(part, dict) else None
            if model is None and isinstance(found, str):
                model = found[:200]
                break
    return usage or None, model


def read(body: bytes, cuts: list[int], *, stream: bool, whole: int) -> UsageReader:
    reader = UsageReader(stream=stream)
    with mock.patch.object(llmusage, "_WHOLE", whole):
        start = 0
        for cut in [*sorted(c % (len(body) + 1) for c in cuts), len(body)]:
            reader.feed(body[start:cut])
            start = max(start, cut)
        reader.end()
        reader.finish()
    return reader


@settings(max_examples=50, deadline=None)
@given(documents(), st.randoms(), st.lists(st.integers(0, 10**6), max_size=6), st.booleans())
def test_a_json_body_reads_as_json_loads(
    document: dict[str, Any], rnd: random.Random, cuts: list[int], walked: bool
) -> None:
    text = dump(document, rnd)
    assert json.loads(text) == document  # (the spelling means the same)
    reader = read(text.encode(), cuts, stream=False, whole=0 if walked else 64 * 1024)
    assert reader.finish() == expected([document])
    assert reader.unread() == ""


@settings(max_examples=30, deadline=None)
@given(st.lists(documents(), min_size=1, max_size=4), st.randoms(),
       st.lists(st.integers(0, 10**6), max_size=8), st.booleans())  # fmt: skip
def test_an_event_stream_reads_as_json_loads_of_each_event(
    events: list[dict[str, Any]], rnd: random.Random, cuts: list[int], walked: bool
) -> None:
    lines = [f"event: e{i}\ndata: {dump(e, rnd).replace(chr(10), ' ')}\n\n" for i, e in
             enumerate(events)]  # fmt: skip
    body = ("".join(lines) + "data: [DONE]\n\n").encode()
    reader = read(body, cuts, stream=True, whole=0 if walked else 64 * 1024)
    assert reader.finish() == expected(events)


@settings(max_examples=30, deadline=None)
@given(documents(), st.randoms(), st.integers(0, 10**6), st.booleans())
def test_a_json_body_cut_short_is_never_read_as_naming_no_usage(
    document: dict[str, Any], rnd: random.Random, cut: int, walked: bool
) -> None:
    """A body whose end came early (or that is not JSON) says so, unless a usage was read:
    never "whole, and it named none" (which counts 0)."""
    body = dump(document, rnd).encode()
    body = body[: cut % len(body)]
    reader = read(body, [], stream=False, whole=0 if walked else 64 * 1024)
    assert reader.unread() == "the response was not JSON" or reader.finish()[0] is not None


def test_a_usage_too_large_to_keep_is_unread() -> None:
    """A `usage` past 64 KiB is not kept: it says so (then the call is estimated)."""
    big = {"usage": {"prompt_tokens": 5, "padding": "x" * 70_000}}
    reader = read(json.dumps(big).encode(), [1000], stream=False, whole=0)
    assert reader.unread() == "its usage was too large to read"


def test_a_body_not_read_to_its_end_is_unread() -> None:
    reader = UsageReader(stream=True)
    reader.feed(b'data: {"model": "m", "choices": []}\n\n')
    assert reader.unread() == "the response was not read to its end"


def test_estimate_counts_the_request_bytes_and_its_output_limit() -> None:
    estimate = llmusage.estimate
    assert estimate(1200, {"max_tokens": 50, "n": 3}, None) == {
        "prompt_tokens": 1200, "completion_tokens": 150}  # fmt: skip
    assert estimate(10, {}, None) == {"prompt_tokens": 10, "completion_tokens": 128_000}
    # in the words of what was read (Anthropic's), never below it
    read_ = {"input_tokens": 5000, "output_tokens": 1}
    assert estimate(10, {"max_tokens": "64"}, read_) == {
        "input_tokens": 5000, "output_tokens": 128_000}  # fmt: skip
    assert estimate(10, {"max_output_tokens": 64, "max_tokens": True}, read_) == {
        "input_tokens": 5000, "output_tokens": 64}  # fmt: skip
