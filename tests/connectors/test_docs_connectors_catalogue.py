"""docs/connectors.md, followed literally: every row of every table names its action.

The rows are read from the committed page (not from the registry that generated it), each
turned into the request a client of that API sends: its path template filled in, the
body or header that decides the action when the row says so (``field `state` is
`closed```, ``X-Amz-Target: ...``, ``Action=Publish``, a GraphQL mutation, a JSON-RPC
message). Each request is then spelled the ways the page's general rules say are the same
request (one trailing slash, literals in another case, unreserved characters
percent-encoded, an unrelated query parameter, GitHub Enterprise's ``/api/v3`` prefix and
GitHub's ``/repositories/{id}`` spelling) and must name the row's action, with its risk,
and with every path variable kept as a parameter or in the resource. Requests that match
no row get the page's fallback, ``<connector>.unknown.<method>`` with parameters
``method`` and ``path`` and the documented risk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from agentfirewall.connectors import ConnectorError, HttpRequest, ParsedAction, get_connector

DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"
ROW = re.compile(r"^\| `([^`]+)` \| ([A-Z, ]+) \| `(.+)` \| (low|medium|high) \| (.*) \|$")
VARIANT = re.compile(r"\(field `(\w+)` (is|starts with|is present|matches) ?`?([^`)]*)`?\)$")
HOSTS = {
    "anthropic": "api.anthropic.com",
    "github": "api.github.com",
    "openai": "api.openai.com",
    "sendgrid": "api.sendgrid.com",
    "slack": "slack.com",
    "stripe": "api.stripe.com",
    "mcp": "mcp.example.com",
    "generic": "api.example.com",
    "webhook": "hooks.example.com",
}
# "In the route-table connectors (...) HEAD is matched by the GET rows."
ROUTE_TABLE_CONNECTORS = ("anthropic", "github", "openai", "sendgrid", "slack", "stripe")
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class Row:
    connector: str
    action: str
    method: str
    path: str
    risk: str
    description: str

    @property
    def id(self) -> str:
        return f"{self.connector}:{self.method}:{self.path}:{self.action}"


def _rows() -> list[Row]:
    rows: list[Row] = []
    section = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        found = ROW.match(line)
        if found and section in HOSTS | {"aws": ""}:
            action, methods, path, risk, description = found.groups()
            path = path.replace("\\|", "|")
            rows.extend(
                Row(section, action, m, path, risk, description) for m in methods.split(", ")
            )
    return rows


ROWS = _rows()


# -- requests as a client sends them --------------------------------------------------


def _value(name: str) -> str:
    if name.endswith("+"):
        return "feature/x"
    if name.endswith(":int"):
        return "7"
    return {"owner": "acme", "repo": "api", "org": "acme", "bucket": "bkt"}.get(name, "v" + name)


def _fill(template: str) -> str:
    """`template` with each variable replaced by its sample value."""
    return re.sub(r"\{([^}]+)\}", lambda m: _value(m.group(1)), template)


def _body(row: Row, fields: dict[str, object]) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    if not fields:
        return b"", ()
    if row.connector in ("stripe", "slack"):
        text = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in fields.items())
        return text.encode(), (("content-type", FORM),)
    return json.dumps(fields).encode(), (("content-type", JSON),)


def _variant_fields(row: Row) -> dict[str, object]:
    found = VARIANT.search(row.description)
    if found is None:
        return {}
    field, how, value = found.groups()
    if how == "is":
        return {field: json.loads(value) if value in ("true", "false") else value}
    if how == "starts with":
        return {field: value + "v1"}
    if how == "is present":
        return {field: "a" * 40}
    return {field: "mutation { somethingNew(input: {}) { clientMutationId } }"}


def request_for(row: Row) -> tuple[HttpRequest, str | None]:
    """The request for `row`, and the base URL it is parsed with (GitHub Enterprise)."""
    if row.connector == "aws":
        return _aws_request(row), None
    if row.connector == "mcp":
        return _mcp_request(row), None
    host = HOSTS[row.connector]
    if row.path == "(any path)":
        return HttpRequest.from_url(row.method, f"https://{host}/v1/things/7"), None
    if row.path in ("/graphql", "/api/graphql") and row.action == "github.graphql.query":
        body, headers = _body(row, {"query": "query { viewer { login } }"})
        url = f"https://{host}{row.path}"
        return HttpRequest.from_url("POST", url, headers=headers, body=body), None
    if row.path.startswith("/graphql mutation "):
        field = row.path.rsplit(" ", 1)[1]
        query = f"mutation {{ {field}(input: {{}}) {{ clientMutationId }} }}"
        body, headers = _body(row, {"query": query})
        return HttpRequest.from_url(
            "POST", f"https://{host}/graphql", headers=headers, body=body
        ), None
    if row.connector == "github" and "/assets" in row.path:
        host = "uploads.github.com"
    if row.connector == "github" and row.path.startswith("/{owner}"):
        host = "github.com"
    fields = _variant_fields(row)
    url = f"https://{host}{_fill(row.path)}"
    if row.path.endswith("/git-receive-pack"):  # pkt-lines, not fields: git's probe
        return HttpRequest.from_url(row.method, url, body=b"0000"), None
    if row.method in ("GET", "HEAD") and fields:
        url += "?" + "&".join(f"{k}={v}" for k, v in fields.items())
        fields = {}
    body, headers = _body(row, fields)
    return HttpRequest.from_url(row.method, url, headers=headers, body=body), None


def _aws_request(row: Row) -> HttpRequest:
    service = row.action.split(".")[1]
    host = f"{service}.us-east-1.amazonaws.com"
    if row.path.startswith("X-Amz-Target: "):
        target = row.path.split(": ", 1)[1]
        headers = (("x-amz-target", target), ("content-type", "application/x-amz-json-1.0"))
        return HttpRequest.from_url("POST", f"https://{host}/", headers=headers, body=b"{}")
    if row.path.startswith("Action="):
        body = f"{row.path}&Version=2011-06-15".encode()
        return HttpRequest.from_url(
            "POST", f"https://{host}/", headers=(("content-type", FORM),), body=body
        )
    return HttpRequest.from_url(row.method, f"https://{host}{_fill(row.path)}")


_MCP = {
    "mcp.tools.list": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    "mcp.rpc.response": {"jsonrpc": "2.0", "id": 1, "result": {}},
    "mcp.rpc.batch": [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "drop_db"}},
    ],
}


def _mcp_request(row: Row) -> HttpRequest:
    url = f"https://{HOSTS['mcp']}/mcp"
    message = _MCP.get(row.action)
    if message is None:
        return HttpRequest.from_url(row.method, url)
    body = json.dumps(message).encode()
    return HttpRequest.from_url(row.method, url, headers=(("content-type", JSON),), body=body)


# -- the spellings the general rules make equal ----------------------------------------


def _spellings(row: Row, req: HttpRequest) -> dict[str, HttpRequest]:
    if not row.path.startswith("/") or row.path.startswith("/graphql mutation"):
        return {"plain": req}
    path = req.path

    def literal_wise(change: Callable[[str], str]) -> str:
        """The path with `change` applied to the template's literal segments only."""
        template = row.path.split("?")[0]
        return "/".join(
            _fill(token) if "{" in token else change(token) for token in template.split("/")
        )

    def escape_first_letter(segment: str) -> str:
        index = next((i for i, c in enumerate(segment) if c.isalpha()), None)
        if index is None:
            return segment
        return segment[:index] + f"%{ord(segment[index]):02X}" + segment[index + 1 :]

    spelled = {
        "plain": req,
        "trailing slash": _with(req, path=path + "/"),
        "upper-case literals": _with(req, path=literal_wise(str.upper)),
        "escaped unreserved": _with(req, path=literal_wise(escape_first_letter)),
    }
    if row.method == "GET" and row.connector in ROUTE_TABLE_CONNECTORS:
        spelled["HEAD"] = _with(req, method="HEAD")
    if row.connector != "aws":  # an unknown S3 query parameter names nothing (documented)
        extra = "utm_source=newcomer"
        spelled["extra query"] = _with(req, query=f"{req.query}&{extra}" if req.query else extra)
    if row.connector == "github" and req.host == "api.github.com":
        spelled["GitHub Enterprise /api/v3"] = _with(
            req, host="ghe.example.com", path="/api/v3" + path
        )
    if row.connector == "github" and row.path.startswith("/repos/{owner}/{repo}"):
        by_id = re.sub(r"^/repos/acme/api", "/repositories/12345", path)
        spelled["/repositories/{id}"] = _with(req, path=by_id)
    return spelled


def _with(req: HttpRequest, **changes: object) -> HttpRequest:
    fields = {
        "method": req.method,
        "scheme": req.scheme,
        "host": req.host,
        "port": req.port,
        "path": req.path,
        "query": req.query,
        "headers": req.headers,
        "body": req.body,
    }
    return HttpRequest(**{**fields, **changes})  # type: ignore[arg-type]


def _parse(row: Row, req: HttpRequest) -> ParsedAction:
    base = "https://ghe.example.com/api/v3" if req.host == "ghe.example.com" else None
    return get_connector(row.connector).parse(req, base_url=base)


def _documented_for_same_request(row: Row) -> set[str]:
    """Actions the page lists for the same method and path (a row and its variants)."""
    return {
        r.action
        for r in ROWS
        if (r.connector, r.method, r.path) == (row.connector, row.method, row.path)
    }


# -- the tests -------------------------------------------------------------------------


def test_every_connector_section_has_rows() -> None:
    assert {r.connector for r in ROWS} == {*HOSTS, "aws"}
    assert len(ROWS) > 400


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_each_documented_row_names_its_action_in_every_equal_spelling(row: Row) -> None:
    if "<" in row.action:
        pytest.skip("a family of names (`mcp.tools.<name>`): see test_connector_mcp.py")
    req, _ = request_for(row)
    for how, spelled in _spellings(row, req).items():
        parsed = _parse(row, spelled)
        expected = {row.action}
        if row.path.startswith("/graphql mutation"):
            # a mutation whose input is not at hand is named as its riskiest documented row
            expected = _documented_for_same_request(row)
        assert parsed.action_type in expected, (how, spelled.path, spelled.query)
        if parsed.action_type == row.action:
            assert parsed.risk == row.risk, how
        assert "path_relaxed" not in parsed.spec.risk_hints, how
        _assert_path_variables_kept(row, parsed, how)


def _assert_path_variables_kept(row: Row, parsed: ParsedAction, how: str) -> None:
    if not row.path.startswith("/") or row.path.startswith("/graphql"):
        return
    kept = [str(v) for v in parsed.spec.parameters.values()]
    resource = f"{parsed.spec.resource.account or ''} {parsed.spec.resource.target or ''}"
    for name in re.findall(r"\{([^}]+)\}", row.path.split("?")[0]):
        value = _value(name)
        if how == "/repositories/{id}" and name in ("owner", "repo"):
            continue  # the numeric id stands for both
        assert value in kept or value in resource, (how, name, parsed.spec)


# The fallback: a request on the connector's domain that matches no row.
UNKNOWN = [
    ("github", "GET", "https://api.github.com/zz-newcomer", "low"),
    ("github", "PUT", "https://api.github.com/repos/acme/api/pulls/7/zz", "medium"),
    ("github", "DELETE", "https://api.github.com/repos/acme/api/zz", "high"),
    ("github", "POST", "https://api.github.com/repos/acme/api/pulls/7/merge", "medium"),
    ("openai", "POST", "https://api.openai.com/v1/zz", "medium"),
    ("openai", "POST", "https://api.openai.com/chat/completions", "medium"),
    ("anthropic", "GET", "https://api.anthropic.com/v1/zz", "low"),
    ("stripe", "DELETE", "https://api.stripe.com/v1/zz/x", "high"),
    ("stripe", "GET", "https://api.stripe.com/v2/core/events", "low"),
    ("sendgrid", "OPTIONS", "https://api.sendgrid.com/v3/mail/send", "low"),
    ("slack", "POST", "https://slack.com/api/zz.newcomer", "medium"),
    ("slack", "POST", "https://slack.com/api/admin.zz.newcomer", "high"),
    ("slack", "GET", "https://slack.com/api/admin.zz.newcomer", "high"),
    ("aws", "GET", "https://s3.us-east-1.amazonaws.com/bkt?zz-newcomer", "low"),
    ("mcp", "PUT", "https://mcp.example.com/mcp", "medium"),
]


@pytest.mark.parametrize(("connector", "method", "url", "risk"), UNKNOWN)
def test_an_unknown_route_gets_the_documented_fallback(
    connector: str, method: str, url: str, risk: str
) -> None:
    req = HttpRequest.from_url(method, url)
    parsed = get_connector(connector).parse(req)
    assert parsed.action_type == f"{connector}.unknown.{method.lower()}"
    assert parsed.risk == risk
    assert parsed.spec.parameters == {"method": method, "path": req.path}


# The page's path rules hold for AWS Lambda too (its routes are paths, like any table's).
LAMBDA = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions"
REFUSED_LAMBDA_PATHS = [
    "/%2e%2e/invocations",  # an encoded dot segment
    "/fn;x=1/invocations",  # a path parameter
    "/fn%00/invocations",  # an encoded control character
    "/fn/invocations//",  # an empty segment
    "//fn/invocations",
]


@pytest.mark.parametrize("tail", REFUSED_LAMBDA_PATHS)
def test_lambda_paths_are_normalised_strictly(tail: str) -> None:
    path = "/2015-03-31/functions" + tail
    req = HttpRequest("POST", "https", "lambda.us-east-1.amazonaws.com", None, path)
    with pytest.raises(ConnectorError, match="refused path"):
        get_connector("aws").parse(req)


@pytest.mark.parametrize(
    ("tail", "function"),
    [
        ("/fn/invocations/", "fn"),
        ("/fn/INVOCATIONS", "fn"),
        ("/f%6E/invocations", "fn"),
        ("/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Afn/invocations",
         "arn:aws:lambda:us-east-1:123456789012:function:fn"),
    ],
)  # fmt: skip
def test_lambda_spellings_of_an_invoke_name_the_invoke(tail: str, function: str) -> None:
    parsed = get_connector("aws").parse(HttpRequest.from_url("POST", LAMBDA + tail, body=b"{}"))
    assert parsed.action_type == "aws.lambda.invoke"
    assert parsed.spec.parameters["function"] == function


# The parameters the connectors' notes say are read.
OPENAI_MODEL = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/images/generations",
    "/v1/audio/speech",
    "/v1/fine_tuning/jobs",
    "/v1/moderations",
]
OPENAI_STREAM = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/images/generations",
}


@pytest.mark.parametrize("path", OPENAI_MODEL)
def test_openai_reads_model_and_stream_where_the_notes_say(path: str) -> None:
    body = json.dumps({"model": "gpt-x", "stream": True, "prompt": "p"}).encode()
    headers = (("content-type", JSON), ("OpenAI-Organization", "org-acme"))
    req = HttpRequest.from_url("POST", "https://api.openai.com" + path, headers=headers, body=body)
    parsed = get_connector("openai").parse(req)
    assert parsed.spec.parameters["model"] == "gpt-x"
    assert ("stream" in parsed.spec.parameters) == (path in OPENAI_STREAM)
    assert parsed.spec.resource.account == "org-acme"


def test_sendgrid_recipients_are_every_to_cc_and_bcc() -> None:
    mail = {
        "personalizations": [
            {"to": [{"email": "a@x.test"}], "cc": [{"email": "c@x.test"}], "subject": "hi"},
            {"to": [{"email": "b@x.test"}], "bcc": [{"email": "d@x.test"}]},
        ],
        "from": {"email": "me@x.test"},
    }
    req = HttpRequest.from_url(
        "POST",
        "https://api.sendgrid.com/v3/mail/send",
        headers=(("content-type", JSON),),
        body=json.dumps(mail).encode(),
    )
    parsed = get_connector("sendgrid").parse(req)
    recipients = ["a@x.test", "c@x.test", "b@x.test", "d@x.test"]
    assert parsed.spec.parameters == {"to": recipients, "subject": "hi", "from": "me@x.test"}
    assert parsed.spec.resource.target == ",".join(recipients)


@pytest.mark.parametrize("path", ["/prod%2Fdata/k", "/prod%2fdata", "/prod%5Cdata/k"])
def test_a_path_style_bucket_with_an_encoded_slash_is_refused(path: str) -> None:
    # S3 may split there: `prod%2Fdata/k` would be bucket `prod`, key `data/k`
    req = HttpRequest("DELETE", "https", "s3.us-east-1.amazonaws.com", None, path)
    with pytest.raises(ConnectorError, match="bucket segment"):
        get_connector("aws").parse(req)
