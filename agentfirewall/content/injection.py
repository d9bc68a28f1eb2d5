"""Prompt-injection markers in responses: a curated, versioned pattern set.

A tool, MCP or HTTP response that a model will read should carry data, not orders to
the model. These patterns match the phrasings that published injection corpora and
incident write-ups share (instruction overrides, fake chat-template turns, hidden
"tell the user nothing" orders, exfiltration requests). Each pattern is a
:class:`~agentfirewall.content.detectors.Detector` of kind ``injection``, named
``injection.<what>``, so the scanner runs them like any other detector.

The markers are also run over a text's normalised reading (:func:`normalized`: what a
model reads past): its HTML tags stripped (``Ignore all <b>previous</b> instructions``),
its HTML entities decoded (``&nbsp;``, ``&#105;``), its Unicode format characters dropped
(a zero-width space, a soft hyphen, a bidirectional control) and the rest NFKC-normalised
(fullwidth letters, U+FF21 on, are ASCII ones); what is left outside ASCII stands as a
space, a letter or a symbol (the markers are ASCII: the reading is scanned fast). Text with
none of these (ASCII without ``<`` or ``&``: the common case) is its own reading, found so
at once.

The set is versioned (:data:`INJECTION_VERSION`): a change of patterns is a new version,
and its false-positive rate on a corpus of ordinary API responses is measured by
``tests/core/test_content_injection.py`` and recorded in docs/policies.md.
"""

from __future__ import annotations

import html
import re
import unicodedata

from agentfirewall.content.detectors import Detector

__all__ = ["INJECTION", "INJECTION_VERSION", "normalized"]

INJECTION_VERSION = "2026-12-2"

_I = re.IGNORECASE


def _marker(name: str, confidence: float, pattern: str) -> Detector:
    return Detector(f"injection.{name}", "injection", confidence, re.compile(pattern, _I))


INJECTION: tuple[Detector, ...] = (
    _marker(
        "ignore_instructions", 0.9,
        r"\b(?:ignore|disregard|forget|override|skip)\s+(?:all\s+|any\s+|the\s+|your\s+|of\s+){0,4}"
        r"(?:previous|prior|above|earlier|preceding|original|system|existing)\s+"
        r"(?:instructions?|prompts?|directions?|rules|guidelines|context|messages?)",
    ),
    _marker(
        "new_instructions", 0.7,
        r"\b(?:new|updated|real|actual|additional)\s+(?:system\s+)?instructions?\s*:"
        r"|\byour\s+new\s+(?:task|goal|instructions?)\s+(?:is|are)\b",
    ),
    _marker(
        "role_override", 0.8,
        r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+|in\s+)?"
        r"(?:unrestricted|jailbroken|DAN\b|developer\s+mode|evil|uncensored|free\s+of)"
        r"|\benter\s+(?:developer|god|jailbreak)\s+mode\b",
    ),
    _marker(
        "chat_template", 0.9,
        r"<\|im_start\|>|<\|im_end\|>|<\|start_header_id\|>|\[/?INST\]|<</?SYS>>"
        r"|<\|system\|>"
        r"|(?:^|\n)[ \t]*#{2,}[ \t]*(?:system|assistant)[ \t]*(?:prompt)?[ \t]*:?[ \t]*\n",
    ),
    _marker(
        "hide_from_user", 0.85,
        r"\b(?:do\s+not|don't|never)\s+(?:tell|inform|mention\s+(?:this\s+)?to|reveal\s+(?:this\s+)?to"
        r"|show|alert|notify)\s+(?:the\s+)?user\b",
    ),
    _marker(
        "exfiltrate", 0.85,
        r"\b(?:send|post|upload|forward|email|leak|exfiltrate)\s+(?:all\s+|the\s+|your\s+|any\s+){0,4}"
        r"(?:api[\s_-]?keys?|credentials?|secrets?|passwords?|tokens?|env(?:ironment)?\s+variables"
        r"|private\s+keys?|ssh\s+keys?|\.env\b)[^.\n]{0,80}\b(?:to|at)\s+(?:https?://|\S+@)",
    ),
    _marker(
        "reveal_prompt", 0.75,
        r"\b(?:reveal|print|output|repeat|show)\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|entire\s+)?"
        r"(?:system\s+prompt|hidden\s+instructions|initial\s+instructions)",
    ),
    _marker(
        "addressed_to_model", 0.7,
        r"\b(?:important\s+)?(?:attention|note|message|instructions?)\s+(?:to|for)\s+(?:the\s+)?"
        r"(?:(?:ai|llm)\s+(?:assistant|agent|model)|ai|llm|assistant|language\s+model|agent|model)"
        r"\s*[:!,-]"
        r"|\bAI\s+(?:assistant|agent)s?\s+(?:reading|processing)\s+this\b",
    ),
)  # fmt: skip


# (a tag, a comment or a declaration: `<` then a letter, `/`, `!` or `?`, to the next `>`;
# never a `<` inside, so each `<` starts one try that ends at the next `<` or `>`: linear.
# Not Llama 2's `<<SYS>>`, a marker's)
_TAG = re.compile(r"<(?!/?SYS>)[A-Za-z/!?][^<>]*+>")


# (the only characters outside ASCII that `re.IGNORECASE` reads as an ASCII letter once NFKC
# has run: the long s and the Kelvin sign are `s` and `K` by then)
_FOLDED = {"\u0130": "i", "\u0131": "i"}
_OUTSIDE = re.compile(r"[^\x00-\x7f]+")  # (a run of characters outside ASCII)


def normalized(text: str) -> str:
    """`text` as the injection markers also read it (module docstring): format characters
    dropped (first: one inside a tag hides it), tags stripped, entities decoded, NFKC;
    `text` itself when none applies.

    The markers are ASCII, so what is left outside ASCII stands, character for character,
    as what they read it as: a space for a space, a letter no marker holds (``q``) for a
    letter or a digit, ``\x1a`` for anything else; the reading is ASCII, which the
    scanner reads fast."""
    if text.isascii():
        if "<" not in text and "&" not in text:
            return text
    else:
        text = _translated(text, {c: None for c in set(text) if unicodedata.category(c) == "Cf"})
    if "<" in text:
        text = _TAG.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKC", text)
    return _translated(text, {c: _standing(c) for c in set(text) if not c.isascii()})


def _translated(text: str, table: dict[str, str | None]) -> str:
    """`text` with each character outside ASCII in `table` replaced (None: dropped)."""
    if not table:
        return text
    codes = {ord(c): to for c, to in table.items()}
    return _OUTSIDE.sub(lambda run: run.group().translate(codes), text)


def _standing(char: str) -> str | None:
    """What a character outside ASCII stands as (None: a format character, dropped)."""
    if unicodedata.category(char) == "Cf":
        return None
    return _FOLDED.get(char) or (" " if char.isspace() else "q" if char.isalnum() else "\x1a")
