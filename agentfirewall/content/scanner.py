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

from agentfirewall.content.detectors import DETECTORS, Detector

__all__ = ["Hit", "Scanner", "default_scanner"]


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

    def scan(self, text: str) -> list[Hit]:
        """Every detection in `text`, by position."""
        hits: list[Hit] = []
        for char, entries in self._anchors:
            pos = text.find(char)
            while pos >= 0:
                after = pos + 1
                for offset, prefixes, detector in entries:
                    end = self._try(detector, text, pos, offset, prefixes, hits)
                    if end > after:
                        after = end
                pos = text.find(char, after)
        for detector in self._everywhere:
            for match in detector.pattern.finditer(text):
                self._add(detector, match, hits)
        if len(hits) > 1:
            hits = _resolve(hits)
        return hits

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
        before = max(0, start - detector.back)
        if context is not None and context.search(text, before, start) is None:
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
        _DEFAULT = Scanner(DETECTORS.values())
    return _DEFAULT
