"""What a held request's approval shows of it never holds a credential, whether or not a
policy reads content: the gateway masks the query, the path and the body preview it sends
(``pipeline.bind_request``, and ``tf mcp wrap``'s ``_bind``), while the digest the approval
binds is the request's own. A table of what an approver sees, one row per way a credential
is written; extend it when a new way turns up."""

from __future__ import annotations

import json

import pytest

from agentfirewall.content import masked
from agentfirewall_proxy.http1 import Head
from agentfirewall_proxy.mcpwrap.binding import bind as _bind
from agentfirewall_proxy.pipeline import Flow, bind_request

TOKEN = "ghp_" + "R8kq2ZbX7pLmW4nV9cT3yJ6hF1dS5gA0eU2i"  # a github_token
AWS_KEY = "AKIA" + "Q7RZ4XMPL2VN5KWD"
M = "[REDACTED:generic_secret]"

#: (what the agent sent, what its approver is shown)
SHOWN = [
    ('{"password": "Sup3rS3cret!"}', f'{{"password": "{M}"}}'),
    ('{"config": {"secret": "hunter2", "url": "https://ci.example.com"}}',
     f'{{"config": {{"secret": "{M}", "url": "https://ci.example.com"}}}}'),
    ('{"clientSecret":"x1","api_key":"k","X-Auth-Token":"t","dbPassword":"p"}',
     f'{{"clientSecret":"{M}","api_key":"{M}","X-Auth-Token":"{M}","dbPassword":"{M}"}}'),
    (f'{{"text": "use {TOKEN} now"}}', '{"text": "use [REDACTED:github_token] now"}'),
    (f'{{"text": "key \\u0041{AWS_KEY[1:]}"}}', '{"text": "key [REDACTED:aws_access_key]"}'),
    ("password=hunter2&user=ann", f"password={M}&user=ann"),
    ("Authorization: Bearer abc.def", f"Authorization: Bearer {M}"),
    ("clone https://ann:hunter2@git.example.com/r", f"clone https://ann:{M}@git.example.com/r"),
    ('{"next": "/login?token=abc&x=1"}', f'{{"next": "/login?token={M}&x=1"}}'),
    ('{"password": "cut sho', f'{{"password": "{M}'),
    # what is no credential stays as it was: an approver decides on it
    ('{"private": true, "max_tokens": 1024, "passenger": "Ann", "token": null}',
     '{"private": true, "max_tokens": 1024, "passenger": "Ann", "token": null}'),
    ('{"title": "pay", "body": "amount=1"}', '{"title": "pay", "body": "amount=1"}'),
]  # fmt: skip


@pytest.mark.parametrize(("sent", "shown"), SHOWN)
def test_what_an_approver_sees_of_a_credential(sent: str, shown: str) -> None:
    assert masked(sent) == shown


def _head(ctype: bytes = b"application/json") -> Head:
    return Head(method="POST", target=b"/", headers=[(b"Content-Type", ctype)], version="1.1",
                keep_alive=True, chunked=False, content_length=None, names=[])  # fmt: skip


def _flow(query: str = "", path: str = "/repos/acme/api/hooks") -> Flow:
    return Flow(request_id="r1", method="POST", scheme="https", host="api.github.com",
                port=443, path=path, query=query)  # fmt: skip


def test_the_request_an_approval_shows_holds_no_credential_and_binds_the_real_one() -> None:
    query = f"access_token={TOKEN}&per_page=5&note=ghp%5F{TOKEN[4:]}"
    body = json.dumps({"name": "web", "config": {"url": "https://ci.example.com/hook",
                       "secret": "hunter2", "password": "Sup3rS3cret!"}}).encode()  # fmt: skip
    shown = bind_request(_flow(query), _head(), body)
    text = json.dumps(shown)
    for secret in (TOKEN, TOKEN[4:], "hunter2", "Sup3rS3cret!"):
        assert secret not in text
    assert shown["query"] == f"access_token={M}&per_page=5&note=[REDACTED:github_token]"
    assert shown["body_preview"] == body.decode().replace("hunter2", M).replace(
        "Sup3rS3cret!", M)  # fmt: skip
    other = bind_request(_flow(query), _head(), body.replace(b"hunter2", b"hunter3"))
    assert other["body_preview"] == shown["body_preview"]
    assert other["digest"] != shown["digest"]  # binds the body as sent, not as shown
    assert other["body_sha256"] != shown["body_sha256"]


def test_a_credential_across_the_preview_cut_is_not_shown_in_part() -> None:
    body = json.dumps({"filler": "x" * 470, "text": f"deploy {TOKEN}"}).encode()  # across 512
    preview = str(bind_request(_flow(), _head(), body)["body_preview"])
    assert len(preview) == 512
    assert "ghp_" not in preview
    assert TOKEN[4:8] not in preview


def test_an_mcp_approval_shows_no_credential_of_a_tool_call() -> None:
    flow = Flow(request_id="r1", method="MCP", scheme="stdio", host="files", port=0,
                path="/tools/call")  # fmt: skip
    message = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "login", "arguments": {"user": "ann", "password": "hunter2"}},
    }
    bound = _bind(message, flow)
    assert "hunter2" not in str(bound["body_preview"])
    assert f'"password":"{M}"' in str(bound["body_preview"])
    changed = {**message, "params": {"name": "login",
               "arguments": {"user": "ann", "password": "hunter3"}}}  # fmt: skip
    assert _bind(changed, flow)["digest"] != bound["digest"]
