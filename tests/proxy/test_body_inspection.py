"""Fail closed on unseen bodies (DESIGN.md section 7, guarantee 1).

A policy denies ``parameters.model equals gpt-forbidden``. The decisive field comes last,
after megabytes of messages, as the official ``openai`` client writes it (``messages``
before ``model``) and as raw curl sends it, with ``Content-Length`` and chunked. Up to the
inspection limit (16 MiB) the field is found wherever it is; beyond it, the request is
refused because the rule could apply, with a reason that says the body was not fully
inspected. A compressed body is decoded when it can be (gzip, deflate), refused when not.
"""

from __future__ import annotations

import gzip
import json
import shutil
import ssl
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeUpstreams
from tests.proxy.support import (
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

MIB = 1024 * 1024
URL = "https://api.openai.com/v1/chat/completions"
POLICY = {
    "name": "no-forbidden-model",
    "document": {
        "name": "no-forbidden-model",
        "rules": [
            {
                "name": "forbidden",
                "conditions": {
                    "field": "action_spec.parameters.model",
                    "operator": "equals",
                    "value": "gpt-forbidden",
                },
                "decision": "deny",
                "reason": "this model is forbidden",
            }
        ],
    },
}


def _messages(size: int) -> list[dict[str, str]]:
    piece = "x" * (64 * 1024)
    return [{"role": "user", "content": piece} for _ in range(size // len(piece) + 1)]


def _body(model: str, size: int) -> bytes:
    """`model` last, after at least `size` bytes of messages."""
    return json.dumps({"messages": _messages(size), "model": model}).encode()


@pytest.fixture
def gateway(tmp_path: Path, fakes: FakeUpstreams) -> Iterator[RunningGateway]:
    fakes["openai"].clear()
    snap = snapshot([rule("openai.*", "allow")], connectors=[connector("openai")],
                    policies=[POLICY])  # fmt: skip
    running, _ = start_gateway(tmp_path, fakes, snap)
    try:
        yield running
    finally:
        running.stop()


def _bundle(running: RunningGateway) -> Path:
    return ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")


def _openai(
    running: RunningGateway, model: str, size: int, *, last: bool = True
) -> tuple[int, dict[str, Any]]:
    """A chat request through the official client: `model` after the messages (`last`,
    a raw ``client.post`` with the body in that order) or first, as ``create`` writes it."""
    verify = ssl.create_default_context(cafile=str(_bundle(running)))
    http = httpx.Client(proxy=running.proxy_url(), verify=verify, timeout=60, trust_env=False)
    client = openai.OpenAI(api_key=PLACEHOLDER, http_client=http, max_retries=0)  # type: ignore[arg-type]
    try:
        if last:
            body = {"messages": _messages(size), "model": model}
            client.post("/chat/completions", cast_to=httpx.Response, body=body)
        else:
            client.chat.completions.create(model=model, messages=_messages(size))  # type: ignore[arg-type]
    except openai.APIStatusError as exc:
        return exc.status_code, exc.response.json()
    finally:
        http.close()
    return 200, {}


def _curl(
    running: RunningGateway, body: bytes, tmp: Path, *, chunked: bool, headers: tuple[str, ...] = ()
) -> tuple[int, dict[str, Any]]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    data = tmp / "body.bin"
    data.write_bytes(body)
    out = tmp / "answer.json"
    command = ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", "-x", running.proxy_url(),
               "--cacert", str(_bundle(running)), "-H", "Content-Type: application/json",
               "-H", f"Authorization: Bearer {PLACEHOLDER}", "--data-binary", f"@{data}",
               ]  # fmt: skip
    if chunked:
        command += ["-H", "Transfer-Encoding: chunked"]
    for header in headers:
        command += ["-H", header]
    done = subprocess.run([*command, URL], capture_output=True, text=True, timeout=120)
    status = int(done.stdout.strip() or 0)
    text = out.read_bytes() if out.exists() else b""
    return status, json.loads(text) if text.startswith(b"{") else {}


SIZES = {"3 MiB": 3 * MIB, "past 16 MiB": 17 * MIB}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_model_last_found_or_fail_closed_with_the_openai_client(
    gateway: RunningGateway, fakes: FakeUpstreams, size: int
) -> None:
    status, answer = _openai(gateway, "gpt-forbidden", size)
    assert status == 403
    assert answer["error"] == "denied"
    if size > 16 * MIB:
        assert "not fully inspected" in answer["reason"]
    else:
        assert answer["reason"] == "this model is forbidden"
    assert fakes["openai"].received() == []


def test_model_first_past_the_limit_is_decided_on_what_was_seen(
    gateway: RunningGateway, fakes: FakeUpstreams
) -> None:
    """``create`` writes `model` first: seen in the prefix, the rule itself denies."""
    status, answer = _openai(gateway, "gpt-forbidden", 17 * MIB, last=False)
    assert status == 403
    assert answer["reason"] == "this model is forbidden"
    assert fakes["openai"].received() == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_model_last_found_or_fail_closed_with_curl(
    gateway: RunningGateway, fakes: FakeUpstreams, tmp_path: Path, size: int, chunked: bool
) -> None:
    status, answer = _curl(gateway, _body("gpt-forbidden", size), tmp_path, chunked=chunked)
    assert status == 403
    assert answer["error"] == "denied"
    expected = "not fully inspected" if size > 16 * MIB else "this model is forbidden"
    assert expected in answer["reason"]
    assert fakes["openai"].received() == []


def test_an_allowed_model_after_3_mib_is_forwarded_whole(
    gateway: RunningGateway, fakes: FakeUpstreams, tmp_path: Path
) -> None:
    body = _body("gpt-4o", 3 * MIB)
    status, _ = _curl(gateway, body, tmp_path, chunked=True)
    assert status == 200
    (received,) = fakes["openai"].received("POST")
    assert received.body == body


def test_past_the_limit_even_an_allowed_model_fails_closed(
    gateway: RunningGateway, fakes: FakeUpstreams
) -> None:
    """The body was not seen whole: the deny rule on `model` could apply, so it does."""
    status, answer = _openai(gateway, "gpt-4o", 17 * MIB)
    assert status == 403
    assert "not fully inspected" in answer["reason"]
    assert "no-forbidden-model/forbidden" in answer["reason"]
    assert fakes["openai"].received() == []


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_compressed_bodies_are_decoded_and_inspected(
    gateway: RunningGateway, fakes: FakeUpstreams, tmp_path: Path, encoding: str, encode: Any
) -> None:
    forbidden = encode(_body("gpt-forbidden", 3 * MIB))
    status, answer = _curl(gateway, forbidden, tmp_path, chunked=False,
                           headers=(f"Content-Encoding: {encoding}",))  # fmt: skip
    assert status == 403
    assert answer["reason"] == "this model is forbidden"
    allowed = encode(_body("gpt-4o", MIB))
    _curl(gateway, allowed, tmp_path, chunked=False, headers=(f"Content-Encoding: {encoding}",))
    (received,) = fakes["openai"].received("POST")  # allowed (the fake cannot read gzip)
    assert received.body == allowed  # forwarded as sent, still compressed


def test_a_compression_bomb_past_the_limit_fails_closed(
    gateway: RunningGateway, fakes: FakeUpstreams, tmp_path: Path
) -> None:
    bomb = gzip.compress(_body("gpt-4o", 40 * MIB))
    assert len(bomb) < MIB
    status, answer = _curl(gateway, bomb, tmp_path, chunked=False,
                           headers=("Content-Encoding: gzip",))  # fmt: skip
    assert status == 403
    assert "not fully inspected" in answer["reason"]
    assert fakes["openai"].received() == []


@pytest.mark.parametrize("body", [b"\x1f\x8b not gzip", b"{}"], ids=["broken gzip", "br"])
def test_an_unreadable_encoding_is_refused(
    gateway: RunningGateway, fakes: FakeUpstreams, tmp_path: Path, body: bytes
) -> None:
    """415, saying how to send it (tests/proxy/test_content_encodings.py: every kind)."""
    encoding = "gzip" if body.startswith(b"\x1f\x8b") else "br"
    status, answer = _curl(gateway, body, tmp_path, chunked=False,
                           headers=(f"Content-Encoding: {encoding}",))  # fmt: skip
    assert status == 415
    assert answer["error"] == "unsupported_encoding"
    assert f"`{encoding}`" in answer["reason"]
    assert "send it uncompressed" in answer["reason"]
    assert fakes["openai"].received() == []


HOLD_POLICY = {
    "name": "hold-expensive",
    "document": {
        "name": "hold-expensive",
        "rules": [
            {
                "name": "expensive",
                "conditions": {
                    "field": "action_spec.parameters.model",
                    "operator": "equals",
                    "value": "gpt-expensive",
                },
                "decision": "require_approval",
            }
        ],
    },
}


def test_a_hold_past_a_configured_limit_cannot_bind_and_is_refused(
    tmp_path: Path, fakes: FakeUpstreams
) -> None:
    """The limit is configurable; past it a rule that would hold could apply, but an
    approval must bind the whole body: 413, nothing forwarded, no approval created."""
    fakes["openai"].clear()
    snap = snapshot([rule("openai.*", "allow")], connectors=[connector("openai")],
                    policies=[HOLD_POLICY])  # fmt: skip
    running, control = start_gateway(tmp_path, fakes, snap, body_inspect_limit=MIB)
    try:
        status, answer = _curl(running, _body("gpt-4o", 2 * MIB), tmp_path, chunked=True)
        assert status == 413
        assert answer["error"] == "body_too_large"
        assert "cannot bind it to an approval" in answer["reason"]
        assert control.pending() == []
        status, _ = _curl(running, _body("gpt-4o", MIB // 2), tmp_path, chunked=True)
        assert status == 200  # under the limit: seen whole, the rule does not apply
    finally:
        running.stop()
    assert len(fakes["openai"].received("POST")) == 1


CHANNEL_POLICY = {
    "name": "no-forbidden-channel",
    "document": {
        "name": "no-forbidden-channel",
        "rules": [
            {
                "name": "forbidden",
                "conditions": {
                    "field": "action_spec.parameters.channel",
                    "operator": "equals",
                    "value": "C-forbidden",
                },
                "decision": "deny",
                "reason": "not this channel",
            }
        ],
    },
}


@pytest.mark.parametrize("channel", ["C-forbidden", "C-general"])
def test_a_multipart_field_after_a_3_mib_file_is_found(
    tmp_path: Path, fakes: FakeUpstreams, channel: str
) -> None:
    """`requests` writes the file first; the decisive `channel` comes after 3 MiB."""
    import requests

    fakes["slack"].clear()
    snap = snapshot([rule("slack.*", "allow")], connectors=[connector("slack")],
                    policies=[CHANNEL_POLICY])  # fmt: skip
    running, _ = start_gateway(tmp_path, fakes, snap)
    try:
        proxy = running.proxy_url()
        answer = requests.post(
            "https://slack.com/api/chat.postMessage",
            files=[
                ("file", ("a.bin", b"x" * (3 * MIB))),
                ("text", (None, b"hi")),
                ("channel", (None, channel.encode())),
            ],
            proxies={"https": proxy, "http": proxy},
            verify=str(_bundle(running)),
            timeout=60,
        )
    finally:
        running.stop()
    if channel == "C-forbidden":
        assert answer.status_code == 403
        assert answer.json()["reason"] == "not this channel"
        assert fakes["slack"].received() == []
    else:
        (received,) = fakes["slack"].received("POST")
        assert len(received.body) > 3 * MIB
