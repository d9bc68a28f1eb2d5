"""UsageReader: the `usage` of OpenAI and Anthropic answers, JSON or streamed, in any cut."""

from __future__ import annotations

import json

import pytest

from agentfirewall_proxy.llmusage import UsageReader


def _sse(*events: dict[str, object]) -> bytes:
    return b"".join(b"event: x\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events)


CASES = [
    (  # anthropic messages, streamed: input at the start, output (cumulative) in the delta
        _sse({"type": "message_start", "message": {"model": "claude-sonnet-4",
              "usage": {"input_tokens": 25, "output_tokens": 1}}},
             {"type": "content_block_delta", "delta": {"text": "hi"}},
             {"type": "message_delta", "usage": {"output_tokens": 15}}),
        True, {"input_tokens": 25, "output_tokens": 15}, "claude-sonnet-4",
    ),
    (  # openai responses, streamed
        _sse({"type": "response.created", "response": {"model": "gpt-4.1", "usage": None}},
             {"type": "response.completed", "response": {"model": "gpt-4.1",
              "usage": {"input_tokens": 7, "output_tokens": 9, "total_tokens": 16}}}),
        True, {"input_tokens": 7, "output_tokens": 9, "total_tokens": 16}, "gpt-4.1",
    ),
    (  # openai chat, JSON
        json.dumps({"model": "gpt-4o", "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
        .encode(), False, {"prompt_tokens": 3, "completion_tokens": 4}, "gpt-4o",
    ),
    (b"data: [DONE]\n\n", True, None, None),
    (b"not json", False, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("body", "stream", "usage", "model"), CASES)
@pytest.mark.parametrize("cut", [1, 7, 10_000])
def test_usage_in_any_cut(
    body: bytes, stream: bool, usage: dict[str, int] | None, model: str | None, cut: int
) -> None:
    reader = UsageReader(stream=stream)
    for start in range(0, len(body), cut):
        reader.feed(body[start : start + cut])
    assert reader.finish() == (usage, model)


def test_a_body_of_any_size_is_read() -> None:
    """Before: past 8 MiB the body was dropped and the call counted 0 tokens (an agent
    sets the size, with logprobs or n); it is walked in bounded memory instead."""
    reader = UsageReader(stream=False)
    reader.feed(b'{"model": "gpt-4o", "choices": [{"text": "')
    for _ in range(10):
        reader.feed(b"x" * (1024 * 1024))
    reader.feed(b'"}], "usage": {"prompt_tokens": 5}}')
    reader.end()
    assert reader.finish() == ({"prompt_tokens": 5}, "gpt-4o")
    assert reader.unread() == ""
