"""A viewer never reads the secrets in an SDK action's parameters through the API.

Every read answer holding an action spec — `GET /api/v1/approvals` (each `status`),
`GET /api/v1/approvals/{id}` (and by prefix), `GET /api/v1/actions/{id}` and its `/wait` —
shows a caller whose role cannot approve (a viewer: its session or its API token) the spec
as the dashboard's card masks it: every value under a name that says credential withheld
however deeply nested, every detection (`AKIA…`, `ghp_…`, a card number, an email address)
and every credential inside a text (the password in a URL, `password=…`, what follows `Bearer`,
TameFlare's keys) replaced. A member and up (who approve: they must see what they approve)
and the agent that sent it read it as sent; the action's hash and ids are the same for all.
Before, each of these answers gave a viewer every parameter as sent.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from agentfirewall_server.clock import now
from agentfirewall_server.identity import hash_secret, prefix_of
from agentfirewall_server.routes.shownspec import MORE, SHOWN_TEXT, WITHHELD
from agentfirewall_server.store.schema import tokens
from tests.livesrv import LiveServer

PASSWORD = "correct horse battery staple"
HELD, ALLOWED = "vault.secret.rotate", "vault.secret.read"
HOLD = f"""\
name: hold-rotations
rules:
  - name: a person looks first
    conditions: [{{field: action_spec.type, operator: equals, value: {HELD}}}]
    decision: require_approval
    reason: a person looks first
"""
AWS_KEY = "AKIA" + "Q7RZ4XMPL2VN5KWD"
GITHUB = "ghp_" + "R8bC4uX1qV7nM2kL9pZ3wY6tJ5hG0fD8sA1e"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")  # fmt: skip
AGENT_KEY = "aaf_live_" + "Vq3Lm8Rt2Xw7Nz4Kp9Bs6Dh1Fj5Gc0Ya"
CARD = "4111 1111 1111 1111"
CARD_NUMBER = 4242424242424242
EMAIL = "alice.payroll@example.com"
KEY_NAMED_SECRET = "AKIA" + "Z5TQ2MLX7VRN4PWK"
PIN = 987654321

#: Each secret of `SPEC`, by where and how it is held.
SECRETS = {
    "password": "hunter2-plain-words",
    "api_key": "plainApiKeyValue",
    "nested clientSecret": "NESTEDSECRETVALUE1",
    "under a credential name in a list": "LISTEDTOKENVALUE7",
    "a number under a credential name": str(PIN),
    "the password in a URL": "URLPASSWORD99",
    "an api_key in a query": "QUERYKEYVALUE5",
    "password= inside a text": "INLINEPASS0042",
    "after Bearer at the start of a text": "PLAINBEARER0123456789",
    "after Bearer in a header line in a list": "LISTBEARER777",
    "an AWS key": AWS_KEY,
    "a GitHub token": GITHUB,
    "a Stripe key": STRIPE,
    "a JWT": JWT,
    "an agent key": AGENT_KEY,
    "a card number": CARD,
    "a card number as a number": str(CARD_NUMBER),
    "an email address": EMAIL,
    "a name that is a secret": KEY_NAMED_SECRET,
    "a generated value under a hinting name": "Zr8q2LmX9vT4kP7wN3bY6cH1",
    "the password in the target URL": "TARGETPASSWORD1",
    "a risk hint under a credential name": "RISKHINTTOKEN42",
}
#: What is no secret: every reader reads it as sent.
KEPT = {"amount": 1200, "branch": "main", "private": False, "max_tokens": 100,
        "bypass_review": "no", "title": "fix the token refresh bug"}  # fmt: skip


def _spec(action: str) -> dict[str, Any]:
    s = SECRETS
    target = f"https://deploy:{s['the password in the target URL']}@vault.example.com/db"
    return {
        "type": action,
        "resource": {"provider": "vault", "account": "ops", "target": target},
        "parameters": {
            **KEPT,
            "password": s["password"],
            "api_key": s["api_key"],
            "config": {"auth_options": {"clientSecret": s["nested clientSecret"]}, "retries": 3},
            "recipients": [{"name": "ops", "token": s["under a credential name in a list"]}],
            "credentials": {"pin": PIN, "rotate": True},
            "callback": f"https://bob:{s['the password in a URL']}@hooks.example.com/x",
            "next": f"https://api.example.com/v1?page=2&api_key={s['an api_key in a query']}",
            "note": f"rotate, then password={s['password= inside a text']} for the job",
            "header_value": f"Bearer {s['after Bearer at the start of a text']}",
            "headers": [
                "X-Trace: 1",
                f"Authorization: Bearer {s['after Bearer in a header line in a list']}",
            ],
            "found": f"aws {AWS_KEY} gh {GITHUB} stripe {STRIPE} jwt {JWT}",
            "forward": f"use {AGENT_KEY} as the agent",
            "billing": {"card": CARD, "card_number": CARD_NUMBER, "to": EMAIL},
            KEY_NAMED_SECRET: "a name",
            "mykey": s["a generated value under a hinting name"],
        },
        "risk_hints": {"token_hint": s["a risk hint under a credential name"], "scope": "one"},
    }


@dataclass
class Site:
    """A live server holding an action with every kind of secret: pending, approved, and
    allowed without approval; a reader per kind of caller."""

    server: LiveServer
    agent_key: str
    readers: dict[str, httpx.Client]
    actions: dict[str, str]  # pending | approved | allowed -> action id
    approvals: dict[str, str]  # pending | approved -> approval id

    def ids(self) -> set[str]:
        return set(self.actions.values())

    def routes(self) -> list[str]:
        paths = ["/api/v1/approvals", "/api/v1/approvals?status=all",
                 "/api/v1/approvals?status=approved"]  # fmt: skip
        for approval in self.approvals.values():
            paths += [f"/api/v1/approvals/{approval}", f"/api/v1/approvals/{approval[:-4]}"]
        for action in self.actions.values():
            paths += [f"/api/v1/actions/{action}", f"/api/v1/actions/{action}/wait?timeout=0"]
        return paths


def _user(server: LiveServer, email: str, role: str) -> str:
    made = server.admin("POST", "/v1/users", {"email": email, "password": PASSWORD, "role": role})
    assert made.status_code == 201, made.text
    uid: str = made.json()["id"]
    return uid


def _session(server: LiveServer, email: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30)
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return client


def _stored_token(server: LiveServer, uid: str, role: str) -> str:
    """An API token of `role` as the store holds one (the API mints a token only for its
    owner's role, and ends a user's tokens when the role changes); the server reads it
    with its next configuration change."""
    token = "tfa_" + "".join(secrets.choice(string.ascii_letters) for _ in range(40))
    engine = create_engine(f"sqlite:///{server.data_dir / 'agentfirewall.db'}")
    with engine.begin() as conn:
        conn.execute(tokens.insert().values(
            token_hash=hash_secret(token), prefix=prefix_of(token), kind="admin", user_id=uid,
            role=role, name=f"{role}-cli", created_at=now()))  # fmt: skip
    engine.dispose()
    return token


def _reader(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def _request(server: LiveServer, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    answer = server.agent(key, "POST", "/v1/actions", {"action_spec": spec})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = LiveServer.start(tmp_path_factory.mktemp("viewer-masked") / "tf")
    readers: dict[str, httpx.Client] = {}
    try:
        assert server.admin("POST", "/v1/policies", {"document": HOLD}).status_code == 201
        viewer = _user(server, "viewer@example.com", "viewer")
        _user(server, "member@example.com", "member")
        viewer_token = _stored_token(server, viewer, "viewer")
        key = server.create_agent("Bot", sdk_default="allow", rate_limit_per_minute=100_000)
        pending, approved = _request(server, key, _spec(HELD)), _request(server, key, _spec(HELD))
        allowed = _request(server, key, _spec(ALLOWED))
        assert (pending["status"], allowed["status"]) == ("pending_approval", "allowed")
        readers = {
            "viewer session": _session(server, "viewer@example.com"),
            "viewer token": _reader(server, viewer_token),
            "member session": _session(server, "member@example.com"),
            "owner token": _reader(server, server.admin_token),
        }
        member = readers["member session"]
        csrf = member.get("/api/v1/auth/me").json()["csrf_token"]
        made = member.post(f"/api/v1/approvals/{approved['approval']['id']}/approve", json={},
                           headers={"X-CSRF-Token": csrf})  # fmt: skip
        assert made.status_code == 200, made.text
        yield Site(
            server,
            key,
            readers,
            {name: body["action_request_id"] for name, body in
             (("pending", pending), ("approved", approved), ("allowed", allowed))},
            {"pending": pending["approval"]["id"], "approved": approved["approval"]["id"]},
        )  # fmt: skip
    finally:
        for reader in readers.values():
            reader.close()
        server.stop()


def _specs(body: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every `action_spec` in an answer, with the id of its action."""
    if isinstance(body, dict):
        found = [(body["action_request_id"], body["action_spec"])] if "action_spec" in body else []
        return found + [s for k, v in body.items() if k != "action_spec" for s in _specs(v)]
    if isinstance(body, list):
        return [s for item in body for s in _specs(item)]
    return []


@pytest.mark.parametrize("reader", ["viewer session", "viewer token"])
def test_a_viewer_reads_no_secret_of_a_spec_on_any_route(site: Site, reader: str) -> None:
    for path in site.routes():
        answer = site.readers[reader].get(path)
        assert answer.status_code == 200, (path, answer.text)
        shown = [name for name, secret in SECRETS.items() if secret in answer.text]
        assert shown == [], f"{reader} reads {shown} at {path}"
        specs = [spec for action, spec in _specs(answer.json()) if action in site.ids()]
        assert specs, path
        for spec in specs:  # what is no secret is shown as sent
            assert {k: spec["parameters"][k] for k in KEPT} == KEPT
            assert spec["type"] in (HELD, ALLOWED)
            assert spec["parameters"]["credentials"]["rotate"] is True


@pytest.mark.parametrize("reader", ["member session", "owner token"])
def test_a_member_and_up_read_the_spec_as_sent(site: Site, reader: str) -> None:
    for path in site.routes():
        answer = site.readers[reader].get(path)
        assert answer.status_code == 200, (path, answer.text)
        specs = [spec for action, spec in _specs(answer.json()) if action in site.ids()]
        assert specs, path
        for spec in specs:
            assert spec == _spec(spec["type"]), path


def test_the_agent_reads_its_own_action_as_sent(site: Site) -> None:
    for action in site.actions.values():
        for path in (f"/v1/actions/{action}", f"/v1/actions/{action}/wait?timeout=0"):
            answer = site.server.agent(site.agent_key, "GET", path)
            assert answer.status_code == 200, answer.text
            assert answer.json()["action_spec"] == _spec(answer.json()["action_spec"]["type"])


def test_a_viewer_reads_the_same_action_hash_ids_and_statuses(site: Site) -> None:
    """Only the spec is masked: the action's hash (what an approval binds), its ids and
    everything else of the answer are the member's."""

    def without_specs(body: Any) -> Any:
        if isinstance(body, dict):
            return {k: without_specs(v) for k, v in body.items() if k != "action_spec"}
        return [without_specs(v) for v in body] if isinstance(body, list) else body

    for path in site.routes():
        seen = [site.readers[r].get(path).json() for r in ("viewer token", "member session")]
        assert without_specs(seen[0]) == without_specs(seen[1]), path


# ---- any secret, anywhere in the parameters ---------------------------------------------

_WORDS = st.text(alphabet=string.ascii_letters + " ", max_size=12)  # (a digit next to a
# card number makes another number, which no card detector finds)
_SECRET = st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=24)
_CREDENTIAL_NAMES = st.sampled_from(
    [
        "password",
        "clientSecret",
        "x_api_key",
        "accessToken",
        "Authorization",
        "session_id",
        "dbPassword",
        "auth",
    ]
)
_WRITTEN = st.sampled_from([
    "https://user:{}@db.example.com:5432/app", "password={}", '"secret": "{}"',
    "api_key: {}", "Bearer {}", "https://api.example.com/v1?access_token={}&page=2",
    "Authorization: Bearer {}", "token={}",
])  # fmt: skip
_FOUND = st.sampled_from([AWS_KEY, GITHUB, STRIPE, JWT, AGENT_KEY, CARD, EMAIL])
_PLAIN_NAMES = st.sampled_from(["data", "items", "config", "payload", "meta", "x"])


@st.composite
def _planted(draw: st.DrawFn) -> tuple[Any, str]:
    """A parameter value with one secret somewhere in it, and the secret."""
    secret = "S3kr" + draw(_SECRET)
    how = draw(st.sampled_from(["named", "written", "found"]))
    if how == "named":
        value: Any = {draw(_CREDENTIAL_NAMES): secret}
    else:
        if how == "found":
            secret = draw(_FOUND)
            written = secret
        else:
            written = draw(_WRITTEN).format(secret)
        value = f"{draw(_WORDS)} {written} {draw(_WORDS)}".strip()
    for _ in range(draw(st.integers(0, 4))):  # nested in objects and lists
        if draw(st.booleans()):
            value = {draw(_PLAIN_NAMES): value, "n": draw(st.integers(0, 9))}
        else:
            value = [draw(_WORDS), value][:: draw(st.sampled_from([1, -1]))]
    return value, secret


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted=_planted(), action=st.sampled_from([HELD, ALLOWED]))
def test_any_secret_anywhere_in_the_parameters_is_masked_for_a_viewer(
    site: Site, planted: tuple[Any, str], action: str
) -> None:
    value, secret = planted
    spec = {"type": action, "parameters": {"value": value, "amount": 7}}
    body = _request(site.server, site.agent_key, spec)
    paths = [f"/api/v1/actions/{body['action_request_id']}"]
    if body["approval"]:
        paths.append(f"/api/v1/approvals/{body['approval']['id']}")
    for path in paths:
        seen = site.readers["viewer token"].get(path)
        assert seen.status_code == 200, seen.text
        assert secret not in seen.text, (path, seen.json()["action_spec"])
        assert seen.json()["action_spec"]["parameters"]["amount"] == 7
        raw = site.readers["member session"].get(path)
        assert raw.json()["action_spec"]["parameters"]["value"] == value


def test_a_viewer_is_shown_a_long_spec_in_part_and_no_secret_past_it(site: Site) -> None:
    """Masking reads text, which an agent may make a megabyte long: a viewer is shown
    `SHOWN_TEXT` characters of a spec, masked; a longer text is withheld with its length,
    and what of an object lies past them is one marker counting it."""
    long = "word " * (SHOWN_TEXT // 5) + AWS_KEY
    many = {f"k{n}": n for n in range(SHOWN_TEXT)}
    spec = {"type": ALLOWED, "parameters": {"body": long, "amount": 5, "many": many}}
    path = f"/api/v1/actions/{_request(site.server, site.agent_key, spec)['action_request_id']}"
    seen = site.readers["viewer token"].get(path)
    assert seen.status_code == 200, seen.text
    shown = seen.json()["action_spec"]["parameters"]
    assert AWS_KEY not in seen.text
    assert shown["body"] == f"{WITHHELD} (length {len(long)})"
    assert shown["amount"] == 5
    listed = [name for name in shown["many"] if name != MORE]
    assert 0 < len(listed) < len(many)
    for name in listed:  # (the last name may fit, and its value not)
        assert shown["many"][name] in (many[name], f"{WITHHELD} (length {len(str(many[name]))})")
    assert shown["many"][MORE] == f"{WITHHELD} ({len(many) - len(listed)} more)"
    raw = site.readers["member session"].get(path).json()["action_spec"]["parameters"]
    assert raw == spec["parameters"]
