"""The Node SDK's offline decision-token check agrees with the Python one on every vector.

Each vector (a token, a JWKS document, a time and the bindings asked for) is judged by the
Python verifier (``agentfirewall.jwks.verify_with_jwks``) and by the Node SDK's
``verifyWithJwks`` (the pure function behind ``AgentFirewall.verifyDecisionToken``): both
must accept it with the same claims, or refuse it with the same TokenError code and
message. The table holds one valid token of each kind and each way a token must be
refused (the attacks of tests/core/test_tokens.py); the Hypothesis tests add random edits
of a token's text and random signed headers and claims. tests/node/test_node_verify_live.py
checks the client method against a real server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall.errors import TokenError
from agentfirewall.jwks import verify_with_jwks
from agentfirewall.tokens import (
    MAX_TOKEN_CHARS,
    SigningKey,
    generate_signing_key,
    jwks_from_keys,
    sign_decision_token,
)
from agentfirewall_server.signer import TokenSigner

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "sdk-node"

pytestmark = [pytest.mark.node, pytest.mark.timeout(300)]

NOW = 1_800_000_000
KEY = generate_signing_key()
OTHER = generate_signing_key()
JWKS = jwks_from_keys([KEY])
HASH = "a" * 64
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_PRIME = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF

# Reads every vector from the file named by argv[2], judges it with the SDK's ESM build
# (argv[1]) and prints the verdicts as JSON, in order.
JUDGE = """
import { readFileSync } from "node:fs";
const { verifyWithJwks, TokenError } = await import(process.argv[2]);
const vectors = JSON.parse(readFileSync(process.argv[3], "utf8"));
const safe = (n) => (Number.isSafeInteger(n) ? n : "huge");
const verdicts = vectors.map(({ token, document, now, bindings }) => {
  try {
    const claims = verifyWithJwks(token, document, { now, ...bindings });
    const { issued_at, expires_at } = claims;
    return { claims: { ...claims, issued_at: safe(issued_at), expires_at: safe(expires_at) } };
  } catch (error) {
    if (!(error instanceof TokenError)) return { crash: `${error?.name}: ${error?.message}` };
    return { code: error.code, message: error.message };
  }
});
console.log(JSON.stringify(verdicts));
"""


@dataclass
class Vector:
    name: str
    token: object
    expected: str  # "ok", the TokenError code, or "refused" (any code)
    now: int = NOW
    bindings: dict[str, str] = field(default_factory=dict)
    document: object = field(default_factory=lambda: JWKS)


# -- making tokens -----------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signature_of(signing_input: bytes, key: SigningKey = KEY) -> bytes:
    r, s = decode_dss_signature(key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def signed_raw(header: bytes, claims: bytes, key: SigningKey = KEY) -> str:
    """A token of exactly these header and claims bytes, really signed by `key`."""
    signing_input = f"{b64(header)}.{b64(claims)}"
    return f"{signing_input}.{b64(signature_of(signing_input.encode(), key))}"


def signed(header: str, claims: str, key: SigningKey = KEY) -> str:
    return signed_raw(header.encode(), claims.encode(), key)


def header(key: SigningKey = KEY, /, **changes: object) -> str:
    members: dict[str, object] = {"alg": "ES256", "kid": key.kid, "typ": "JWT", **changes}
    return json.dumps({k: v for k, v in members.items() if v is not DROP})


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()  # a member left out


def claims(**changes: object) -> str:
    members: dict[str, object] = {
        "iss": "tameflare",
        "aud": "tameflare-execute",
        "sub": "Bot",
        "jti": "n1",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 300,
        "act": "act_1",
        "ahs": HASH,
        "out": "allow",
    }
    members.update(changes)
    return json.dumps({k: v for k, v in members.items() if v is not DROP})


def token(**changes: object) -> str:
    return signed(header(), claims(**changes))


def malleate(text: str) -> str:
    """The same token with the other valid ECDSA signature, (r, n - s)."""
    head, _, sig = text.rpartition(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    s = int.from_bytes(raw[32:], "big")
    return f"{head}.{b64(raw[:32] + (P256_ORDER - s).to_bytes(32, 'big'))}"


def replace_part(text: str, index: int, part: str) -> str:
    parts = text.split(".")
    parts[index] = part
    return ".".join(parts)


def jwk(**changes: object) -> dict[str, object]:
    members = {**KEY.public_jwk(), **changes}
    return {k: v for k, v in members.items() if v is not DROP}


# -- the table ---------------------------------------------------------------------------


def valid_tokens() -> list[Vector]:
    real = sign_decision_token(
        KEY, agent="Bot", action_request_id="act_1", action_hash=HASH, now=NOW
    )
    server = TokenSigner(KEY).sign(
        agent="Bot", action_request_id="act_1", action_hash=HASH, now=NOW
    )
    bound = {"actionRequestId": "act_1", "actionHash": HASH, "agent": "Bot"}
    return [
        Vector("signed by the SDK's signer", real, "ok"),
        Vector("signed by the server's signer, every binding", server, "ok", bindings=bound),
        Vector("malleated signature (r, n - s): same claims", malleate(real), "ok"),
        Vector("no kid: every key is tried", signed(header(kid=DROP), claims()), "ok"),
        Vector("no typ", signed(header(typ=DROP), claims()), "ok"),
        Vector("audience in a list", token(aud=["other", "tameflare-execute"]), "ok"),
        Vector("expiry at the leeway's edge", real, "ok", now=NOW + 305),
        Vector("nbf at the leeway's edge", token(nbf=NOW + 5), "ok"),
        Vector("nbf null: no start", token(nbf=None, iat=NOW + 3600), "ok"),
        Vector("no nbf: iat is the start", token(nbf=DROP), "ok"),
        Vector("an expiry of 4,300 digits", token(exp=int("9" * 4300)), "ok"),
        Vector(
            "a unicode agent",
            token(sub="Agent ünïcode 😀"),
            "ok",
            bindings={"agent": "Agent ünïcode 😀"},
        ),
        Vector(
            "escapes in a claim",
            signed(header(), claims()[:-1] + ', "x": "\\ud83d\\ude00\\u00e9\\n"}'),
            "ok",
        ),
        Vector(
            "__proto__ and constructor claims",
            signed(header(), claims()[:-1] + ', "__proto__": {"iss": 1}, "constructor": 2}'),
            "ok",
        ),
        Vector(
            "a JWK's own kid member is not what names it",
            real,
            "ok",
            document={"keys": [jwk(kid="other")]},
        ),
        Vector("two keys", real, "ok", document=jwks_from_keys([OTHER, KEY])),
        Vector(
            "other entries skipped",
            real,
            "ok",
            document={
                "keys": [
                    1,
                    "x",
                    None,
                    jwk(kty="RSA"),
                    jwk(crv="P-384"),
                    jwk(use="enc"),
                    jwk(alg="ES384"),
                    jwk(use=None),
                    jwk(),
                ]
            },
        ),
    ]


def respellings(segment: str) -> list[str]:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(segment[-1])
    return [
        segment + "=" * (-len(segment) % 4 or 4),
        segment.replace("-", "+").replace("_", "/")
        if "-" in segment or "_" in segment
        else segment + "+",
        segment[:-1] + alphabet[last ^ 1],
        segment[:5] + " " + segment[5:],
        segment[:5] + "\n" + segment[5:],
        " " + segment,
        segment[:5] + "!" + segment[5:],
        segment + "A",
        "",
    ]


def encoding_attacks() -> list[Vector]:
    real = token()
    vectors = [
        Vector("not a string: a number", 42, "malformed"),
        Vector("not a string: null", None, "malformed"),
        Vector("empty", "", "malformed"),
        Vector("two parts", "a.b", "malformed"),
        Vector("four parts", real + ".x", "malformed"),
        Vector("garbage", "not-a-token", "malformed"),
        Vector(
            "longer than 8192", signed(header(), claims(pad="x" * MAX_TOKEN_CHARS)), "malformed"
        ),
        Vector("ten megabytes", real + "A" * 10_000_000, "malformed"),
        # 5,000 code points but 10,000 UTF-16 units: within the limit, refused for its alg
        Vector(
            "astral characters within the limit",
            signed(header(alg="none"), "{}") + "😀" * 5000,
            "bad_algorithm",
        ),
    ]
    for index, part in enumerate(("header", "claims", "signature")):
        for number, other in enumerate(respellings(real.split(".")[index])):
            vectors.append(
                Vector(f"{part} respelled #{number}", replace_part(real, index, other), "refused")
            )
    return vectors


def json_attacks() -> list[Vector]:
    repeated_alg = f'{{"alg":"none","alg":"ES256","kid":"{KEY.kid}"}}'
    nested = claims(aud={"a": 1, "b": 2}).replace('"b": 2', '"a": 2')
    deep = claims()[:-1] + ', "x": ' + "[" * 2000 + "]" * 2000 + "}"
    vectors = [
        Vector("a repeated header member", signed(repeated_alg, claims()), "malformed"),
        Vector(
            "a repeated claim",
            signed(header(), claims()[:-1] + ', "act": "act_2"}'),
            "malformed",
            bindings={"actionRequestId": "act_2"},
        ),
        Vector("a repeated nested member", signed(header(), nested), "malformed"),
        Vector(
            "a repeated member spelled with escapes",
            signed(header(), claims()[:-1] + ', "\\u0061ct": "act_2"}'),
            "malformed",
        ),
        Vector("nesting 2000 deep", signed(header(), deep), "malformed"),
        Vector(
            "an integer of 4,301 digits",
            signed(header(), claims()[:-1] + ', "x": ' + "1" * 4301 + "}"),
            "malformed",
        ),
        Vector(
            "a BOM", signed_raw(header().encode(), b"\xef\xbb\xbf" + claims().encode()), "malformed"
        ),
        Vector(
            "invalid UTF-8",
            signed_raw(header().encode(), claims(sub="X").encode().replace(b"X", b"\xff")),
            "malformed",
        ),
        Vector(
            "an overlong UTF-8 slash",
            signed_raw(header().encode(), claims(sub="X").encode().replace(b"X", b"\xc0\xaf")),
            "malformed",
        ),
        Vector(
            "a surrogate in UTF-8",
            signed_raw(header().encode(), claims(sub="X").encode().replace(b"X", b"\xed\xa0\x80")),
            "malformed",
        ),
        Vector(
            "a raw control character",
            signed(header(), claims(sub="X").replace("X", "\x01")),
            "malformed",
        ),
        Vector(
            "a bad escape", signed(header(), claims(sub="X").replace("X", "\\x41")), "malformed"
        ),
        Vector(
            "a short \\u escape",
            signed(header(), claims(sub="X").replace("X", "\\u41")),
            "malformed",
        ),
        Vector("a trailing comma", signed(header(), claims()[:-1] + ",}"), "malformed"),
        Vector("single quotes", signed(header(), claims().replace('"out"', "'out'")), "malformed"),
        Vector("extra data", signed(header(), claims() + " {}"), "malformed"),
        Vector("a leading zero", signed(header(), claims()[:-1] + ', "x": 01}'), "malformed"),
        Vector("a bare fraction", signed(header(), claims()[:-1] + ', "x": 1.}'), "malformed"),
        Vector("a plus sign", signed(header(), claims()[:-1] + ', "x": +1}'), "malformed"),
    ]
    for text in ("NaN", "Infinity", "-Infinity"):
        vectors.append(
            Vector(
                f"{text} in claims",
                signed(header(), claims()[:-1] + f', "x": {text}}}'),
                "malformed",
            )
        )
    for text in ("[]", '"x"', "1", "null", "{" * 5000, ""):
        vectors.append(Vector(f"claims {text[:8]!r}", signed(header(), text), "malformed"))
    return vectors


def hs256_with_public_key() -> str:
    """The classic confusion: an HMAC whose secret is the server's public key (PEM)."""
    pem = KEY.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64(header(alg='HS256').encode())}.{b64(claims().encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def header_attacks() -> list[Vector]:
    vectors = []
    members = {
        "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": ["MIIB"],
        "crit": ["exp"],
        "b64": False,
        "zip": "DEF",
        "constructor": 1,
        "__proto__": {},
    }
    for name, value in members.items():
        vectors.append(
            Vector(f"header member {name}", signed(header(**{name: value}), claims()), "malformed")
        )
    for alg in (
        "none",
        "None",
        "NONE",
        "HS256",
        "ES384",
        "ES256K",
        "RS256",
        "es256",
        "",
        1,
        None,
        ["ES256"],
        1.5,
    ):
        vectors.append(Vector(f"alg {alg!r}", signed(header(alg=alg), claims()), "bad_algorithm"))
    vectors += [
        Vector("no alg", signed(header(alg=DROP), claims()), "bad_algorithm"),
        Vector(
            "alg confusion: HS256 keyed with the public key",
            hs256_with_public_key(),
            "bad_algorithm",
        ),
        Vector("kid of another key", signed(header(kid=OTHER.kid), claims()), "bad_signature"),
        Vector("kid of no key", signed(header(kid="no-such-key"), claims()), "bad_signature"),
        Vector("empty kid", signed(header(kid=""), claims()), "bad_signature"),
        Vector("kid a number", signed(header(kid=7), claims()), "malformed"),
        Vector("kid null", signed(header(kid=None), claims()), "malformed"),
        Vector("typ JOSE+JSON", signed(header(typ="JOSE+JSON"), claims()), "malformed"),
        Vector("typ null", signed(header(typ=None), claims()), "malformed"),
        Vector("header a list", signed("[]", claims()), "malformed"),
    ]
    return vectors


def signature_attacks() -> list[Vector]:
    head = token().rpartition(".")[0]
    tampered = replace_part(token(), 1, token(act="act_2").split(".")[1])
    vectors = [
        Vector(
            "signed by another key under its own kid",
            signed(header(OTHER), claims(), OTHER),
            "bad_signature",
        ),
        Vector(
            "signed by another key under our kid",
            signed(header(), claims(), OTHER),
            "bad_signature",
        ),
        Vector("claims changed after signing", tampered, "bad_signature"),
        Vector(
            "header changed after signing",
            replace_part(token(), 0, b64(header(typ=DROP).encode())),
            "bad_signature",
        ),
    ]
    shapes = {
        "zeros": b"\x00" * 64,
        "short": b"\x01" * 63,
        "long": b"\x01" * 65,
        "r=0": b"\x00" * 32 + b"\x01" * 32,
        "s=n": b"\x01" * 32 + P256_ORDER.to_bytes(32, "big"),
        "all ones": b"\xff" * 64,
    }
    for name, raw in shapes.items():
        vectors.append(Vector(f"signature {name}", f"{head}.{b64(raw)}", "bad_signature"))
    return vectors


def claim_attacks() -> list[Vector]:
    table: list[tuple[dict[str, object], str]] = [
        ({"exp": DROP}, "missing_claim"),
        ({"exp": float(NOW + 300)}, "missing_claim"),
        ({"exp": str(NOW + 300)}, "missing_claim"),
        ({"exp": True}, "missing_claim"),
        ({"exp": None}, "missing_claim"),
        ({"exp": NOW - 60}, "expired"),
        ({"exp": -int("9" * 4300)}, "expired"),
        ({"nbf": NOW + 3600}, "not_yet_valid"),
        ({"nbf": NOW + 6}, "not_yet_valid"),
        ({"nbf": DROP, "iat": NOW + 3600}, "not_yet_valid"),
        ({"nbf": "0"}, "malformed"),
        ({"nbf": 1.5}, "malformed"),
        ({"nbf": float(NOW)}, "malformed"),
        ({"nbf": False}, "malformed"),
        ({"iat": "now"}, "malformed"),
        ({"iat": float(NOW)}, "malformed"),
        ({"iat": DROP}, "missing_claim"),
        ({"sub": 7}, "malformed"),
        ({"sub": ""}, "malformed"),
        ({"act": ["act_1"]}, "malformed"),
        ({"jti": None}, "malformed"),
        ({"jti": DROP}, "missing_claim"),
        ({"out": DROP}, "missing_claim"),
        ({"ahs": {}}, "malformed"),
        ({"iss": DROP}, "wrong_issuer"),
        ({"iss": "TameFlare"}, "wrong_issuer"),
        ({"aud": DROP}, "wrong_audience"),
        ({"aud": ["other"]}, "wrong_audience"),
        ({"aud": "tameflare"}, "wrong_audience"),
        ({"aud": [["tameflare-execute"]]}, "wrong_audience"),
    ]
    vectors = [Vector(f"claims {changes!r}", token(**changes), code) for changes, code in table]
    exponent = claims().replace(f'"exp": {NOW + 300}', '"exp": 1.8e9')
    vectors += [
        Vector("exp written with an exponent", signed(header(), exponent), "missing_claim"),
        Vector("expired past the leeway", token(), "expired", now=NOW + 306),
        Vector("another action", token(), "wrong_action", bindings={"actionRequestId": "act_2"}),
        Vector("another action's hash", token(), "wrong_action", bindings={"actionHash": "b" * 64}),
        Vector("an empty action id", token(), "wrong_action", bindings={"actionRequestId": ""}),
        Vector(
            "a non-ASCII action id", token(), "wrong_action", bindings={"actionRequestId": "act_é"}
        ),
        Vector(
            "a lone surrogate action id",
            token(),
            "wrong_action",
            bindings={"actionRequestId": "act_\ud800"},
        ),
        Vector(
            "another lone surrogate",
            token(act="act_\ud800"),
            "wrong_action",
            bindings={"actionRequestId": "act_\ud801"},
        ),
        Vector("another agent", token(), "wrong_agent", bindings={"agent": "bot"}),
        Vector("another agent, a space", token(), "wrong_agent", bindings={"agent": "Bot "}),
        Vector("another agent, an accent", token(), "wrong_agent", bindings={"agent": "Bôt"}),
    ]
    return vectors


def document_attacks() -> list[Vector]:
    real = token()
    padded = base64.urlsafe_b64encode(base64.urlsafe_b64decode(str(jwk()["x"]) + "=")).decode()
    documents: list[tuple[str, object]] = [
        ("a list", []),
        ("no keys", {}),
        ("keys not a list", {"keys": {}}),
        ("no key", {"keys": []}),
        ("only RSA", {"keys": [jwk(kty="RSA")]}),
        ("only encryption", {"keys": [jwk(use="enc")]}),
        ("only ES384", {"keys": [jwk(alg="ES384")]}),
        ("use null", {"keys": [jwk(use=None)]}),
        ("x missing", {"keys": [jwk(x=DROP)]}),
        ("x a number", {"keys": [jwk(x=5)]}),
        ("x one byte", {"keys": [jwk(x="AA")]}),
        ("x 33 bytes", {"keys": [jwk(x=b64(b"\x01" * 33))]}),
        ("x padded", {"keys": [jwk(x=padded)]}),
        ("off the curve", {"keys": [jwk(y=b64(b"\x01" * 32))]}),
        ("x the field prime", {"keys": [jwk(x=b64(P256_PRIME.to_bytes(32, "big")))]}),
        ("two broken keys: the first one's reason", {"keys": [jwk(y="AA"), jwk(x="AA")]}),
    ]
    vectors = [Vector(f"JWKS {name}", real, "bad_key", document=doc) for name, doc in documents]
    # a key that does not load is skipped (RFC 7517 section 5): the others still verify, and
    # a token naming the broken key, and no key that loads, is refused with `bad_key`
    other, broken = OTHER.public_jwk(), jwk(x="AA")
    short = f"{real.rpartition('.')[0]}.{b64(b'x' * 63)}"
    naming_other = signed(header(OTHER), claims())
    skipped: list[tuple[str, str, str, list[object]]] = [
        ("a good key after a bad one", real, "ok", [broken, jwk()]),
        ("a good key before a bad one", real, "ok", [jwk(), jwk(y="AA")]),
        ("the token's key broken", real, "bad_key", [other, broken]),
        ("the token's key off the curve", real, "bad_key", [jwk(y=b64(b"\x01" * 32)), other]),
        ("the token's key broken, a short signature", short, "bad_key", [other, broken]),
        (
            "a token naming another, broken key",
            naming_other,
            "bad_key",
            [jwk(), {**other, "x": "AA"}],
        ),
        ("a broken key without a kid", real, "bad_signature", [other, jwk(x="AA", kid=DROP)]),
        ("a broken key whose kid is no string", real, "bad_signature", [other, jwk(x="AA", kid=7)]),
    ]
    for name, text, code, keys in skipped:
        vectors.append(Vector(f"JWKS {name}", text, code, document={"keys": keys}))
    return vectors


def all_vectors() -> list[Vector]:
    return [
        *valid_tokens(),
        *encoding_attacks(),
        *json_attacks(),
        *header_attacks(),
        *signature_attacks(),
        *claim_attacks(),
        *document_attacks(),
    ]


# -- judging ------------------------------------------------------------------------------


def python_verdict(vector: Vector) -> dict[str, Any]:
    names = {"actionRequestId": "action_request_id", "actionHash": "action_hash", "agent": "agent"}
    bindings = {names[k]: v for k, v in vector.bindings.items()}
    try:
        found = verify_with_jwks(vector.token, vector.document, now=vector.now, **bindings)  # type: ignore[arg-type]
    except TokenError as error:
        return {"code": error.code, "message": str(error)}
    shown = asdict(found)
    for name in ("issued_at", "expires_at"):
        shown[name] = shown[name] if abs(shown[name]) <= 2**53 - 1 else "huge"
    return {"claims": shown}


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("needs Node.js on PATH (Debian: apt-get install nodejs)")
    return found


def node_verdicts(node: str, vectors: list[Vector], where: Path) -> list[dict[str, Any]]:
    where.mkdir(parents=True, exist_ok=True)
    data = [
        {"token": v.token, "document": v.document, "now": v.now, "bindings": v.bindings}
        for v in vectors
    ]
    (where / "vectors.json").write_text(json.dumps(data), encoding="utf-8")
    (where / "judge.mjs").write_text(JUDGE, encoding="utf-8")
    sdk = (PACKAGE / "dist" / "esm" / "index.js").as_uri()
    result = subprocess.run(
        [node, "judge.mjs", sdk, "vectors.json"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    verdicts: list[dict[str, Any]] = json.loads(result.stdout)
    return verdicts


def disagreements(
    node: str, vectors: list[Vector], where: Path, *, messages: bool = True
) -> Iterator[str]:
    """Each vector both SDKs judge differently: another outcome, code or claims (or, when
    `messages`, another message; a value a message quotes may be written differently)."""
    for vector, said in zip(vectors, node_verdicts(node, vectors, where), strict=True):
        expected = python_verdict(vector)
        if not messages:
            said.pop("message", None)
            expected.pop("message", None)
        if said != expected:
            yield f"{vector.name}: python {expected}, node {said}"


def test_every_vector_is_judged_as_the_python_verifier_judges_it(node: str, tmp_path: Path) -> None:
    """One valid token of each kind and each way a token must be refused: the same verdict,
    code and message from both SDKs (and the code the table expects)."""
    vectors = all_vectors()
    for vector in vectors:
        verdict = python_verdict(vector)
        code = verdict.get("code", "ok")
        assert code == vector.expected or (vector.expected, code != "ok") == ("refused", True), (
            vector.name,
            verdict,
        )
    assert list(disagreements(node, vectors, tmp_path)) == []


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_EDIT = st.tuples(
    st.integers(0, 10_000),
    st.sampled_from(["insert", "delete", "replace"]),
    st.sampled_from(_ALPHABET + "=+/. \t\n!%\x00é😀"),
)


def edited(text: str, edits: list[tuple[int, str, str]]) -> str:
    chars = list(text)
    for at, edit, char in edits:
        at %= len(chars) + 1
        if edit == "insert":
            chars.insert(at, char)
        elif at < len(chars):
            if edit == "delete":
                del chars[at]
            else:
                chars[at] = char
    return "".join(chars)


@given(batch=st.lists(st.lists(_EDIT, min_size=1, max_size=3), min_size=40, max_size=40))
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_edit_of_a_token_gets_the_same_verdict_from_both(
    node: str, tmp_path: Path, batch: list[list[tuple[int, str, str]]]
) -> None:
    """Random insertions, deletions and replacements anywhere in a token's text."""
    real = token()
    vectors = [Vector(f"edit {edits}", edited(real, edits), "?") for edits in batch]
    assert list(disagreements(node, vectors, tmp_path / "edits", messages=False)) == []


_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["ES256", "JWT", "tameflare", "tameflare-execute", "act_1", "Bot", HASH]),
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_NAMES = [
    "alg",
    "kid",
    "typ",
    "iss",
    "aud",
    "sub",
    "jti",
    "iat",
    "nbf",
    "exp",
    "act",
    "ahs",
    "out",
    "x",
]


@st.composite
def _members(draw: st.DrawFn, base: dict[str, object]) -> dict[str, object]:
    """`base` with a few members dropped, replaced by any JSON value, or added."""
    members = dict(base)
    for name in draw(st.lists(st.sampled_from(_NAMES), max_size=3)):
        if draw(st.booleans()):
            members.pop(name, None)
        else:
            members[name] = draw(_VALUE)
    return members


@given(
    batch=st.lists(
        st.tuples(
            _members({"alg": "ES256", "kid": KEY.kid, "typ": "JWT"}),
            _members(json.loads(claims())),
            st.integers(NOW - 400, NOW + 400),
        ),
        min_size=40,
        max_size=40,
    )
)
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_signed_header_and_claims_get_the_same_verdict_from_both(
    node: str, tmp_path: Path, batch: list[tuple[dict[str, object], dict[str, object], int]]
) -> None:
    """Really signed tokens whose header and claims members are dropped, retyped or added:
    every type of JSON value, integers and floats of any size, at times around the token's."""
    vectors = [
        Vector(f"{h} {c} at {now}", signed(json.dumps(h), json.dumps(c)), "?", now=now)
        for h, c, now in batch
    ]
    assert list(disagreements(node, vectors, tmp_path / "signed", messages=False)) == []
