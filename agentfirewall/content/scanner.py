"""Run a set of detectors over text: anchors found with ``str.find``, patterns run there.

A :class:`Scanner` is built once per detector set (the gateway builds one per snapshot)
and is then pure and thread-safe. :meth:`Scanner.scan` returns :class:`Hit` s sorted by
position; a generic-secret hit inside a named secret's span is dropped (the named one
says more).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agentfirewall.content.detectors import PII, SECRETS, Detector

__all__ = ["Hit", "Scanner", "default_scanner"]

#: Character classes for shapes: digits read as ``0``, capital letters as ``A``.
_CLASSES = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0" * 10 + b"A" * 26)
#: How much of a text is sampled to decide whether an anchor character is common in it.
_SAMPLE = 65536
#: The rest of a name after a context word, up to where ``:`` or ``=`` would follow.
_NAME_TAIL = re.compile(r"[A-Za-z0-9_-]{0,20}[\"']?[ \t]{0,3}")


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
        table: dict[str, list[tuple[int, tuple[str, ...], Detector]]] = {}
        for detector in self.detectors:
            for char, offset, prefixes in detector.anchors:
                table.setdefault(char, []).append((offset, prefixes, detector))
        self._anchors = tuple((char, tuple(entries)) for char, entries in table.items())
        self._everywhere = tuple(d for d in self.detectors if not d.anchors)
        self._shaped = any(d.shapes for d in self._everywhere)
        self._worded = tuple(d for d in self.detectors if d.words)

    def scan(self, text: str) -> list[Hit]:
        """Every detection in `text`, by position."""
        hits: list[Hit] = []
        dense = self._dense(text)
        crowded = min(len(text), _SAMPLE) // 100 if len(text) >= 4096 else 0
        for char, entries in self._anchors:
            if dense:
                entries = tuple(e for e in entries if e[2] not in dense)
            if crowded and entries and text.count(char, 0, _SAMPLE) > crowded:
                entries = self._prefix_scan(entries, text, hits)
            pos = text.find(char) if entries else -1
            while pos >= 0:
                after = pos + 1
                for offset, prefixes, detector in entries:
                    start = pos - offset
                    if offset >= 0 and (start < 0 or not text.startswith(prefixes, start)):
                        continue  # the common case, decided without a call
                    end = self._try(detector, text, pos, offset, prefixes, hits)
                    if end > after:
                        after = end
                pos = text.find(char, after)
        digits = -1
        classes = b""
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
            for match in detector.pattern.finditer(text):
                self._add(detector, match, hits)
        if dense:
            self._word_scan(dense, text, hits)
        if len(hits) > 1:
            hits = _resolve(hits)
        return hits

    def _shape_scan(self, detector: Detector, text: str, classes: bytes, hits: list[Hit]) -> None:
        """Run `detector` where one of its shapes starts (at the start of a digit run)."""
        for shape in detector.shapes:
            pos = classes.find(shape)
            while pos >= 0:
                if shape[0] == 48:  # a digit: the match starts where the run of digits does
                    while pos > 0 and classes[pos - 1] == 48:
                        pos -= 1
                match = detector.pattern.match(text, pos)
                end = pos + len(shape)
                if match is not None and self._add(detector, match, hits):
                    end = max(end, match.end())
                elif shape[0] == 48:  # past this run of digits
                    while end < len(classes) and classes[end] == 48:
                        end += 1
                pos = classes.find(shape, end)

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

    def _prefix_scan(
        self,
        entries: tuple[tuple[int, tuple[str, ...], Detector], ...],
        text: str,
        hits: list[Hit],
    ) -> tuple[tuple[int, tuple[str, ...], Detector], ...]:
        """Find the prefixes themselves (the anchor is common here); return the entries
        that have none (they are scanned by the anchor as usual)."""
        rest = []
        for offset, prefixes, detector in entries:
            if offset < 0 or not all(prefixes):
                rest.append((offset, prefixes, detector))
                continue
            for prefix in prefixes:
                pos = text.find(prefix)
                while pos >= 0:
                    end = self._try(detector, text, pos + offset, offset, (prefix,), hits)
                    pos = text.find(prefix, max(pos + 1, end))
        return tuple(rest)

    def _word_scan(self, dense: tuple[Detector, ...], text: str, hits: list[Hit]) -> None:
        """Context words first: each tried at the ``:`` or ``=`` after the name it is in."""
        lowered = text.lower()
        if len(lowered) != len(text):  # a few non-ASCII letters lower to two characters
            lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        for detector in dense:
            chars = tuple(a[0] for a in detector.anchors)
            for word in detector.words:
                pos = lowered.find(word)
                while pos >= 0:
                    at = _NAME_TAIL.match(text, pos + len(word)).end()  # type: ignore[union-attr]
                    end = 0
                    if text.startswith(chars, at):
                        end = self._try(detector, text, at, 0, ("",), hits)
                    pos = lowered.find(word, max(pos + 1, end))

    def _try(
        self,
        detector: Detector,
        text: str,
        pos: int,
        offset: int,
        prefixes: tuple[str, ...],
        hits: list[Hit],
    ) -> int:
        """Run `detector` at the anchor found at `pos`; the end of its hit, else 0."""
        if offset < 0:  # the match may start anywhere up to `back` before the anchor
            for near in detector.pattern.finditer(text, max(0, pos - detector.back), pos + 512):
                if near.start() > pos:
                    break
                if near.end() > pos:
                    return near.end() if self._add(detector, near, hits) else 0
            return 0
        start = pos - offset
        if start < 0 or not text.startswith(prefixes, start):
            return 0
        match = detector.pattern.match(text, start)
        if match is None:
            return 0
        context = detector.context
        if context is not None:
            before = max(0, start - detector.back)
            if detector.words:  # cheap test first: one of the context words is there
                window = text[before:start].lower()
                if not any(word in window for word in detector.words):
                    return 0
            if context.search(text, before, start) is None:
                return 0
        return match.end() if self._add(detector, match, hits) else 0

    @staticmethod
    def _add(detector: Detector, match: re.Match[str], hits: list[Hit]) -> bool:
        found = match.group(detector.group)
        if detector.check is not None and not detector.check(found):
            return False
        start, end = match.span(detector.group)
        hits.append(Hit(detector.name, detector.kind, detector.confidence, start, end))
        return True


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
