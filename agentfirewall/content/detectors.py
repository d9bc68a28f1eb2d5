"""The detectors: what a secret or a piece of personal data looks like, compiled once.

Each :class:`Detector` has a name (what a policy names in ``content.secrets`` or
``content.pii``), a kind (``secret`` or ``pii``), a confidence (how sure a match is what
the name says, 0..1), and how it is found:

* ``anchors``: ``(character, offset, prefixes)``: every match has that (rare) character
  at `offset` and starts with one of the prefixes, which include it
  (``("_", 3, ("ghp_", ...))``). The scanner finds the character with ``str.find``
  (``memchr``, tens of GB/s), checks the prefix with ``str.startswith`` and runs the
  detector's expression only there — this is what makes scanning fast. In text where
  the character is common (more than 1%: ``_`` in source code) it finds the prefixes
  themselves instead. Offset -1: the match starts where the run of ``before``
  characters ending at the anchor starts, at most ``back`` characters before it (e-mail:
  the local part before ``@``); the expression runs once there.
* ``shapes`` (card numbers, IBANs, dashed phone numbers): the text is mapped once to
  character classes (``bytes.translate``: digits to ``0``, capitals to ``A``) and the
  shapes every match starts with (``0000``, ``AA00``) are found with ``bytes.find``; the
  expression runs only there, and only when the text holds at least ``min_digits``
  digits (counted with ``str.count``).
* no anchors and no shapes: the expression runs over the whole text.
* ``context``: must match just before the anchor (generic secrets: a name that says
  secret, ``api_key``, ``password``, ``Authorization``, before ``:`` or ``=``).
* ``words``: in text dense in the anchor characters (source code: ``=`` every few
  characters), the scanner finds these context words in the lower-cased text instead and
  tries the anchor just after the name they are part of; same hits, fewer tries.
* ``check``: a validator run on the matched text (Luhn, IBAN mod 97, entropy).

Every expression runs in time linear in the text, whatever the text: a repeat that may
consume more than a few hundred characters cannot consume the start of another match
(so no two attempts rescan the same run), and no unbounded repeat nests in another with
an ambiguous boundary. ``tests/core/test_content_adversarial.py`` checks this on the
parsed expressions, and counts the scanner's attempts on adversarial texts.

Patterns follow the vendors' published token formats (GitHub ``gh[pousr]_`` and
``github_pat_``, Stripe ``sk_``/``rk_``, Slack ``xox?-``, AWS key ids, OpenAI ``sk-``,
``sk-proj-``, Anthropic ``sk-ant-``). A token may follow punctuation, glued to a word by
``-`` or ``_`` (``aws-AKIA…``, ``X-AKIA…``, ``token_ghp_…``, ``stripe-sk_live_…``), not a
letter or a digit, nor a character its random part holds (``_`` before ``github_pat_``,
``-`` before a Slack token, either before OpenAI and Anthropic keys and JWTs: there it is
the tail of a longer token, and each attempt would rescan the one before it; a second
reading finds those too: ``scanner.unglued``). It may be followed by any character its random
part does not hold (``ghp_…_meta``, ``sk_live_…_v1``, ``xoxb-…_x``).
Token-shaped detectors also require the random part to look random (letters and digits
mixed, enough entropy), so placeholders such as ``sk-your-key-here`` do not fire.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DETECTORS",
    "PII",
    "SECRETS",
    "Detector",
    "entropy",
    "iban_valid",
    "luhn_valid",
]


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of secret or personal data (see the module docstring)."""

    name: str
    kind: str  # secret | pii
    confidence: float
    pattern: re.Pattern[str]
    anchors: tuple[tuple[str, int, tuple[str, ...]], ...] = ()
    back: int = 0
    context: re.Pattern[str] | None = None
    words: tuple[str, ...] = ()  # lower-case context words: the dense-text strategy
    min_digits: int = 0  # fewer digits in the whole text: this detector cannot match
    #: Shapes every match starts with, in the text's character classes (digit ``0``,
    #: upper-case letter ``A``, anything else as is): found with ``bytes.find``.
    shapes: tuple[bytes, ...] = ()
    check: Callable[[str], bool] | None = None
    group: int = 0  # the group that is the sensitive text (0: the whole match)
    #: Characters a match may hold before its anchor (anchor offset -1): the scanner walks
    #: back over them (at most ``back``) and runs the expression once, where they start.
    before: str = ""
    #: After a hit that passed `check`: the hit reaches on as far as this matches from its
    #: end (a secret longer than the expression's bound is redacted whole).
    extend: re.Pattern[str] | None = None


def entropy(text: str) -> float:
    """Shannon entropy of `text` in bits per character."""
    if not text:
        return 0.0
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in Counter(text).values())


_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")
_RUN_OF_SIX = re.compile(r"(.)\1{5}")


def _random_looking(part: str, minimum: float = 3.0) -> bool:
    """Letters and digits mixed, no long run of one character, enough entropy."""
    return (
        _DIGIT.search(part) is not None
        and _LETTER.search(part) is not None
        and entropy(part) >= minimum
        and not _RUN_OF_SIX.search(part)
    )


_JOINERS = re.compile(r"[-_]")


def _random_part(part: str, minimum: float = 3.0) -> bool:
    """`part` looks random, or one of its pieces between `-` and `_` of 20 characters or
    more does: a token whose random part may hold them matches on through a word joined
    after it by one (``sk-…-production_db``, ``xoxb-…-aaaaaaa``), which must not spoil it."""
    return _random_looking(part, minimum) or any(
        len(piece) >= 20 and _random_looking(piece, minimum) for piece in _JOINERS.split(part)
    )


def _tail_random(skip: int, minimum: float = 3.0) -> Callable[[str], bool]:
    return lambda text: _random_part(text[skip:], minimum)


def _openai(text: str) -> bool:
    body = text.split("-")[-1] if text.count("-") <= 2 else text[3:]
    return _random_looking(body if len(body) >= 20 else text[3:]) or _random_part(text[3:])


def _slack(text: str) -> bool:
    """Slack tokens carry numeric ids (team, user, bot) before their random part; a word
    joined after it by `-` (the expression's pieces: at most six) must not spoil it."""
    parts = text[5:].split("-")
    return (
        len(text) >= 24
        and re.search(r"-\d{6,}-", text) is not None
        and any(_random_looking("-".join(parts[:n]), 2.5) for n in range(len(parts), 1, -1))
    )


def _anthropic(text: str) -> bool:
    rest = re.sub(r"^sk-ant-(?:[a-z]+\d\d-)?", "", text)
    return _random_looking(rest.replace("-", "").replace("_", "")) or _random_part(rest)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


_CARD_PREFIX = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3[068]|35|6(?:011|5|4[4-9]|2)"
)


def _card(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    seps = {c for c in text if c in " -"}
    if len(seps) > 1 or not 13 <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    return _CARD_PREFIX.match(digits) is not None and luhn_valid(digits)


#: IBAN length per country (ISO 13616 registry, the common ones).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28,
    "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22,
    "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VA": 22,
}  # fmt: skip


def iban_valid(text: str) -> bool:
    """Country length and the ISO 7064 mod-97 check of an IBAN (spaces allowed)."""
    iban = text.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _jwt(text: str) -> bool:
    head = text.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
    except (binascii.Error, ValueError):
        return False
    return b'"alg"' in decoded.replace(b" ", b"")


def _phone(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    return 8 <= digits <= 15


def _generic(text: str) -> bool:
    """Long and random, and not a path (``AKIA.../20260101/eu-west-1/s3/aws4_request``, a
    SigV4 credential scope, is an identifier and a date, not a secret)."""
    return len(text) >= 16 and text.count("/") < 3 and _random_looking(text, 3.5)


_SLACK_PREFIXES = ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xoxe-", "xapp-")
_END = r"(?![A-Za-z0-9_])"
_END_ALNUM = r"(?![A-Za-z0-9])"  # (a token whose random part holds no `_`: `ghp_…_meta`)
# (an OpenAI or Anthropic key with words joined after it may run past its expression's
# bound: judged by what the bound holds, the hit reaches on to the end of the run)
_RUN_ON = re.compile(r"[A-Za-z0-9_-]*")
# (a token's prefix is distinctive: glued to a word by `-`, `_` or other punctuation, as in
# `aws-AKIA…`, `X-AKIA…`, `token_ghp_…`, it is still the token; after a letter or a digit
# it may be part of another word: `ask_live_…`, `XAKIA…`. Nor after a character its own
# random part holds (`_` in `github_pat_…`; `-` and `_` in OpenAI and Anthropic keys and
# JWTs; `-` in Slack's): there it is the tail of a longer token, and each attempt would
# rescan the one before it, `sk-sk-sk-…`)
_START = r"(?<![A-Za-z0-9])"
_START_NO_DASH = r"(?<![A-Za-z0-9-])"
_START_WORD = r"(?<![A-Za-z0-9_-])"

SECRETS: tuple[Detector, ...] = (
    Detector(
        "aws_access_key", "secret", 0.95,
        re.compile(_START + r"(?:AKIA|ASIA)[A-Z2-7]{16}(?![A-Za-z0-9])"),
        anchors=(("I", 2, ("AKIA", "ASIA")),),
        check=_tail_random(4, 2.5),
    ),
    Detector(
        "github_token", "secret", 0.98,
        re.compile(_START + r"(?:gh[pousr]_[A-Za-z0-9]{36,251}" + _END_ALNUM
                   + r"|(?<!_)github_pat_[A-Za-z0-9_]{60,251}" + _END + ")"),
        anchors=(("_", 3, ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")), ("_", 6, ("github_pat_",))),
        check=_tail_random(4),
    ),
    Detector(
        "stripe_key", "secret", 0.95,
        re.compile(_START + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}" + _END_ALNUM),
        anchors=(("_", 2, ("sk_live_", "sk_test_", "rk_live_", "rk_test_")),),
        check=_tail_random(8),
    ),
    Detector(
        "slack_token", "secret", 0.95,
        re.compile(_START_NO_DASH + r"(?:xox[abposre]|xapp)-[0-9A-Za-z]+(?:-[0-9A-Za-z]+){1,5}"
                   + _END_ALNUM),
        anchors=(("-", 4, _SLACK_PREFIXES),),
        check=_slack,
    ),
    Detector(
        "slack_webhook", "secret", 0.95,
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/]{20,200}"),
        anchors=((":", 5, ("https://hooks.slack.com/",)),),
    ),
    Detector(
        "anthropic_key", "secret", 0.97,
        re.compile(_START_WORD + r"sk-ant-(?:[a-z]+[0-9][0-9]-)?[A-Za-z0-9_-]{32,200}"),
        anchors=(("-", 2, ("sk-ant-",)),),
        check=_anthropic,
        extend=_RUN_ON,
    ),
    Detector(
        "openai_key", "secret", 0.9,
        re.compile(_START_WORD + r"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?"
                   r"[A-Za-z0-9_-]{32,200}"),
        anchors=(("-", 2, ("sk-",)),),
        check=_openai,
        extend=_RUN_ON,
    ),
    Detector(
        "private_key", "secret", 0.99,
        # the header; RFC 1421 header lines (``Proc-Type:``, ``DEK-Info:``, PGP's
        # ``Version:``); the base64 run; the END line when there is one. Without an END
        # (cut, or one line per JSON array element) the hit still covers the key material
        # that follows, so a redaction leaves none of it.
        re.compile(r"-----BEGIN ((?:[A-Z0-9]{1,20} ){0,4})PRIVATE KEY(?: BLOCK)?-----"
                   r"(?:[ \t\r\n]{1,8}[A-Za-z][A-Za-z0-9-]{0,40}:[^\r\n]{0,128}){0,8}"
                   r"[A-Za-z0-9+/= \t\r\n]*"
                   r"(?:-----END \1PRIVATE KEY(?: BLOCK)?-----)?"),
        anchors=(("-", 0, ("-----BEGIN ",)),),
    ),
    Detector(
        "jwt", "secret", 0.85,
        re.compile(_START_WORD + r"eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{4,16384}"
                   + r"\.[A-Za-z0-9_-]{0,4096}" + _END),
        anchors=(("J", 2, ("eyJ",)),),
        check=_jwt,
    ),
    Detector(
        # a long random value assigned to a name that says it is secret:
        # ``api_key = "..."``, ``"password": "..."``, ``token=...``, ``Authorization: Bearer ...``
        "generic_secret", "secret", 0.6,
        re.compile(r"(?:=>|[:=])[ \t]{0,3}(?:[Bb]earer[ \t]+|[Bb]asic[ \t]+)?[\"']?"
                   r"([A-Za-z0-9+/_.=~-]{16,256})"),
        anchors=((":", 0, ("",)), ("=", 0, ("",))),
        context=re.compile(
            r"(?i)(?:api[_-]?key|apikey|secret|token|passw(?:or)?d|passwd|credential|auth\w*"
            r"|access[_-]?key|private[_-]?key)[A-Za-z0-9_-]{0,20}[\"']?[ \t]{0,3}\Z"
        ),
        back=48,
        words=("key", "secret", "token", "passw", "credential", "auth"),
        check=_generic,
        group=1,
        extend=re.compile(r"[A-Za-z0-9+/_.=~-]*"),  # the rest of a value longer than 256
    ),
)  # fmt: skip

PII: tuple[Detector, ...] = (
    Detector(
        "card_number", "pii", 0.9,
        re.compile(r"[0-9](?<![0-9.,+-][0-9])[0-9]{3}(?:[ -]?[0-9]){8,14}[0-9]"
                   r"(?![0-9-]|[.,][0-9])"),
        check=_card,
        min_digits=13,
        shapes=(b"0000",),  # every card number starts with a group of 4+ digits
    ),
    Detector(
        "iban", "pii", 0.95,
        re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
                   r"(?![A-Za-z0-9])"),
        check=iban_valid,
        min_digits=7,
        shapes=(b"AA00",),
    ),
    Detector(
        "email", "pii", 0.9,
        re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                   r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
                   r"(?![A-Za-z0-9-])"),
        anchors=(("@", -1, ("",)),),
        back=64,
        before=string.ascii_letters + string.digits + "._%+-",
    ),
    Detector(
        "phone_number", "pii", 0.6,
        re.compile(r"(?:\+(?<![\w+]\+)\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}"
                   r"(?:[ .-]?\d{2,4}){1,4}"
                   r"|\((?<![\w+]\()\d{3}\)[ .-]?\d{3}[ .-]\d{4})(?![\w-])"),
        anchors=(("+", 0, ("+",)), ("(", 0, ("(",))),
        check=_phone,
    ),
    Detector(  # the same name: North American numbers written without `+` or `(`
        "phone_number", "pii", 0.6,
        re.compile(r"[0-9](?<![\w+-][0-9])[0-9][0-9][.-][0-9]{3}[.-][0-9]{4}(?![\w-])"),
        min_digits=10,
        shapes=(b"000-000-0000", b"000.000.0000"),
    ),
)  # fmt: skip

#: The entries of each detector name (a name may have several: ``phone_number``).
DETECTORS: dict[str, tuple[Detector, ...]] = {}
for _detector in (*SECRETS, *PII):
    DETECTORS[_detector.name] = (*DETECTORS.get(_detector.name, ()), _detector)
