"""A scripted chat model from langchain-core that calls tools: agents without a network."""

from __future__ import annotations

import itertools
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage

__all__ = ["ScriptedChatModel", "calls_tool", "scripted"]

_ids = itertools.count(1)


class ScriptedChatModel(FakeMessagesListChatModel):
    """Answers with its messages in order; binding tools changes nothing."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def calls_tool(name: str, /, **args: Any) -> AIMessage:
    """A model turn that calls tool `name` with `args`."""
    call = {"name": name, "args": args, "id": f"call_{next(_ids)}", "type": "tool_call"}
    return AIMessage(content="", tool_calls=[call])


def scripted(*turns: AIMessage | str) -> ScriptedChatModel:
    """A model that plays `turns` (strings are final answers)."""
    return ScriptedChatModel(
        responses=[AIMessage(content=t) if isinstance(t, str) else t for t in turns]
    )
