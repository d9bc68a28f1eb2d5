"""Unnamed requests: the ``<connector>.unknown.<method>`` family no allow wildcard grants,
path encodings that must name the true action or fall in that family, and method
overrides in bodies (issue 12, item 7)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest
from agentfirewall.connectors.base import _may_name_a_method, _refuse_body_override
from agentfirewall.connectors.registry import get_connector
from agentfirewall.errors import ConnectorError
from agentfirewall.policy.globs import dot_prefixes, reserved_floor
from agentfirewall.policy.permissions import AccessIndex, AccessRule
from tests.fuzzscale import examples

GH = get_connector("github")
PR = "https://api.github.com/repos/acme/api/pulls/42"


def _lookup(rules: list[AccessRule], action: str) -> str | None:
    found = AccessIndex(rules).lookup("Bot", "github", action, dot_prefixes(action))
    return None if found is None else f"{found.action_pattern}:{found.decision}"


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["github.*"], None),
        (["*"], None),
        (["github.*.put"], None),
        (["*.put"], None),
        (["github.*", "github.unknown.*"], "github.unknown.*:allow"),
        (["github.unknown.put"], "github.unknown.put:allow"),
        (["github.unknown.p*"], "github.unknown.p*:allow"),
    ],
)
def test_allow_wildcards_never_grant_the_unknown_family(
    patterns: list[str], expected: str | None
) -> None:
    rules = [AccessRule("Bot", "*", p, "allow") for p in patterns]
    assert _lookup(rules, "github.unknown.put") == expected
    if not patterns[0].startswith("github.unknown"):  # they still grant named actions
        assert _lookup(rules[:1], "github.pr.put") == f"{patterns[0]}:allow"


@pytest.mark.parametrize("decision", ["deny", "require_approval"])
@pytest.mark.parametrize("pattern", ["*", "github.*", "*.put"])
def test_deny_and_hold_wildcards_still_cover_it(decision: str, pattern: str) -> None:
    rules = [AccessRule("Bot", "*", "github.*", "allow"), AccessRule("Bot", "*", pattern, decision)]
    assert _lookup(rules, "github.unknown.put") == f"{pattern}:{decision}"


def test_reserved_floor() -> None:
    assert reserved_floor("github.unknown.put") == "github.unknown."
    assert reserved_floor("github.pr.merge") == ""
    assert reserved_floor("github.unknowns.put") == ""


@pytest.mark.parametrize(
    ("suffix", "action"),
    [
        ("/merge", "github.pr.merge"),
        ("/merg%65", "github.pr.merge"),  # unreserved escape: GitHub decodes it too
        ("/MERGE", "github.pr.merge"),  # read as the riskier action
        ("/merge/", "github.pr.merge"),
        ("/merge.", "github.pr.merge"),
        ("/merge.json", "github.pr.merge"),
        ("/merge%20", "github.unknown.put"),
        ("/merge%3Fx", "github.unknown.put"),
        ("/merge%23", "github.unknown.put"),
        ("/merg%2565", "github.unknown.put"),  # double encoding is not decoded twice
        ("/merge%2520", "github.unknown.put"),
    ],
)
def test_encoded_paths_name_the_true_action_or_the_unknown_family(suffix: str, action: str) -> None:
    assert GH.parse(HttpRequest.from_url("PUT", PR + suffix)).action_type == action


@pytest.mark.parametrize("suffix", ["/merge%2F", "/merge%2f..", "/merge%5C", "/./merge", "//merge"])
def test_ambiguous_paths_are_refused(suffix: str) -> None:
    with pytest.raises(ConnectorError):
        GH.parse(HttpRequest.from_url("PUT", PR + suffix))


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("kind", ["github", "stripe", "slack", "openai", "anthropic", "sendgrid"])
@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        (FORM, b"_method=DELETE"),
        (FORM, b"a=1&_METHOD=delete"),
        (FORM, b"%5Fmethod=DELETE"),
        ("", b"x=1&_method=DELETE"),
        ("application/json", b'{"_method": "DELETE"}'),
        ("application/json", b'{"\\u005fmethod": "DELETE"}'),
        ("application/vnd.api+json", b'{"a": 1, "_Method": "DELETE"}'),
        ("", b'{"_method": "DELETE"}'),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="_method"',
        ),
    ],
)
def test_method_override_in_a_body_is_refused(kind: str, ctype: str, body: bytes) -> None:
    connector = get_connector(kind)
    host = (connector.default_domains or ("api.example.com",))[0]
    headers = (("Content-Type", ctype),) if ctype else ()
    request = HttpRequest.from_url("POST", f"https://{host}/x", headers=headers, body=body)
    with pytest.raises(ConnectorError, match="_method"):
        connector.parse(request)


_UNDERSCORES = st.sampled_from(["_"] * 4 + ["\\u005f", "\\u005F", "%5F", "%5f", "", "-"])
_OTHERS = st.sampled_from([""] * 8 + ["x", " ", "+", ".", "é", "\u212a", "\\", "%"])


@st.composite
def _method_spellings(draw: st.DrawFn) -> str:
    """``method``, each letter in either case, now and then one escaped or left out."""
    letters = []
    for letter in "method":
        form = draw(st.sampled_from(["lower"] * 6 + ["upper"] * 5 + ["json", "percent", "drop"]))
        letters.append({
            "lower": letter, "upper": letter.upper(), "json": f"\\u{ord(letter):04x}",
            "percent": f"%{ord(letter):02X}", "drop": "",
        }[form])  # fmt: skip
    return "".join(letters)


_SHAPES = {
    "json": ["application/json", "application/vnd.api+json", ""],
    "form": [FORM, ""],
    "part": ["multipart/form-data; boundary=b"],
}
_KINDS = st.sampled_from(sorted(_SHAPES)).flatmap(
    lambda shape: st.tuples(st.just(shape), st.sampled_from(_SHAPES[shape]))
)


@settings(max_examples=examples(500))
@given(st.tuples(_OTHERS, _UNDERSCORES, _method_spellings(), _OTHERS), _KINDS)
def test_the_quick_body_check_never_hides_an_override(
    pieces: tuple[str, ...], kind: tuple[str, str]
) -> None:
    """`request_method` reads a body for `_method` only when `_may_name_a_method` says it
    may hold one: wherever the full check (`_refuse_body_override`) refuses a body, the
    quick one must say "may"."""
    shape, ctype = kind
    name = "".join(pieces)
    body = {
        "json": '{"a": 1, "' + name + '": "DELETE"}',
        "form": "a=1&" + name + "=DELETE",
        "part": '--b\r\nContent-Disposition: form-data; name="' + name + '"\r\n\r\nx\r\n--b--',
    }[shape].encode()
    request = HttpRequest.from_url(
        "POST", "https://api.example.com/x", headers=(("Content-Type", ctype),), body=body
    )
    try:
        _refuse_body_override(request, "generic")
    except ConnectorError as exc:
        if "_method" in str(exc):
            assert _may_name_a_method(body), body


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json", b'{"title": "method 100%", "body": "\\u00e9"}'),
        (FORM, b"text=the+method&x=%25"),
        ("application/octet-stream", b"_method=DELETE"),  # not a form: not read as one
        ("", b"\xff\xfe binary % method"),
    ],
)
def test_bodies_that_merely_mention_method_pass(ctype: str, body: bytes) -> None:
    headers = (("Content-Type", ctype),) if ctype else ()
    request = HttpRequest.from_url(
        "POST",
        "https://api.github.com/repos/acme/api/issues/1/comments",
        headers=headers,
        body=body,
    )
    assert GH.parse(request).action_type == "github.issue.comment"


def test_the_default_deny_says_why_an_unknown_request_is_refused() -> None:
    from datetime import UTC, datetime

    from agentfirewall.policy import Engine, EvaluationContext

    engine = Engine(access_rules=[AccessRule("Bot", "*", "github.*", "allow")])
    spec = GH.parse(HttpRequest.from_url("PUT", PR + "/merge%20")).spec
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=datetime.now(UTC), connector="github")
    decision = engine.evaluate(spec, ctx)
    assert decision.outcome == "deny"
    assert "could not name this request" in decision.reason
    assert "`github.unknown.*`" in decision.reason
