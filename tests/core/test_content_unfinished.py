"""A text that may end in the beginning of a secret (``agentfirewall.content.unfinished``).

The guarantee an event stream's hold-back rests on: every beginning of every match of every
secret detector, from its prefix on (``AKIA``, ``-----BEGIN ``, the ``=`` after a secret's
name), reads as unfinished, whatever follows in the match; matches drawn from the
detectors' own expressions. And the cost side: ordinary text, and text past a prefix that
nothing can complete any more, is not held.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.content import SECRETS, unfinished
from agentfirewall.content.detectors import Detector
from agentfirewall.content.unfinished import Openings
from tests.fuzzscale import examples

OPENINGS = Openings(SECRETS)
#: What may stand before a match: a boundary, or the name a generic secret needs.
BEFORE = {"generic_secret": "here: api_key"}


def _matches(detector: Detector) -> st.SearchStrategy[str]:
    return st.from_regex(detector.pattern, fullmatch=True)


@settings(max_examples=examples(60), deadline=None)
@given(data=st.data(), detector=st.sampled_from(SECRETS))
def test_every_beginning_of_a_match_after_its_prefix_is_unfinished(
    data: st.DataObject, detector: Detector
) -> None:
    match = data.draw(_matches(detector))
    prefix = max((p or a for a, _, ps in detector.anchors for p in ps if match.startswith(p or a)),
                 key=len)  # fmt: skip
    before = BEFORE.get(detector.name, "see ")
    for end in range(len(prefix), len(match)):
        assert OPENINGS.unfinished(before + match[:end]), (detector.name, match[:end])
    # as an event stream asks once the text before the last `new` characters was settled:
    # only a match beginning in them or in the longest prefix's length before them
    for new in range(1, len(prefix) + 1):
        start = max(0, len(before) + len(prefix) - new - OPENINGS.longest + 1)
        assert OPENINGS.unfinished(before + match[: len(prefix)], start), (detector.name, new)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The quick brown fox jumps over the lazy dog. " * 90,
        "your key: AKI",  # (a prefix less its last character: nothing of the key yet)
        "AKIA" + "Q3V7WZ2MXK4PLRTY is the id",  # (complete: decided now, nothing to wait for)
        "AKIAQ3V7 is not a key",  # (a space: no AWS key id goes on after one)
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ" + "A" * 120,  # (no private key)
        "the token: is optional, see the docs",
        "print(f'{api_key=}')",
        "sk-ant-api03-abc and more",
    ],
    ids=lambda t: t[:24],
)
def test_text_nothing_can_complete_into_a_secret_is_not_held(text: str) -> None:
    assert not OPENINGS.unfinished(text)


@pytest.mark.parametrize(
    "text",
    [
        "your key: AKIA",
        "your key: AKIAQ3V7",
        "-----BEGIN ",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + "x" * 300,
        "export GITHUB_TOKEN=ghp_",
        'the header is "Authorization: Bearer ',
        "eyJhbGciOiJIUzI1NiJ9.eyJ",
    ],
    ids=lambda t: t[:24],
)
def test_text_that_may_go_on_into_a_secret_is_held(text: str) -> None:
    assert OPENINGS.unfinished(text)


@pytest.mark.parametrize(
    "text",
    [":" * 4096, "a=" * 2048, "token x: " * 455, "-----BEGIN " * 372, "eyJ" * 1365],
    ids=["colons", "equals", "names", "pem headers", "eyJ"],
)
def test_a_text_made_of_beginnings_costs_a_bounded_number_of_tries(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(An upstream's crafted stream is checked on the gateway's event loop.)"""
    tries = []
    real = unfinished._open
    monkeypatch.setattr(unfinished, "_open", lambda *a: tries.append(1) or real(*a))
    OPENINGS.unfinished(text)
    needles = sum(len(opening.needles) for opening in OPENINGS._openings)
    assert len(tries) <= needles * 65  # (each prefix: 64 tries at most)


def test_an_unfinished_beginning_is_said_with_its_detector_and_place() -> None:
    """(An event stream cuts a match still unfinished where it leaves the field's window.)"""
    text = "see eyJhbGciOiJIUzI1NiJ9.eyJ" + "a1B2" * 1200
    opened = OPENINGS.opened(text, 0, 10)
    assert opened is not None
    assert (opened[0].name, opened[1]) == ("jwt", 4)
    assert OPENINGS.opened(text, 0, 4) is None  # (only a beginning before `stop`)
    assert OPENINGS.opened(text + " and more", 0) is None
