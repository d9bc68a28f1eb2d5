"""What an approval over stdio binds (DESIGN.md section 7, guarantee 3: one approval, one
request)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agentfirewall.content import body_preview
from agentfirewall_proxy.flow import Flow

__all__ = ["bind"]


def bind(message: Any, flow: Flow) -> dict[str, object]:
    """What an approval binds: the server and the message as forwarded but for its id and
    its ``_meta.progressToken``, so an identical retry (new id, new progress token) matches
    the approval it got, and one with anything else (other ``_meta``: the server reads it)
    needs its own."""

    def strip(member: Any) -> Any:
        if not isinstance(member, dict):
            return member
        out = {k: v for k, v in member.items() if k != "id"}
        params = out.get("params")
        if isinstance(params, dict) and isinstance(params.get("_meta"), dict):
            meta = {k: v for k, v in params["_meta"].items() if k != "progressToken"}
            out["params"] = {k: v for k, v in params.items() if k != "_meta"}
            if meta:
                out["params"]["_meta"] = meta
        return out

    body = json.dumps(
        [strip(m) for m in message] if isinstance(message, list) else strip(message),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    digest = hashlib.sha256(b"mcp-stdio;%d:%b;" % (len(flow.host.encode()), flow.host.encode()))
    digest.update(body)
    return {
        "method": "MCP",
        "host": flow.host[:300],
        "path": flow.path[:8192],
        "content_type": "application/json",
        "body_size": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_preview": body_preview(body, flow.findings),  # no credential, no detected text
        "digest": digest.hexdigest(),
    }
