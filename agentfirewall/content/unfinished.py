"""Whether a text may end in the beginning of a secret that more text would complete.

An event stream is relayed one event at a time, and its consumer joins the text a field
carries event after event (``agentfirewall_proxy/eventscan.py``): a key split over two
events is only found when the second arrives. So an event whose field text ends in what
may be the beginning of a secret is held back until what follows settles it
(``agentfirewall_proxy/guarded.py``); :meth:`Openings.unfinished` says when, and
:meth:`Openings.opened` which detector and where its match begins (one still unfinished
when it leaves the stream's window cuts the stream: ``eventscan.py``).

A match of a detector found through an anchor (every secret detector) begins with one of
its prefixes (``AKIA``, ``ghp_``, ``-----BEGIN ``, ``eyJ``; a generic secret with the ``:``
or ``=`` after a name that says secret). A text is *unfinished* when such a prefix is in
it and nothing after it rules a match out yet: every character after it is one a match of
that detector may hold (read from the parsed expression), fewer than the longest match
follow it, and, where a match must hold a bounded lead (a private key's header) and the text
holds more than that lead, the expression matches there. So the agent is relayed at most
a detector's prefix less its last character (``AKI``, ``-----BEGIN``) of a secret a later
event completes, never a character after it. Not covered: detectors whose matches start
before their anchor (e-mail) or that have no anchor (injection markers, card numbers):
the response side reads no personal data, and an injection's first words say nothing.

Bounded: the new characters alone are searched when the text before them was settled; each
character after a prefix is read once per detector; a text with more than :data:`_TRIED`
beginnings of one prefix in it still open to a match (4 KiB of ``:``) counts as unfinished
without trying the rest.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from agentfirewall.content.detectors import Detector
from agentfirewall.content.scanner import Scanner

__all__ = ["Openings", "openings"]

#: A stretch of text this long or shorter is first searched for any prefix at once (one
#: expression: fast on a few characters, slower than a search per prefix on many).
_QUICK = 256
#: Beginnings of one prefix tried in a text (each a context check or a match, bounded):
#: past this many, the text counts as unfinished (text made of ``:`` costs no more).
_TRIED = 64
#: Larger classes than this are read as "any character".
_CLASS_LIMIT = 512
_ZERO_WIDTH = (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT)


@dataclass(frozen=True, slots=True)
class _Opening:
    """How a match of one detector begins, and how far it may reach."""

    detector: Detector
    needles: tuple[str, ...]  # its prefixes (an empty one: the anchor character)
    width: int  # the longest a match is (sre_parse.MAXWIDTH: no bound)
    run: re.Pattern[str] | None  # a run of the characters a match may hold (None: any)
    lead: int | None  # what every match holds first is at most this long (None: no bound)


class Openings:
    """The anchored detectors of a set, read for :meth:`unfinished`."""

    def __init__(self, detectors: Iterable[Detector]) -> None:
        self._openings = tuple(
            _opening(detector, char, prefixes)
            for detector in detectors
            for char, offset, prefixes in detector.anchors
            if offset >= 0
        )
        needles = sorted({n for o in self._openings for n in o.needles}, key=len, reverse=True)
        #: Any prefix (None: no anchored detector)
        self._needles = re.compile("|".join(map(re.escape, needles))) if needles else None
        #: The longest prefix: one that `text` completes may begin this much before it.
        self.longest = max(map(len, needles), default=0)

    def unfinished(self, text: str, start: int = 0) -> bool:
        """Whether `text` may end in the beginning of a match (the module docstring) that
        begins at `start` or after it."""
        return self.opened(text, start) is not None

    def opened(
        self, text: str, start: int = 0, stop: int | None = None
    ) -> tuple[Detector, int] | None:
        """A detector a match of which may begin at `start` or after it (before `stop`) and
        be unfinished at the end of `text`, and where it begins; None if there is none."""
        end = len(text)
        if self._needles is None or (
            end - start <= _QUICK and not self._needles.search(text, start)
        ):
            return None  # (the common case: a few characters more, no prefix in them)
        for opening in self._openings:
            low = max(start, end - opening.width + 1)  # (a match that fits in it is settled)
            run = opening.run
            for needle in opening.needles:
                # from the last one back: a character no match holds after one is after every
                # earlier one too; `held` on: only characters a match may hold
                high = end if stop is None else min(end, stop + len(needle) - 1)
                at, held, tried = text.rfind(needle, low, high), end, 0
                while at >= 0:
                    if run is not None:
                        if run.fullmatch(text, at, held) is None:
                            break
                        held = at
                    tried += 1
                    if tried > _TRIED or _open(opening, text, at):
                        return opening.detector, at  # (so many beginnings: any may be one)
                    at = text.rfind(needle, low, at + len(needle) - 1)
        return None


def _open(opening: _Opening, text: str, start: int) -> bool:
    """Whether more text after `text` may still make a match that begins at `start`."""
    detector = opening.detector
    if detector.context is not None:  # (what comes before is settled)
        before = max(0, start - detector.back)
        if detector.words:  # (a cheap test first, as the scanner's: a context word is there)
            window = text[before:start].lower()
            if not any(word in window for word in detector.words):
                return False
        if detector.context.search(text, before, start) is None:
            return False
    lead = opening.lead
    return (
        lead is None or len(text) - start <= lead or detector.pattern.match(text, start) is not None
    )


@functools.lru_cache(maxsize=16)
def openings(scanner: Scanner) -> Openings:
    """The :class:`Openings` of a scanner's detectors (built once per scanner)."""
    return Openings(scanner.detectors)


def _opening(detector: Detector, char: str, prefixes: tuple[str, ...]) -> _Opening:
    parsed = sre_parse.parse(detector.pattern.pattern, detector.pattern.flags)
    # (a case-insensitive expression may match characters no class names: the Kelvin sign)
    chars = None if detector.pattern.flags & re.IGNORECASE else _chars(list(parsed))
    return _Opening(
        detector,
        tuple(dict.fromkeys(prefix or char for prefix in prefixes)),
        parsed.getwidth()[1],
        None if chars is None else re.compile(f"[{''.join(map(re.escape, sorted(chars)))}]*"),
        _lead(parsed),
    )


def _lead(parsed: Any) -> int | None:
    """How long the part every match begins with may be, such that the rest of the
    expression may match nothing and asserts nothing (so a text longer than it that
    the expression does not match never will); None when that part has no bound."""
    items = list(parsed)
    for split in range(len(items) + 1):
        rest = sre_parse.SubPattern(parsed.state, items[split:])
        if rest.getwidth()[0] == 0 and not _asserts(items[split:]):
            width: int = sre_parse.SubPattern(parsed.state, items[:split]).getwidth()[1]
            return width if width < sre_parse.MAXWIDTH else None
    return None


def _asserts(items: list[tuple[Any, Any]]) -> bool:
    """Whether a sequence of parsed items holds a zero-width assertion."""
    for op, av in items:
        if op in _ZERO_WIDTH:
            return True
        if op is sre_c.SUBPATTERN and _asserts(list(av[-1])):
            return True
        if op is sre_c.BRANCH and any(_asserts(list(b)) for b in av[1]):
            return True
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) and _asserts(list(av[2])):
            return True
    return False


def _chars(items: list[tuple[Any, Any]]) -> set[str] | None:
    """Every character a match of the parsed items may hold (None: any, or too many)."""
    found: set[str] = set()
    for op, av in items:
        if op in _ZERO_WIDTH:
            continue
        if op is sre_c.LITERAL:
            more: set[str] | None = {chr(av)}
        elif op is sre_c.IN:
            more = _class(av)
        elif op is sre_c.SUBPATTERN:
            more = _chars(list(av[-1]))
        elif op is sre_c.BRANCH:
            parts = [_chars(list(b)) for b in av[1]]
            more = None if None in parts else set().union(*parts)  # type: ignore[arg-type]
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            more = _chars(list(av[2]))
        elif op is sre_c.GROUPREF:  # (what a group matched: its characters are counted)
            more = set()
        else:  # any character, a negated literal...
            return None
        if more is None:
            return None
        found |= more
    return found


def _class(items: list[tuple[Any, Any]]) -> set[str] | None:
    found: set[str] = set()
    for op, av in items:
        if op is sre_c.LITERAL:
            found.add(chr(av))
        elif op is sre_c.RANGE and av[1] - av[0] < _CLASS_LIMIT:
            found.update(chr(c) for c in range(av[0], av[1] + 1))
        else:  # a negation, a category (\d, \w: Unicode), a large range
            return None
    return found
