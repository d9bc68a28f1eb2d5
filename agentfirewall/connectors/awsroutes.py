"""The REST-protocol AWS services named by method and path (Lambda, Bedrock, EKS, ...).

Each service's routes are botocore's (``agentfirewall.connectors.awsrest``, generated): the
method, the request URI (``/2015-03-31/functions/{FunctionName}/invocations``) and the
operation. A request is matched against the path in segments (the catalogue's path rules:
``agentfirewall.connectors.paths``), except that a ``%2F`` stays inside its segment: AWS
routes on the path as sent and decodes a label afterwards, so an ARN in a label
(``/tags/arn%3Aaws%3A...%3Aagent%2FABC``) is one value, as botocore sends it.

- ``{Label}`` matches one segment, ``{Label+}`` one or more; a literal matches in any case.
- A URI's query (``?tagging``, ``?list-type=2``) is what the request's query must hold;
  such a key given twice names nothing (the service may read either value).
- Several routes match (a literal where another has a label: ``/things/search`` and
  ``/things/{id}``): the most specific names the request, as the service's router picks
  it: the most query requirements, then the most literal segments, then no ``+`` label.
  Two equally specific routes of different operations name nothing (``aws.unknown``).
- A label is a parameter named in snake case without its ``Id``, ``Identifier``, ``Name``
  or ``Arn`` suffix (``FunctionName`` is ``function``, ``agentAliasId`` ``agent_alias``,
  ``resourceArn`` ``resource``), percent-decoded.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from agentfirewall.connectors.awstargets import XFORM_EXCEPTIONS
from agentfirewall.connectors.paths import decode_segment, split_path

__all__ = [
    "RestMatch",
    "RestRoute",
    "match_route",
    "param_name",
    "parse_routes",
    "routes_of",
    "rule_name",
    "serves_query_protocol_too",
    "snake_case",
]

_FIRST_CAP = re.compile(r"(.)([A-Z][a-z]+)")
_END_CAP = re.compile(r"([a-z0-9])([A-Z])")
_PLURAL_ACRONYM = re.compile(r"[A-Z]{2,}s$")
_SUFFIXES = ("_identifier", "_id", "_name", "_arn")


def snake_case(operation: str) -> str:
    """``PutItem`` → ``put_item``, ``DescribeDBInstances`` → ``describe_db_instances``,
    ``ListWebACLs`` → ``list_web_acls``: botocore's ``xform_name``, the boto3 method name."""
    known = XFORM_EXCEPTIONS.get(operation)
    return rule_name(operation) if known is None else known


def rule_name(operation: str) -> str:
    """botocore's ``xform_name`` rule, without its exceptions."""
    plural = _PLURAL_ACRONYM.search(operation)
    if plural is not None:
        operation = f"{operation[: plural.start()]}_{plural.group().lower()}"
    return _END_CAP.sub(r"\1_\2", _FIRST_CAP.sub(r"\1_\2", operation)).lower()


def param_name(label: str) -> str:
    """A URI label's parameter: ``FunctionName`` → ``function``, ``modelId`` → ``model``."""
    name = snake_case(label).replace("-", "_")
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return name


@dataclass(frozen=True, slots=True)
class RestRoute:
    method: str
    #: literal segments lower-cased; a label as ``{param}``, one that takes the rest ``{param+}``
    segments: tuple[str, ...]
    #: (key, value) the query must hold; value None: the key, with any value
    query: tuple[tuple[str, str | None], ...]
    operation: str
    #: the route's specificity: more is preferred (module docstring)
    rank: tuple[int, int, int]
    pattern: re.Pattern[str]
    #: the labels' parameter names, in path order (the pattern's groups)
    params: tuple[str, ...]


def _route(line: str) -> RestRoute:
    method, uri, operation = line.split(" ")
    path, _, query = uri.partition("?")
    segments: list[str] = []
    regex: list[str] = []
    seen: set[str] = set()
    stripped = path.strip("/")
    for part in stripped.split("/") if stripped else ():
        if part.startswith("{"):
            label = part[1:-1]
            greedy = label.endswith("+")
            name = param_name(label.rstrip("+"))
            if name in seen:  # two labels alike once shortened: the second keeps its suffix
                name = snake_case(label.rstrip("+")).replace("-", "_")
            seen.add(name)
            segments.append(f"{{{name}{'+' if greedy else ''}}}")
            regex.append("(.+)" if greedy else "([^/]+)")
        else:
            segments.append(part.lower())
            regex.append(re.escape(part.lower()))
    wanted = tuple(
        (key, value if sep else None)
        for key, sep, value in (item.partition("=") for item in query.split("&") if item)
    )
    literals = sum(1 for s in segments if not s.startswith("{"))
    greedy = any(s.endswith("+}") for s in segments)
    return RestRoute(
        method,
        tuple(segments),
        wanted,
        snake_case(operation),
        (len(wanted), literals, 0 if greedy else 1),
        re.compile("/".join(regex)),
        tuple(s.strip("{}+") for s in segments if s.startswith("{")),
    )


@functools.cache
def routes_of(service: str) -> dict[str, tuple[RestRoute, ...]] | None:
    """The routes of `service` (its action name: ``lambda``, ``sagemaker-runtime``) by
    method; None when it is no REST service. Parsed on first use."""
    from agentfirewall.connectors.awsrest import ROUTES  # (half a megabyte: when first used)

    table = ROUTES.get(service)
    return None if table is None else parse_routes(table)


def parse_routes(table: str) -> dict[str, tuple[RestRoute, ...]]:
    """Routes by method, from lines of ``METHOD URI Operation`` (``awsrest.ROUTES``)."""
    by_method: dict[str, list[RestRoute]] = {}
    for line in table.splitlines():
        if line:
            route = _route(line)
            by_method.setdefault(route.method, []).append(route)
    return {method: tuple(routes) for method, routes in by_method.items()}


def serves_query_protocol_too(service: str) -> bool:
    """Whether `service`'s host also serves a query- or JSON-protocol API (``awsrest.MIXED``)."""
    from agentfirewall.connectors.awsrest import MIXED

    return service in MIXED


@dataclass(frozen=True, slots=True)
class RestMatch:
    route: RestRoute
    #: the labels' values, percent-decoded, in path order
    params: dict[str, str]


def _satisfied(route: RestRoute, query: dict[str, list[str]]) -> bool:
    for key, value in route.query:
        values = query.get(key)
        if values is None or (value is not None and values != [value]):
            return False
    return True


def match_route(
    routes: dict[str, tuple[RestRoute, ...]], method: str, path: str, query: str, *, connector: str
) -> RestMatch | None:
    """The route naming ``method path?query``, or None (no route, or two alike: module
    docstring). Paths the catalogue's rules refuse raise ``ConnectorError``."""
    segments = split_path(path, connector=connector, encoded_separators=True)
    joined = "/".join(s.lower() for s in segments)
    pairs: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        pairs.setdefault(key, []).append(value)
    best: list[tuple[RestRoute, re.Match[str]]] = []
    for route in routes.get(method, ()):
        found = route.pattern.fullmatch(joined)
        if found is None:
            continue
        if any(len(pairs.get(key, ())) > 1 for key, _ in route.query):
            return None  # a key that picks the route, twice: which value would the service read?
        if not _satisfied(route, pairs):
            continue
        if best and route.rank < best[0][0].rank:
            continue
        if best and route.rank > best[0][0].rank:
            best = []
        best.append((route, found))
    if not best or len({route.operation for route, _ in best}) > 1:
        return None
    route, found = best[0]
    # the values as sent (the match ran on a lower-cased copy): the same spans of the path
    original = "/".join(segments)
    params = {
        name: decode_segment(original[found.start(i + 1) : found.end(i + 1)], connector=connector)
        for i, name in enumerate(route.params)
    }
    return RestMatch(route, params)
