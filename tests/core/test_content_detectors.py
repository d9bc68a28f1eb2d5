"""Each detector against a table of at least 20 true and 20 false cases.

True cases are the vendors' published formats (with random parts drawn from a seeded
generator, so the table is the same on every run) and published test values (Stripe and
card-network test cards, the ECBS example IBANs). False cases are near misses: a wrong
prefix, too short, a placeholder, a failed checksum, a version string, a date.
"""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.content import DETECTORS, PII, SECRETS, Scanner, default_scanner
from agentfirewall.content.detectors import entropy, iban_valid, luhn_valid
from tests.fuzzscale import examples

_R = random.Random(23)
_ALNUM = string.ascii_letters + string.digits
_UPPER = string.ascii_uppercase + "234567"


def _rand(n: int, alphabet: str = _ALNUM) -> str:
    while True:
        text = "".join(_R.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in text) and any(c.isalpha() for c in text):
            return text


def _many(make: object, count: int = 20) -> list[str]:
    assert callable(make)
    return [make() for _ in range(count)]


def _card(prefix: str, length: int) -> str:
    body = prefix + "".join(_R.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


def _iban(country: str, length: int) -> str:
    bban = "".join(_R.choice(string.digits) for _ in range(length - 4))
    for check in range(2, 99):
        candidate = f"{country}{check:02d}{bban}"
        if iban_valid(candidate):
            return candidate
    raise AssertionError("unreachable")


def _jwt() -> str:
    import base64
    import json

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    head = part({"alg": _R.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"})
    claims = part({"sub": _rand(8), "iat": _R.randrange(10**9, 2 * 10**9)})
    return f"{head}.{claims}.{_rand(43, _ALNUM + '-_')}"


def _glued(words: str, separators: str, secret: str) -> str:
    """`secret` glued to a word (``aws-AKIA…``, ``X_ghp_…``): the detection is the secret."""
    return f"{_R.choice(words.split())}{_R.choice(separators)}{secret}"


_WORDS = "aws creds token X key stripe slack github my_app v2"
TRUE: dict[str, list[str]] = {
    "aws_access_key": _many(lambda: _R.choice(["AKIA", "ASIA"]) + _rand(16, _UPPER))
    + _many(lambda: _glued(_WORDS, "-_.:/", "AKIA" + _rand(16, _UPPER)), 5),
    "github_token": _many(lambda: _R.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + _rand(36))
    + _many(lambda: f"github_pat_{_rand(22)}_{_rand(59)}", 5)
    + _many(lambda: _glued(_WORDS, "-_.", "ghp_" + _rand(36)), 5)
    + _many(lambda: _glued(_WORDS, "-.", f"github_pat_{_rand(22)}_{_rand(59)}"), 2),
    "stripe_key": _many(
        lambda: (
            f"{_R.choice(['sk', 'rk'])}_{_R.choice(['live', 'test'])}_"
            + _rand(_R.choice([24, 32, 99]))
        )
    )
    + _many(lambda: _glued(_WORDS, "-_.", "sk_live_" + _rand(24)), 5),
    "slack_token": _many(
        lambda: (
            f"xox{_R.choice('bpasr')}-{_R.randrange(10**11, 10**12)}-"
            f"{_R.randrange(10**12, 10**13)}-{_rand(24)}"
        )
    )
    + _many(
        lambda: _glued(
            _WORDS,
            "_.",
            f"xoxb-{_R.randrange(10**11, 10**12)}-{_R.randrange(10**12, 10**13)}-{_rand(24)}",
        ),
        3,
    ),
    "slack_webhook": _many(
        lambda: (
            f"https://hooks.slack.com/services/T{_rand(8, _UPPER)}/B{_rand(8, _UPPER)}/{_rand(24)}"
        )
    ),
    "anthropic_key": _many(lambda: f"sk-ant-api03-{_rand(93, _ALNUM + '-_')}AA"),
    "openai_key": _many(
        lambda: (
            _R.choice(["sk-", "sk-proj-", "sk-svcacct-", "sk-admin-"])
            + _rand(_R.choice([48, 56, 120]), _ALNUM + "_-")
        )
    ),
    "private_key": [
        f"-----BEGIN {kind}PRIVATE KEY-----\n{_rand(64, _ALNUM + '+/')}\n"
        f"-----END {kind}PRIVATE KEY-----"
        for kind in ["", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED "] * 4
    ],
    "jwt": _many(_jwt),
    "generic_secret": [
        f"{name}{sep}{quote}{_rand(_R.choice([20, 32, 40]), _ALNUM + '+/_-')}{quote}"
        for name, sep, quote in [
            ("api_key", " = ", '"'),
            ("API_KEY", "=", ""),
            ("apiKey", ": ", "'"),
            ("secret", "=", ""),
            ("client_secret", ": ", '"'),
            ("SECRET_TOKEN", "=", ""),
            ("password", ": ", '"'),
            ("db_passwd", "=", ""),
            ("access_key", " => ", "'"),
            ("auth_token", "=", '"'),
            ("Authorization", ": Bearer ", ""),
            ("X-Api-Key", ": ", ""),
            ("private_key", "=", ""),
            ("credentials", ": ", '"'),
            ("token", "=", ""),
            ("aws_secret_access_key", " = ", ""),
            ("SLACK_SECRET", "=", ""),
            ("refresh_token", ": ", '"'),
            ("apikey", "=", ""),
            ("session_token", "=", ""),
        ]
    ],
    "card_number": [
        "4242424242424242",
        "4000 0566 5566 5556",
        "5555-5555-5555-4444",
        "2223003122003222",
        "5200 8282 8282 8210",
        "378282246310005",
        "3714 496353 98431",
        "6011111111111117",
        "6011 0009 9013 9424",
        "3056930009020004",
        "36227206271667",
        "3566002020360505",
        "6200000000000005",
        "4111 1111 1111 1111",
        "5105105105105100",
        "4012888888881881",
        "371449635398431",
        "6011000990139424",
        _card("4", 16),
        _card("51", 16),
        _card("34", 15),
    ],
    "iban": [
        "GB82 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 00",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "AT611904300234573201",
        "SE4550000000058398257466",
        "NO9386011117947",
        "DK5000400440116243",
        "PL61109010140000071219812874",
        "IE29AIBK93115212345678",
        "FI2112345600000785",
        _iban("DE", 22),
        _iban("FR", 27),
        _iban("NL", 18),
        _iban("GB", 22),
        _iban("CH", 21),
    ],
    "email": [
        "alice@example.com",
        "bob.smith+tag@mail.example.org",
        "x@y.io",
        "first_last@sub.domain.co.uk",
        "a.b-c@d-e.fr",
        "USER@EXAMPLE.COM",
        "o'brien@example.ie".replace("'", ""),
        "name%list@example.net",
        "1234@numbers.example",
        "dev@localhost.localdomain",
        "support@tameflare.dev",
        "j.doe@uni-bonn.de",
        "contact@xn--bcher-kva.example",
        "a1@b2.cc",
        "first.middle.last@corp.example.com",
        "team+alerts@ops.example.io",
        "ceo@company.museum",
        "hello@world.travel",
        "z@z.zz",
        "no-reply@github.com",
    ],
    "phone_number": [
        "+1 415 555 2671",
        "+44 20 7946 0958",
        "+33 1 42 68 53 00",
        "+49 30 901820",
        "+81 3-1234-5678",
        "+1-202-555-0173",
        "+61 2 9876 5432",
        "+353 1 234 5678",
        "(415) 555-2671",
        "(212) 555-0199",
        "415-555-2671",
        "212.555.0142",
        "+14155552671",
        "+442079460958",
        "+91 98765 43210",
        "+55 11 91234 5678",
        "+34 912 345 678",
        "+1 (415) 555-2671",
        "+7 495 123 4567",
        "+86 10 1234 5678",
    ],
}

FALSE: dict[str, list[str]] = {
    "aws_access_key": [
        "AKIA",
        "AKIA123",
        "AKIAIOSFODNN7EXAMPL",
        "AKIAAAAAAAAAAAAAAAAA",
        "akiaiosfodnn7example",
        "XAKIAIOSFODNN7EXAMPLEX",
        "AIDAIOSFODNN7EXAMPLE",
        "AROAIOSFODNN7EXAMPLE",
        "ASIA is big",
        "AKIA-IOSFODNN7EXAMPLE",
        "AKIAIOSFODNN7EXAMPLE1",
        "ASIAN_FOOD_DELIVERY_OK",
        "AKIA0000000000000000",
        "KIAIOSFODNN7EXAMPLE",
        "ABIAIOSFODNN7EXAMPLE",
        "AKIAIOSFODNN7EXAMPLEQ",
        "aKIAIOSFODNN7EXAMPLE",
        "AKIAIOSF ODNN7EXAMPLE",
        "AKIA_IOSFODNN7EXAMPLE",
        "MALAYSIA INDONESIA",
        "X-AKIA" + "A" * 16,  # (glued, but its tail is no key id: not random)
        "MALAYSIA-INDONESIA-THAILAND",
        "ASIA_PACIFIC_REGION_CODES",
    ],
    "github_token": [
        "ghp_short",
        "ghp_" + "a" * 36,
        "ghx_" + _rand(36),
        "gh_" + _rand(36),
        "xghp_" + _rand(36),
        "ghp-" + _rand(36),
        "GHP_" + _rand(36),
        "github_pat_short",
        "ghp_" + _rand(30),
        "github_" + _rand(60),
        "ghp_" + "0" * 36,
        "https://github.com/o/r/pull/1",
        "ghp_",
        "git@github.com:o/r.git",
        "gho_" + "ab" * 18,
        "through the high ghost",
        "ghs_" + _rand(20),
        "the ghp_ prefix",
        "ghr_" + "x" * 40,
        "laugh_track_2024_final",
        "sighgho_" + _rand(36),  # (after a letter: another word's tail)
        "my_github_pat_" + _rand(60),  # (`_` is in its alphabet: a longer token's tail)
        "sigh_gho_pending_review",
    ],
    "stripe_key": [
        "sk_live_short",
        "pk_live_" + _rand(24),
        "pk_test_" + _rand(24),
        "sk_prod_" + _rand(24),
        "sk_live_" + "a" * 24,
        "ask_live_" + _rand(24),
        "sk_live-" + _rand(24),
        "sk_test_",
        "rk_live_abc",
        "sk_live_" + "0" * 30,
        "task_live_" + _rand(24),
        "SK_LIVE_" + _rand(24),
        "sk_test_1234567890",
        "disk_test_results",
        "risk_live_feed_" + _rand(10),
        "sk_live",
        "whsec_" + "a" * 10,
        "sk_test_" + "ab" * 10,
        "acct_1032D82eZvKYlo2C",
        "ch_3MmlLrLkdIwHu7ix",
        "desk_live_" + _rand(24),
        "my-sk_live_placeholder",
        "whisk_test_" + _rand(24),
    ],
    "slack_token": [
        "xoxb-short",
        "xoxb-123",
        "xoxz-123456789012-1234567890123-" + _rand(24),
        "xox-123-456",
        "xoxb-aaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbb",
        "xoxb-real-slack-token-0000",
        "boxb-1234-5678",
        "xoxb",
        "xoxb-",
        "xoxb-0000000000-0000000000",
        "exoxb-12345678901-" + _rand(24) + "x",
        "xox_b_123456789012",
        "XOXB-123456789012-" + _rand(24),
        "xoxb-1",
        "xoxoxo hugs",
        "xapp-1",
        "xoxb-abc-def",
        "xoxp-placeholder-token",
        "xoxb-your-token-here-please",
        "box-xoxb",
    ],
    "slack_webhook": [
        "https://hooks.slack.com/",
        "https://hooks.slack.com/services/",
        "http://hooks.slack.com/services/T0/B0/x",
        "https://hooks.slack.com/services/T0",
        "https://slack.com/api/chat.postMessage",
        "https://hooks.slack.com/other/T00000000/B00000000/XXXXXXXX",
        "hooks.slack.com/services/T1/B1/abc",
        "https://hooks.slack.co/services/T00000000/B00000000/XXXXXXXXXXXXXXXX",
        "https://api.slack.com/apps",
        "https://hooks.example.com/services/T00000000/B00000000/XXXXXXXX",
        "see hooks.slack.com docs",
        "https://hooks.slack.com/services/short",
        "https://hooks.slack.com/workflows/",
        "https://hooks.slack.com/commands/1234",
        "https://hooks.slack.com/services/T0/B0",
        "https://example.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "webhooks",
        "https://hooks.slack.com/services/-",
        "https://hooks.slack.com/ services/T0000/B000/XXXXXXXXXXXXXXXXX",
        "slack webhook url",
    ],
    "anthropic_key": [
        "sk-ant-short",
        "sk-ant-",
        "sk-ant-api03-short",
        "sk-ant-" + "a" * 40,
        "xsk-ant-" + _rand(40),
        "sk_ant_" + _rand(40),
        "sk-anthropic-key-here-placeholder-text",
        "SK-ANT-" + _rand(40),
        "sk-ant-api03-" + "0" * 40,
        "sk-ant-api03-your-key-goes-here-please-replace",
        "ask-ant-" + _rand(40),
        "sk-ant-realAnthropicKey0000000000",
        "sk-an-" + _rand(40),
        "sk-ant-api03",
        "ant-" + _rand(40),
        "sk-ant-ab",
        "the sk-ant- prefix",
        "sk-ant-" + "ab" * 20,
        "sk-ant-" + "-" * 40,
        "sk-ant-api03-" + "_" * 40,
    ],
    "openai_key": [
        "sk-short",
        "sk-",
        "sk-agent-placeholder-never-forwarded",
        "sk-your-openai-api-key-goes-here-now",
        "sk-" + "a" * 48,
        "task-" + _rand(48),
        "sk_" + _rand(48),
        "SK-" + _rand(48),
        "disk-usage-report",
        "sk-proj-",
        "sk-proj-short",
        "sk-" + "0" * 48,
        "desk-" + _rand(48),
        "sk-1234",
        "sk-learn",
        "scikit-learn sk-learn",
        "sk-" + "-" * 48,
        "sk-" + "ab" * 24,
        "sk-ant-" + _rand(48),
        "sk-" + "_" * 48,
    ],
    "private_key": [
        "-----BEGIN PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "BEGIN PRIVATE KEY",
        "-----BEGIN RSA PUBLIC KEY-----",
        "----BEGIN PRIVATE KEY-----",
        "-----BEGIN PRIVATE-----",
        "-----END PRIVATE KEY-----",
        "-----BEGIN CERTIFICATE REQUEST-----",
        "private key",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN OPENSSH PUBLIC KEY-----",
        "-----BEGIN X509 CRL-----",
        "-----BEGIN PKCS7-----",
        "-----BEGIN DH PARAMETERS-----",
        "-----BEGIN EC PARAMETERS-----",
        "-----BEGIN private key-----",
        "-----BEGIN  PRIVATE KEY-----",
        "=====BEGIN PRIVATE KEY=====",
        "-----BEGIN SSH2 PUBLIC KEY-----",
        "-----BEGIN-----",
    ],
    "jwt": [
        "eyJ",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.",
        "eyJzdWIiOiIxMjM0In0.eyJzdWIiOiIxMjM0In0.x",
        "abc.def.ghi",
        "eyJ0ZXN0Ijp0cnVlfQ.eyJ0ZXN0Ijp0cnVlfQ.sig",
        "eyJhbGciOiJIUzI1NiJ9.abc.def",
        "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "1.2.3",
        "v1.2.3-rc.1",
        "eyJhbGciOi",
        "eyJhbGciOiJIUzI1NiJ9 eyJzdWIiOiIxIn0",
        "EYJHBGCIOIJIUZI1NIJ9.EYJZDWIIOIIXIN0.SIG",
        "eyJ!!!.eyJ!!!.x",
        "eyJhbGciOiJIUzI1NiJ9..sig",
        "www.example.com",
        "a.b.c.d",
        "eyJ" + "a" * 10,
        "e30.e30.e30",
        "eyJ9.eyJ9.eyJ9",
    ],
    "generic_secret": [
        "api_key = short",
        "password: hunter2",
        "token=abc",
        "secret = aaaaaaaaaaaaaaaaaaaaaaaa",
        "api_key = ${API_KEY}",
        "password: <redacted>",
        "token = 'your-token-here'",
        "color = #ffffff",
        "name = verylongbutnotsecretvaluewithoutdigits",
        "version = 1.2.3.4.5.6.7.8.9.10.11.12",
        "uuid = 123e4567-e89b-12d3-a456-426614174000".replace("uuid", "id"),
        "count = 1234567890123456",
        "url = https://example.com/path",
        "the secret of life is 42",
        "tokenizer = bert-base-uncased",
        "author: Jane Doe",
        "path = /usr/local/lib/python3",
        "description: an api key rotation guide",
        "password_policy = minimum-twelve-characters",
        "Credential=AKIA/20260101/eu-west-1/es/aws4_request",
        "max_tokens = 4096",
    ],
    "card_number": [
        "4242424242424241",
        "1234 5678 9012 3456",
        "0000 0000 0000 0000",
        "4242 4242 4242",
        "4242-4242 4242-4242",
        "3.14159265358979323",
        "2024-01-15 12:00:00",
        "tel 4155552671",
        "order 100000000000000001",
        "9999999999999999",
        "ISBN 978-3-16-148410-0",
        "12345678901234567890123",
        "1234567812345678",
        "4111111111111112",
        "v4.2.4.2.4.2.4.2",
        "id 8800553535",
        "+4915112345678",
        "1700000000000",
        "42424242424242424242",
        "0.4242424242424242",
    ],
    "iban": [
        "GB82 WEST 1234 5698 7654 33",
        "DE89370400440532013001",
        "XX89370400440532013000",
        "GB82",
        "NL91ABNA041716430",
        "FR1420041010050500013M0260",
        "de89370400440532013000",
        "GB00WEST12345698765432",
        "BE68539007547035",
        "ISO8601 2024",
        "US12345678901234567890",
        "AT611904300234573202",
        "CH9300762011623852958",
        "HTTP2 protocol",
        "UTF8 ENCODED TEXT BLOCK",
        "SE4550000000058398257467",
        "NO9386011117948",
        "AB12CDEF",
        "RFC7230 SECTION 3",
        "ES9121000418450200051333",
    ],
    "email": [
        "alice@",
        "@example.com",
        "alice at example dot com",
        "alice@example",
        "user@@example.com",
        "git@github",
        "@decorator",
        "name@.com",
        "a@b",
        "email: none",
        "foo@bar.c",
        "x @ y.com",
        "@mention in slack",
        "pip install pkg@1.0",
        "node@18",
        "user@-example.com",
        "@@",
        "scope@latest",
        "npm i react@^18.2.0",
        "ssh git@host",
    ],
    "phone_number": [
        "2024-01-15",
        "12:30:45",
        "v1.2.3",
        "1234",
        "+1",
        "+12",
        "3.14159",
        "(a) 555-2671",
        "ISBN 978-3-16",
        "10.0.0.1",
        "192.168.1.100",
        "port 8080",
        "id-415-555-2671",
        "415 555 2671x",
        "(41) 555-2671",
        "+1 2",
        "1-800-FLOWERS",
        "2024.01.15",
        "555-2671",
        "$415.55",
    ],
}


def test_every_detector_has_a_table() -> None:
    assert set(TRUE) == set(DETECTORS) == set(FALSE)
    for name in DETECTORS:
        assert len(TRUE[name]) >= 20, name
        assert len(FALSE[name]) >= 20, name
        assert all(0 < d.confidence <= 1 for d in DETECTORS[name])


def _cases(table: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(name, text) for name, texts in table.items() for text in texts]


@pytest.mark.parametrize(("name", "secret"), _cases(TRUE))
def test_detector_finds_its_kind(name: str, secret: str) -> None:
    text = f"please use {secret} for this"
    hits = [h for h in Scanner(DETECTORS[name]).scan(text) if h.detector == name]
    assert hits, f"{name} missed {secret!r}"
    assert text[hits[0].start : hits[0].end] in secret or name == "generic_secret"
    spans = {text[h.start : h.end] for h in default_scanner().scan(text)}
    assert any(s in secret for s in spans)


@pytest.mark.parametrize(("name", "text"), _cases(FALSE))
def test_detector_ignores_near_misses(name: str, text: str) -> None:
    hits = Scanner(DETECTORS[name]).scan(f"please use {text} for this")
    assert [h.detector for h in hits] == []


def test_helpers() -> None:
    assert luhn_valid("4242424242424242")
    assert not luhn_valid("4242424242424241")
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82WEST12345698765433")
    assert entropy("") == 0
    assert entropy("aaaa") == 0
    assert entropy("ab") == 1


def test_generic_secret_gives_way_to_a_named_one() -> None:
    key = "ghp_" + _rand(36)
    hits = default_scanner().scan(f'GITHUB_TOKEN="{key}"')
    assert [h.detector for h in hits] == ["github_token"]


def _reference(detectors: tuple[object, ...], text: str) -> set[tuple[str, int, int]]:
    """A second implementation: each pattern over the whole text with ``finditer``."""
    from agentfirewall.content.scanner import Hit, _resolve

    hits = []
    for d in detectors:
        assert isinstance(d, type(DETECTORS["jwt"][0]))
        m = d.pattern.search(text)
        while m is not None:
            start = m.start()
            ok = d.context is None or d.context.search(text, max(0, start - d.back), start)
            if ok and (d.check is None or d.check(m.group(d.group))):
                s, e = m.span(d.group)
                hits.append(Hit(d.name, d.kind, d.confidence, s, e))
                m = d.pattern.search(text, max(m.end(), start + 1))
            else:  # rejected: the next candidate may start inside it
                m = d.pattern.search(text, start + 1)
    return {(h.detector, h.start, h.end) for h in _resolve(hits)}


_FILLER = st.text(alphabet="ab_=:- \n\"'xy01(),.", min_size=0, max_size=40)
SECRET_NAMES = [d.name for d in SECRETS]
_PLANTED = st.sampled_from([s for n in SECRET_NAMES for s in TRUE[n][:5]])


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.tuples(_FILLER, _PLANTED), min_size=1, max_size=12), st.integers(0, 300))
def test_scanner_agrees_with_patterns_run_one_by_one(
    parts: list[tuple[str, str]], repeat: int
) -> None:
    """Sparse text and text dense in anchors (where the scanner switches strategy) alike."""
    text = "".join(f"{filler} {secret} " for filler, secret in parts) + "x_=:-" * repeat * 10
    ours = {(h.detector, h.start, h.end) for h in Scanner(SECRETS).scan(text)}
    assert ours == _reference(SECRETS, text)


PII_NAMES = ["card_number", "iban", "email", "phone_number"]
_PLANTED_PII = st.sampled_from([s for n in PII_NAMES for s in TRUE[n][:8]])
_DIGITS = st.text(alphabet="0123456789 -.AZab+()", min_size=0, max_size=30)


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.tuples(_DIGITS, _PLANTED_PII), min_size=1, max_size=10))
def test_pii_scanner_agrees_with_patterns_run_one_by_one(parts: list[tuple[str, str]]) -> None:
    """Shapes and digit gates find what the patterns find over the whole text."""
    text = "".join(f"{filler} {planted} " for filler, planted in parts)
    ours = {(h.detector, h.start, h.end) for h in Scanner(PII).scan(text)}
    assert ours == _reference(PII, text)


#: Tokens that may be glued to a word, and the characters that may not glue them (a
#: character their random part holds: there they are the tail of a longer token).
_GLUABLE = [(name, secret) for name in ("aws_access_key", "github_token", "stripe_key",
                                        "slack_token") for secret in TRUE[name][:5]]  # fmt: skip
_NOT_GLUE = {"slack_token": "-", "github_pat": "_"}
_GLUE = st.sampled_from("-_.:/=+@,;'\"()[]{}<>|#~ \t\n")


@settings(max_examples=examples(80), deadline=None)
@given(st.text(_ALNUM, min_size=1, max_size=12), _GLUE, st.sampled_from(_GLUABLE))
def test_a_token_glued_to_a_word_is_found(word: str, glue: str, planted: tuple[str, str]) -> None:
    """``aws-AKIA…``, ``creds_AKIA…``, ``token-ghp_…``, ``stripe-sk_live_…``: a token's
    prefix after any punctuation is the token (not after a letter or a digit: FALSE)."""
    name, secret = planted
    if glue in _NOT_GLUE.get("github_pat" if secret.startswith("github_pat_") else name, ""):
        return
    text = f"{word}{glue}{secret} and more"
    spans = {(h.detector, text[h.start : h.end]) for h in default_scanner().scan(text)}
    assert (name, secret) in spans
