"""GitHub GraphQL (``POST /graphql``): every operation named as the action it performs.

The body is one JSON object ``{"query", "variables", "operationName"}``; the document is
parsed with graphql-core and variables are resolved (defaults included). Each top-level
field of a mutation (through fragments and inline fragments, aliases ignored, ``@skip``
and ``@include`` ignored: all of them count) is one action: ``mergePullRequest`` is
``github.pr.merge``, ``deleteRef`` is ``github.branch.delete``, ``updateRepository`` with
``visibility: PUBLIC`` is ``github.repo.make_public`` (see :data:`MUTATIONS`), with the
fields of its ``input`` as parameters (snake_case, REST names where REST has one:
``baseRefName`` is ``base``; enum values lower-cased: ``merge_method: squash``). A
mutation the table does not know stays ``github.graphql.mutate`` (high), its resolved
arguments as ``arguments``; a query is ``github.graphql.query`` (low). Every operation
in the document counts, whatever ``operationName`` says, and every field GitHub would
execute is one action, however often the same call repeats (twenty aliased
``addComment`` calls are twenty actions: budgets count each, ``budgets.performed``).
Only fields GraphQL merges into one execution are one action: the same response key
(alias, else name) in one operation with the same arguments.

Several actions in one document: the riskiest is the parsed action and the others ride
in ``ParsedAction.also``; the gateway decides each and the strictest outcome wins (all
must be allowed). Refused: a body not fully seen, a compressed body, duplicate keys
anywhere in the JSON, a batch (a JSON array), a persisted-query id without a document,
``variables`` that are not an object, a document that does not parse or is nested
deeper than :data:`MAX_DEPTH` (fragment spreads included), and more than
:data:`MAX_ACTIONS` fields, every occurrence counted (before any is merged). The JSON body
must be the one place a server may read a document from (``_body``): a query string
or a form-typed or untyped body whose fields name ``query``, ``variables``,
``operationName`` (or another document field), and a body typed other than JSON, a form
or nothing are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from agentfirewall.actions import Risk
from agentfirewall.connectors.base import form_field, form_names, make_spec
from agentfirewall.connectors.bodies import parse_json
from agentfirewall.connectors.github_mutations import MUTATIONS, Mutation
from agentfirewall.connectors.model import HttpRequest, ParsedAction, risk_rank
from agentfirewall.errors import ConnectorError
from agentfirewall.jsonlimits import printable

if TYPE_CHECKING:
    from graphql.language import FragmentDefinitionNode, SelectionSetNode

__all__ = ["MAX_ACTIONS", "MUTATIONS", "encoded_parameters", "parse_graphql"]

MAX_ACTIONS = 50
MAX_DEPTH = 64
_MAX_TOKENS = 10_000
_NAME = "github"
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])([A-Z])")
_FORM = "application/x-www-form-urlencoded"


def _refuse(message: str) -> ConnectorError:
    return ConnectorError(message, connector=_NAME)


#: The fields a GraphQL server reads a request's document by (graphql-ruby's controller:
#: ``params[:query]``, ``:variables``, ``:operationName``; persisted queries), lower-case.
_DOCUMENT_FIELDS = frozenset(
    {"query", "variables", "operationname", "extensions", "id", "documentid", "doc_id", "queryid"}
)


def _names_document_field(form: bytes) -> bool:
    """Whether a query or a form names a document field, read as Rack and PHP read
    names (any case, decoded: ``%71uery``, ``+query``, ``query[]``)."""
    return any(form_field(name) in _DOCUMENT_FIELDS for name in form_names(form))


def _body(req: HttpRequest) -> dict[str, Any]:
    """The JSON body, when it is the only place a server may read the document from: no
    document field in the query string (Rails gives its fields precedence over the body's;
    express-graphql reads ``query`` there first), and a body typed JSON, or untyped or a
    form (``curl -d``, GitHub's own example) whose form fields name none either (Rails
    parses such a body as a form: ``{"x":"&query=mutation…"}`` is a form holding one)."""
    if req.query and _names_document_field(req.query.encode(errors="replace")):
        raise _refuse(
            "refused graphql request with a document field in the query string: send the "
            "document, its variables and operation name in the JSON body"
        )
    if not req.body_complete:
        raise _refuse("graphql body not fully inspected: cannot name the operation")
    encoding = (req.header("content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise _refuse(f"cannot read a `{encoding[:40]}`-encoded graphql body")
    ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype not in ("application/json", "", _FORM) and not ctype.endswith("+json"):
        raise _refuse(f"graphql body of type `{printable(ctype, 100)}`: send application/json")
    if ctype in ("", _FORM) and _names_document_field(req.body):
        raise _refuse(
            "graphql body is also a form naming a document field (`query`, `variables`…): "
            "send it as application/json"
        )
    # strict JSON: UTF-8, no NaN, bounded depth, no key twice
    data = parse_json(req.body, connector=_NAME, unique=True)
    if isinstance(data, list):
        raise _refuse("refused graphql batch: send one operation document per request")
    if not isinstance(data, dict):
        raise _refuse("graphql body is not a JSON object")
    return data


def parse_graphql(req: HttpRequest) -> ParsedAction:
    """The riskiest action of the document, the others in ``also``."""
    from graphql.error import GraphQLError
    from graphql.language import parse

    data = _body(req)
    query = data.get("query")
    if query is None:
        raise _refuse("refused graphql request without a document (persisted query ids)")
    if not isinstance(query, str):
        raise _refuse("graphql `query` is not a string")
    variables = data.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise _refuse("graphql `variables` is not an object")
    name = data.get("operationName")
    if name is not None and not isinstance(name, str):
        raise _refuse("graphql `operationName` is not a string")
    try:
        _check_nesting(query)
        document = parse(query, no_location=True, max_tokens=_MAX_TOKENS)
    except GraphQLError as exc:
        raise _refuse(f"graphql document does not parse: {exc.message[:200]}") from None
    actions = list(_actions(document, variables, name))
    if not actions:
        raise _refuse("graphql document has no operation")
    actions.sort(key=lambda item: -risk_rank(item.risk))  # stable: first riskiest leads
    if len(actions) > 1:  # each names the others, so a held one shows the whole request
        actions = [_with_others(a, actions) for a in actions]
    first, rest = actions[0], tuple(actions[1:])
    return ParsedAction(first.spec, first.risk, first.connector, first.route, also=rest)


def _with_others(action: ParsedAction, actions: list[ParsedAction]) -> ParsedAction:
    others: list[JsonValue] = [a.action_type for a in actions if a is not action]
    spec = make_spec(
        action.action_type,
        provider=_NAME,
        parameters=dict(action.spec.parameters),
        risk_hints={"graphql_also": others},
        connector=_NAME,
    )
    return ParsedAction(spec, action.risk, _NAME, action.route)


def _check_nesting(query: str) -> None:
    """Refuse documents nested deeper than :data:`MAX_DEPTH` or longer than the token
    limit, with graphql-core's lexer (a loop) before its parser (which recurses)."""
    from graphql.language import Lexer, Source, TokenKind

    opening = {TokenKind.BRACE_L, TokenKind.BRACKET_L, TokenKind.PAREN_L}
    closing = {TokenKind.BRACE_R, TokenKind.BRACKET_R, TokenKind.PAREN_R}
    lexer = Lexer(Source(query))
    depth = count = 0
    token = lexer.advance()
    while token.kind != TokenKind.EOF:
        count += 1
        if count > _MAX_TOKENS:
            raise _refuse(f"graphql document has more than {_MAX_TOKENS} tokens")
        if token.kind in opening:
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(f"graphql document nested deeper than {MAX_DEPTH} levels")
        elif token.kind in closing:
            depth -= 1
        token = lexer.advance()


def _actions(document: Any, variables: dict[str, Any], name: str | None) -> Iterator[ParsedAction]:
    from graphql.language import FragmentDefinitionNode, OperationDefinitionNode, OperationType

    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    merged: set[tuple[int, str, str, str]] = set()
    count = 0
    for index, definition in enumerate(document.definitions):
        if not isinstance(definition, OperationDefinitionNode):
            continue
        values = dict(variables)
        for var in definition.variable_definitions or ():
            if var.variable.name.value not in values and var.default_value is not None:
                values[var.variable.name.value] = _value(var.default_value, {})
        op_name = definition.name.value if definition.name else None
        if definition.operation == OperationType.QUERY:
            count += 1
            _check_count(count)
            yield _query(op_name or name)
            continue
        for key, field, args in _fields(definition.selection_set, fragments, (), []):
            count += 1
            _check_count(count)
            action = _mutation(field, args, values, op_name or name)
            # GraphQL executes the fields of one response key in an operation once (and
            # refuses the document if their arguments differ): one action, not two
            params = json.dumps(action.spec.parameters, sort_keys=True)
            if (index, key, action.action_type, params) not in merged:
                merged.add((index, key, action.action_type, params))
                yield action


def _check_count(count: int) -> None:
    if count > MAX_ACTIONS:
        raise _refuse(f"graphql document performs more than {MAX_ACTIONS} actions")


def _fields(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    visiting: tuple[str, ...],
    out: list[tuple[str, str, dict[str, Any]]],
) -> list[tuple[str, str, dict[str, Any]]]:
    """Top-level fields of an operation, every occurrence: (response key, name, argument
    nodes), fragments expanded; refused past :data:`MAX_ACTIONS` of them (spreads of
    spreads would multiply) or spreads nested past :data:`MAX_DEPTH`."""
    from graphql.language import FieldNode, FragmentSpreadNode, InlineFragmentNode

    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            args = {a.name.value: a.value for a in selection.arguments or ()}
            key = (selection.alias or selection.name).value
            out.append((key, selection.name.value, args))
            _check_count(len(out))
        elif isinstance(selection, InlineFragmentNode):
            _fields(selection.selection_set, fragments, visiting, out)
        elif isinstance(selection, FragmentSpreadNode):
            spread = selection.name.value
            fragment = fragments.get(spread)
            if fragment is None:
                raise _refuse(f"graphql fragment `{spread[:80]}` is not defined")
            if spread in visiting:
                raise _refuse(f"graphql fragment `{spread[:80]}` spreads itself")
            if len(visiting) >= MAX_DEPTH:
                raise _refuse(f"graphql document nested deeper than {MAX_DEPTH} levels")
            _fields(fragment.selection_set, fragments, (*visiting, spread), out)
    return out


def _value(node: Any, variables: dict[str, Any]) -> Any:
    from graphql.utilities import value_from_ast_untyped

    return value_from_ast_untyped(node, variables)


def _query(name: str | None) -> ParsedAction:
    params: dict[str, JsonValue] = {"operationName": name} if name else {}
    return _parsed("github.graphql.query", "low", params, "query")


def _mutation(
    field: str, args: dict[str, Any], variables: dict[str, Any], name: str | None
) -> ParsedAction:
    resolved = {key: _value(node, variables) for key, node in args.items()}
    known = MUTATIONS.get(field)
    if known is None:
        params: dict[str, JsonValue] = {"mutation": field[:200]}
        if name:
            params["operationName"] = name[:200]
        if resolved:  # two calls with other arguments are two actions, told apart
            params["arguments"] = _json(resolved)
        return _parsed("github.graphql.mutate", "high", params, field)
    given = resolved.get("input")
    fields = known.input_fields(given if isinstance(given, dict) else resolved)
    params = _parameters(known, fields)
    action, risk = known.action_for(fields)
    return _parsed(action, risk, params, field)


def _parameter(known: Mutation, key: str) -> str:
    """The parameter an input field becomes: its REST name, else snake case."""
    return known.renames.get(key) or _CAMEL_RE.sub(r"_\1", key).lower()


def _parameters(known: Mutation, fields: dict[str, Any]) -> dict[str, JsonValue]:
    params: dict[str, JsonValue] = {}
    for key, value in fields.items():
        if key == "clientMutationId":
            continue
        name = _parameter(known, key)
        params[name] = _json(value, lower=name in known.enums)
    return params


def encoded_parameters(known: Mutation) -> tuple[str, ...]:
    """Where `known`'s encoded input fields are among its action's parameters
    (``fileChanges.additions.*.contents`` → ``parameters.file_changes.additions.*.contents``)."""
    out = []
    for path in known.encoded:
        first, dot, rest = path.partition(".")
        out.append(f"parameters.{_parameter(known, first)}{dot}{rest}")
    return tuple(out)


def _json(value: Any, *, lower: bool = False) -> JsonValue:
    from graphql.pyutils import Undefined

    if value is Undefined:
        return None
    if isinstance(value, str):
        return value.lower() if lower else value
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list):
        return [_json(item, lower=lower) for item in value]
    if isinstance(value, dict):
        return {str(k): _json(v, lower=lower) for k, v in value.items()}
    return str(value)


def _parsed(action: str, risk: Risk, params: dict[str, JsonValue], field: str) -> ParsedAction:
    spec = make_spec(action, provider=_NAME, parameters=params, connector=_NAME)
    return ParsedAction(spec, risk, _NAME, f"/graphql {field}"[:200])
