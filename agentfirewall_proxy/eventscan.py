"""Server-sent events scanned as their consumer reads them, for the response content rules:
each event alone, and each field's text joined across events.

Pure (no I/O). ``guarded.py`` relays a ``text/event-stream`` one event at a time (cut by
``eventwire.EventBuffer``) and asks an :class:`EventReader` (one per stream) what is in
each. An event is scanned as its consumer reads it:

* its data as an ``EventSource`` reads it (``eventwire.read_events``: the ``data`` fields
  joined by newlines), then read as a JSON response body is (``eventreadings.py``): each
  string of JSON data decoded (``body.event<N>.data.choices.0.delta.content``), so JSON
  escapes (``\\n``, ``\\t``, ``\\u00a0``, ``\\/``) hide nothing; other data as text
  (``body.event<N>.data``);
* its other lines as sent (``body.event<N>``): event names, ids, comments;
* across events: SDKs join the text one field carries event after event (OpenAI's
  ``choices.0.delta.content``, Anthropic's ``delta.text``), so the last :data:`WINDOW`
  characters of each field's text are kept and each new piece of it is scanned after
  them: a key or a phrase split over several events is found where the events join
  (``body.stream.data.choices.0.delta.content`` plus the offset in that field's whole
  text). A field's text is what a consumer keeps of each event: each reading of
  ``eventreadings.Readings`` (a JSON reader's, Go's ``encoding/json``'s, each by path and
  by the position an object says it stands at) is a plausible joining. Fields are
  followed as a JSON reader reads them by path; where another reading reads a field
  otherwise, from that event on the field is followed in both, the other named by its
  own path, and a detection in either counts.
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

from collections.abc import Callable
from dataclasses import dataclass, replace

from agentfirewall.content import Detector, Finding, Scanner, scan_pieces
from agentfirewall.content.unfinished import openings
from agentfirewall_proxy.eventreadings import Readings, data_pieces, folded
from agentfirewall_proxy.eventwire import read_events

__all__ = ["FIELDS", "NEAR", "WINDOW", "EventReader"]

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

_JOINED = "body.stream."

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
        #: Fields each other reading (:data:`Readings`: Go's, then by position) reads
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
        datas, others = read_events(text)
        pieces = [(where, others)]
        kept: list[Readings] = []
        for data in datas:
            decoded, read = data_pieces(data, f"{where}.data")
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
    where: str, kept: list[Readings]
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
