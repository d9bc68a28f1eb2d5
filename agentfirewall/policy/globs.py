"""Dotted globs for action types and agent names, matched without regular expressions.

A glob has one wildcard, ``*``, which matches any run of characters, dots included:
``github.*`` matches ``github.pr.merge``; ``github.*.get`` matches ``github.pr.get`` and
``github.repo.contents.get``; ``*`` matches everything. Matching splits the pattern on
``*`` and finds the literal parts left to right, so its cost is linear in the input
(no backtracking, no regex).

Specificity orders the globs that match one name: an exact name beats any wildcard, then
a longer literal prefix wins, then fewer wildcards, then more literal characters::

    github.pr.merge  >  github.pr.*  >  github.*.get  >  github.*  >  *.get  >  *

One segment is reserved: ``unknown``. Connectors name a request they cannot name
``<connector>.unknown.<method>`` (``github.unknown.put``), and a wildcard never *grants*
such a name by spanning that segment: only a glob whose literal prefix reaches past it
(``github.unknown.*``, ``github.unknown.put``) names it. :func:`reserved_floor` gives the
prefix a glob must start with; access rules (permissions.py) skip allow-rules that do not
reach it, while deny and require_approval wildcards still cover it (fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["RESERVED_SEGMENT", "Glob", "GlobKind", "compile_glob", "dot_prefixes", "reserved_floor"]

GlobKind = Literal["exact", "prefix", "complex"]
#: The segment of action names a wildcard never grants (see the module docstring).
RESERVED_SEGMENT = "unknown"

#: Characters an action-type glob may hold: the action grammar plus ``*``.
_ACTION_GLOB_RE = re.compile(r"^[a-z0-9_.*-]{1,520}$")


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled glob. ``kind`` says how an index can store it.

    - ``exact``: no wildcard; equal strings match.
    - ``prefix``: ``literal`` followed by one trailing ``*``, with ``literal`` empty or
      ending in a dot; matches anything starting with ``literal``.
    - ``complex``: anything else; matched part by part.
    """

    pattern: str
    kind: GlobKind
    literal: str
    parts: tuple[str, ...]
    specificity: tuple[int, int, int, int]

    def matches(self, value: str) -> bool:
        """True when `value` matches the whole pattern."""
        if self.kind == "exact":
            return value == self.pattern
        if self.kind == "prefix":
            return value.startswith(self.literal)
        return _match_parts(self.parts, value)

    def names(self, floor: str) -> bool:
        """True when this glob names the reserved part `floor` of an action explicitly
        (see :func:`reserved_floor`): it is exact, or its literal prefix starts with it."""
        return self.kind == "exact" or self.literal.startswith(floor)


def _match_parts(parts: tuple[str, ...], value: str) -> bool:
    first, last = parts[0], parts[-1]
    if len(value) < len(first) + len(last):
        return False
    if not value.startswith(first) or not value.endswith(last):
        return False
    position = len(first)
    end = len(value) - len(last)
    for middle in parts[1:-1]:
        found = value.find(middle, position, end)
        if found < 0:
            return False
        position = found + len(middle)
    return True


def compile_glob(pattern: str, *, action: bool = True) -> Glob:
    """Compile `pattern`; with ``action=True`` only action-type characters are allowed.

    Raises ValueError with a message naming the pattern when it is malformed.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("a pattern must be a non-empty string")
    if action and not _ACTION_GLOB_RE.fullmatch(pattern):
        raise ValueError(
            f"invalid action pattern `{pattern}`: use lowercase dotted names and `*`, "
            "e.g. `github.pr.*`"
        )
    if len(pattern) > 1024:
        raise ValueError("a pattern may hold at most 1024 characters")
    parts = tuple(pattern.split("*"))
    wildcards = len(parts) - 1
    literal = parts[0]
    literal_chars = sum(len(p) for p in parts)
    kind: GlobKind
    if wildcards == 0:
        kind = "exact"
    elif wildcards == 1 and parts[1] == "" and (literal == "" or literal.endswith(".")):
        kind = "prefix"
    else:
        kind = "complex"
    specificity = (1 if kind == "exact" else 0, len(literal), -wildcards, literal_chars)
    return Glob(pattern, kind, literal, parts, specificity)


def dot_prefixes(name: str) -> tuple[str, ...]:
    """Every prefix of `name` ending in a dot, longest first, then ``""``.

    ``dot_prefixes("github.pr.merge") == ("github.pr.", "github.", "")``: the keys a
    prefix index probes for `name`.
    """
    prefixes = [""]
    index = name.find(".")
    while index >= 0:
        prefixes.append(name[: index + 1])
        index = name.find(".", index + 1)
    prefixes.reverse()
    return tuple(prefixes)


def reserved_floor(name: str) -> str:
    """The prefix of `name` up to and including its reserved segment, else ``""``.

    ``reserved_floor("github.unknown.put") == "github.unknown."``; a wildcard grants the
    name only when its literal prefix starts with that (``github.unknown.*``).
    """
    if RESERVED_SEGMENT not in name:
        return ""
    segments = name.split(".")
    for index, segment in enumerate(segments):
        if segment == RESERVED_SEGMENT:
            return ".".join(segments[: index + 1]) + "."
    return ""
