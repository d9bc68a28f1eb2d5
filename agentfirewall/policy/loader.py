"""Load policy documents from YAML or JSON text, with errors that name file, line and field.

YAML is parsed once, with LibYAML's parser when PyYAML has it (else PyYAML's own), into
nodes that keep the line of every value; the data is built from them. A validation error's
location (``rules.0.decision``) is then mapped back to the line it came from. The loader
refuses what could hide a rule or blow up, as each node is composed: duplicate keys, merge
keys (``<<``), anchors and aliases, nesting deeper than :data:`MAX_NESTING`, more than
:data:`MAX_NODES` keys and values, documents over 1 MiB. It also turns off YAML 1.1's
surprises that would corrupt policy values, reading scalars the YAML 1.2 way: ``22:00``
stays a string (not the sexagesimal number 1320), ``2024-01-01`` stays a string, and
``no``/``yes``/``on``/``off`` are strings (only ``true``/``false`` are booleans: a rule
named ``no`` or a country code ``NO`` survive).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from agentfirewall.errors import PolicyError
from agentfirewall.policy.models import ApprovalSettings, FieldCondition, Policy, Rule, Scope

try:  # LibYAML's parser, when PyYAML was built with it: about 30 times faster than its own
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


__all__ = [
    "YamlLoader",
    "load_policy",
    "load_policy_file",
    "parse_document",
    "validate_policy_text",
]

MAX_DOCUMENT_BYTES = 1024 * 1024
#: How deep mappings and lists may nest in a policy document (a real one needs about 12):
#: the document is composed recursively, and thousands of levels (`{a: {a: ...`, a few KB)
#: would exhaust the stack.
MAX_NESTING = 64
#: How many nodes (keys, values, list items, lists and mappings) a policy document may hold:
#: the largest bundled pack has about 220 and a list of 10,000 values fits; 1 MiB of
#: one-letter list items (500,000 nodes) would take seconds to load and check.
MAX_NODES = 20_000
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
Path_ = tuple[str | int, ...]


class YamlLoader(Composer, _Parser, SafeConstructor, Resolver):
    """Safe loader without sexagesimal numbers and timestamps, composing in Python over the
    parser's events (LibYAML's when present) and refusing, node by node, anchors and
    aliases, nesting deeper than :data:`MAX_NESTING` and more than `max_nodes` nodes."""

    def __init__(
        self, stream: str, *, source: str | None = None, max_nodes: int | None = MAX_NODES
    ) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)  # this composer, not LibYAML's (which checks nothing)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.source = source
        self.max_nodes = max_nodes
        self.nodes = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise PolicyError("anchors and aliases are not allowed", file=self.source,
                              line=_line(event))  # fmt: skip
        self.nodes += 1
        if self.max_nodes is not None and self.nodes > self.max_nodes:
            raise PolicyError(f"more than {self.max_nodes:,} keys, values and list items: "
                              "split the policy", file=self.source, line=_line(event))  # fmt: skip
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise PolicyError(f"nested deeper than {MAX_NESTING} levels", file=self.source,
                              line=_line(event))  # fmt: skip
        node = super().compose_node(parent, index)
        self.depth -= 1
        return node


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _TIMESTAMP, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
YamlLoader.add_implicit_resolver(
    _INT,
    re.compile(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
    ),
    list("-+0123456789"),
)
YamlLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)"
        r"(?:[eE][-+]?[0-9]+)|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _index_lines(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], source: str | None, merges: bool
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key, value in node.value:
            if key.tag == _MERGE and not merges:  # `<<: {decision: deny}` hides a key
                raise PolicyError("merge keys (`<<`) are not allowed: write each key out",
                                  file=source, line=key.start_mark.line + 1)  # fmt: skip
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            if name in seen:
                raise PolicyError(
                    "duplicate key", file=source, line=key.start_mark.line + 1, field=name
                )
            seen.add(name)
            lines[(*path, name)] = key.start_mark.line + 1
            _index_lines(value, (*path, name), lines, source, merges)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines, source, merges)


def _line(event: yaml.Event | None) -> int | None:
    mark = event.start_mark if event is not None else None
    return mark.line + 1 if mark is not None else None


def parse_document(
    text: str | bytes, *, source: str | None = None, stored: bool = False
) -> tuple[object, dict[Path_, int]]:
    """Parse YAML or JSON text into data plus a map from data path to line number.

    `stored`: a document a control plane accepted earlier, read as it was then: without the
    limit on its nodes, merge keys merged (refusing it would deny every action).
    """
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise PolicyError("document larger than 1 MiB", file=source)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("document is not valid UTF-8", file=source) from None
    if len(text) > MAX_DOCUMENT_BYTES:
        raise PolicyError("document larger than 1 MiB", file=source)
    if text.lstrip().startswith("{"):
        # JSON: tabs are whitespace there (never raw inside strings) but not in YAML
        text = text.replace("\t", " ")
    try:
        loader = YamlLoader(text, source=source, max_nodes=None if stored else MAX_NODES)
        try:
            node = loader.get_single_node()
            if node is None:
                raise PolicyError("empty document", file=source, line=1)
            lines: dict[Path_, int] = {}
            _index_lines(node, (), lines, source, merges=stored)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        at = text[mark.index : mark.index + 1] if mark is not None else ""
        if "'\\t'" in problem or at == "\t":  # a tab (PyYAML names it, LibYAML points at it)
            problem = "a tab where YAML allows only spaces: indent with spaces"
        elif "maximum nesting depth" in problem:  # LibYAML >= 0.2.5 stops deep nesting first
            raise PolicyError(f"nested deeper than {MAX_NESTING} levels", file=source,
                              line=line) from None  # fmt: skip
        raise PolicyError(f"invalid YAML: {problem}", file=source, line=line) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"invalid YAML: {exc}", file=source) from None
    except PolicyError:
        raise
    except ValueError as exc:  # a number Python will not convert (over 4,300 digits)
        raise PolicyError(f"invalid value: {exc}", file=source) from None
    for path, line in list(lines.items()):
        if path[:2] == ("metadata", "scope"):
            lines.setdefault(("scope", *path[2:]), line)
    return data, lines


def _child(current: object, part: str | int) -> tuple[bool, object]:
    if isinstance(current, dict) and part in current:
        return True, current[part]
    if isinstance(current, list) and isinstance(part, int) and part < len(current):
        return True, current[part]
    return False, None


def _field_name(loc: tuple[str | int, ...], data: object) -> tuple[Path_, str]:
    """Drop union tags from a pydantic location by walking the data alongside it."""
    path: list[str | int] = []
    current = data
    for position, part in enumerate(loc):
        following = loc[position + 1] if position + 1 < len(loc) else None
        if part == "leaf" or (part in _TAGS and following in (part, "not_")):
            continue  # a union tag, not a key
        if isinstance(current, list) and part == "all":
            continue  # a list of conditions read as `all`
        found, child = _child(current, part)
        if found:
            current = child
        elif part == "not_" and isinstance(current, dict) and "not" in current:
            part, current = "not", current["not"]
        else:
            if not isinstance(current, dict | list):
                break
            path.append(part)
            break
        path.append(part)
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return tuple(path), text


_TAGS = ("all", "any", "not")


#: pydantic's wording of its own checks, said the way the rest of these messages are
_SAID: dict[str, str] = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "too_short": "needs at least {min_length} item(s), has {actual_length}",
    "too_long": "takes at most {max_length} item(s), has {actual_length}",
    "string_too_short": "needs at least {min_length} character(s)",
    "string_too_long": "takes at most {max_length} characters",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "literal_error": "expected {expected}",
    "string_type": "expected text (a string)",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
}


#: Every key of the document format (a misspelt key is told the closest one)
_KEYS = tuple(
    sorted(
        {
            (info.alias or name)
            for model in (Policy, Scope, Rule, ApprovalSettings, FieldCondition)
            for name, info in model.model_fields.items()
        }
        | {"all", "any", "not"}
    )
)
#: What other policy languages call the condition groups
_GROUPS = {"and": "all", "or": "any", "allof": "all", "anyof": "any", "all_of": "all",
           "any_of": "any", "none": "not", "none_of": "not"}  # fmt: skip


def _near_key(key: object) -> str | None:
    if not isinstance(key, str):
        return None
    near = difflib.get_close_matches(key.lower(), _KEYS, n=1, cutoff=0.7)
    return near[0] if near else None


def _condition_hint(value: object) -> str:
    """What to write instead of something that is no condition (empty: nothing to say)."""
    if isinstance(value, list):
        return ": `not` takes one condition, not a list (for none of several: `not: {any: [...]}`)"
    if isinstance(value, dict):
        for key in value:
            meant = _GROUPS.get(str(key).lower()) or _near_key(key)
            if meant is not None and meant != key:
                return f": did you mean `{meant}` for `{key}`?"
    return ""


def _message(error: Mapping[str, object]) -> str:
    if error.get("type") == "extra_forbidden":
        loc: tuple[object, ...] = tuple(error.get("loc") or ())  # type: ignore[arg-type]
        near = _near_key(loc[-1]) if loc else None
        return f"unknown field: did you mean `{near}`?" if near else "unknown field"
    if error.get("type") == "invalid_condition":
        return f"{error.get('msg')}{_condition_hint(error.get('input'))}"
    said = _SAID.get(str(error.get("type")))
    if said is not None:
        try:
            ctx = dict(error.get("ctx") or {})  # type: ignore[call-overload]
            for key, value in ctx.items():  # `at most 100`, not `at most 100.0`
                if isinstance(value, float) and value.is_integer():
                    ctx[key] = int(value)
            return said.format(**ctx)
        except (KeyError, IndexError, ValueError):
            pass  # a context without the expected values: pydantic's own words below
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message[:1].lower() + message[1:]


def _errors(
    exc: PydanticValidationError, data: object, lines: dict[Path_, int], source: str | None
) -> list[PolicyError]:
    found = []
    raw = exc.errors()
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if isinstance(data, dict) and isinstance(metadata, dict) and "scope" in metadata:
        data = {**data, "scope": metadata["scope"]}  # as the model saw it
    # `feild: x` beside a missing `field`: one error, the misspelling, says it all
    misspelt = {
        (*tuple(e["loc"])[:-1], near)
        for e in raw
        if e["type"] == "extra_forbidden" and (near := _near_key(tuple(e["loc"])[-1]))
    }
    for error in raw:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and any(
            tuple(other["loc"])[: len(loc)] == loc and other is not error for other in raw
        ):
            continue  # a tuple "too short" only because its items failed
        if error["type"] == "missing" and loc in misspelt:
            continue
        path, name = _field_name(loc, data)
        line = None
        for end in range(len(path), -1, -1):
            if path[:end] in lines:
                line = lines[path[:end]]
                break
        found.append(PolicyError(_message(error), file=source, line=line, field=name or None))
    return found


def _validate(
    data: object, lines: dict[Path_, int], source: str | None, *, stored: bool = False
) -> tuple[Policy | None, list[PolicyError]]:
    if not isinstance(data, dict):
        return None, [PolicyError("a policy document must be a mapping", file=source, line=1)]
    try:
        return Policy.model_validate(data, context={"stored": stored}), []
    except PydanticValidationError as exc:
        return None, _errors(exc, data, lines, source)


def validate_policy_text(text: str | bytes, *, source: str | None = None) -> list[PolicyError]:
    """Every error in a document (empty when it is valid)."""
    try:
        data, lines = parse_document(text, source=source)
    except PolicyError as exc:
        return [exc]
    return _validate(data, lines, source)[1]


def load_policy(
    document: str | bytes | Mapping[str, object],
    *,
    source: str | None = None,
    stored: bool = False,
) -> Policy:
    """Load one policy from YAML/JSON text or from already parsed data; raise PolicyError.

    `stored`: a document a control plane accepted earlier, read as it was accepted then
    (a boolean or a number written as text, a role of any name, a merge key, more than
    :data:`MAX_NODES` nodes, which later versions refuse on write): a stored policy never
    disappears from enforcement because a check tightened.
    """
    if isinstance(document, Mapping):
        data: object = dict(document)
        lines: dict[Path_, int] = {}
    else:
        data, lines = parse_document(document, source=source, stored=stored)
    policy, errors = _validate(data, lines, source, stored=stored)
    if policy is None:
        raise errors[0]
    return policy


def load_policy_file(path: str | Path) -> Policy:
    """Read and load one policy file (YAML or JSON)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read file: {exc.strerror}", file=str(file)) from None
    return load_policy(raw, source=str(file))
