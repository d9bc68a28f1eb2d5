"""Routes as data and the one shared matcher that reads them.

A :class:`Route` is a row: method, path template, action, risk, and which body/query
fields become parameters. Templates are ``/``-separated segments, each one of

- ``literal`` — matched case-insensitively;
- ``{name}`` — any one segment; ``{name:int}`` — ASCII digits only (becomes an int);
- ``{name}.suffix`` — one segment ending in a literal suffix (``{repo}.git``);
- ``{name+}`` — one or more segments, slashes kept (``release/1.x``): the rest of the path,
  or, when literals follow it (``/branches/{branch+}/protection``), every segment between
  what comes before and those literals, which must be the path's last segments. Only
  literals may follow it.

:class:`RouteTable` compiles the rows once into a trie per method (literals before
suffixed variables before variables before greedy ones; among greedy ones, the longest
literal tail first and the bare ``{name+}`` last, so ``/branches/a/protection`` is the
protection of branch ``a``, as GitHub reads it) and matches in one walk with
backtracking. When nothing matches strictly, a *relaxed* walk follows: ``int``
variables take any segment and the last segment may lose a format suffix
(``merge.json``), because some upstreams route those to the same action. A relaxed match
only ever names a request as something it might be, never as something harmless.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agentfirewall.actions import Risk, validate_action_type
from agentfirewall.connectors.paths import decode_segment

__all__ = ["Match", "Route", "RouteTable", "Variant", "template_vars"]

_LIT, _SUFFIX, _INT, _STR, _GREEDY = range(5)


@dataclass(frozen=True, slots=True)
class Variant:
    """A body field that changes the action: ``state == "closed"`` makes a close.

    The field is read from the body, else the query. With `values`, its string value
    (lower-cased; JSON booleans as ``true``/``false``) must be one of them; with
    `pattern`, a case-insensitive regex must be found in it (a non-string value matches,
    to be safe); with
    `prefix`, it must start with it; with neither, the field must be present and not null.
    When building a request for `action`, ``values[0]`` is set in the body if missing.
    """

    field: str
    action: str
    risk: Risk
    values: tuple[str, ...] = ()
    prefix: str = ""
    description: str = ""
    pattern: str = ""

    def matches(self, fields: Mapping[str, object]) -> bool:
        value = fields.get(self.field)
        if value is None:
            return False
        if self.values:
            if isinstance(value, bool):
                return ("true" if value else "false") in self.values
            return isinstance(value, str) and value.lower() in self.values
        if self.prefix:
            return isinstance(value, str) and value.startswith(self.prefix)
        if self.pattern:
            return not isinstance(value, str) or bool(re.search(self.pattern, value, re.I))
        return True


@dataclass(frozen=True, slots=True)
class Route:
    """One row of a connector's table.

    `params` names body or query fields copied into the action's parameters
    (``"amount:int"`` converts to an int; ``"branch:body"`` is read from the body only,
    for a field the upstream ignores in the query). `derive` fills a missing parameter when
    building a request, from a format over other parameters (``("ref", "heads/{branch_name}")``).
    `account` / `target` override the connector's resource templates. `listed=False`
    keeps an alternative spelling of a listed route out of the catalogue. `encoded` names
    body fields that carry text base64-encoded (``"content"``, ``"attachments.*.content"``:
    ``*`` any one key or index): the content guard decodes and scans them
    (``agentfirewall.content.encoded``); `response_encoded` names those of the JSON answer
    (``"content"`` of a file read through GitHub's contents API), decoded and scanned by
    the response content rules.
    """

    method: str
    path: str
    action: str
    risk: Risk
    description: str = ""
    params: tuple[str, ...] = ()
    variants: tuple[Variant, ...] = ()
    derive: tuple[tuple[str, str], ...] = ()
    account: str | None = None
    target: str | None = None
    listed: bool = True
    encoded: tuple[str, ...] = ()
    response_encoded: tuple[str, ...] = ()

    @property
    def reads_body(self) -> bool:
        return bool(self.params or self.variants)

    def actions(self) -> tuple[tuple[str, Risk], ...]:
        """Every action this route can name: its own and its variants'."""
        return ((self.action, self.risk), *((v.action, v.risk) for v in self.variants))


@dataclass(frozen=True, slots=True)
class _Token:
    kind: int
    text: str  # the literal (lower-cased), the suffix, or ""
    name: str = ""


_Entry = tuple[Route, tuple[tuple[str, bool], ...]]  # a route and its (name, is_int)s
_Found = tuple[_Entry, list[str]]


@dataclass(slots=True)
class _Greedy:
    """The routes whose ``{name+}`` starts here: with literal tails (longest first), and
    the bare one (the rest of the path)."""

    tails: list[tuple[tuple[str, ...], _Entry]] = field(default_factory=list)
    route: _Entry | None = None

    def add(self, tail: tuple[str, ...], entry: _Entry) -> None:
        if (self.route if not tail else dict(self.tails).get(tail)) is not None:
            raise ValueError(f"duplicate route {entry[0].method} {entry[0].path}")
        if tail:
            self.tails.append((tail, entry))
        else:
            self.route = entry

    def match(self, segments: tuple[str, ...], index: int, values: list[str]) -> _Found | None:
        """The route for ``segments[index:]``, whose variable takes at least one segment."""
        if self.tails:
            rest, last = len(segments) - index, segments[-1].lower()
            for tail, entry in self.tails:
                size = len(tail)
                if (
                    rest > size
                    and tail[-1] == last
                    and (size == 1 or _ends_with(segments[:-1], tail[:-1]))
                ):
                    return entry, [*values, "/".join(segments[index:-size])]
        if self.route is not None:
            return self.route, [*values, "/".join(segments[index:])]
        return None


@dataclass(slots=True)
class _Node:
    literals: dict[str, _Node] = field(default_factory=dict)
    variables: dict[tuple[int, str], _Node] = field(default_factory=dict)
    greedy: _Greedy | None = None
    route: _Entry | None = None


@dataclass(slots=True)
class Match:
    """A matched route with its path variables (ints converted, values decoded)."""

    route: Route
    values: dict[str, str | int]
    relaxed: bool


def _parse_template(template: str) -> tuple[_Token, ...]:
    if not template.startswith("/"):
        raise ValueError(f"route template `{template}` must start with /")
    parts = template[1:].split("/") if template != "/" else []
    tokens = tuple(_parse_token(part, template) for part in parts)
    kinds = [token.kind for token in tokens]
    if _GREEDY in kinds and any(k != _LIT for k in kinds[kinds.index(_GREEDY) + 1 :]):
        raise ValueError(f"only literals may follow a greedy variable in template `{template}`")
    return tokens


def _parse_token(part: str, template: str) -> _Token:
    if not part.startswith("{"):
        return _Token(_LIT, part.lower())
    close = part.index("}")
    inner, suffix = part[1:close], part[close + 1 :]
    if inner.endswith("+"):
        if suffix:
            raise ValueError(f"a greedy variable cannot have a suffix in template `{template}`")
        return _Token(_GREEDY, "", inner[:-1])
    if suffix:
        return _Token(_SUFFIX, suffix.lower(), inner)
    if inner.endswith(":int"):
        return _Token(_INT, "", inner[:-4])
    return _Token(_STR, "", inner)


def template_vars(template: str) -> tuple[str, ...]:
    """Names of a template's variables, in order."""
    return tuple(t.name for t in _parse_template(template) if t.kind != _LIT)


class RouteTable:
    """Routes compiled into one trie per method; HEAD uses the GET routes."""

    def __init__(self, routes: tuple[Route, ...], *, connector: str = "") -> None:
        self.routes = routes
        self.connector = connector
        self._tries: dict[str, _Node] = {}
        for route in routes:
            validate_action_type(route.action)
            for variant in route.variants:
                validate_action_type(variant.action)
            self._insert(route)
        for trie in self._tries.values():
            _order(trie)

    def _insert(self, route: Route) -> None:
        node = self._tries.setdefault(route.method.upper(), _Node())
        tokens = _parse_template(route.path)
        entry = (route, tuple((t.name, t.kind == _INT) for t in tokens if t.kind != _LIT))
        for index, token in enumerate(tokens):
            if token.kind == _LIT:
                node = node.literals.setdefault(token.text, _Node())
            elif token.kind == _GREEDY:
                node.greedy = node.greedy or _Greedy()
                node.greedy.add(tuple(t.text for t in tokens[index + 1 :]), entry)
                return
            else:
                node = node.variables.setdefault((token.kind, token.text), _Node())
        if node.route is not None:
            raise ValueError(f"duplicate route {route.method} {route.path}")
        node.route = entry

    def match(self, method: str, segments: tuple[str, ...]) -> Match | None:
        """The route for `method` and `segments`, strict first, then relaxed."""
        root = self._tries.get("GET" if method == "HEAD" else method)
        if root is None:
            return None
        found = _first_path(root, segments)
        relaxed = False
        if found is None:
            lowered = tuple("/".join(segments).lower().split("/"))
            found = _walk(root, segments, lowered, 0, [], relaxed=False)
            relaxed = found is None
        if found is None:
            found = _walk(root, segments, lowered, 0, [], relaxed=True)
        if found is None and segments and "." in segments[-1][1:]:
            stem = segments[-1][: segments[-1].index(".", 1)]
            segments = (*segments[:-1], stem)
            lowered = (*lowered[:-1], stem.lower())
            found = _walk(root, segments, lowered, 0, [], relaxed=True)
        if found is None:
            return None
        (route, names), raw_values = found
        values: dict[str, str | int] = {}
        for (name, is_int), raw in zip(names, raw_values, strict=True):
            decoded = decode_segment(raw, connector=self.connector) if "%" in raw else raw
            if is_int and _is_digits(decoded):
                values[name] = int(decoded)
            else:
                values[name] = decoded
        return Match(route, values, relaxed)


def _order(node: _Node) -> None:
    """Suffixed variables before int ones before plain ones, and greedy variables' longest
    literal tails first, recursively."""
    node.variables = dict(sorted(node.variables.items(), key=lambda item: item[0][0]))
    for child in (*node.literals.values(), *node.variables.values()):
        _order(child)
    if node.greedy is not None:
        node.greedy.tails.sort(key=lambda item: -len(item[0]))


def _first_path(node: _Node, segments: tuple[str, ...]) -> _Found | None:
    """The walk's first choice at every step, without backtracking (the common case).

    When it succeeds it is exactly what :func:`_walk` returns (the walk tries the same
    choice first); when it fails the full walk runs.
    """
    values: list[str] = []
    for index, segment in enumerate(segments):
        child = node.literals.get(segment.lower())
        if child is None:
            for (kind, suffix), candidate in node.variables.items():
                if kind == _STR:  # the common case, inlined
                    value: str | None = segment
                else:
                    value = _variable_value(kind, suffix, segment, relaxed=False)
                if value is not None:
                    values.append(value)
                    child = candidate
                    break
            else:
                if node.greedy is not None:
                    return node.greedy.match(segments, index, values)
                return None
        node = child
    return (node.route, values) if node.route is not None else None


def _walk(
    node: _Node,
    segments: tuple[str, ...],
    lowered: tuple[str, ...],
    index: int,
    values: list[str],
    *,
    relaxed: bool,
) -> _Found | None:
    """Depth-first walk: literal, then suffixed, int, str and greedy variables."""
    if index == len(segments):
        return (node.route, list(values)) if node.route is not None else None
    segment = segments[index]
    child = node.literals.get(lowered[index])
    if child is not None:
        found = _walk(child, segments, lowered, index + 1, values, relaxed=relaxed)
        if found is not None:
            return found
    for (kind, suffix), child in node.variables.items():
        value = _variable_value(kind, suffix, segment, relaxed=relaxed)
        if value is None:
            continue
        values.append(value)
        found = _walk(child, segments, lowered, index + 1, values, relaxed=relaxed)
        values.pop()
        if found is not None:
            return found
    if node.greedy is not None:
        return node.greedy.match(segments, index, values)
    return None


def _variable_value(kind: int, suffix: str, segment: str, *, relaxed: bool) -> str | None:
    if kind == _SUFFIX:
        if len(segment) > len(suffix) and segment.lower().endswith(suffix):
            return segment[: -len(suffix)]
        return None
    if kind == _INT and not relaxed and not _is_digits(segment):
        return None
    return segment


def _ends_with(segments: tuple[str, ...], literals: tuple[str, ...]) -> bool:
    """Whether `segments` end with `literals` (lower-case), compared case-insensitively."""
    return all(
        segment.lower() == literal
        for segment, literal in zip(segments[-len(literals) :], literals, strict=True)
    )


def _is_digits(segment: str) -> bool:
    return len(segment) <= 18 and segment.isascii() and segment.isdigit()
