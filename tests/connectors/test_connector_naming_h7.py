"""A request is named as the upstream reads it (hunt H7, defects 1, 2 and 5).

- A ``_method`` override in the query is refused in every spelling a server reads as
  ``_method``: percent-decoded (Express's and Hono's query getters: ``%5Fmethod``) and as
  PHP names fields (Laravel, Symfony: a leading space dropped, ``.`` made ``_``); an
  override header written with ``_`` for ``-`` (``X_HTTP_Method_Override``), which Puma,
  Gunicorn before 22 and PHP's servers read as the header Rack and Symfony look up.
- Stripe's account is named from ``Stripe-Context`` (which Stripe reads before
  ``Stripe-Account``; a path of related accounts names its last one), and headers naming
  two accounts are refused; the same rule for ``OpenAI-Organization``.
- GitHub GraphQL is named only when the JSON body is the one place a server reads the
  document from: a query string, a body of another type, or a form-typed body whose form
  fields name a document field (Rails parses it as a form) are refused.

The gateway side (raw sockets, a real gateway): ``tests/proxy/test_gateway_naming_h7.py``.
"""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qsl, quote, unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import ConnectorError, HttpRequest, ParsedAction, get_connector
from agentfirewall.connectors.registry import connector_types
from tests.fuzzscale import examples

FORM = "application/x-www-form-urlencoded"
GH = get_connector("github")
STRIPE = get_connector("stripe")
OPENAI = get_connector("openai")
GENERIC = get_connector("generic")


def _request(
    name: str, method: str, query: str = "", headers: tuple[tuple[str, str], ...] = ()
) -> HttpRequest:
    host = (get_connector(name).default_domains or ("app.example.org",))[0]
    return HttpRequest(method, "https", host, None, "/v1/x", query, headers, b"", True)


# -- 1. `_method` in the query, override headers with `_` ---------------------------------


def _php_field(raw: bytes) -> str:
    """A query field's name as PHP reads it (the reference, written apart from base.py):
    ``+`` a space, decoded, leading spaces dropped, ``.`` and `` `` made ``_``, an array's
    brackets dropped."""
    name = unquote_to_bytes(raw.replace(b"+", b" ")).decode("latin-1").lstrip(" ")
    return name.replace(".", "_").replace(" ", "_").split("[", 1)[0].lower()


def _express_fields(query: str) -> list[str]:
    """Field names as Node's ``querystring.parse`` gives them (names decoded)."""
    return [name.lower().split("[", 1)[0] for name, _ in parse_qsl(query, keep_blank_values=True)]


def _escaped(text: str, how: list[str]) -> str:
    return "".join({"lower": c, "upper": c.upper(), "escaped": f"%{ord(c):02X}",
                    "lower-escaped": f"%{ord(c):02x}"}[form]
                   for c, form in zip(text, how, strict=True))  # fmt: skip


@settings(max_examples=examples(200))
@given(
    st.sampled_from(connector_types()),
    st.sampled_from(["", "a=1&", "a=1;", "x=%5F&"]),
    st.sampled_from(["", "+", "%20", "++"]),
    st.sampled_from(["_", "%5F", "%5f", ".", "%2E", "%2e"]),
    st.lists(
        st.sampled_from(["lower", "upper", "escaped", "lower-escaped"]), min_size=6, max_size=6
    ),
    st.sampled_from(["", "[]", "[0]"]),
)
def test_a_query_field_a_server_reads_as_method_is_refused_by_every_connector(
    name: str, before: str, lead: str, underscore: str, cases: list[str], array: str
) -> None:
    """The decisive field last in the query, in every spelling, on every connector."""
    query = f"{before}{lead}{underscore}{_escaped('method', cases)}{array}=DELETE"
    field = query.rsplit("&", 1)[-1].rsplit(";", 1)[-1].partition("=")[0].encode()
    assert _php_field(field) == "_method" or "_method" in _express_fields(query)
    with pytest.raises(ConnectorError, match="`_method` override in the query"):
        get_connector(name).parse(_request(name, "POST", query))


@pytest.mark.parametrize(
    "query",
    ["%5Fmethod=DELETE", "%5fmethod=DELETE", ".method=DELETE", "+_method=DELETE",
     "%20_method=DELETE", "a=1&%5F%6D%65%74%68%6F%64=DELETE", "_method[]=DELETE"],
)  # fmt: skip
def test_the_hunters_query_spellings_are_refused(query: str) -> None:
    with pytest.raises(ConnectorError, match="`_method` override in the query"):
        GENERIC.parse(_request("generic", "POST", query))


@pytest.mark.parametrize(
    "query", ["method=DELETE", "x_method=DELETE", "_methods=DELETE", "a=_method", "%5Fmeth=1",
              "+method=DELETE", "page=2&sort=-method"],
)  # fmt: skip
def test_other_query_fields_pass(query: str) -> None:
    assert GENERIC.parse(_request("generic", "POST", query)).action_type == "http.post"


_OVERRIDE_ENV = {"HTTP_X_HTTP_METHOD_OVERRIDE", "HTTP_X_HTTP_METHOD", "HTTP_X_METHOD_OVERRIDE"}


@settings(max_examples=examples(100))
@given(
    st.sampled_from(connector_types()),
    st.sampled_from(["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]),
    st.randoms(use_true_random=False),
)
def test_an_override_header_written_with_underscores_is_refused_by_every_connector(
    name: str, header: str, rnd: random.Random
) -> None:
    """Any ``-`` written ``_``, any case, the header last: a CGI-style server (Puma,
    Gunicorn before 22, PHP's) names it ``HTTP_X_HTTP_METHOD_OVERRIDE`` as it does the
    header, and Rack::MethodOverride and Symfony read that."""
    spelled = "".join(rnd.choice("-_") if c == "-" else rnd.choice((c.lower(), c.upper()))
                      for c in header)  # fmt: skip
    assert "HTTP_" + spelled.upper().replace("-", "_") in _OVERRIDE_ENV
    headers = (("Accept", "*/*"), (spelled, "DELETE"))
    with pytest.raises(ConnectorError, match="method override header"):
        get_connector(name).parse(_request(name, "POST", headers=headers))


# -- 2. the account a Stripe or OpenAI request acts in -----------------------------------


def _charge(*headers: tuple[str, str]) -> ParsedAction:
    request = HttpRequest.from_url(
        "POST", "https://api.stripe.com/v1/charges", body=b"amount=100&currency=usd",
        headers=(("Content-Type", FORM), *headers),
    )  # fmt: skip
    return STRIPE.parse(request)


def _account(*headers: tuple[str, str]) -> str | None:
    return _charge(*headers).spec.resource.account


@pytest.mark.parametrize(
    ("headers", "account"),
    [
        ([("Stripe-Account", "acct_X")], "acct_X"),
        ([("Stripe-Context", "acct_X")], "acct_X"),  # the hunter's: was no account
        ([("Stripe-Context", "acct_P/acct_X")], "acct_X"),  # a platform's connected account
        ([("stripe-context", " acct_O / acct_P / acct_X ")], "acct_X"),
        ([("Stripe-Account", "acct_X"), ("Stripe-Context", "acct_P/acct_X")], "acct_X"),
        ([("Stripe-Account", "acct_X"), ("STRIPE-ACCOUNT", "acct_X")], "acct_X"),
        ([("Stripe-Account", "")], None),
        ([], None),
    ],
)
def test_the_account_stripe_acts_in_is_named(headers: list[tuple[str, str]], account: str) -> None:
    assert _account(*headers) == account


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        # the hunter's: Stripe acts in acct_VICTIM, the gateway decided on acct_OK
        ([("Stripe-Account", "acct_OK"), ("Stripe-Context", "acct_VICTIM")], "different"),
        ([("Stripe-Account", "acct_OK"), ("Stripe-Account", "acct_VICTIM")], "different"),
        ([("Stripe-Context", "acct_OK"), ("Stripe-Context", "acct_VICTIM")], "different"),
        ([("Stripe-Context", "acct_VICTIM/acct_OK"), ("Stripe-Account", "acct_VICTIM")],
         "different"),
        ([("Stripe-Account", "acct_VICTIM"), ("Stripe-Context", "")], "different"),
        ([("Stripe-Account", "acct_OK, acct_VICTIM")], "list"),
        ([("Stripe-Context", "acct_P/acct_VICTIM,acct_OK")], "list"),
        ([("Stripe-Context", "acct_P/")], "empty account"),
        ([("Stripe-Context", "acct_P//acct_X")], "empty account"),
        ([("Stripe-Account", "acct_P/acct_VICTIM")], "one account"),
        ([("Stripe_Account", "acct_VICTIM")], "with `-`"),
        ([("Stripe_Context", "acct_VICTIM")], "with `-`"),
    ],
)  # fmt: skip
def test_headers_naming_two_accounts_or_none_surely_are_refused(
    headers: list[tuple[str, str]], reason: str
) -> None:
    with pytest.raises(ConnectorError, match=reason):
        _charge(*headers)


_SAME = [
    ("Stripe-Account", "acct_X"),
    ("Stripe-Context", "acct_X"),
    ("Stripe-Context", "acct_P/acct_X"),
    ("Stripe-Context", "acct_O/acct_P/acct_X"),
]
_OTHER = [
    ("Stripe-Account", "acct_Y"),
    ("Stripe-Context", "acct_Y"),
    ("Stripe-Context", "acct_X/acct_Y"),
    ("Stripe-Account", ""),
]


@settings(max_examples=examples(100))
@given(
    st.lists(st.sampled_from(_SAME), min_size=1, max_size=4),
    st.sampled_from(_OTHER),
    st.randoms(use_true_random=False),
)
def test_every_line_must_name_the_account_however_ordered(
    same: list[tuple[str, str]], other: tuple[str, str], rnd: random.Random
) -> None:
    """Lines naming one account in any order and case name it; one more line naming
    another (or none), anywhere, the last too, is refused."""
    lines = [(rnd.choice((n, n.lower(), n.upper())), v) for n, v in same]
    rnd.shuffle(lines)
    assert _account(*lines) == "acct_X"
    lines.insert(rnd.randint(0, len(lines)), other)
    with pytest.raises(ConnectorError, match="different accounts"):
        _charge(*lines)


def _chat(*headers: tuple[str, str]) -> ParsedAction:
    body = json.dumps({"model": "gpt-4o", "messages": []}).encode()
    request = HttpRequest.from_url(
        "POST", "https://api.openai.com/v1/chat/completions", body=body,
        headers=(("Content-Type", "application/json"), *headers),
    )  # fmt: skip
    return OPENAI.parse(request)


def test_openai_organization_lines_must_agree() -> None:
    org = ("OpenAI-Organization", "org-a")
    assert _chat(org, ("openai-organization", "org-a")).spec.resource.account == "org-a"
    with pytest.raises(ConnectorError, match="different accounts"):
        _chat(org, ("OpenAI-Organization", "org-b"))
    with pytest.raises(ConnectorError, match="list"):
        _chat(("OpenAI-Organization", "org-a, org-b"))
    with pytest.raises(ConnectorError, match="with `-`"):
        _chat(("OpenAI_Organization", "org-b"))


# -- 5. GitHub GraphQL: the document only in the JSON body --------------------------------

MERGE = 'mutation { mergePullRequest(input: {pullRequestId: "PR_kw1"}) { clientMutationId } }'
HARMLESS = json.dumps({"query": "query { viewer { login } }"}).encode()


def _graphql(body: bytes, ctype: str | None = "application/json", query: str = "") -> ParsedAction:
    headers = (("Content-Type", ctype),) if ctype is not None else ()
    return GH.parse(HttpRequest("POST", "https", "api.github.com", None, "/graphql", query,
                                headers, body, True))  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [f"query={quote(MERGE)}", f"%71uery={quote(MERGE)}", f"+query={quote(MERGE)}",
     f"a=1&QUERY={quote(MERGE)}", "query[]=x", "variables=%7B%7D", "operationName=Merge",
     "extensions=x", "id=1"],
)  # fmt: skip
def test_a_document_field_in_the_query_string_is_refused(query: str) -> None:
    """Rails merges the query string's fields over the body's, express-graphql reads its
    ``query`` first: the document the server runs may be one never read here."""
    with pytest.raises(ConnectorError, match="in the query string"):
        _graphql(HARMLESS, query=query)


def test_other_query_fields_leave_the_document_to_the_body() -> None:
    assert _graphql(HARMLESS, query="utm_source=x&q=1").action_type == "github.graphql.query"


def test_the_hunters_form_typed_body_would_run_a_mutation_and_is_refused() -> None:
    from graphql.language import OperationDefinitionNode, OperationType, parse

    smuggled = ("&query=mutation%7BmergePullRequest(input:%7BpullRequestId:%22PR_kw1%22%7D)"
                "%7BclientMutationId%7D%7D%23")  # fmt: skip
    body = json.dumps({"x": smuggled, "query": "query { viewer { login } }"}).encode()
    as_form = dict(parse_qsl(body.decode(), keep_blank_values=True))["query"]  # Rails' params
    (operation,) = parse(as_form).definitions  # a valid document: one mutation
    assert isinstance(operation, OperationDefinitionNode)
    assert operation.operation == OperationType.MUTATION
    for ctype in (FORM, f"{FORM}; charset=utf-8", None):
        with pytest.raises(ConnectorError, match="also a form"):
            _graphql(body, ctype)


@pytest.mark.parametrize(
    "field", ["query", "%71uery", "+query", "Query", "query[]", "variables", "operationName",
              "extensions", "id"],
)  # fmt: skip
def test_a_form_typed_body_naming_a_document_field_is_refused(field: str) -> None:
    body = json.dumps({"query": "query { viewer { login } }", "x": f"&{field}=1"}).encode()
    with pytest.raises(ConnectorError, match="also a form"):
        _graphql(body, FORM)
    assert _graphql(body).action_type == "github.graphql.query"  # typed JSON: read as JSON


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/graphql", "multipart/form-data; boundary=b",
              "text/json", "application/json, application/x-www-form-urlencoded"],
)  # fmt: skip
def test_a_graphql_body_of_another_type_is_refused(ctype: str) -> None:
    with pytest.raises(ConnectorError, match="send application/json"):
        _graphql(HARMLESS, ctype)


@pytest.mark.parametrize(
    "ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON",
              "application/vnd.github+json", FORM, None],
)  # fmt: skip
def test_json_bodies_still_name_their_document(ctype: str | None) -> None:
    """``curl -d '{"query": …}'``, GitHub's own example, sends a form-typed body."""
    assert _graphql(HARMLESS, ctype).action_type == "github.graphql.query"
    merge = json.dumps({"query": MERGE}).encode()
    assert _graphql(merge, ctype).action_type == "github.pr.merge"
