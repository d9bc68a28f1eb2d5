"""Connectors named by HTTP method alone: ``webhook`` (any URL) and ``generic``
(configured domains).

Parsing gives ``<prefix>.<method>`` (``webhook.post``, ``http.get``) with parameters
``host`` and ``path``, risk by method (GET/HEAD/OPTIONS low, DELETE high, others medium).
The path is still normalised: tricks are refused like everywhere else.

No body names an action, and bodies are streamed unread but for one kind: a body a
method-override middleware reads (a POST's form, multipart or JSON body, JSON being any
type that names ``/json`` or ``+json``, ``text/json`` too, or one without a type: Rack,
Laravel, Spring and Express's ``method-override`` make ``_method=DELETE`` a DELETE; a form
or multipart body of any other method but GET, as Hono's ``methodOverride`` reads it;
``base.override_readable``). The gateway reads it up to its inspection limit, as the
upstream reads it (``gzip``/``deflate`` decoded), and a ``_method`` field is refused as by
every connector, in every spelling those middlewares read (a multipart ``name*=`` or
continued name, ``.method`` as PHP reads it). Such a body larger than the limit cannot be
checked: the gateway never allows it (``any_upstream``).

Building (SDK Mode A) follows the seed's webhook example::

    {"type": "webhook.post",
     "resource": {"provider": "webhook", "target": "https://api.example.com/v1/action"},
     "parameters": {"method": "POST", "headers": {"Authorization": "Bearer secret"},
                    "body": {"key": "value"}}}

``resource.target`` is the URL (for generic also a bare host, then ``parameters.path``
is appended); ``parameters.method`` must agree with the action type when given;
``headers`` is an object of strings; ``body`` is sent as JSON when it is an object or a
list, as UTF-8 text when it is a string; ``query`` (an object) is appended to the URL.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from pydantic import JsonValue

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors.base import Connector, fallback_risk, make_spec, request_method
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction
from agentfirewall.connectors.paths import split_path
from agentfirewall.errors import ConnectorError

__all__ = ["GENERIC", "WEBHOOK", "MethodConnector"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "keep-alive",
    }
)


class MethodConnector(Connector):
    """A connector whose actions are ``<prefix>.<http method>``."""

    def __init__(self, *, name: str, prefix: str, description: str, bare_host: bool) -> None:
        self.name = name
        self.prefix = prefix
        self.description = description
        self.bare_host = bare_host
        self.body_limit = 0
        self.any_upstream = True

    def parse(self, req: HttpRequest, *, base_url: str | None = None) -> ParsedAction:
        method = request_method(req, self.name)
        path = "/" + "/".join(split_path(req.path, connector=self.name))
        host = req.host.lower()
        target = host if self.bare_host else f"{req.scheme}://{host}{_port(req)}{path}"
        spec = make_spec(
            f"{self.prefix}.{method.lower()}",
            provider=self.name,
            target=target[:2048],
            parameters={"host": host, "path": path[:2048]},
            connector=self.name,
        )
        return ParsedAction(spec, fallback_risk(method), self.name, "*")

    def build_request(self, spec: ActionSpec, *, base_url: str | None = None) -> HttpRequest:
        prefix, _, verb = spec.type.partition(".")
        method = verb.upper()
        if prefix not in (self.prefix, self.name) or method not in METHODS:
            raise ConnectorError(
                f"`{spec.type}` is not an action of the {self.name} connector", connector=self.name
            )
        params = spec.parameters
        asked = params.get("method")
        if asked is not None and (not isinstance(asked, str) or asked.upper() != method):
            raise ConnectorError(
                f"parameter `method` disagrees with `{spec.type}`", connector=self.name
            )
        url = self._url(spec, base_url)
        headers = _headers(params.get("headers"), self.name)
        body = _body(params.get("body"), headers)
        query = params.get("query")
        if isinstance(query, dict):
            url += ("&" if "?" in url else "?") + urlencode({k: str(v) for k, v in query.items()})
        return HttpRequest.from_url(method, url, headers=tuple(headers), body=body)

    def _url(self, spec: ActionSpec, base_url: str | None) -> str:
        target = spec.resource.target or base_url
        if not target:
            raise ConnectorError(
                f"missing resource target (the URL) for `{spec.type}`", connector=self.name
            )
        if "://" not in target:
            if not self.bare_host:
                raise ConnectorError(
                    f"resource target `{target[:200]}` is not a URL", connector=self.name
                )
            path = spec.parameters.get("path") or "/"
            target = f"https://{target}{path if str(path).startswith('/') else '/' + str(path)}"
        request = HttpRequest.from_url("GET", target)  # validates scheme, host, port
        split_path(request.path, connector=self.name)
        return target

    def actions(self) -> list[ActionInfo]:
        return [
            ActionInfo(
                f"{self.prefix}.{m.lower()}", m, "(any path)", fallback_risk(m), f"{m} request"
            )
            for m in METHODS
        ]


def _port(req: HttpRequest) -> str:
    default = {"http": 80, "https": 443}.get(req.scheme)
    return "" if req.port in (None, default) else f":{req.port}"


def _headers(value: JsonValue, connector: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ConnectorError(
            "parameter `headers` must be an object of strings", connector=connector
        )
    headers = []
    for name, item in value.items():
        text = str(item) if isinstance(item, str | int) and not isinstance(item, bool) else None
        if text is None or any(c in name + text for c in "\r\n\0") or ":" in name or not name:
            raise ConnectorError(f"invalid header `{name[:80]}`", connector=connector)
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ConnectorError(f"header `{name}` cannot be set", connector=connector)
        headers.append((name, text))
    return headers


def _body(value: JsonValue, headers: list[tuple[str, str]]) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


WEBHOOK = MethodConnector(
    name="webhook",
    prefix="webhook",
    description="Any URL, named by method (SDK execution and configured domains)",
    bare_host=False,
)
GENERIC = MethodConnector(
    name="generic",
    prefix="http",
    description="Configured domains, named by method (`http.get`; rules may say `generic.get`)",
    bare_host=True,
)
WEBHOOK.notes = GENERIC.notes = __doc__ or ""
