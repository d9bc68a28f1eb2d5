"""A scripted CrewAI LLM: ReAct turns played in order, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from crewai.llms.base_llm import BaseLLM

__all__ = ["CREWAI_WARNINGS", "QUIET_ENV", "ScriptedLLM", "final", "scripted_llm", "uses_tool"]

#: What CrewAI must not do in tests: phone home.
QUIET_ENV = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
}


#: CrewAI reads its own deprecated fields (pydantic ``deprecated=``) when an Agent is made:
#: deprecation warnings are CrewAI's, not ours (our code is tested without crewai too).
CREWAI_WARNINGS = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def uses_tool(name: str, /, **args: Any) -> str:
    return f"Thought: I should use a tool\nAction: {name}\nAction Input: {json.dumps(args)}"


def final(answer: str) -> str:
    return f"Thought: I now know the final answer\nFinal Answer: {answer}"


class ScriptedLLM(BaseLLM):  # type: ignore[misc]
    """Answers each call with the next turn; records the prompts it saw."""

    turns: list[str] = []
    seen: list[str] = []

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        self.seen.append(json.dumps(messages, default=str))
        return self.turns.pop(0)

    def supports_function_calling(self) -> bool:
        return False


def scripted_llm(*turns: str) -> ScriptedLLM:
    return ScriptedLLM(model="scripted", turns=list(turns), seen=[])
