"""Server-sent events read as their consumer reads them, for the response content rules.

Pure (no I/O). ``guarded.py`` relays a ``text/event-stream`` one event at a time (cut from
its bytes by an :class:`EventBuffer`, which searches each byte once) and asks an
:class:`EventReader` (one per stream) what is in each. An event is scanned as its
consumer reads it:

* its data as an ``EventSource`` reads it: the ``data`` fields joined by newlines, then
  read as a JSON response body is (``agentfirewall.content.body_pieces``): each string of
  JSON data decoded (``body.event<N>.data.choices.0.delta.content``), so JSON escapes
  (``\\n``, ``\\t``, ``\\u00a0``, ``\\/``) hide nothing; other data as text
  (``body.event<N>.data``);
* its other lines as sent (``body.event<N>``): event names, ids, comments;
* across events: SDKs join the text one field carries event after event (OpenAI's
  ``choices.0.delta.content``, Anthropic's ``delta.text``), so the last :data:`WINDOW`
  characters of each field's text are kept and each new piece of it is scanned after
  them: a key or a phrase split over several events is found where the events join
  (``body.stream.data.choices.0.delta.content`` plus the offset in that field's whole
  text). A field's text is what a JSON reader keeps of each event (``json.loads``, as
  ``JSON.parse``: of a key given twice, at any depth, the last member); a member it drops
  is scanned in its event, never joined, so its text cannot break a key the consumer
  joins. A Go consumer's ``encoding/json`` matches a key to its struct's field in any case
  (:func:`folded`: ``content`` then ``Content`` one field; of members matching alike the
  last). And SDKs join deltas by the position their object says it stands at (an integer
  ``index``, ``output_index``...: OpenAI's choices and tool calls, Anthropic's content
  blocks), not where it stands (:func:`_kept`: OpenAI's choice 1 is ``choices.1`` in a
  chunk carrying it alone, Anthropic's block 1 ``data[1]``), while a consumer reading
  each chunk's ``choices[0]`` joins by path: each is a plausible joining, so both are
  followed, each in a JSON reader's and in Go's reading. Where another reading reads a
  field otherwise than a JSON reader by path, from that event on the field is followed in
  both, the other named by its own path, and a detection in either counts. Each event's
  JSON is parsed once for all (every member, each reading).
  Such a detection can be cut, never redacted (:meth:`EventReader.findings` says which).
  While a field's text may end in the beginning of a secret a later event would complete
  (``agentfirewall.content.unfinished``: a prefix such as ``AKIA`` or ``-----BEGIN ``
  with nothing after it that rules a match out yet), :attr:`EventReader.holding` is true
  and ``guarded.py`` holds the events back. A match still unfinished when its beginning
  leaves the window (a JWT longer than :data:`WINDOW` in deltas: no join would hold both
  its ends) counts as found, spanning events, at that event (fail closed): so no
  character after a secret's prefix goes out, whatever its length. Ordinary text settles
  a prefix within a few words (a space, a comma, a line break), far inside the window.

Bounded: at most :data:`FIELDS` fields are followed in each reading (the one seen least
recently is dropped first: one whose text may end in a secret's beginning then counts as
found, spanning events, as if its match left the window), each with at most
:data:`WINDOW` characters. A stream of
one-word deltas searches its window once per word, so the window is searched in two
reaches: the anchored detectors (``str.find`` on a rare character, fast) search the whole
window, the others only :data:`NEAR` characters either side of the join. A field that
repeats one value (an id, a model name) over a whole reach is not searched again there:
nothing new can appear.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from agentfirewall.content import (
    Detector,
    Finding,
    Scanner,
    body_pieces,
    redact_body,
    scan_pieces,
    value_pieces,
)
from agentfirewall.content.locate import Piece, shown
from agentfirewall.content.reading import Pairs
from agentfirewall.content.unfinished import openings

__all__ = [
    "FIELDS",
    "NEAR",
    "WINDOW",
    "EventBuffer",
    "EventReader",
    "event_data",
    "event_end",
    "folded",
    "redact_events",
]

#: Characters of each field's text kept, searched with each new piece after it by the
#: detectors found through an anchor (every secret detector, e-mail): a match up to 4 KiB
#: that spans events is found (a long JWT, a private key block); a secret's match still
#: unfinished past it counts as found.
WINDOW = 4096
#: Characters searched either side of a join by the others (injection markers, card
#: numbers, IBANs, phone numbers: no anchor, a regular expression run over all the text,
#: about 1 MB/s for the markers): a match up to 256 characters is found.
NEAR = 256
#: Fields followed at once.
FIELDS = 32

_LINE = re.compile(r"\r\n|\r|\n")
_LINE_KEPT = re.compile(r"(\r\n|\r|\n)")
#: A blank line (CRLF, LF or CR line ends, mixed): an event ends there.
_BLANK = re.compile(rb"\n\r?\n|\r\r")
_JOINED = "body.stream."
#: The strings of an event's data each reading keeps, by path: a JSON reader's (by key as
#: spelled), Go's ``encoding/json`` (by :func:`folded` key), and each of them by position
#: (an object that says where it stands named by it, as an SDK joins deltas: ``_kept``)
_Readings = tuple[list[Piece], list[Piece], list[Piece], list[Piece]]
#: How ``agentfirewall.content`` names a JSON key's own piece (``body.a.b#name``).
_NAME = "#name"


def event_end(data: bytes | bytearray, start: int = 0) -> int:
    """The index just past the first complete event (a blank line) whose blank line begins
    at `start` or after it, or -1."""
    match = _BLANK.search(data, start)
    return match.end() if match is not None else -1


class EventBuffer:
    """An event stream's bytes as they come, cut into events (each with its blank line).
    Each byte is searched for a blank line once (but the last two of each feed, which one
    may begin: a blank line is at most three bytes), so a stream that never ends an event
    costs what its length does, not its square; the caller bounds :func:`len`."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._searched = 0  # (no blank line begins before it)

    def __len__(self) -> int:
        """The bytes of the event not complete yet."""
        return len(self._data)

    def feed(self, data: bytes) -> list[bytes]:
        """The events `data` completes."""
        self._data += data
        events = []
        while (end := event_end(self._data, self._searched)) >= 0:
            events.append(bytes(self._data[:end]))
            del self._data[:end]  # (bytearray: from its front, without a copy)
            self._searched = 0
        self._searched = max(0, len(self._data) - 2)
        return events

    def finish(self) -> list[bytes]:
        """The stream ended: its last event, if it did not end it (it counts too)."""
        rest, self._data = bytes(self._data), bytearray()
        return [rest] if rest else []


def _data_value(line: str) -> str | None:
    """The value of a ``data`` field line (one leading space dropped); None for another."""
    name, _, value = line.partition(":")
    if name != "data":
        return None
    return value[1:] if value.startswith(" ") else value


def _read(text: str) -> tuple[list[str], str]:
    """(the data of each event in `text` as an ``EventSource`` reads it, its other lines)."""
    found: list[str] = []
    others: list[str] = []
    lines: list[str] = []
    carries = False
    for line in _LINE.split(text.removeprefix("\ufeff")):
        if not line:
            if carries:
                found.append("\n".join(lines))
            lines, carries = [], False
        elif (value := _data_value(line)) is not None:
            lines.append(value)
            carries = True
        else:
            others.append(line)
    if carries:  # (an unfinished last event counts too)
        found.append("\n".join(lines))
    return found, "\n".join(others)


def event_data(text: str) -> list[str]:
    """The data of each event in `text` as an ``EventSource`` reads it (its ``data``
    fields joined by newlines); an unfinished last event counts too."""
    return _read(text)[0]


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


def _data_pieces(data: str, location: str) -> tuple[list[Piece], _Readings]:
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


#: How each reading after a JSON reader's names a key (a name it cannot give: not its)
_NAMING: tuple[Callable[[str], str], ...] = (folded, str, folded)


@dataclass(slots=True)
class _Field:
    """One field's text across events."""

    tail: str = ""  # its last WINDOW characters
    last: str = ""  # the value it carried last
    run: int = 0  # characters of that value carried in a row
    total: int = 0  # characters carried in all
    unfinished: bool = False  # its text may end in the beginning of a secret


@dataclass(frozen=True, slots=True)
class _Join:
    """Where a field's new value follows its earlier text: scanned to find what spans it."""

    location: str  # body.stream.<field>
    text: str  # the earlier text (at most WINDOW) and the new (at most WINDOW)
    at: int  # where in `text` the new value begins
    offset: int  # where `text` begins in the field's whole text
    far: bool  # whether the anchored detectors search the whole of `text`
    near: bool  # whether every detector searches NEAR characters either side of `at`


class EventReader:
    """One event stream's fields and their windows (see the module docstring)."""

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        anchored = [d for d in scanner.detectors if d.anchors]
        self._anchored = Scanner(anchored) if anchored else None
        self._openings = openings(scanner)
        self._fields: dict[str, _Field] = {}  # the one seen least recently first
        #: Fields each other reading (:data:`_Readings`: Go's, then by position) reads
        #: otherwise than a JSON reader, by its path (of a path not there, its text is the
        #: JSON reader's field of that path)
        self._apart: tuple[dict[str, _Field], ...] = ({}, {}, {})

    @property
    def holding(self) -> bool:
        """Whether a field's text may end in the beginning of a secret that a later event
        would complete: the events since must not be relayed yet."""
        return any(f.unfinished for f in self._fields.values()) or any(
            f.unfinished for fields in self._apart for f in fields.values()
        )

    def findings(self, piece: bytes, number: int) -> tuple[list[Finding], list[Finding]]:
        """Every detection in `piece` (event `number`, perhaps a few events), and those of
        them that span events (found only with the text of earlier ones)."""
        text = piece.decode("utf-8", "surrogateescape")
        where = f"body.event{number}"
        datas, others = _read(text)
        pieces = [(where, others)]
        kept: list[_Readings] = []
        for data in datas:
            decoded, read = _data_pieces(data, f"{where}.data")
            pieces += decoded  # (every value is scanned, what each reading keeps joined)
            kept.append(read)
        carried, apart, placed = _by_reading(where, kept)
        joins: list[_Join] = []
        split: dict[tuple[str, int, int], Finding] = {}
        for fields, other, naming in zip(self._apart, apart, _NAMING, strict=True):
            self._part(fields, carried, other, naming, split)
        for key, values in carried.items():
            joins += self._carry(self._fields, key, values, split)
        seen = {(j.text, j.at, j.offset) for j in joins} if any(self._apart) else set()
        for fields, other in zip(self._apart, apart, strict=True):
            for key in [key for key in other if key in fields]:  # (else a JSON reader's text)
                for join in self._carry(fields, key, other[key], split):
                    if (join.text, join.at, join.offset) not in seen:  # (a join alike: once)
                        seen.add((join.text, join.at, join.offset))
                        joins.append(join)
        # a join's piece is named by its index, a NUL, then its field (the name's last part
        # is what the generic secret detector reads): two joins of one field differ
        near = [(i, max(0, j.at - NEAR)) for i, j in enumerate(joins) if j.near]
        pieces += [(f"{i}\x00{joins[i].location}", joins[i].text[start : joins[i].at + NEAR])
                   for i, start in near]  # fmt: skip
        found = scan_pieces(self.scanner, pieces)
        starts = dict(near)
        spanning = [(f, starts[int(f.location.partition("\x00")[0])])
                    for f in found if "\x00" in f.location]  # fmt: skip
        far = [(f"{i}\x00{j.location}", j.text) for i, j in enumerate(joins) if j.far]
        if far and self._anchored is not None:
            spanning += [(f, 0) for f in scan_pieces(self._anchored, far)]
        own = [f for f in found if "\x00" not in f.location]
        alone = {(f.detector, name, f.offset, f.length) for f in own
                 for at in (f.location, placed.get(f.location, f.location))
                 for name in (at, folded(at))}  # fmt: skip
        for finding, start in spanning:
            join = joins[int(finding.location.partition("\x00")[0])]
            begin, end = start + finding.offset, start + finding.offset + finding.length
            if finding.detector == "generic_secret" and begin == 0 and end == len(join.text):
                continue  # a secret-named field's whole value: said of each value alone
            # one that spans the join, or that begins just after it but is only found with
            # what comes before (a secret's value after the join, the name saying so before)
            inside = (finding.detector, f"{where}.{join.location[len(_JOINED) :]}",
                      begin - join.at, finding.length)  # fmt: skip
            after = begin < join.at + NEAR and inside not in alone
            if join.at < end and (begin < join.at or after):
                found_at = (finding.detector, join.offset + begin, finding.length)
                split.setdefault(found_at, replace(finding, location=join.location,
                                                   offset=join.offset + begin))  # fmt: skip
        return own + list(split.values()), list(split.values())

    def _part(
        self,
        fields: dict[str, _Field],
        carried: dict[str, list[str]],
        other: dict[str, list[str]],
        naming: Callable[[str], str],
        split: dict[tuple[str, int, int], Finding],
    ) -> None:
        """Follow apart from now on, in `fields`, as another reading (`other`) reads it,
        each field that it reads otherwise in this event than a JSON reader does (Go's:
        another spelling of its key, a key given twice in two cases; by position: a choice
        or a content block other than the one at its path): from the text both read so
        far."""
        if other is carried or other == carried:  # (the common case: keys spelled as they
            return  # fold, none twice, every object where it says it stands)
        for key in dict.fromkeys([*other, *carried]):
            if key in fields or other.get(key) == carried.get(key):
                continue
            if key in other or naming(key) == key:  # (its field as that reading names it)
                field = self._fields.get(key)
                self._follow(fields, key, _Field() if field is None else replace(field), split)

    def _carry(
        self,
        fields: dict[str, _Field],
        key: str,
        values: list[str],
        split: dict[tuple[str, int, int], Finding],
    ) -> list[_Join]:
        """Add `values` to field `key`'s text; the joins to scan. A secret's match still
        unfinished where the field's text leaves the window goes into `split`."""
        field = fields.pop(key, None) or _Field()
        self._follow(fields, key, field, split)
        # (settled before these values: only a match beginning in them, or in the last
        # characters before them, may be unfinished)
        text = field.tail + "".join(values)
        start = 0 if field.unfinished else max(0, len(field.tail) - self._openings.longest + 1)
        leaves = len(text) - WINDOW  # (what begins before this leaves the window)
        if leaves > start and (opened := self._openings.opened(text, start, leaves)):
            # a match still unfinished after a whole window: no join would find the event
            # completing it, so it counts as found, spanning events (fail closed)
            _unfinished(split, key, field.total - len(field.tail), text, *opened)
        joins = []
        for value in values:
            same = value == field.last
            # a value repeated over a whole window: any detection spanning this join spans
            # an earlier one too, already searched
            far = not (same and field.run >= WINDOW + len(value))
            near = not (same and field.run >= NEAR + len(value))
            if field.tail and (far or near):
                before = field.tail
                joins.append(_Join(_JOINED + key, before + value[:WINDOW], len(before),
                                   field.total - len(before), far, near))  # fmt: skip
            field.tail = (field.tail + value[-WINDOW:])[-WINDOW:]
            field.run = field.run + len(value) if same else len(value)
            field.last = value
            field.total += len(value)
        field.unfinished = self._openings.unfinished(text, max(start, leaves))
        return joins

    def _follow(
        self,
        fields: dict[str, _Field],
        key: str,
        field: _Field,
        split: dict[tuple[str, int, int], Finding],
    ) -> None:
        """`field` as `fields`' `key`, the one seen last; the one seen least recently dropped
        past :data:`FIELDS`: if its text may end in a secret's beginning, that counts as
        found, spanning events (no later event can be joined to it: fail closed)."""
        fields[key] = field
        if len(fields) > FIELDS:
            key = next(iter(fields))
            field = fields.pop(key)
            if field.unfinished and (opened := self._openings.opened(field.tail)):
                _unfinished(split, key, field.total - len(field.tail), field.tail, *opened)


def _by_reading(
    where: str, kept: list[_Readings]
) -> tuple[dict[str, list[str]], list[dict[str, list[str]]], dict[str, str]]:
    """The strings of event `where` each reading keeps (`kept`: of each of its data), by
    their path in the event, none empty: (a JSON reader's; Go's, and both by position; the
    path by position of a string that has another)."""
    # (by position, the names a JSON reader and Go's give, but where an object moved)
    moved = any(read[2] is not read[0] or read[3] is not read[1] for read in kept)
    readings: list[dict[str, list[str]]] = []
    for reading in range(4 if moved else 2):
        readings.append({})
        for read in kept:
            for location, value in read[reading]:
                if value:
                    readings[-1].setdefault(location[len(where) + 1 :], []).append(value)
    carried, *apart = readings if moved else [*readings, *readings]
    placed = {name: at for read in kept if moved
              for (name, _), (at, _) in zip(read[0], read[2], strict=False)
              if name != at}  # fmt: skip
    return carried, apart, placed


def _unfinished(
    split: dict[tuple[str, int, int], Finding],
    key: str,
    offset: int,
    text: str,
    detector: Detector,
    at: int,
) -> None:
    """A match of `detector` from `at` to the end of `text` (field `key`'s text from
    `offset`), still unfinished, into `split`: found, spanning events."""
    where, length = offset + at, len(text) - at
    found = Finding(detector.name, detector.kind, detector.confidence, _JOINED + key, where, length)
    split.setdefault((detector.name, where, length), found)


def redact_events(scanner: Scanner, piece: bytes, names: frozenset[str]) -> bytes:
    """`piece` with what the detectors `names` find replaced: in each event's data as its
    consumer reads it (each string of JSON data, re-serialized compact on one ``data``
    line; other data as text across its lines), then in the text as sent."""
    text = piece.decode("utf-8", "surrogateescape")
    bom = "\ufeff" if text.startswith("\ufeff") else ""  # (an EventSource skips it)
    parts = _LINE_KEPT.split(text[len(bom) :])
    lines: list[str | None] = list(parts[0::2])
    ends = [*parts[1::2], ""]
    event: list[int] = []  # the indexes of the current event's data lines

    def fix() -> None:
        if not event:
            return
        data = "\n".join([_data_value(lines[i] or "") or "" for i in event])
        # (data that is not JSON is redacted as text)
        fixed, count = redact_body(scanner, data.encode("utf-8", "surrogateescape"),
                                   "application/json", names)  # fmt: skip
        if count:
            new = fixed.decode("utf-8", "surrogateescape").split("\n")
            lines[event[0]] = "\n".join(["data: " + part for part in new])
            for i in event[1:]:
                lines[i] = None

    for index, line in enumerate(lines):
        if not line:
            fix()
            event = []
        elif _data_value(line) is not None:
            event.append(index)
    fix()
    rebuilt = bom + "".join([line + end for line, end in zip(lines, ends, strict=True)
                       if line is not None])  # fmt: skip
    out = rebuilt.encode("utf-8", "surrogateescape")
    return redact_body(scanner, out, "text/plain", names)[0]
