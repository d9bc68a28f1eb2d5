"""The LLM ``usage`` of a response, read as it streams past (for token and cost budgets).

A JSON answer (OpenAI chat completions and responses, Anthropic messages) carries
``usage`` and ``model`` at its top level; a streamed one (server-sent events) carries them
in its events: OpenAI's last chat chunk (``stream_options.include_usage``), the
``response.completed`` event's ``response``, Anthropic's ``message_start`` (input) and
``message_delta`` (output, cumulative). Numbers seen more than once keep their largest
value. Only what a budget needs is kept: at most ``limit`` bytes of a JSON body, one
event at a time of a stream.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["UsageReader"]

_LIMIT = 8 * 1024 * 1024


def _merge(into: dict[str, Any], usage: object) -> None:
    if not isinstance(usage, dict):
        return
    for key, value in usage.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            into[key] = max(value, into.get(key, 0))


class UsageReader:
    def __init__(self, *, stream: bool, limit: int = _LIMIT) -> None:
        self.stream = stream
        self.limit = limit
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> None:
        if self._overflow:
            return
        self._buffer += data
        if not self.stream:
            if len(self._buffer) > self.limit:
                self._overflow = True  # past the limit: no usage (settles at what was reserved)
                self._buffer.clear()
            return
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).strip()
            del self._buffer[: end + 1]
            if line.startswith(b"data:"):
                self._read(line[5:].strip())
        if len(self._buffer) > self.limit:
            self._overflow = True
            self._buffer.clear()

    def _read(self, raw: bytes) -> None:
        if not raw.startswith(b"{"):
            return
        try:
            data = json.loads(raw)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        for part in (data, data.get("message"), data.get("response")):
            if isinstance(part, dict):
                _merge(self.usage, part.get("usage"))
                model = part.get("model")
                if isinstance(model, str) and self.model is None:
                    self.model = model[:200]

    def finish(self) -> tuple[dict[str, Any] | None, str | None]:
        """(usage, model) of the whole response; (None, model) when it named no usage."""
        if not self.stream and not self._overflow and self._buffer:
            self._read(bytes(self._buffer).strip())
        self._buffer.clear()
        return (dict(self.usage) or None), self.model
