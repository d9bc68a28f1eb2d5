"""A guard for the ``matches`` and ``any_matches`` operators against catastrophic regular
expressions.

Python's ``re`` backtracks, so some patterns take exponential or polynomial time on
crafted input. At load time a pattern is refused when it has:

- a quantified group that holds another unbounded quantifier (``(a+)+``, ``(a*)*``,
  ``(\\w+\\s?)*``) — the classic exponential shape;
- a quantified alternation whose branches may start alike (``(a|ab)*``, ``(\\w|\\d)+``);
- a backreference (``(a)\\1``);
- more than four unbounded quantifiers, or more than 1,000 characters;
- two ways to match the same text that the matcher would both try before failing
  (``.*.*z``, ``\\w*\\w*x``, ``a?a?aa``, ``(\\w+\\s?){1,5}x``): the polynomial class,
  where each extra way multiplies the work by the input's length. See
  :func:`_ambiguity`: the pattern's position automaton (Glushkov's) must be
  unambiguous, except past a point from which the match cannot fail (a trailing
  ``.*``), so ``.*prod.*`` and ``^foo.*bar$`` load.

At evaluation time the input is capped (:data:`MAX_INPUT`); a longer value makes the
rule fail closed rather than be matched slowly or skipped. What remains is one
unbounded repeat tried at each start of a search: quadratic in the capped input
(a few tens of milliseconds at 4,096 characters).
"""

from __future__ import annotations

import re
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

__all__ = ["MAX_INPUT", "MAX_PATTERN", "compile_safe_regex"]

MAX_PATTERN = 1000
MAX_INPUT = 4096
_MAX_UNBOUNDED = 4
_REPEATS = {sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)}
_UNBOUNDED = 10  # a repeat allowing more than this many iterations counts as unbounded


class _Unsafe(ValueError):
    pass


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-patterns nested in one parsed item."""
    if op in _REPEATS:
        return [av[2]]
    if op is sre_c.SUBPATTERN:
        return [av[-1]]
    if op is sre_c.BRANCH:
        return list(av[1])
    if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
        return [av[1]]
    if op is getattr(sre_c, "ATOMIC_GROUP", None):
        return [av]
    return []


def _first_literal(sub: Any) -> int | None:
    items = list(sub)
    while items:
        op, av = items[0]
        if op is sre_c.LITERAL:
            return int(av)
        if op is sre_c.SUBPATTERN:
            items = list(av[-1])
            continue
        return None
    return None


def _scan(sub: Any, inside_repeat: bool, counter: list[int]) -> None:
    for op, av in sub:
        if op in (sre_c.GROUPREF, sre_c.GROUPREF_EXISTS):
            raise _Unsafe("backreferences are not allowed")
        if op in _REPEATS:
            unbounded = av[1] > _UNBOUNDED
            if unbounded:
                counter[0] += 1
                if inside_repeat:
                    raise _Unsafe("nested quantifiers like `(a+)+` are not allowed")
            _scan(av[2], inside_repeat or unbounded, counter)
            continue
        if op is sre_c.BRANCH and inside_repeat:
            firsts = [_first_literal(branch) for branch in av[1]]
            if None in firsts or len(set(firsts)) != len(firsts):
                raise _Unsafe(
                    "a repeated alternation must have branches starting with distinct "
                    "literal characters, e.g. `(foo|bar)+`"
                )
        for child in _children(op, av):
            _scan(child, inside_repeat, counter)


_ASCII = 128
#: A character past ASCII is a digit, another word character, a space, or another kind
_DIGIT, _WORD, _SPACE, _OTHER = range(4)
_MAX_POSITIONS = 2000  # past these, a pattern is too large to check: refused
_MAX_STEPS = 300_000  # pairs of steps compared, at most: the check stays a tenth of a second


def _region(code: int) -> int:
    char = chr(code)
    if char.isdecimal():
        return _DIGIT
    if char.isalnum() or char == "_":
        return _WORD
    return _SPACE if char.isspace() else _OTHER


def _ascii_bits(test: Any) -> int:
    return sum(1 << c for c in range(_ASCII) if test(chr(c)))


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _is_ascii_space(char: str) -> bool:
    return char in " \t\n\r\x0b\x0c"  # `\s` with re.ASCII: not \x1c-\x1f, unlike str.isspace


_ASCII_BITS = (1 << _ASCII) - 1
_UPPER = _ascii_bits(lambda c: "A" <= c <= "Z")
_LOWER = _ascii_bits(lambda c: "a" <= c <= "z")
#: The characters past ASCII that equal an ASCII letter ignoring case in `re` (all of them:
#: found by trying every code point), by the letter in lower case
_PARTNERS = {ord("i"): (0x130, 0x131), ord("k"): (0x212A,), ord("s"): (0x17F,)}
#: Each category: its ASCII characters with re.ASCII, then without, and its regions past ASCII
_CATEGORIES: dict[Any, tuple[int, int, tuple[int, ...]]] = {
    sre_c.CATEGORY_DIGIT: (_ascii_bits(str.isdecimal), _ascii_bits(str.isdecimal), (_DIGIT,)),
    sre_c.CATEGORY_WORD: (_ascii_bits(_is_word), _ascii_bits(_is_word), (_DIGIT, _WORD)),
    sre_c.CATEGORY_SPACE: (_ascii_bits(_is_ascii_space), _ascii_bits(str.isspace), (_SPACE,)),
}
_NEGATED = {
    sre_c.CATEGORY_NOT_DIGIT: sre_c.CATEGORY_DIGIT,
    sre_c.CATEGORY_NOT_WORD: sre_c.CATEGORY_WORD,
    sre_c.CATEGORY_NOT_SPACE: sre_c.CATEGORY_SPACE,
}


class _Alphabet:
    """Sets of characters as the bits of an int: one bit per ASCII character; past ASCII,
    one per region in each stretch between the characters the pattern names. A class's
    set is exact on ASCII and never smaller than the truth past it, so two classes that
    share a character share a bit."""

    def __init__(self, bounds: set[int]) -> None:
        self.starts = sorted(bounds | {_ASCII})
        self.every = (1 << (_ASCII + 4 * len(self.starts))) - 1
        self.regions = [
            sum(1 << (_ASCII + 4 * i + r) for i in range(len(self.starts))) for r in range(4)
        ]
        #: each ASCII letter with its partners ignoring case, and the other cased characters
        self.groups = [
            1 << letter | 1 << (letter - 32) | sum(self.char(c) for c in others)
            for letter, others in _PARTNERS.items()
        ]
        self.cased = (self.regions[_WORD] | self.regions[_OTHER]) & ~sum(self.groups)

    def _stretch(self, code: int) -> int:
        return next(i for i in range(len(self.starts) - 1, -1, -1) if self.starts[i] <= code)

    def char(self, code: int) -> int:
        if code < _ASCII:
            return 1 << code
        return 1 << (_ASCII + 4 * self._stretch(code) + _region(code))

    def span(self, low: int, high: int) -> int:
        bits = sum(1 << c for c in range(low, min(high, _ASCII - 1) + 1))
        if high >= _ASCII:
            first, last = self._stretch(max(low, _ASCII)), self._stretch(high)
            bits |= sum(0b1111 << (_ASCII + 4 * i) for i in range(first, last + 1))
        return bits

    def category(self, name: Any, flags: int) -> int:
        negated = name in _NEGATED
        known = _CATEGORIES.get(_NEGATED.get(name, name))
        if known is None:
            return self.every  # a category this guard does not know: any character
        strict, unicode, regions = known
        bits = strict if flags & re.ASCII else unicode | sum(self.regions[r] for r in regions)
        return self.every & ~bits if negated else bits

    def caseless(self, bits: int, flags: int) -> int:
        """`bits` and every character that may equal one of them ignoring case (with
        ``re.ASCII``, ASCII letters only: `re` then folds no other character)."""
        bits |= (bits & _UPPER) << 32 | (bits & _LOWER) >> 32  # `A` <-> `a`: 32 apart
        if flags & re.ASCII:
            return bits
        for group in self.groups:
            if bits & group:
                bits |= group
        return bits | self.cased if bits & self.cased else bits  # é, Ⓐ, U+0345...

    def _excluded(self, bits: int, flags: int) -> int:
        """What a negated class leaves out: `bits`, with the case partners of its ASCII
        characters when case is ignored (exact: `(?i)[^a]` matches no `A`); a character
        past ASCII keeps its partners in the complement (a larger set, never smaller)."""
        if flags & re.IGNORECASE:
            bits |= self.caseless(bits & _ASCII_BITS, flags)
        return bits

    def of(self, op: Any, av: Any, flags: int) -> int:
        """The characters one parsed item (a literal, ``.``, a class) matches."""
        if op is sre_c.ANY:
            return self.every if flags & re.DOTALL else self.every & ~self.char(10)
        if op is sre_c.NOT_LITERAL:
            return self.every & ~self._excluded(self.char(av), flags)
        items = [(op, av)] if op is sre_c.LITERAL else list(av)
        negated = bool(items) and items[0][0] is sre_c.NEGATE
        bits = categories = 0  # a category (`\w`, `\s`, `\d`) holds its case partners
        for kind, value in items[negated:]:
            if kind is sre_c.LITERAL:
                bits |= self.char(value)
            elif kind is sre_c.RANGE:
                bits |= self.span(*value)
            elif kind is sre_c.CATEGORY:
                categories |= self.category(value, flags)
            else:
                return self.every
        if negated:
            return self.every & ~(self._excluded(bits, flags) | categories)
        return (self.caseless(bits, flags) if flags & re.IGNORECASE else bits) | categories


def _named_chars(sub: Any, found: set[int]) -> None:
    """Collect where the stretches past ASCII start: at each character the pattern names
    and just after it."""
    for op, av in sub:
        if op in (sre_c.LITERAL, sre_c.NOT_LITERAL) and av >= _ASCII:
            found.update((av, av + 1))
        elif op is sre_c.IN:
            for kind, value in av:
                low, high = value if kind is sre_c.RANGE else (value, value)
                if kind in (sre_c.LITERAL, sre_c.RANGE) and high >= _ASCII:
                    found.update((max(low, _ASCII), high + 1))
        for child in _children(op, av):
            _named_chars(child, found)


class _Fragment:
    """A part of a pattern in Glushkov's construction: the positions it may start and end
    with, whether it may match nothing, and (`clean`) whether it may do so without
    passing an assertion (``$``, ``\b``, a lookaround), which could fail."""

    def __init__(
        self, first: set[int], last: set[int], empty: bool, clean: bool, clean_last: set[int]
    ) -> None:
        self.first, self.last, self.empty, self.clean = first, last, empty, clean
        self.clean_last = clean_last  # positions after which it ends, passing no assertion


class _Automaton:
    """The position automaton (Glushkov's) of a parsed pattern: state 0 is the start,
    each other state a character position with the set it matches."""

    def __init__(self, alphabet: _Alphabet) -> None:
        self.alphabet = alphabet
        self.sets = [0]
        self.follow: list[set[int]] = [set()]
        self.twice: set[tuple[int, int]] = set()  # steps the pattern allows in two ways

    def link(self, ends: set[int], starts: set[int]) -> None:
        for end in ends:
            self.twice.update((end, start) for start in self.follow[end] & starts)
            self.follow[end] |= starts

    def position(self, bits: int) -> _Fragment:
        if len(self.sets) > _MAX_POSITIONS:
            raise _Unsafe("too many character positions to check")
        self.sets.append(bits)
        self.follow.append(set())
        at = {len(self.sets) - 1}
        return _Fragment(at, at, False, False, at)

    def then(self, one: _Fragment, two: _Fragment) -> _Fragment:
        self.link(one.last, two.first)
        return _Fragment(
            one.first | two.first if one.empty else one.first,
            two.last | one.last if two.empty else two.last,
            one.empty and two.empty,
            one.clean and two.clean,
            two.clean_last | one.clean_last if two.clean else two.clean_last,
        )

    def sequence(self, sub: Any, flags: int) -> _Fragment:
        whole = _Fragment(set(), set(), True, True, set())
        for op, av in sub:
            whole = self.then(whole, self.item(op, av, flags))
        return whole

    def item(self, op: Any, av: Any, flags: int) -> _Fragment:
        if op in (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.ANY, sre_c.IN):
            return self.position(self.alphabet.of(op, av, flags))
        if op is sre_c.SUBPATTERN:
            return self.sequence(av[-1], (flags | av[1]) & ~av[2])
        if op is getattr(sre_c, "ATOMIC_GROUP", None):
            return self.sequence(av, flags)
        if op is sre_c.BRANCH:
            branches = [self.sequence(branch, flags) for branch in av[1]]
            return _Fragment(
                set().union(*(b.first for b in branches)),
                set().union(*(b.last for b in branches)),
                any(b.empty for b in branches),
                any(b.clean for b in branches),
                set().union(*(b.clean_last for b in branches)),
            )
        if op in _REPEATS:
            return self.repeat(av[0], av[1], av[2], flags)
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            _ambiguity(av[1], flags, self.alphabet)  # a lookaround is a match of its own
        elif op is not sre_c.AT:
            raise _Unsafe(f"`{op}` cannot be checked")
        return _Fragment(set(), set(), True, False, set())

    def repeat(self, low: int, high: int, body: Any, flags: int) -> _Fragment:
        if high <= 1 or (low == high and high <= _UNBOUNDED):  # a few copies, written out
            whole = _Fragment(set(), set(), True, True, set())
            for _ in range(high):
                whole = self.then(whole, self.sequence(body, flags))
            if low == 0:
                whole.empty = whole.clean = True
            return whole
        # `x{2,5}`, `x{36}`, `x+`: read as `x+` (`x*` when `low` is 0), which matches
        # more, in more ways: a larger automaton can only refuse more
        once = self.sequence(body, flags)
        if once.empty:
            raise _Unsafe(
                "a repeat of a part that may match nothing, like `(a?){20}` or `(a?)*`, "
                "can split the same text in many ways: repeat the part that is not optional"
            )
        self.link(once.last, once.first)  # `(a+)+`: the inner and the outer loop
        if low == 0:
            once.empty = once.clean = True
        elif low > 1:  # `x{36}` read as `x+` ends sooner than `x{36}` does: never a sure end
            once.clean_last = set()
        return once


def _ambiguity(sub: Any, flags: int, alphabet: _Alphabet) -> None:
    """Raise _Unsafe when the matcher may try two paths through the same position on the
    same text before it fails: each such choice multiplies its work by up to the input's
    length (``.*.*z``), and nested ones compound (``(\\w+\\s?){1,5}x``).

    The test is the classic one for an ambiguous automaton: walk pairs of states that read
    the same characters; two different states reaching one state is ambiguity. A state the
    match cannot fail after (all that follows may match nothing, past no assertion: a
    trailing ``.*``) ends the search once reached, so paths are walked from the start and
    from each such state, and only through the others: ``.*prod.*`` loads, ``.*prod.*z``
    does not.
    """
    automaton = _Automaton(alphabet)
    whole = automaton.sequence(sub, flags)
    automaton.follow[0] = whole.first
    sure = whole.clean_last | ({0} if whole.clean else set())
    sets, follow = automaton.sets, automaton.follow
    onward = [[n for n in after if n not in sure] for after in follow]
    seen = {(state, state) for state in {0} | sure}
    todo, budget = list(seen), _MAX_STEPS
    while todo:
        one, two = todo.pop()
        budget -= len(onward[one]) * len(onward[two])
        if budget < 0:
            raise _Unsafe("too many ways to match to check")
        for a in onward[one]:
            for b in onward[two]:
                if not sets[a] & sets[b] or (one == two and a > b):
                    continue
                if a == b and (one != two or (one, a) in automaton.twice):
                    raise _Unsafe(
                        "two parts can match the same text in turn or in two ways, as in "
                        "`.*.*z`, `\\w*\\w+x` or `a?a`: the time to search grows as a power "
                        "of the value's length; make the parts exclusive (`[^,]*,[^,]*;` for "
                        "`.*,.*;`) or drop a leading `.*` (`matches` searches anywhere)"
                    )
                pair = (min(a, b), max(a, b))
                if pair not in seen:
                    seen.add(pair)
                    todo.append(pair)


def compile_safe_regex(
    pattern: object, flags: int = 0, *, operator: str = "matches"
) -> re.Pattern[str]:
    """Compile `pattern` (with `flags`) for `operator`, or raise ValueError saying why it
    is refused."""
    if not isinstance(pattern, str):
        raise ValueError(f"`{operator}` needs a regular expression string")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"regular expression longer than {MAX_PATTERN} characters")
    try:
        compiled = re.compile(pattern, flags)
        parsed = sre_parse.parse(pattern, flags)
    except re.error as exc:
        raise ValueError(f"invalid regular expression `{pattern}`: {exc}") from None
    counter = [0]
    try:
        _scan(parsed, False, counter)
    except _Unsafe as exc:
        raise ValueError(f"unsafe regular expression `{pattern}`: {exc}") from None
    if counter[0] > _MAX_UNBOUNDED:
        raise ValueError(
            f"unsafe regular expression `{pattern}`: more than {_MAX_UNBOUNDED} "
            "unbounded quantifiers"
        )
    bounds = {c + step for others in _PARTNERS.values() for c in others for step in (0, 1)}
    _named_chars(parsed, bounds)
    try:
        _ambiguity(parsed, parsed.state.flags, _Alphabet(bounds))
    except _Unsafe as exc:
        raise ValueError(f"unsafe regular expression `{pattern}`: {exc}") from None
    return compiled
