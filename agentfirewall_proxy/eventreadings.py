"""The readings of one server-sent event's data: what each of its consumers keeps of it,
for the response content rules (``eventscan.py`` joins each reading's text across events).

Pure (no I/O). An event's data is read as a JSON response body is
(``agentfirewall.content.body_pieces``: each string of JSON data decoded, other data as
text), and its strings as each plausible consumer keeps them (:data:`Readings`):

* a JSON reader's (``json.loads``, as ``JSON.parse``): of a key given twice, at any depth,
  the last member; a member it drops is scanned in its event, never joined;
* Go's ``encoding/json``, which matches a key to its struct's field in any case
  (:func:`folded`: ``content`` then ``Content`` one field; of members matching alike the
  last);
* each of them by position: SDKs join deltas by the position their object says it stands
  at (an integer ``index``, ``output_index``...: OpenAI's choices and tool calls,
  Anthropic's content blocks), not where it stands (:func:`_kept`: OpenAI's choice 1 is
  ``choices.1`` in a chunk carrying it alone, Anthropic's block 1 ``data[1]``), while a
  consumer reading each chunk's ``choices[0]`` joins by path.

The JSON is parsed once for all (every member, each reading): :func:`data_pieces`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from agentfirewall.content import body_pieces, value_pieces
from agentfirewall.content.locate import Piece, number_text, shown
from agentfirewall.content.reading import Pairs

__all__ = ["Readings", "data_pieces", "folded"]

#: The strings of an event's data each reading keeps, by path: a JSON reader's (by key as
#: spelled), Go's ``encoding/json`` (by :func:`folded` key), and each of them by position
#: (an object that says where it stands named by it, as an SDK joins deltas: ``_kept``)
Readings = tuple[list[Piece], list[Piece], list[Piece], list[Piece]]
#: How ``agentfirewall.content`` names a JSON key's own piece (``body.a.b#name``).
_NAME = "#name"


def folded(key: str) -> str:
    """`key` as Go's ``encoding/json`` matches it to a struct's field: each character by its
    simple case folding (``Content``, ``CONTENT``, ``content`` one key; a long s, U+017F, an
    ``s``, the Kelvin sign a ``k``; the Turkish dotted and dotless i only themselves),
    written with the lower-case member of its class."""
    return key.lower() if key.isascii() else "".join(map(_folded_char, key))


def _folded_char(char: str) -> str:
    if char in "\u0130\u0131":  # (Go folds them to nothing else; Python's case mappings do)
        return char
    upper = char.upper()  # (one member of its class all others map to, then lower-case)
    upper = upper if len(upper) == 1 else char
    lower = upper.lower()
    return lower if len(lower) == 1 else upper


def _load(data: str) -> tuple[object, bool]:
    """`data` as JSON (a leading byte order mark skipped), objects as :class:`Pairs` (every
    member, as the event's own scan reads it); and whether no object names a key twice,
    even spelled in another case (then a JSON reader and Go's keep every member). Raises
    ValueError or RecursionError."""
    apart = True

    def members(pairs: list[tuple[str, object]]) -> Pairs:
        nonlocal apart
        if apart and len(pairs) > 1:
            apart = len({folded(key) for key, _ in pairs}) == len(pairs)
        return Pairs(pairs)

    return json.loads(data.removeprefix("\ufeff"), object_pairs_hook=members), apart


def _placing(key: str, value: object) -> int | None:
    """Where a member (its key as read) says its object stands, or None: an integer
    ``index``, ``output_index``, ``content_index``... (``1.0`` too: to JavaScript's
    ``choices[1.0]`` is ``choices[1]``)."""
    if key != "index" and not key.endswith("_index"):
        return None
    if type(value) is float and value.is_integer():
        return int(value)
    return value if type(value) is int else None


def _position(members: dict[str, tuple[str, object]]) -> str | None:
    """Where an object (its members by key as read) says it stands among those an SDK joins
    the deltas of (OpenAI's choices and tool calls, Anthropic's content blocks): its
    :func:`_placing` members' value (several: in the order of their keys, but one if all
    are alike); None without one."""
    placed = sorted((key, at) for key, (_, value) in members.items()
                    if (at := _placing(key, value)) is not None)  # fmt: skip
    values = [str(at) for _, at in placed]
    return None if not values else values[0] if len(set(values)) == 1 else ",".join(values)


def _moved(value: object) -> bool:
    """Whether an object in `value` says it stands where it is not (:func:`_placing`: an
    array's element at another position, another object at one but 0): only then does a
    reading by position name a string otherwise (every member read, its key folded: so for
    every reading)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, Pairs):
            if any(_placing(folded(key), member) not in (None, at)
                   for key, member in item if type(member) in (int, float)):  # fmt: skip
                return True
            stack += [(member, 0) for _, member in item if isinstance(member, Pairs | list)]
        elif isinstance(item, list):
            stack += [(member, i) for i, member in enumerate(item)
                      if isinstance(member, Pairs | list)]  # fmt: skip
    return False


def _kept(value: object, path: str, fold: Callable[[str], str], placed: bool) -> list[Piece]:
    """Each string of `value` (:func:`_load`) its reader keeps, named by its path: of the
    members of an object whose keys `fold` alike, the last, where the first stood (its key
    named folded). `placed`: an object that says where it stands (:func:`_position`) is
    named by it, as an SDK joins it: an array's element ``<array>.<position>`` wherever it
    is in the array (OpenAI's ``choices.1`` at ``choices.0``), another ``<name>[<position>]``
    (Anthropic's event of content block 1: ``data[1]``; block 0 as if alone: ``data``)."""
    found: list[Piece] = []
    stack: list[tuple[object, str, str | None]] = [(value, path, None)]  # (+ its array's)
    while stack:  # (in the order of ``agentfirewall.content.value_pieces``)
        item, where, array = stack.pop()
        if isinstance(item, str):
            if not where.endswith(_NAME):  # (as of the pieces: a key's own name is not kept)
                found.append((where, item))
        elif isinstance(item, int | float) and (text := number_text(item)):
            if not where.endswith(_NAME):  # (a whole number: its digits, as the pieces)
                found.append((where, text))
        elif isinstance(item, Pairs):
            last = {fold(key): (key, member) for key, member in item}
            if placed and (at := _position(last)) is not None:
                if array is not None:
                    where = f"{array}.{at}"
                elif at != "0":
                    where = f"{where}[{at}]"
            stack += [(member, f"{where}.{fold(shown(key))}", None)
                      for key, member in last.values()]  # fmt: skip
        elif isinstance(item, list):
            stack += [(member, f"{where}.{i}", where) for i, member in enumerate(item)]
    return found


def data_pieces(data: str, location: str) -> tuple[list[Piece], Readings]:
    """(the pieces of `data` as a JSON response body's are, named under `location`; the
    strings of them each reading keeps, which its consumer joins across events). One
    parse."""
    try:
        value, apart = _load(data)
    except (ValueError, RecursionError):  # (not JSON: read as a body is, text kept whole)
        body = body_pieces(data.encode("utf-8", "surrogateescape"), "application/json")
        value, apart = None, True
        named = [(location + name[len("body") :], text) for name, text in body]
    else:
        named = value_pieces(value, location)
    if not named and data.strip():  # a JSON number, true, false or null: as text
        whole = [(location, data)]
        return whole, (whole, whole, whole, whole)
    if apart:  # (every member kept, named alike but for case: from the pieces at once)
        kept = [(name, text) for name, text in named if not name.endswith(_NAME)]
        go = [(folded(name), text) for name, text in kept]
    else:
        kept, go = _kept(value, location, str, False), _kept(value, location, folded, False)
    if not _moved(value):  # (the common case: by position, the same names)
        return named, (kept, go, kept, go)
    by_position = _kept(value, location, str, True), _kept(value, location, folded, True)
    return named, (kept, go, *by_position)
