"""Run a set of detectors over text: anchors found with ``str.find``, patterns run there.

A :class:`Scanner` is built once per detector set (the gateway builds one per snapshot)
and is then pure and thread-safe. :meth:`Scanner.scan` returns :class:`Hit` s sorted by
position; a generic-secret hit inside a named secret's span is dropped (the named one
says more).

The work stays linear in the text whatever the text (the gateway scans on its event
loop): where the candidates a Python step is taken for (anchors, prefixes, shapes) are
more than 1% of the text — decided from a sample first, then again every
:data:`_CHECK_EVERY` candidates — the rest of the text is scanned by prefixes, context
words or the expression itself over the text instead. A detector without anchors (the
injection markers) is run only where one of the literal texts its matches begin with is
(derived from the parsed expression: ``ignore``, ``<|im_sta``...; in ASCII text, where
``lower()`` folds as ``re.IGNORECASE`` does), or over the whole text where those are
common.

A secret joined to the word before it by a character its own random part may hold
(``x-amz-meta-sk-proj-…``, ``meta_github_pat_…``, ``x-xoxb-…``, ``id-eyJ…``: there the
detectors start no match, where it may be the tail of a longer token) or by an escaped
character (``meta%2Dghp_…``, ``meta\\u002dAKIA…``) is found by ``scan(text, joined=True)``
(policy detection and redaction: ``locate``): the text is read a second time with those
joins as spaces (:func:`unglued`, the same length: each hit there is the token alone, at
its place in the text), by its secret detectors alone, only when such a join is in it and
the first reading refused a secret's prefix after a character a join ends with or found a
secret (which may run on over a join: ``sk-…-xoxb-…``). Each reading is scanned as above:
twice the work at most; a text without a refused prefix costs nothing more.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from agentfirewall.content.detectors import PII, SECRETS, Detector

__all__ = ["Hit", "Scanner", "default_scanner", "unglued"]

#: Character classes for shapes: digits read as ``0``, capital letters as ``A``.
_CLASSES = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0" * 10 + b"A" * 26)
#: How much of a text is sampled to decide whether an anchor character is common in it.
_SAMPLE = 65536
#: The rest of a name after a context word, up to where ``:`` or ``=`` would follow.
_NAME_TAIL = re.compile(r"[A-Za-z0-9_-]{0,20}[\"']?[ \t]{0,3}")
_DIGIT_RUN = re.compile(rb"0*")  # in the character classes: a run of digits
#: Candidates (anchors, shapes) tried one by one between two density checks: more than 1%
#: of the text since the last check and the rest is scanned without a Python step each.
_CHECK_EVERY = 256
#: What every match of a secret detector anchored on a prefix begins with.
_PREFIXES = "|".join(
    sorted({re.escape(p) for d in SECRETS for _, _, ps in d.anchors for p in ps if p})
)
#: What joins a secret's prefix to the word before it where the detectors start no token: a
#: character the token's random part may hold (``x-amz-meta-sk-proj-…``, ``meta_github_pat_…``,
#: ``id-eyJ…``; they start one after the others, ``x-ghp_…``, ``token_xoxb-…``), and how it
#: reads apart.
_REFUSED = tuple(
    (join, " " + join[1:])
    for join in ("-sk-", "_sk-", "-eyJ", "_eyJ", "-xox", "-xapp-", "_github_pat_")
)
#: An escaped character before any prefix (``meta%2Dghp_…``, ``meta\u002dxoxb-…``), and
#: its spaces (each expression led by a literal: searched at ``str.find`` speeds).
_ESCAPED = (
    (re.compile(rf"%[0-9A-Fa-f]{{2}}(?={_PREFIXES})"), " " * 3),
    (re.compile(rf"\\u[0-9A-Fa-f]{{4}}(?={_PREFIXES})"), " " * 6),
)
#: The characters a join (:data:`_REFUSED`, :data:`_ESCAPED`) ends with: a prefix after
#: one of them that the detectors refuse may be a secret joined to a word.
_JOIN_ENDS = frozenset("-_0123456789ABCDEFabcdef")


def unglued(text: str) -> str:
    """`text` with what joins a secret's prefix to the word before it (:data:`_REFUSED`,
    :data:`_ESCAPED`) read as spaces, the same length: each secret in it stands alone
    there, where the detectors find it (``x-amz-meta sk-proj-…``; which they do not start
    in a word, where it may be the tail of a longer token: scanning this reading too finds
    both). `text` itself when it holds no such join. Replacements of constant texts only:
    no Python step per join."""
    apart = text
    for escaped, spaces in _ESCAPED:
        apart = escaped.sub(spaces, apart)
    for join, alone in _REFUSED:
        apart = apart.replace(join, alone)
    return apart


@dataclass(frozen=True, slots=True)
class Hit:
    """A detector fired on ``text[start:end]``."""

    detector: str
    kind: str
    confidence: float
    start: int
    end: int


class Scanner:
    """A compiled set of detectors (see the module docstring)."""

    def __init__(self, detectors: Iterable[Detector]) -> None:
        self.detectors = tuple(detectors)
        self.names = frozenset(d.name for d in self.detectors)
        #: The kinds of its detectors (``secret``, ``pii``, ``injection``), each once.
        self.kinds = tuple(dict.fromkeys(d.kind for d in self.detectors))
        table: dict[str, list[tuple[int, tuple[str, ...], Detector]]] = {}
        for detector in self.detectors:
            for char, offset, prefixes in detector.anchors:
                table.setdefault(char, []).append((offset, prefixes, detector))
        self._anchors = tuple((char, tuple(entries)) for char, entries in table.items())
        self._everywhere = tuple(d for d in self.detectors if not d.anchors)
        self._shaped = any(d.shapes for d in self._everywhere)
        self._worded = tuple(d for d in self.detectors if d.words)
        self._leads = {d.name: _leads(d.pattern) for d in self._everywhere if not d.shapes}
        markers = tuple(d for d in self.detectors if d.kind == "injection")
        #: The injection markers alone (``locate`` runs them over normalised readings too):
        #: None without any.
        self.markers: Scanner | None = None
        if markers:
            self.markers = self if len(markers) == len(self.detectors) else Scanner(markers)
        joinable = tuple(d for d in self.detectors if d.kind == "secret" and any(
            p for _, _, prefixes in d.anchors for p in prefixes))  # fmt: skip
        #: The secret detectors that start at a prefix (what :func:`unglued` parts from the
        #: word before it): they read the unglued reading. None without any.
        self._joinable: Scanner | None = None
        if joinable:
            self._joinable = self if len(joinable) == len(self.detectors) else Scanner(joinable)

    def scan(self, text: str, *, joined: bool = False) -> list[Hit]:
        """Every detection in `text`, by position. `joined`: and every secret joined to the
        word before it (module docstring), the token alone."""
        hits, glued = self._scan(text)
        if not joined or self._joinable is None:
            return hits
        # (a join is looked for where a prefix was refused after a join character, or a
        # secret found may have run on over one: `sk-…-xoxb-…`)
        names = self._joinable.names
        if glued or any(hit.detector in names for hit in hits):
            apart = unglued(text)
            if apart is not text:
                more = _pieces_left(hits, self._joinable._scan(apart)[0])
                if more:
                    hits = _resolve(hits + more)
        return hits

    def _scan(self, text: str) -> tuple[list[Hit], bool]:
        """(the hits, whether a secret's prefix may be joined to the word before it: one was
        refused after a join character, or not each was tried)."""
        hits: list[Hit] = []
        glued = False
        dense = self._dense(text)
        crowded = min(len(text), _SAMPLE) // 100 if len(text) >= 4096 else 0
        for char, entries in self._anchors:
            if dense:
                entries = tuple(e for e in entries if e[2] not in dense)
            if not entries:
                continue
            if crowded and text.count(char, 0, _SAMPLE) > crowded:
                glued |= self._crowded(entries, text, 0, hits)
                continue
            pos = text.find(char)
            visits, mark = 0, pos
            while pos >= 0:
                visits += 1
                if not visits % _CHECK_EVERY:  # crowded from here on: switch strategy
                    if pos - mark < _CHECK_EVERY * 100:
                        glued |= self._crowded(entries, text, pos, hits)
                        break
                    mark = pos
                after = pos + 1
                for offset, prefixes, detector in entries:
                    start = pos - offset
                    if offset >= 0 and (start < 0 or not text.startswith(prefixes, start)):
                        continue  # the common case, decided without a call
                    end = self._try(detector, text, pos, offset, prefixes, hits)
                    if end > after:
                        after = end
                    elif end < 0:
                        glued = True
                pos = text.find(char, after)
        digits = -1
        classes = b""
        lowered = ""
        for detector in self._everywhere:
            if detector.min_digits:  # a cheap gate: too few digits for this kind at all
                if digits < 0:
                    digits = sum(text.count(d) for d in "0123456789")
                if digits < detector.min_digits:
                    continue
            if detector.shapes:
                if not classes:  # one byte per character: offsets stay the same
                    classes = text.encode("ascii", "replace").translate(_CLASSES)
                self._shape_scan(detector, text, classes, hits)
                continue
            leads = self._leads.get(detector.name)
            if leads is not None and text.isascii():  # (then lower() is what re.I folds)
                folded = detector.pattern.flags & re.I
                if folded and not lowered:
                    lowered = text.lower()
                self._lead_scan(detector, leads, text, lowered if folded else text, hits)
                continue
            for match in detector.pattern.finditer(text):
                self._add(detector, match, hits)
        if dense:
            self._word_scan(dense, text, hits)
        if len(hits) > 1:
            hits = _resolve(hits)
        return hits, glued

    def _shape_scan(self, detector: Detector, text: str, classes: bytes, hits: list[Hit]) -> None:
        """Run `detector` where one of its shapes starts (at the start of a digit run)."""
        for shape in detector.shapes:
            pos = classes.find(shape)
            visits, mark = 0, pos
            while pos >= 0:
                if shape[0] == 48:  # a digit: the match starts where the run of digits does
                    while pos > 0 and classes[pos - 1] == 48:
                        pos -= 1
                visits += 1
                if not visits % _CHECK_EVERY:  # shapes everywhere: the expression runs on
                    if pos - mark < _CHECK_EVERY * 100:
                        self._search(detector, text, pos, hits)
                        break
                    mark = pos
                match = detector.pattern.match(text, pos)
                end = pos + len(shape)
                added = self._add(detector, match, hits) if match is not None else 0
                if added:
                    end = max(end, added)
                elif shape[0] == 48:  # past this run of digits
                    end = _DIGIT_RUN.match(classes, end).end()  # type: ignore[union-attr]
                pos = classes.find(shape, end)

    def _lead_scan(
        self, detector: Detector, leads: _Leads, text: str, lowered: str, hits: list[Hit]
    ) -> None:
        """`detector`'s matches, tried only where one of the texts every match begins with
        is (``finditer``'s matches: left to right, none overlapping; where the texts are
        common, ``finditer`` itself)."""
        words, at_start = leads
        starts = [0] if at_start else []
        most = len(text) // 16 + _CHECK_EVERY  # (a Python step each: ~16 finditer steps)
        for word in words:
            pos = lowered.find(word)
            while pos >= 0:
                starts.append(pos)
                if len(starts) > most:
                    for match in detector.pattern.finditer(text):
                        self._add(detector, match, hits)
                    return
                pos = lowered.find(word, pos + 1)
        starts.sort()
        after = 0
        pattern = detector.pattern
        for pos in starts:
            if pos >= after and (found := pattern.match(text, pos)) is not None:
                after = max(found.end(), pos + 1)
                self._add(detector, found, hits)

    def _dense(self, text: str) -> tuple[Detector, ...]:
        """The worded detectors whose anchor characters are more than 1% of `text` (of its
        first 64 KiB)."""
        if not self._worded or len(text) < 4096:
            return ()
        size = min(len(text), _SAMPLE)
        return tuple(
            d
            for d in self._worded
            if sum(text.count(a[0], 0, _SAMPLE) for a in d.anchors) * 100 > size
        )

    def _crowded(
        self,
        entries: tuple[tuple[int, tuple[str, ...], Detector], ...],
        text: str,
        start: int,
        hits: list[Hit],
    ) -> bool:
        """Scan from `start` the entries of an anchor that is common there (more than 1% of
        the text): a detector with prefixes by finding the prefixes themselves, a generic
        secret by its context words, any other with its expression over the text. Never a
        Python step per anchor. Whether a prefix may be joined (:meth:`_prefix_scan`)."""
        glued = False
        for offset, prefixes, detector in entries:
            if offset >= 0 and all(prefixes):
                for prefix in prefixes:
                    glued |= self._prefix_scan(
                        detector, offset, prefix, text, max(0, start - offset), hits
                    )
            elif detector.words:
                self._word_scan((detector,), text, hits, max(0, start - detector.back))
            else:
                self._search(detector, text, max(0, start - detector.back), hits)
        return glued

    def _prefix_scan(
        self, detector: Detector, offset: int, prefix: str, text: str, start: int, hits: list[Hit]
    ) -> bool:
        """`detector` tried where `prefix` is, from `start` (if the prefix itself is common
        there, the expression runs over the rest of the text instead). Whether a prefix may
        be joined: one was refused after a join character, or the expression ran on."""
        glued = False
        pos = text.find(prefix, start)
        visits, mark = 0, pos
        while pos >= 0:
            visits += 1
            if not visits % _CHECK_EVERY:
                if pos - mark < _CHECK_EVERY * 100:
                    self._search(detector, text, pos, hits)
                    return True
                mark = pos
            end = self._try(detector, text, pos + offset, offset, (prefix,), hits)
            glued |= end < 0
            pos = text.find(prefix, max(pos + 1, end))
        return glued

    def _search(self, detector: Detector, text: str, start: int, hits: list[Hit]) -> None:
        """`detector`'s expression over the text from `start`: Python steps only where it
        matches (a rejected match: the next one may start inside it)."""
        pattern = detector.pattern
        match = pattern.search(text, start)
        while match is not None:
            at = match.start()
            end = self._add(detector, match, hits) if self._context(detector, text, at) else 0
            match = pattern.search(text, max(end, at + 1))

    def _word_scan(
        self, dense: tuple[Detector, ...], text: str, hits: list[Hit], start: int = 0
    ) -> None:
        """Context words first: each tried at the ``:`` or ``=`` after the name it is in."""
        lowered = text.lower()
        if len(lowered) != len(text):  # a few non-ASCII letters lower to two characters
            lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        for detector in dense:
            chars = tuple(a[0] for a in detector.anchors)
            for word in detector.words:
                pos = lowered.find(word, start)
                while pos >= 0:
                    at = _NAME_TAIL.match(text, pos + len(word)).end()  # type: ignore[union-attr]
                    end = 0
                    if text.startswith(chars, at):
                        end = self._try(detector, text, at, 0, ("",), hits, rejected=True)
                    pos = lowered.find(word, max(pos + 1, end))

    def _try(
        self,
        detector: Detector,
        text: str,
        pos: int,
        offset: int,
        prefixes: tuple[str, ...],
        hits: list[Hit],
        rejected: bool = False,
    ) -> int:
        """Run `detector` at the anchor found at `pos`; the end of its hit, else 0 (-1: a
        secret's prefix is there, after a character that may join it to a word).

        `rejected`: a match in its context that fails the check also gives its end, so the
        context words inside its value are not tried again (text made of ``token=token=``
        costs one check per value, not one per word; a name inside another name's value,
        with no separator between them, is not a name then)."""
        if offset < 0:  # the match starts where the run of `before` characters does
            start, floor, chars = pos, max(0, pos - detector.back), detector.before
            while start > floor and text[start - 1] in chars:
                start -= 1
            if start == floor and start and text[start - 1] in chars:
                return 0  # a run longer than `back`: no match starts inside it
            near = detector.pattern.match(text, start)
            if near is None or near.end() <= pos:
                return 0
            return self._add(detector, near, hits)
        start = pos - offset
        if start < 0 or not text.startswith(prefixes, start):
            return 0
        match = detector.pattern.match(text, start)
        if match is None:
            joined = start and prefixes[0] and text[start - 1] in _JOIN_ENDS
            return -1 if joined and detector.kind == "secret" else 0
        if detector.context is not None and not self._context(detector, text, start):
            return 0
        return self._add(detector, match, hits) or (match.end() if rejected else 0)

    @staticmethod
    def _context(detector: Detector, text: str, start: int) -> bool:
        """Whether the detector's context (if any) matches just before `start`."""
        context = detector.context
        if context is None:
            return True
        before = max(0, start - detector.back)
        if detector.words:  # cheap test first: one of the context words is there
            window = text[before:start].lower()
            if not any(word in window for word in detector.words):
                return False
        return context.search(text, before, start) is not None

    @staticmethod
    def _add(detector: Detector, match: re.Match[str], hits: list[Hit]) -> int:
        """Record `match` if it passes the detector's check; where the scan goes on (0: no
        hit)."""
        found = match.group(detector.group)
        if detector.check is not None and not detector.check(found):
            return 0
        start, end = match.span(detector.group)
        after = match.end()
        if detector.extend is not None:  # (after a hit only: the scan goes on past it)
            end = after = max(after, detector.extend.match(match.string, end).end())  # type: ignore[union-attr]
        hits.append(Hit(detector.name, detector.kind, detector.confidence, start, end))
        return after


def _pieces_left(found: list[Hit], apart: list[Hit]) -> list[Hit]:
    """The hits of `apart` (sorted) that are not a piece of a hit of the same detector in
    `found` (sorted): a token whose random part holds a join (``sk-…-sk-…``) is found whole
    as written, and its pieces are no other token."""
    reach: dict[str, tuple[list[int], list[int]]] = {}  # detector: starts, furthest end so far
    for hit in found:
        starts, ends = reach.setdefault(hit.detector, ([], []))
        starts.append(hit.start)
        ends.append(max(hit.end, ends[-1]) if ends else hit.end)
    left = []
    for hit in apart:
        starts, ends = reach.get(hit.detector, ([], []))
        at = bisect.bisect_right(starts, hit.start) - 1
        if at < 0 or ends[at] < hit.end:
            left.append(hit)
    return left


def _resolve(hits: list[Hit]) -> list[Hit]:
    """Sorted, without duplicates, and without a generic hit that overlaps a named one."""
    unique = sorted(set(hits), key=lambda h: (h.start, -h.end, h.detector))
    named = [h for h in unique if h.detector != "generic_secret" and h.kind == "secret"]
    if len(named) == len(unique) or not named:
        return unique
    return [
        h
        for h in unique
        if h.detector != "generic_secret"
        or not any(n.start < h.end and h.start < n.end for n in named)
    ]


_DEFAULT: Scanner | None = None


def default_scanner() -> Scanner:
    """Every built-in detector (compiled once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Scanner((*SECRETS, *PII))
    return _DEFAULT


#: The texts every match of an expression begins with (lower-case if it ignores case),
#: and whether a match may also begin at the start of the text (`^`).
_Leads = tuple[tuple[str, ...], bool]
_LEAD = 8  # characters of a text kept
_START = "\x00^"  # stands for `^` (not MULTILINE) in a lead


def _leads(pattern: re.Pattern[str]) -> _Leads | None:
    """What every match of `pattern` begins with (None: not only literal texts)."""
    try:
        found = _sequence_leads(
            list(sre_parse.parse(pattern.pattern, pattern.flags)), pattern.flags
        )
    except _NoLead:
        return None
    words = {w.lower() if pattern.flags & re.I else w for w, _ in found}
    at_start = any(w.startswith(_START) for w in words)
    words = {w for w in words if not w.startswith(_START)}
    if "" in words or len(words) > 64:
        return None
    kept = tuple(sorted(w for w in words if not any(o != w and w.startswith(o) for o in words)))
    return kept, at_start


class _NoLead(Exception):
    pass


def _sequence_leads(seq: list[tuple[Any, Any]], flags: int) -> set[tuple[str, bool]]:
    """(prefix, whether what follows may still add to it) for each way `seq` may begin."""
    found = {("", True)}
    for item in seq:
        if not any(going for _, going in found):
            break
        item_leads = _item_leads(item, flags)
        found = {(p, False) for p, going in found if not going} | {
            ((p + q)[:_LEAD], more and len(p + q) < _LEAD)
            for p, going in found
            if going
            for q, more in item_leads
        }
    return found


def _item_leads(item: tuple[Any, Any], flags: int) -> set[tuple[str, bool]]:
    op, av = item
    if op is sre_c.LITERAL:
        return {(chr(av), True)}
    if op is sre_c.AT:
        if av in (sre_c.AT_BOUNDARY, sre_c.AT_NON_BOUNDARY):
            return {("", True)}
        if av is sre_c.AT_BEGINNING_STRING or (av is sre_c.AT_BEGINNING and not flags & re.M):
            return {(_START, False)}
        raise _NoLead
    if op is sre_c.SUBPATTERN:
        return _sequence_leads(list(av[-1]), flags)
    if op is sre_c.BRANCH:
        return set().union(*(_sequence_leads(list(b), flags) for b in av[1]))
    if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
        low, high, sub = av
        inner = _sequence_leads(list(sub), flags)
        once = inner if low == high == 1 or (low == 0 and high == 1) else {
            (q, False) for q, _ in inner}  # fmt: skip
        return ({("", True)} | once) if low == 0 else once
    if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
        return {("", True)}
    return {("", False)}  # a class, any character: no literal text
