"""Content rules see the files an agent sends base64-encoded.

A private key or an AWS secret key committed through GitHub's contents API, a git blob or
GraphQL ``createCommitOnBranch``, attached to a SendGrid mail, or sent in an SES raw
e-mail, a Kinesis record or a document a Bedrock model reads, travels base64-encoded: the
connector names those fields (``Connector.encoded``), and the gateway scans them decoded,
at ``<field>(base64)``. A detection there counts as one in plain text (deny, hold); a
``redact`` rule redacts in the decoded text and re-encodes the field (the upstream gets
valid base64), or, where the base64 sits inside a GraphQL document, refuses. A clean file
passes byte for byte; a field that is not base64 is scanned as it is, and never crashes.

:data:`CARRIERS` is the table of those fields, one row per way in: extend it with the next
connector field that carries base64. The pure decision (``pipeline.decide``, then
``guarded.redact_request``) runs in process; one test goes through the real gateway.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest
from agentfirewall.decisions import Decision
from agentfirewall_proxy import pipeline
from agentfirewall_proxy.approvals import Holds
from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.flow import Flow, Refusal
from agentfirewall_proxy.guarded import redact_request
from agentfirewall_proxy.http1 import Head
from agentfirewall_proxy.snapshot import CompiledConfig, compile_snapshot
from tests.fuzzscale import examples
from tests.proxy.rawupstream import (
    RawUpstream,
    ask,
    json_body,
    record_at,
    start_raw_gateway,
    status_of,
)
from tests.proxy.support import KEY, RunningGateway, connector, key_hash, rule, snapshot

AWS_ID = "AKIA" + "Q3V7WZ2MXK4PLRTY"
AWS_SECRET = "Zq3mT8vW1xY4bN6cR9dF2gH5jK7lP0sA3eU8iO1w"
KEY_LINE = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_LINE}\n-----END PRIVATE KEY-----\n"
#: (name, a file that holds it, the detector that finds it)
SECRETS = [
    ("private key", f"# deploy key\n{PEM}", "private_key"),
    ("aws secret key", f"[default]\naws_secret_access_key = {AWS_SECRET}\n", "generic_secret"),
    ("aws key id", f"AWS_ACCESS_KEY_ID={AWS_ID}\n", "aws_access_key"),
]
CLEAN = "def main():\n    print('hello, world')\n"
MUTATION = ("mutation($c: Base64String!) { createCommitOnBranch(input: {branch: {branchName: "
            '"dev", repositoryNameWithOwner: "o/r"}, message: {headline: "x"}, expectedHeadOid: '
            '"abc", fileChanges: {additions: [{path: "a.txt", contents: %s}]}}) { commit { oid } } '
            "}")  # fmt: skip


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class Carrier:
    """One field that carries a file base64-encoded, and where a detection in it is."""

    name: str
    host: str
    method: str
    path: str
    content_type: str
    body: Callable[[str], bytes]  # the request carrying this base64 text
    where: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def rewritable(self) -> bool:
        return not self.where.startswith("parameters.")


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


_AWS_AUTH = (("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/"
              "ses/aws4_request, SignedHeaders=host, Signature=00"),)  # fmt: skip
GH = "api.github.com"
CARRIERS = [
    Carrier("github contents API", GH, "PUT", "/repos/o/r/contents/a.txt", "application/json",
            lambda t: _json({"message": "add", "content": t, "branch": "dev"}), "body.content"),
    Carrier("github contents API, by repository id", GH, "PUT", "/repositories/7/contents/a",
            "application/json", lambda t: _json({"message": "m", "content": t, "sha": "s"}),
            "body.content"),
    Carrier("github contents API, sent as text/plain (GitHub reads JSON)", GH, "PUT",
            "/repos/o/r/contents/a", "text/plain", lambda t: _json({"message": "m", "content": t}),
            "body.content"),
    Carrier("github contents API, base64 in lines of 60", GH, "PUT", "/repos/o/r/contents/a",
            "application/json", lambda t: _json({"message": "m", "content": "\n".join(
                t[i : i + 60] for i in range(0, len(t), 60))}), "body.content"),
    Carrier("github git blob", GH, "POST", "/repos/o/r/git/blobs", "application/json",
            lambda t: _json({"content": t, "encoding": "base64"}), "body.content"),
    Carrier("github graphql createCommitOnBranch, variables", GH, "POST", "/graphql",
            "application/json", lambda t: _json({"query": MUTATION % "$c", "variables": {"c": t}}),
            "parameters.file_changes.additions.0.contents"),
    Carrier("github graphql createCommitOnBranch, inline", GH, "POST", "/graphql",
            "application/json", lambda t: _json({"query": MUTATION % json.dumps(t)}),
            "parameters.file_changes.additions.0.contents"),
    Carrier("sendgrid attachment", "api.sendgrid.com", "POST", "/v3/mail/send",
            "application/json", lambda t: _json({
                "personalizations": [{"to": [{"email": "a@example.com"}]}],
                "from": {"email": "b@example.com"}, "subject": "s",
                "attachments": [{"content": b64("fine"), "filename": "a.txt"},
                                {"content": t, "filename": "b.txt"}]}),
            "body.attachments.1.content"),
    Carrier("aws ses raw e-mail (query form)", "email.us-east-1.amazonaws.com", "POST", "/",
            "application/x-www-form-urlencoded",
            lambda t: f"Action=SendRawEmail&RawMessage.Data={quote(t, safe='')}".encode(),
            "form.RawMessage.Data", _AWS_AUTH),
    Carrier("aws kinesis record (x-amz-json)", "kinesis.us-east-1.amazonaws.com", "POST", "/",
            "application/x-amz-json-1.1", lambda t: _json({"StreamName": "s", "Data": t,
                                                           "PartitionKey": "p"}),
            "body.Data", (("X-Amz-Target", "Kinesis_20131202.PutRecord"),)),
    Carrier("aws bedrock converse document", "bedrock-runtime.us-east-1.amazonaws.com", "POST",
            "/model/m/converse", "application/json", lambda t: _json({"messages": [
                {"role": "user", "content": [{"text": "summarise"}, {"document": {
                    "format": "txt", "name": "notes", "source": {"bytes": t}}}]}]}),
            "body.messages.0.content.1.document.source.bytes"),
]  # fmt: skip
IDS = [c.name for c in CARRIERS]
REWRITABLE = [c for c in CARRIERS if c.rewritable]
GRAPHQL = [c for c in CARRIERS if not c.rewritable]


def _config(decision: str) -> CompiledConfig:
    policy = {"name": "guard", "rules": [{"name": "secrets", "decision": decision,
              "conditions": [{"field": "content.secrets", "operator": "exists"}]}]}  # fmt: skip
    aws = json.dumps({"kind": "aws_sigv4", "access_key_id": "AKIDEXAMPLE0000000",
                      "secret_access_key": "x" * 40})  # fmt: skip
    connectors = [connector("github"), connector("sendgrid", domains=["api.sendgrid.com"]),
                  connector("aws", domains=[], auth_type="aws_sigv4", credential=aws)]  # fmt: skip
    return compile_snapshot(snapshot([rule("*", "allow")], connectors=connectors,
                                     policies=[{"name": "guard", "document": policy}]))  # fmt: skip


CONFIGS = {d: _config(d) for d in ("deny", "require_approval", "redact")}


def _decide(decision: str, carrier: Carrier, body: bytes) -> tuple[Flow, Decision]:
    config = CONFIGS[decision]
    agent = config.agent_for_key(key_hash(KEY))
    flow = Flow(request_id="r", method=carrier.method, scheme="https", host=carrier.host,
                port=443, path=carrier.path, agent=agent,
                connector=config.route(carrier.host))  # fmt: skip
    headers = (("Host", carrier.host), ("Content-Type", carrier.content_type), *carrier.headers)
    request = HttpRequest(carrier.method, "https", carrier.host, 443, carrier.path, "", headers,
                          body, True)  # fmt: skip
    return flow, pipeline.decide(config, flow, request)


def _redact(flow: Flow, carrier: Carrier, body: bytes) -> bytes:
    head = Head(carrier.method, carrier.path.encode(),
                [(b"Content-Type", carrier.content_type.encode())], "1.1", True, False,
                len(body), [b"content-type"])  # fmt: skip
    return redact_request(CONFIGS["redact"].guard, flow, head, body, True)


def _field(carrier: Carrier, body: bytes) -> str:
    """The carrier's field in a (redacted) body."""
    if carrier.content_type.endswith("urlencoded"):
        return dict(parse_qsl(body.decode()))["RawMessage.Data"]
    value: Any = json.loads(body)
    for part in carrier.where.split(".")[1:]:
        value = value[int(part)] if isinstance(value, list) else value[part]
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize(("secret", "text", "detector"), SECRETS, ids=[s[0] for s in SECRETS])
@pytest.mark.parametrize("carrier", CARRIERS, ids=IDS)
def test_a_secret_in_an_encoded_field_is_denied_and_located(
    carrier: Carrier, secret: str, text: str, detector: str
) -> None:
    flow, decision = _decide("deny", carrier, carrier.body(b64(text)))
    assert decision.outcome == "deny", decision.reason
    assert "guard/secrets" in decision.matched_rules
    assert [(f.detector, f.location) for f in flow.findings] == [
        (detector, f"{carrier.where}(base64)")]  # where, never what  # fmt: skip


@pytest.mark.parametrize("carrier", CARRIERS, ids=IDS)
def test_an_encoded_detection_holds_like_a_plain_one(carrier: Carrier) -> None:
    encoded = _decide("require_approval", carrier, carrier.body(b64(PEM)))[1]
    assert encoded.outcome == "require_approval"
    plain = _decide("require_approval", carrier, carrier.body(PEM))[1]  # the key as it is
    assert plain.outcome == "require_approval"


@pytest.mark.parametrize("carrier", CARRIERS, ids=IDS)
def test_a_clean_file_passes_byte_for_byte(carrier: Carrier) -> None:
    body = carrier.body(b64(CLEAN))
    flow, decision = _decide("redact", carrier, body)
    assert (decision.outcome, flow.findings, flow.redact) == ("allow", (), frozenset())
    assert _redact(flow, carrier, body) is body


def _spelled(carrier: Carrier, value: str) -> bytes:
    """How the body spells the field's value (form-encoded, or a JSON string's inside)."""
    if carrier.content_type.endswith("urlencoded"):
        return quote(value, safe="").encode()
    return json.dumps(value)[1:-1].encode()


@pytest.mark.parametrize(("secret", "text", "detector"), SECRETS, ids=[s[0] for s in SECRETS])
@pytest.mark.parametrize("carrier", REWRITABLE, ids=[c.name for c in REWRITABLE])
def test_redact_rewrites_the_decoded_file_and_re_encodes_it(
    carrier: Carrier, secret: str, text: str, detector: str
) -> None:
    body = carrier.body(b64(f"before\n{text}after\n"))
    flow, decision = _decide("redact", carrier, body)
    assert decision.outcome == "allow"
    sent = _redact(flow, carrier, body)
    field = _field(carrier, sent)
    decoded = base64.b64decode(field, validate=True).decode()  # valid base64, strictly
    assert decoded.startswith("before\n")
    assert decoded.endswith("after\n")
    assert f"[REDACTED:{detector}]" in decoded
    for value in (AWS_ID, AWS_SECRET, KEY_LINE):
        assert value not in decoded
    assert flow.redacted >= 1
    spelled = _spelled(carrier, field)
    assert sent.replace(spelled, b"") == body.replace(_spelled(carrier, _field(carrier, body)), b"")


@pytest.mark.parametrize("carrier", GRAPHQL, ids=[c.name for c in GRAPHQL])
def test_redact_refuses_base64_inside_a_graphql_document(carrier: Carrier) -> None:
    body = carrier.body(b64(PEM))
    flow, decision = _decide("redact", carrier, body)
    assert decision.outcome == "allow"  # (a redact rule allows, once redacted)
    with pytest.raises(Refusal) as refused:
        _redact(flow, carrier, body)
    assert refused.value.status == 403
    assert "cannot be re-encoded in place" in refused.value.message
    assert f"private_key at {carrier.where}(base64)+" in refused.value.message


NOT_BASE64 = ["", "=", "!!!", "not base64 at all: ~~", "é" * 10, "\\u0000", f"key {AWS_ID}"]


@pytest.mark.parametrize("text", NOT_BASE64)
@pytest.mark.parametrize("carrier", [CARRIERS[0], GRAPHQL[0]], ids=[IDS[0], GRAPHQL[0].name])
def test_a_field_that_is_not_base64_is_scanned_as_it_is(carrier: Carrier, text: str) -> None:
    flow, decision = _decide("deny", carrier, carrier.body(text))
    if AWS_ID in text:  # plain text is read as plain text
        assert decision.outcome == "deny"
        assert [f.location.endswith("(base64)") for f in flow.findings] == [False]
    else:
        assert decision.outcome == "allow", decision.reason


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
#: What lenient decoders skip (Ruby's ``unpack1("m")``, MIME): line breaks, spaces, any other.
_SKIPPED = st.text(st.characters(blacklist_characters=_ALPHABET, blacklist_categories=("Cs",)),
                   min_size=1, max_size=3)  # fmt: skip


@settings(max_examples=examples(100), deadline=None)
@given(secret=st.sampled_from(SECRETS), cuts=st.lists(st.tuples(st.integers(0, 999), _SKIPPED),
                                                      max_size=8))  # fmt: skip
def test_characters_an_upstream_decoder_skips_never_hide_a_secret(
    secret: tuple[str, str, str], cuts: list[tuple[int, str]]
) -> None:
    field = b64(secret[1])
    for at, junk in cuts:
        at %= len(field) + 1
        field = field[:at] + junk + field[at:]
    carrier = CARRIERS[0]
    flow, decision = _decide("deny", carrier, carrier.body(field))
    assert decision.outcome == "deny"
    assert (secret[2], "body.content(base64)") in {(f.detector, f.location) for f in flow.findings}


@settings(max_examples=examples(100), deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_in_an_encoded_field_is_decided_without_a_crash(text: str) -> None:
    carrier = CARRIERS[0]
    flow, decision = _decide("redact", carrier, carrier.body(text))
    assert decision.outcome == "allow"
    if flow.redact:
        with contextlib.suppress(Refusal):  # redacted, or refused (fail closed)
            _redact(flow, carrier, carrier.body(text))


@pytest.mark.parametrize("carrier", GRAPHQL, ids=[c.name for c in GRAPHQL])
def test_a_held_commit_shows_the_approver_its_file_redacted_inside(carrier: Carrier) -> None:
    """The action's parameters hold the file base64-encoded (GraphQL): the approval shows
    it redacted and re-encoded (``action_spec``), and where the key was (``reason``)."""
    flow, decision = _decide("require_approval", carrier, carrier.body(b64(f"key:\n{PEM}")))
    assert decision.outcome == "require_approval"
    control = StaticControl(snapshot([]))
    asyncio.run(control.create_approval(Holds.payload(flow, 300)))
    (approval,) = control.pending()
    shown = json.dumps(approval)
    assert KEY_LINE not in shown
    assert b64(f"key:\n{PEM}")[8:40] not in shown
    (addition,) = approval["action_spec"]["parameters"]["file_changes"]["additions"]
    assert base64.b64decode(addition["contents"]) == b"key:\n[REDACTED:private_key]\n"
    assert f"private_key at {carrier.where}(base64)+5" in approval["reason"]


def test_a_field_no_connector_declares_is_not_decoded() -> None:
    """The base64 of a key in a GitHub issue's text is no file: only declared fields are
    decoded (plain bodies cost what they cost before)."""
    issue = Carrier("issue", GH, "POST", "/repos/o/r/issues", "application/json",
                    lambda t: _json({"title": "x", "body": t}), "body.body")  # fmt: skip
    flow, decision = _decide("deny", issue, issue.body(b64(PEM)))
    assert (decision.outcome, flow.findings) == ("allow", ())


# -- through the gateway ----------------------------------------------------------------

Live = tuple[RunningGateway, StaticControl, RawUpstream]
LIVE_POLICY = {"name": "guard", "rules": [
    {"name": "no-key-ids", "decision": "deny",
     "conditions": [{"field": "content.secrets", "operator": "contains",
                     "value": "aws_access_key"}]},
    {"name": "redact-keys", "decision": "redact",
     "conditions": [{"field": "content.secrets", "operator": "contains",
                     "value": "private_key"}]},
]}  # fmt: skip


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    upstream = RawUpstream()
    github = connector("github", domains=["gh.example.org"], credential=None,
                       base_url="http://gh.example.org")  # fmt: skip
    running, control = start_raw_gateway(tmp_path_factory.mktemp("b64"), upstream, [github],
                                         [rule("github.*", "allow")], LIVE_POLICY)  # fmt: skip
    yield running, control, upstream
    running.stop()
    upstream.stop()


def _put(live: Live, path: str, content: str) -> bytes:
    body = _json({"message": "add", "content": content, "branch": "dev"})
    return ask(live[0], "gh.example.org", path, "PUT", ("Content-Type: application/json",), body)


def test_through_the_gateway_a_committed_key_is_denied_redacted_or_passed(live: Live) -> None:
    _, control, upstream = live
    denied = _put(live, "/repos/o/r/contents/id.txt", b64(f"key = {AWS_ID}\n"))
    assert status_of(denied) == 403
    assert json_body(denied)["rule"] == "guard/no-key-ids"
    record = record_at(control, "/repos/o/r/contents/id.txt")
    assert "aws_access_key at body.content(base64)+6" in record["reason"]
    assert AWS_ID not in json.dumps(record)
    assert b64(AWS_ID)[:20] not in json.dumps(record)

    assert status_of(_put(live, "/repos/o/r/contents/key.pem", b64(PEM))) == 200
    clean = b64(CLEAN)
    assert status_of(_put(live, "/repos/o/r/contents/main.py", clean)) == 200
    sent = {h.split(b" ")[1].decode(): (h, b) for h, b in upstream.received}
    assert "/repos/o/r/contents/id.txt" not in sent
    head, body = sent["/repos/o/r/contents/key.pem"]
    assert b"content-length: %d\r\n" % len(body) in head.lower()
    decoded = base64.b64decode(json.loads(body)["content"], validate=True)
    assert decoded == b"[REDACTED:private_key]\n"
    assert sent["/repos/o/r/contents/main.py"][1] == _json(
        {"message": "add", "content": clean, "branch": "dev"})  # byte for byte  # fmt: skip
    assert "content (1 redacted): private_key at body.content(base64)+0" in record_at(
        control, "/repos/o/r/contents/key.pem")["reason"]  # fmt: skip
