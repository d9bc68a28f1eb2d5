"""OpenAI and Anthropic connectors: one row per action."""

from __future__ import annotations

import json

import pytest

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector

OPENAI = get_connector("openai")
ANTHROPIC = get_connector("anthropic")
MULTIPART = (("Content-Type", "multipart/form-data; boundary=x"),)

Row = tuple[str, str, object, str, str, dict[str, object]]

OPENAI_ROWS: list[Row] = [
    (
        "POST",
        "/v1/chat/completions",
        {"model": "gpt-4o", "stream": True, "messages": []},
        "openai.chat.create",
        "low",
        {"model": "gpt-4o", "stream": True},
    ),
    ("GET", "/v1/chat/completions", None, "openai.chat.list", "low", {}),
    ("GET", "/v1/chat/completions/cc_1", None, "openai.chat.get", "low", {"completion_id": "cc_1"}),
    (
        "DELETE",
        "/v1/chat/completions/cc_1",
        None,
        "openai.chat.delete",
        "medium",
        {"completion_id": "cc_1"},
    ),
    (
        "POST",
        "/v1/completions",
        {"model": "m", "prompt": "x"},
        "openai.completion.create",
        "low",
        {"model": "m"},
    ),
    (
        "POST",
        "/v1/responses",
        {"model": "gpt-4o", "input": "x"},
        "openai.response.create",
        "low",
        {"model": "gpt-4o"},
    ),
    ("GET", "/v1/responses/resp_1", None, "openai.response.get", "low", {"response_id": "resp_1"}),
    (
        "DELETE",
        "/v1/responses/resp_1",
        None,
        "openai.response.delete",
        "medium",
        {"response_id": "resp_1"},
    ),
    (
        "POST",
        "/v1/responses/resp_1/cancel",
        None,
        "openai.response.cancel",
        "low",
        {"response_id": "resp_1"},
    ),
    (
        "POST",
        "/v1/embeddings",
        {"model": "e", "input": "x"},
        "openai.embedding.create",
        "low",
        {"model": "e"},
    ),
    (
        "POST",
        "/v1/images/generations",
        {"model": "dall-e-3", "n": 1, "prompt": "p"},
        "openai.image.generate",
        "low",
        {"model": "dall-e-3", "n": 1},
    ),
    ("POST", "/v1/images/edits", b"--x--", "openai.image.edit", "low", {}),
    ("POST", "/v1/images/variations", b"--x--", "openai.image.variation", "low", {}),
    (
        "POST",
        "/v1/audio/speech",
        {"model": "tts-1", "voice": "alloy", "input": "x"},
        "openai.audio.speech",
        "low",
        {"model": "tts-1", "voice": "alloy"},
    ),
    ("POST", "/v1/audio/transcriptions", b"--x--", "openai.audio.transcribe", "low", {}),
    ("POST", "/v1/audio/translations", b"--x--", "openai.audio.translate", "low", {}),
    ("POST", "/v1/files", b"--x--", "openai.file.upload", "medium", {}),
    ("GET", "/v1/files?purpose=batch", None, "openai.file.list", "low", {"purpose": "batch"}),
    ("GET", "/v1/files/file-1", None, "openai.file.get", "low", {"file_id": "file-1"}),
    ("DELETE", "/v1/files/file-1", None, "openai.file.delete", "medium", {"file_id": "file-1"}),
    (
        "GET",
        "/v1/files/file-1/content",
        None,
        "openai.file_content.get",
        "low",
        {"file_id": "file-1"},
    ),
    (
        "POST",
        "/v1/uploads",
        {"purpose": "batch", "bytes": 10, "filename": "f"},
        "openai.upload.create",
        "medium",
        {"purpose": "batch", "bytes": 10},
    ),
    (
        "POST",
        "/v1/fine_tuning/jobs",
        {"model": "m", "training_file": "file-1"},
        "openai.fine_tuning.create",
        "medium",
        {"model": "m", "training_file": "file-1"},
    ),
    ("GET", "/v1/fine_tuning/jobs", None, "openai.fine_tuning.list", "low", {}),
    ("GET", "/v1/fine_tuning/jobs/ft-1", None, "openai.fine_tuning.get", "low", {"job_id": "ft-1"}),
    (
        "POST",
        "/v1/fine_tuning/jobs/ft-1/cancel",
        None,
        "openai.fine_tuning.cancel",
        "low",
        {"job_id": "ft-1"},
    ),
    (
        "GET",
        "/v1/fine_tuning/jobs/ft-1/events",
        None,
        "openai.fine_tuning_event.list",
        "low",
        {"job_id": "ft-1"},
    ),
    (
        "POST",
        "/v1/batches",
        {"endpoint": "/v1/chat/completions", "input_file_id": "f"},
        "openai.batch.create",
        "medium",
        {"endpoint": "/v1/chat/completions", "input_file_id": "f"},
    ),
    ("GET", "/v1/batches", None, "openai.batch.list", "low", {}),
    ("GET", "/v1/batches/b1", None, "openai.batch.get", "low", {"batch_id": "b1"}),
    ("POST", "/v1/batches/b1/cancel", None, "openai.batch.cancel", "low", {"batch_id": "b1"}),
    ("GET", "/v1/models", None, "openai.model.list", "low", {}),
    ("GET", "/v1/models/gpt-4o", None, "openai.model.get", "low", {"model": "gpt-4o"}),
    (
        "DELETE",
        "/v1/models/ft:gpt-4o:acme",
        None,
        "openai.model.delete",
        "high",
        {"model": "ft:gpt-4o:acme"},
    ),
    (
        "POST",
        "/v1/moderations",
        {"model": "omni-moderation-latest", "input": "x"},
        "openai.moderation.create",
        "low",
        {"model": "omni-moderation-latest"},
    ),
    (
        "POST",
        "/v1/vector_stores",
        {"name": "kb"},
        "openai.vector_store.create",
        "low",
        {"name": "kb"},
    ),
    ("GET", "/v1/vector_stores", None, "openai.vector_store.list", "low", {}),
    (
        "GET",
        "/v1/vector_stores/vs_1",
        None,
        "openai.vector_store.get",
        "low",
        {"vector_store_id": "vs_1"},
    ),
    (
        "DELETE",
        "/v1/vector_stores/vs_1",
        None,
        "openai.vector_store.delete",
        "medium",
        {"vector_store_id": "vs_1"},
    ),
]

ANTHROPIC_ROWS: list[Row] = [
    (
        "POST",
        "/v1/messages",
        {"model": "claude-sonnet-4", "max_tokens": 10, "messages": []},
        "anthropic.message.create",
        "low",
        {"model": "claude-sonnet-4", "max_tokens": 10},
    ),
    (
        "POST",
        "/v1/messages",
        {"model": "claude-sonnet-4", "stream": True},
        "anthropic.message.create",
        "low",
        {"model": "claude-sonnet-4", "stream": True},
    ),
    (
        "POST",
        "/v1/messages/count_tokens",
        {"model": "m", "messages": []},
        "anthropic.message.count_tokens",
        "low",
        {"model": "m"},
    ),
    (
        "POST",
        "/v1/complete",
        {"model": "claude-2", "prompt": "x"},
        "anthropic.completion.create",
        "low",
        {"model": "claude-2"},
    ),
    ("GET", "/v1/models", None, "anthropic.model.list", "low", {}),
    (
        "GET",
        "/v1/models/claude-sonnet-4",
        None,
        "anthropic.model.get",
        "low",
        {"model_id": "claude-sonnet-4"},
    ),
    ("POST", "/v1/messages/batches", {"requests": []}, "anthropic.batch.create", "medium", {}),
    ("GET", "/v1/messages/batches", None, "anthropic.batch.list", "low", {}),
    ("GET", "/v1/messages/batches/mb_1", None, "anthropic.batch.get", "low", {"batch_id": "mb_1"}),
    (
        "POST",
        "/v1/messages/batches/mb_1/cancel",
        None,
        "anthropic.batch.cancel",
        "low",
        {"batch_id": "mb_1"},
    ),
    (
        "DELETE",
        "/v1/messages/batches/mb_1",
        None,
        "anthropic.batch.delete",
        "medium",
        {"batch_id": "mb_1"},
    ),
    (
        "GET",
        "/v1/messages/batches/mb_1/results",
        None,
        "anthropic.batch_result.get",
        "low",
        {"batch_id": "mb_1"},
    ),
    ("POST", "/v1/files", b"--x--", "anthropic.file.upload", "medium", {}),
    ("GET", "/v1/files", None, "anthropic.file.list", "low", {}),
    ("GET", "/v1/files/f1", None, "anthropic.file.get", "low", {"file_id": "f1"}),
    ("DELETE", "/v1/files/f1", None, "anthropic.file.delete", "medium", {"file_id": "f1"}),
]


def request(host: str, method: str, path: str, body: object) -> HttpRequest:
    if isinstance(body, bytes):
        return HttpRequest.from_url(method, host + path, headers=MULTIPART, body=body)
    data = b"" if body is None else json.dumps(body).encode()
    headers = (("Content-Type", "application/json"),)
    return HttpRequest.from_url(method, host + path, headers=headers, body=data)


CASES = [("openai", "https://api.openai.com", row) for row in OPENAI_ROWS] + [
    ("anthropic", "https://api.anthropic.com", row) for row in ANTHROPIC_ROWS
]


@pytest.mark.parametrize(("name", "host", "row"), CASES)
def test_ai_row(name: str, host: str, row: Row) -> None:
    method, path, body, action, risk, params = row
    parsed = get_connector(name).parse(request(host, method, path, body))
    assert (parsed.action_type, parsed.risk) == (action, risk)
    assert parsed.spec.parameters == params
    assert parsed.spec.resource.provider == name
    assert ActionSpec.model_validate(parsed.spec.to_dict()) == parsed.spec


@pytest.mark.parametrize(
    ("name", "rows", "minimum"), [("openai", OPENAI_ROWS, 24), ("anthropic", ANTHROPIC_ROWS, 4)]
)
def test_every_action_has_a_row(name: str, rows: list[Row], minimum: int) -> None:
    named = {row[3] for row in rows}
    assert named == {info.type for info in get_connector(name).actions()}
    assert len(named) >= minimum


def test_openai_big_prompt_keeps_the_model_when_it_comes_first() -> None:
    prefix = b'{"model": "gpt-4o", "stream": false, "messages": [{"role": "user", "content": "aaaa'
    parsed = OPENAI.parse(
        HttpRequest.from_url(
            "POST", "https://api.openai.com/v1/chat/completions", body=prefix, body_complete=False
        )
    )
    assert parsed.spec.parameters == {"model": "gpt-4o", "stream": False}
    assert parsed.spec.risk_hints == {"body_truncated": True}


def test_openai_organization_is_the_account() -> None:
    headers = (("OpenAI-Organization", "org-1"), ("Content-Type", "application/json"))
    parsed = OPENAI.parse(
        HttpRequest.from_url(
            "POST", "https://api.openai.com/v1/embeddings", headers=headers, body=b"{}"
        )
    )
    assert parsed.spec.resource.account == "org-1"


def test_json_route_refuses_a_multipart_body() -> None:
    with pytest.raises(ConnectorError, match="multipart"):
        OPENAI.parse(request("https://api.openai.com", "POST", "/v1/chat/completions", b"--x--"))


def test_openai_fallback_and_credentials() -> None:
    parsed = OPENAI.parse(request("https://api.openai.com", "POST", "/v1/assistants", {}))
    assert (parsed.action_type, parsed.risk, parsed.route) == (
        "openai.unknown.post",
        "medium",
        "fallback",
    )
    assert OPENAI.auth_headers("sk-x") == [("Authorization", "Bearer sk-x")]
    assert OPENAI.auth_header_names == ("authorization",)


def test_anthropic_credentials() -> None:
    assert ANTHROPIC.auth_headers("sk-ant") == [("x-api-key", "sk-ant")]
    assert set(ANTHROPIC.auth_header_names) == {"x-api-key", "authorization"}


def test_build_openai_chat() -> None:
    spec = parse_action_spec(
        {
            "type": "openai.chat.create",
            "parameters": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        }
    )
    built = OPENAI.build_request(spec)
    assert (built.method, built.url) == ("POST", "https://api.openai.com/v1/chat/completions")
    assert json.loads(built.body)["model"] == "gpt-4o"


def test_build_anthropic_message_carries_the_version() -> None:
    spec = parse_action_spec(
        {"type": "anthropic.message.create", "parameters": {"model": "m", "max_tokens": 5}}
    )
    built = ANTHROPIC.build_request(spec)
    assert built.url == "https://api.anthropic.com/v1/messages"
    assert built.header("anthropic-version") == "2023-06-01"
    assert (
        ANTHROPIC.build_request(
            parse_action_spec({"type": "anthropic.model.get", "parameters": {"model_id": "x y"}})
        ).url
        == "https://api.anthropic.com/v1/models/x%20y"
    )
