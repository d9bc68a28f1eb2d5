"""An injected credential an upstream echoes base64-encoded inside other data is scrubbed.

The attack (security review): the upstream answers ``base64(b"id=x" + Authorization)``.
The secret then starts at an offset that is not a multiple of 3 in the encoded stream, so
none of its aligned encodings appears; the agent decodes the answer and holds the real
credential. Every offset modulo 3, standard and URL-safe alphabets, text before and after,
the whole header or its token or (``Basic``) its password: after scrubbing, no reading of
the answer as base64, at any of the four character offsets, yields the secret.
"""

from __future__ import annotations

import base64
import random
import re

import pytest

from agentfirewall.scrubbing import scrubber_for

_R = random.Random(3)
_PASSWORD = b"p4ssw0rd-long-enough"
CASES = [
    (b"Bearer gen-plain-secret-00000000", b"gen-plain-secret-00000000"),
    (b"Basic " + base64.b64encode(b"user:" + _PASSWORD), _PASSWORD),
    (b"sk-live-abcdef123456", b"sk-live-abcdef123456"),  # a whole header value, no scheme
]


def _decodings(data: bytes, url_safe: bool) -> list[bytes]:
    """`data` read as base64 from each of its first four characters (others skipped)."""
    alphabet = rb"A-Za-z0-9\-_" if url_safe else rb"A-Za-z0-9+/"
    letters = re.sub(rb"[^" + alphabet + rb"]", b"", data)
    found = []
    for shift in range(4):
        part = letters[shift:]
        part = part[: len(part) // 4 * 4]
        found.append(base64.b64decode(part, altchars=b"-_" if url_safe else None))
    return found


@pytest.mark.parametrize(("header", "secret"), CASES)
@pytest.mark.parametrize("url_safe", [False, True])
def test_a_credential_echoed_in_base64_at_any_offset_is_scrubbed(
    header: bytes, secret: bytes, url_safe: bool
) -> None:
    scrubber = scrubber_for([header])
    assert scrubber is not None
    encode = base64.urlsafe_b64encode if url_safe else base64.b64encode
    for before in range(7):
        for after in (b"", b"x", b"&more=1"):
            for echoed in (header, secret, b"Authorization: " + header):
                lead = bytes(_R.randrange(256) for _ in range(before))
                answer = b'{"blob":"' + encode(lead + echoed + after) + b'"}'
                scrubbed, count = scrubber.scrub(answer)
                assert count, (before, after, echoed)
                assert not any(secret in d for d in _decodings(scrubbed, url_safe))
                stream = scrubber.stream()  # (and in a stream cut anywhere)
                cut = _R.randrange(len(answer))
                streamed = stream.feed(answer[:cut]) + stream.feed(answer[cut:]) + stream.finish()
                assert len(streamed) == len(answer)
                assert not any(secret in d for d in _decodings(streamed, url_safe))


@pytest.mark.parametrize(("header", "secret"), CASES)
@pytest.mark.parametrize("upper", [False, True])
def test_a_credential_echoed_hex_encoded_is_scrubbed(
    header: bytes, secret: bytes, upper: bool
) -> None:
    scrubber = scrubber_for([header])
    assert scrubber is not None
    for echoed in (header, secret):
        hexed = echoed.hex().upper() if upper else echoed.hex()
        answer = b'{"digest":"00ff' + hexed.encode() + b'"}'
        scrubbed, count = scrubber.scrub(answer)
        assert count
        assert secret.hex() not in scrubbed.decode().lower()
        stream = scrubber.stream()  # (and in a stream cut anywhere)
        cut = _R.randrange(len(answer))
        streamed = stream.feed(answer[:cut]) + stream.feed(answer[cut:]) + stream.finish()
        assert len(streamed) == len(answer)
        assert secret.hex() not in streamed.decode().lower()
