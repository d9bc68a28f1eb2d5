"""Deltas joined as an SDK joins them: by the position each object says it stands at
(``agentfirewall_proxy/eventscan.py``).

Attack: fields were joined across events by their JSON path only, so Anthropic's deltas
of content blocks 0 and 1 interleaved (``AKIA`` in block 0, other text in block 1, the
rest of the key in block 0) were one text, ``AKIA<other>Q3V7…``, which holds no key; the
SDK joins each block's deltas by ``index``, and the key reached the agent whole, never
held back. Likewise OpenAI's choices (``n=2``: ``choices[0].index`` is the choice), its
tool calls' argument deltas, and the Responses API's ``output_index``. Every split point
of a key over positions 0 and 1 interleaved is held back and cut as over one position
(Hypothesis: every secret detector, several pieces, other positions between); the join
by path (a consumer reading ``choices[0]`` of each chunk) is still followed; and a field
pushed out of the 32 followed while its text may end in a secret's beginning counts as
found (fail closed).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.eventreadings import data_pieces as _data_pieces
from agentfirewall_proxy.eventscan import FIELDS
from agentfirewall_proxy.eventwire import event_data
from tests.fuzzscale import examples
from tests.proxy.test_guarded_streams import AWS_KEY, SPLIT, _read, _relay, _sentence


def _anthropic(at: int, text: str) -> object:
    return {"type": "content_block_delta", "index": at,
            "delta": {"type": "text_delta", "text": text}}  # fmt: skip


def _choice(at: int, text: str) -> object:
    choice = {"index": at, "delta": {"content": text}, "finish_reason": None}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [choice]}


def _tool_call(at: int, text: str) -> object:
    call = {"index": at, "function": {"arguments": text}}
    return {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}


def _output(at: int, text: str) -> object:
    return {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": at,
            "content_index": 0, "delta": text}  # fmt: skip


#: How each API streams the text at a position, and how its SDK reads an event's
#: (position, text)
SHAPES: dict[str, tuple[Callable[[int, str], object], Callable[[dict], tuple[int, str]]]] = {
    "anthropic-blocks": (_anthropic, lambda d: (d["index"], d["delta"]["text"])),
    "openai-choices": (_choice, lambda d: (d["choices"][0]["index"],
                                           d["choices"][0]["delta"]["content"])),
    "openai-tool-calls": (_tool_call, lambda d: (
        d["choices"][0]["delta"]["tool_calls"][0]["index"],
        d["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"])),
    "responses-outputs": (_output, lambda d: (d["output_index"], d["delta"])),
}  # fmt: skip
OTHER = "and then some other words"


def _event(shape: str, at: int, text: str) -> bytes:
    return b"data: " + json.dumps(SHAPES[shape][0](at, text)).encode() + b"\n\n"


def _sdk_text(shape: str, events: list[bytes], at: int) -> str:
    """The text the SDK joins at position `at`."""
    read = SHAPES[shape][1]
    pieces = [read(json.loads(data)) for e in events for data in event_data(e.decode())]
    return "".join(text for where, text in pieces if where == at)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_no_part_of_a_key_split_over_interleaved_positions_goes_out(shape: str) -> None:
    """Every split point, the key at position 0 or 1, the other's text between its parts."""
    text, most = _sentence(AWS_KEY, "AKIA")
    for at, other in ((0, 1), (1, 0)):
        for cut in range(1, len(text)):
            events = [_event(shape, at, text[:cut]), _event(shape, other, OTHER),
                      _event(shape, at, text[cut:])]  # fmt: skip
            assert _sdk_text(shape, events, at) == text
            sent, fired = _relay(events)
            assert fired == ["aws_access_key"], (at, cut)
            assert len(_sdk_text(shape, events[:sent], at)) <= most, (at, cut)


@settings(max_examples=examples(100), deadline=None)
@given(
    row=st.sampled_from(SPLIT),
    shape=st.sampled_from(list(SHAPES)),
    at=st.integers(0, 2),
    cuts=st.lists(st.integers(1, 200), min_size=1, max_size=5),
    between=st.lists(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["zz", " ", "x y"])),
                              max_size=2), min_size=6, max_size=6),
)  # fmt: skip
def test_no_part_of_a_secret_split_over_positions_goes_out_whatever_comes_between(
    row: tuple[str, str, str],
    shape: str,
    at: int,
    cuts: list[int],
    between: list[list[tuple[int, str]]],
) -> None:
    detector, secret, prefix = row
    text, most = _sentence(secret, prefix)
    points = sorted({cut % (len(text) - 1) + 1 for cut in cuts})
    events: list[bytes] = []
    bounds = zip([0, *points], [*points, len(text)], strict=True)
    for (start, end), others in zip(bounds, between, strict=False):
        events += [_event(shape, where, junk) for where, junk in others if where != at]
        events.append(_event(shape, at, text[start:end]))
    assert _sdk_text(shape, events, at) == text
    sent, fired = _relay(events)
    assert detector in fired
    assert len(_sdk_text(shape, events[:sent], at)) <= most, (points, between)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_key_joined_by_path_over_two_positions_is_still_found(shape: str) -> None:
    """A consumer that reads each chunk's ``choices[0]`` (or each block's text, whatever its
    index) joins the two positions: that text is followed too."""
    events = [_event(shape, 0, "see AKIAQ3V7"), _event(shape, 1, "WZ2MXK4PLRTY and more")]
    assert _relay(events) == (0, ["aws_access_key"])


def test_a_choice_is_one_field_wherever_it_stands_in_the_array() -> None:
    """Choice 1 at ``choices.1`` in one chunk, at ``choices.0`` (or after choice 0) in the
    next: the SDK joins it by its index."""

    def chunk(*choices: tuple[int, str]) -> bytes:
        data = {"choices": [{"index": at, "delta": {"content": text}} for at, text in choices]}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    for second in (chunk((1, "WZ2MXK4PLRTY.")), chunk((1, "WZ2MXK4PLRTY."), (0, " fine"))):
        events = [chunk((0, "Hello"), (1, "see AKIAQ3V7")), second]
        assert _relay(events) == (0, ["aws_access_key"])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_secret_in_one_event_at_another_position_is_not_said_to_span_events(
    shape: str,
) -> None:
    """Found in its event (so a redact rule may replace it there), not where events join."""
    events = [_event(shape, 0, "hello "), _event(shape, 1, "hi "),
              _event(shape, 1, f"the key {AWS_KEY} is here")]  # fmt: skip
    assert _read(events) == (["aws_access_key"], [])


def test_a_field_pushed_out_while_it_may_end_in_a_secrets_beginning_cuts_the_stream() -> None:
    """Past the 32 fields followed, the one seen least recently is dropped: if its text may
    end in a secret's beginning, no later event could be joined to it, so that counts as
    found (as a match leaving the window does); one that ends settled is dropped quietly."""
    others = [_event("openai-choices", at, "x") for at in range(1, FIELDS + 1)]
    assert _relay([_event("openai-choices", 0, "see AKIA"), *others]) == (0, ["aws_access_key"])
    assert _relay([_event("openai-choices", 0, "see"), *others]) == (FIELDS + 1, [])


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"choices": [{"index": 1, "delta": {"content": "a"}}]}, ".choices.1.delta.content"),
        ({"choices": [{"index": 0, "x": "a"}, {"index": 0, "x": "a"}]}, ".choices.0.x"),
        ({"index": 1, "delta": {"text": "a"}}, "[1].delta.text"),
        ({"index": 0, "delta": {"text": "a"}}, ".delta.text"),
        ({"output_index": 1, "content_index": 0, "delta": "a"}, "[0,1].delta"),
        ({"output_index": 2, "content_index": 2, "delta": "a"}, "[2].delta"),
        ({"index": 1.0, "t": "a"}, "[1].t"),
        ({"index": True, "t": "a"}, ".t"),
        ({"index": "1", "t": "a"}, ".t"),
    ],
)  # fmt: skip
def test_an_object_is_named_by_the_position_it_says(data: object, named: str) -> None:
    _, (_, _, by_position, go_by_position) = _data_pieces(json.dumps(data), "body.event3.data")
    assert by_position[0] == ("body.event3.data" + named, "a")
    assert go_by_position[0] == by_position[0]


def test_an_index_given_twice_is_read_as_each_reader_keeps_it() -> None:
    """``JSON.parse`` keeps the last ``index``; Go's the last member matching in any case."""
    _, readings = _data_pieces('{"index":1,"Index":2,"t":"x"}', "d")
    assert [reading[0][0] for reading in readings] == ["d.t", "d.t", "d[1].t", "d[2].t"]
