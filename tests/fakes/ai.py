"""Fake OpenAI, Anthropic and MCP (Streamable HTTP) servers.

Streaming answers (``"stream": true``) are server-sent events sent one chunk at a time,
``settings["stream_delay"]`` seconds apart (default 0.05) and ``settings["stream_chunks"]``
of them (default 5): a proxy that buffers shows up as collapsed gaps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.base import FakeUpstream

_ids = itertools.count(1)


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def _stream(fake: FakeUpstream, events: list[bytes]) -> StreamingResponse:
    delay = float(fake.settings.get("stream_delay", 0.05))

    async def body() -> AsyncIterator[bytes]:
        for index, event in enumerate(events):
            if index:
                await asyncio.sleep(delay)
            yield event

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


#: Token usage the OpenAI fake reports (``settings["usage"]`` overrides it).
_USAGE = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
#: Token usage the Anthropic fake reports (``settings["usage"]`` overrides it).
_ANTHROPIC_USAGE = {"input_tokens": 1, "output_tokens": 3}


def openai() -> FakeUpstream:
    fake = FakeUpstream(name="openai", hostnames=("api.openai.com",), app=None)  # type: ignore[arg-type]

    async def chat(request: Request) -> Response:
        body = await request.json()
        ident, model, now = (
            f"chatcmpl-fake{next(_ids)}",
            body.get("model", "gpt-4o"),
            int(time.time()),
        )
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": now,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": fake.settings.get("reply", "hello from fake"),
                            },
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": fake.settings.get("usage", _USAGE),
                }
            )
        count = int(fake.settings.get("stream_chunks", 5))
        events = []
        for index in range(count):
            delta = (
                {"role": "assistant", "content": ""} if index == 0 else {"content": f"w{index} "}
            )
            events.append(
                _sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": now,
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                    }
                )
            )
        if (body.get("stream_options") or {}).get("include_usage"):  # as OpenAI: one last chunk
            events.append(_sse({"id": ident, "object": "chat.completion.chunk", "created": now,
                                "model": model, "choices": [],
                                "usage": fake.settings.get("usage", _USAGE)}))  # fmt: skip
        events.append(_sse("[DONE]"))
        return _stream(fake, events)

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    async def embeddings(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "model": "text-embedding-3-small",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    fake.app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )
    return fake


def anthropic() -> FakeUpstream:
    fake = FakeUpstream(name="anthropic", hostnames=("api.anthropic.com",), app=None)  # type: ignore[arg-type]

    async def messages(request: Request) -> Response:
        body = await request.json()
        ident, model = f"msg_fake{next(_ids)}", body.get("model", "claude-sonnet-4")
        usage = dict(fake.settings.get("usage", _ANTHROPIC_USAGE))
        message = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "hello from fake"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return JSONResponse(message)
        # as Anthropic: the input (and cache) tokens and 1 output token in message_start,
        # the cumulative output tokens in message_delta
        start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        events = [
            _sse({"type": "message_start", "message": start}, "message_start"),
            _sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
        ]
        for index in range(int(fake.settings.get("stream_chunks", 5))):
            events.append(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": f"w{index} "},
                    },
                    "content_block_delta",
                )
            )
        events += [
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": usage.get("output_tokens", 0)},
                },
                "message_delta",
            ),
            _sse({"type": "message_stop"}, "message_stop"),
        ]
        return _stream(fake, events)

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "data": [
                    {
                        "id": "claude-sonnet-4",
                        "type": "model",
                        "display_name": "Fake",
                        "created_at": "2025-01-01T00:00:00Z",
                    }
                ],
                "has_more": False,
                "first_id": None,
                "last_id": None,
            }
        )

    fake.app = Starlette(
        routes=[Route("/v1/messages", messages, methods=["POST"]), Route("/v1/models", models)]
    )
    return fake


MCP_TOOLS = [
    {
        "name": "echo",
        "description": "echo the text back",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    },
    {
        "name": "delete_everything",
        "description": "a dangerous tool",
        "inputSchema": {"type": "object", "properties": {}},
    },
]


def mcp() -> FakeUpstream:
    """JSON-RPC at ``/mcp``; answers as JSON, or as one SSE event when ``settings["sse"]``."""
    fake = FakeUpstream(name="mcp", hostnames=("mcp.example.com",), app=None)  # type: ignore[arg-type]

    def result_for(method: str, params: dict[str, Any]) -> Any:
        if method == "initialize":
            return {
                "protocolVersion": params.get("protocolVersion", "2025-03-26"),
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "fake-mcp", "version": "1.0.0"},
            }
        if method == "tools/list":
            return {"tools": MCP_TOOLS}
        if method == "tools/call":
            text = json.dumps(params.get("arguments", {}))
            return {
                "content": [{"type": "text", "text": f"{params.get('name')}: {text}"}],
                "isError": False,
            }
        return {}

    async def endpoint(request: Request) -> Response:
        if request.method == "DELETE":
            return Response(status_code=200)
        if request.method == "GET":
            return Response(status_code=405)
        message = await request.json()
        headers = {"Mcp-Session-Id": "fake-session-1"}
        if "id" not in message:  # a notification
            return Response(status_code=202, headers=headers)
        answer = {
            "jsonrpc": "2.0",
            "id": message["id"],
            "result": result_for(message.get("method", ""), message.get("params") or {}),
        }
        if fake.settings.get("sse"):
            return StreamingResponse(
                iter([_sse(answer, "message")]), media_type="text/event-stream", headers=headers
            )
        return JSONResponse(answer, headers=headers)

    fake.app = Starlette(routes=[Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"])])
    return fake
