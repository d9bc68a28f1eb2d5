"""SDK Mode A keeps the gateway's credential guarantees (DESIGN.md 7.5).

`POST /api/v1/actions/{id}/execute` runs the action with the connector's vaulted credential.
Two ways it handed the credential out that the gateway never did:

- **cleartext, any port**: a webhook or generic action names its own target. The executor
  sent the credential over plain ``http://``, to whatever port of the connector's host the
  agent named, even when the admin declared an ``https://`` base URL. It now applies the
  gateway's rule (``agentfirewall.connectors.upstream.credential_upstream``): upgraded to
  the declared TLS upstream, or refused (422 ``cleartext_refused`` / ``port_refused``)
  before the credential is attached.
- **the cut before the scrub**: the executor cut the answer at 1 MiB, then scrubbed it; an
  agent that placed an echoed credential across the cut got all but its last byte. Now the
  answer is scrubbed as it is read, and the cut leaves no beginning of a secret behind.

A real server (subprocess on 127.0.0.1) and fake upstreams with real TLS and plain HTTP,
which record the scheme every request arrived on.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import connector_types, get_connector
from agentfirewall.connectors.upstream import UpstreamRefused, credential_upstream
from agentfirewall.scrubbing import scrubber_for
from agentfirewall_server import executor
from tests.fakes.base import FakeUpstream, FakeUpstreams, Receive, Scope, Send
from tests.fuzzscale import examples
from tests.livesrv import LiveServer

TOKEN = "sk_live_Zq8/Lw+3x=Pm&Tn<7Rv\"Kd'9Hy"  # bytes each encoding below writes otherwise
VALUE = f"Bearer {TOKEN}"
MIB = 1024 * 1024
_RAW = TOKEN.encode()
SCRUBBER = scrubber_for([VALUE.encode()])  # (built once: tens of milliseconds)

#: How an upstream may hand the injected credential back: every form the scrubber knows.
FORMS: dict[str, Callable[[bytes], bytes]] = {
    "header value": lambda token: b"Bearer " + token,
    "token": lambda token: token,
    "base64": base64.b64encode,
    "base64url unpadded": lambda token: base64.urlsafe_b64encode(token).rstrip(b"="),
    "hex": lambda token: token.hex().encode(),
    "HEX": lambda token: token.hex().upper().encode(),
    "percent-encoded": lambda token: quote(token.decode(), safe="").encode(),
    "json-escaped": lambda token: b"".join(b"\\u%04x" % c for c in token),
    "as json writes it (php)": lambda t: json.dumps(t.decode())[1:-1].replace("/", "\\/").encode(),
    "html-escaped": lambda token: html.escape(token.decode()).encode(),
    "utf-16": lambda token: token.decode().encode("utf-16-le"),
}


async def _upstream(scope: Scope, receive: Receive, send: Send) -> None:
    """``/place?form=F&pad=N&chunk=C``: N dots, then the request's credential in form F, then
    dots, sent C bytes at a time (text/plain). Any other path: a small JSON answer."""
    while (await receive()).get("more_body"):
        pass
    headers = dict(scope["headers"])
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] != "/place":
        body = json.dumps({"ok": True}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        return
    token = headers.get(b"authorization", b"").partition(b" ")[2]
    body = b"." * int(query["pad"]) + FORMS[query["form"]](token) + b"." * 100
    chunk = int(query.get("chunk", "65536"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
    for at in range(0, len(body), chunk):
        more = at + chunk < len(body)
        await send({"type": "http.response.body", "body": body[at : at + chunk], "more_body": more})


@pytest.fixture(scope="module")
def upstreams() -> Iterator[FakeUpstreams]:
    running = FakeUpstreams([
        FakeUpstream("place", ("127.0.0.1",), _upstream),
        FakeUpstream("other", ("127.0.0.1",), _upstream),  # another service, same host
    ]).start()  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstreams: FakeUpstreams
) -> Iterator[LiveServer]:
    env = {
        "AGENTFIREWALL_WEBHOOK_ALLOW_HOSTS": "127.0.0.1,localhost",
        "AGENTFIREWALL_UPSTREAM_CA": str(upstreams.ca_path),
    }
    running = LiveServer.start(tmp_path_factory.mktemp("rules") / "tf", env=env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def key(server: LiveServer) -> str:
    return server.create_agent("Bot", rate_limit_per_minute=1_000_000)


def _only(server: LiveServer, *connectors: dict[str, Any]) -> None:
    """Exactly `connectors` configured (every earlier one removed)."""
    for row in server.admin("GET", "/v1/connectors").json()["connectors"]:
        assert server.admin("DELETE", f"/v1/connectors/{row['id']}").status_code in (200, 204)
    for body in connectors:
        added = server.admin("POST", "/v1/connectors", json=body)
        assert added.status_code == 201, added.text


def _execute(server: LiveServer, key: str, provider: str, target: str) -> Any:
    kind = "http.post" if provider == "generic" else "webhook.post"
    spec = {"type": kind, "resource": {"provider": provider, "target": target},
            "parameters": {"body": {"a": 1}}}  # fmt: skip
    asked = server.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert asked["status"] == "allowed", asked
    path = f"/v1/actions/{asked['action_request_id']}/execute"
    return server.agent(key, "POST", path, json={"decision_token": asked["decision_token"]},
                        timeout=120)  # fmt: skip


def _plain_credentials(upstreams: FakeUpstreams) -> list[str]:
    """Every credential that reached a plain-HTTP listener."""
    plain = [r for fake in upstreams.fakes.values() for r in fake.received() if r.scheme == "http"]
    return [value for request in plain for value in request.header_values("authorization")]


# ---- the rule: the same function as the gateway's ---------------------------------------


@settings(max_examples=examples(300), deadline=None)
@given(
    kind=st.sampled_from(sorted(connector_types())),
    base=st.sampled_from([None, "https://h.example", "https://h.example:8443/api",
                          "http://h.example", "http://h.example:8080", "https://other.example",
                          "http://other.example:8080", "https://H.Example."]),
    credential=st.booleans(),
    host=st.sampled_from(["h.example", "other.example", "third.example"]),
    port=st.sampled_from([80, 443, 8080, 8443, 6379]),
)  # fmt: skip
def test_the_plain_http_rule_is_the_gateways(
    kind: str, base: str | None, credential: bool, host: str, port: int
) -> None:
    """For a plain request the core's answer is the gateway's (`plain_request_upstream`),
    refusal message included: one rule, whichever path injects the credential."""
    from agentfirewall_proxy.pipeline import Refusal
    from agentfirewall_proxy.snapshot import compile_snapshot
    from agentfirewall_proxy.upstream import plain_request_upstream
    from tests.proxy.support import connector, snapshot

    row = connector(kind, domains=[host], base_url=base,
                    credential="real-secret-value-0000" if credential else None)  # fmt: skip
    entry = compile_snapshot(snapshot(connectors=[row])).connectors.get(f"conn_{kind}_1")
    assume(entry is not None and entry.has_credential == credential)
    assert entry is not None
    ours: tuple[str, int] | tuple[str, str]
    theirs: tuple[str, int] | tuple[str, str]
    try:
        ours = credential_upstream("http", host, port, declared=base,
                                   default=get_connector(kind).base_url,
                                   credential=credential, name=entry.name)  # fmt: skip
    except UpstreamRefused as exc:
        ours = (exc.code, str(exc))
    try:
        theirs = plain_request_upstream(entry, host, port)
    except Refusal as exc:
        theirs = (exc.error, exc.message)
    assert ours == theirs


@pytest.mark.parametrize(
    ("base", "host", "port", "expected"),
    [
        ("https://h.example", "h.example", 443, ("https", 443)),
        ("https://h.example:8443/api", "h.example", 8443, ("https", 8443)),
        ("https://h.example:8443/api", "h.example", 443, "port_refused"),
        ("https://h.example", "h.example", 6379, "port_refused"),
        ("https://h.example", "uploads.h.example", 443, ("https", 443)),
        ("https://h.example", "uploads.h.example", 8443, "port_refused"),
        ("http://h.example:8080", "h.example", 443, ("https", 443)),
        (None, "h.example", 443, ("https", 443)),
        (None, "h.example", 8443, "port_refused"),
    ],
)
def test_over_tls_a_credential_goes_to_the_declared_port_only(
    base: str | None, host: str, port: int, expected: object
) -> None:
    def rule(credential: bool) -> tuple[str, int]:
        return credential_upstream("https", host, port, declared=base, default=None,
                                   credential=credential, name="c")  # fmt: skip

    if isinstance(expected, str):
        with pytest.raises(UpstreamRefused, match="its credential goes to no other port") as no:
            rule(True)
        assert no.value.code == expected
    else:
        assert rule(True) == expected
    assert rule(False) == ("https", port)  # nothing injected: nothing to protect


# ---- the rule, on the execute path ------------------------------------------------------


def test_a_plain_target_of_a_tls_connector_is_upgraded(
    server: LiveServer, key: str, upstreams: FakeUpstreams
) -> None:
    """The hunter's reproduction: TLS declared, the agent names plain http on another port
    (another service of the host). The gateway upgrades it to the declared TLS upstream;
    so does execute. No credential ever reaches a plain listener."""
    place, other = upstreams["place"], upstreams["other"]
    _only(server, {"type": "generic", "domains": ["127.0.0.1"], "base_url": place.url,
                   "token": TOKEN})  # fmt: skip
    place.clear()
    other.clear()
    done = _execute(server, key, "generic", f"{other.http_url}/anything")
    assert done.status_code == 200, done.text
    assert done.json()["result"]["status_code"] == 200
    (arrived,) = place.received()
    assert (arrived.scheme, arrived.path) == ("https", "/anything")
    assert arrived.header("authorization") == VALUE  # over TLS, to the declared port
    assert other.received() == []
    assert _plain_credentials(upstreams) == []


@pytest.mark.parametrize("provider", ["webhook", "generic"])
@pytest.mark.parametrize(
    ("declared", "target", "code", "says"),
    [
        # no TLS upstream declared: a credential never goes over plain http
        (None, "{place.http_url}/a", "cleartext_refused", "declares no TLS upstream"),
        (None, "HTTP://127.0.0.1:{place.http_port}/a", "cleartext_refused", "no TLS upstream"),
        (None, "http://LOCALHOST.:{place.http_port}/a", "cleartext_refused", "no TLS upstream"),
        # a declared plain service is one port: another port of the host is another service
        ("{place.http_url}", "{other.http_url}/a", "cleartext_refused", "declared on port"),
        # over TLS: the declared port only (the base URL's for its host, else 443)
        ("{place.url}", "{other.url}/a", "port_refused", "no other port"),
        (None, "{place.url}/a", "port_refused", "on port 443"),
    ],
)
def test_a_credential_never_goes_in_cleartext_or_to_another_port(
    server: LiveServer, key: str, upstreams: FakeUpstreams,
    provider: str, declared: str | None, target: str, code: str, says: str,
) -> None:  # fmt: skip
    place, other = upstreams["place"], upstreams["other"]
    row: dict[str, Any] = {"type": provider, "domains": ["127.0.0.1", "localhost"],
                           "token": TOKEN}  # fmt: skip
    if declared:
        row["base_url"] = declared.format(place=place, other=other)
    _only(server, row)
    place.clear()
    other.clear()
    done = _execute(server, key, provider, target.format(place=place, other=other))
    assert done.status_code == 422, done.text
    error = done.json()
    assert (error["error"], error["field"]) == (code, "action_spec.resource.target")
    assert says in error["message"]
    assert TOKEN not in done.text
    assert place.received() == other.received() == []  # refused before anything was sent


def test_what_an_admin_declared_still_runs(
    server: LiveServer, key: str, upstreams: FakeUpstreams
) -> None:
    """A declared plain service (its port), a TLS upstream (its port), a webhook with no
    connector (no credential: as the action says) all execute."""
    place, other = upstreams["place"], upstreams["other"]
    cases = [
        ({"type": "generic", "domains": ["127.0.0.1"], "base_url": place.http_url,
          "token": TOKEN}, "generic", f"{place.http_url}/a", "http", VALUE),
        ({"type": "generic", "domains": ["127.0.0.1"], "base_url": place.url,
          "token": TOKEN}, "generic", f"{place.url}/a", "https", VALUE),
        (None, "webhook", f"{place.http_url}/a", "http", None),
    ]  # fmt: skip
    for row, provider, target, scheme, credential in cases:
        _only(server, *([row] if row else []))
        place.clear()
        other.clear()
        done = _execute(server, key, provider, target)
        assert done.status_code == 200, done.text
        (arrived,) = place.received()
        assert (arrived.scheme, arrived.header("authorization")) == (scheme, credential)


def test_concurrent_executes_never_put_a_credential_on_a_plain_socket(
    server: LiveServer, key: str, upstreams: FakeUpstreams
) -> None:
    """Many agents' executes at once, plain and TLS targets mixed, every port of the host:
    each goes over TLS to the declared port or is refused; no plain listener sees one."""
    place, other = upstreams["place"], upstreams["other"]
    _only(server, {"type": "generic", "domains": ["127.0.0.1"], "base_url": place.url,
                   "token": TOKEN})  # fmt: skip
    place.clear()
    other.clear()
    targets = [f"{other.http_url}/x", f"{place.http_url}/x", f"{other.url}/x",
               f"{place.url}/x"] * 4  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: _execute(server, key, "generic", t), targets))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 12 + [422] * 4  # the TLS target on another port: port_refused
    assert _plain_credentials(upstreams) == []
    assert other.received() == []
    assert {(r.scheme, r.header("authorization")) for r in place.received()} == {("https", VALUE)}


# ---- the cut after the scrub -------------------------------------------------------------


def _leaks(result: bytes, form: bytes, at: int, limit: int) -> bool:
    """Whether `result` holds, at its place, a beginning of `form` that began at `at` and
    crossed the cut at `limit` (what the agent must never get)."""
    return len(result) > at and form.startswith(result[at:limit])


@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    name=st.sampled_from(sorted(FORMS)),
    data=st.data(),
    chunk=st.sampled_from([1000, 4096, 65536, 1 << 20]),
)
def test_a_credential_across_the_1_mib_cut_never_reaches_the_agent(
    server: LiveServer,
    key: str,
    upstreams: FakeUpstreams,
    name: str,
    data: st.DataObject,
    chunk: int,
) -> None:
    """The hunter's attack, at every offset and in every form: the echoed credential
    crosses 1 MiB with its last byte (or more) past it. The result holds no beginning of it;
    what comes before it is whole."""
    place = upstreams["place"]
    _only(server, {"type": "generic", "domains": ["127.0.0.1"], "token": TOKEN,
                   "base_url": place.url})  # fmt: skip
    form = FORMS[name](_RAW)
    past = data.draw(st.integers(1, len(form) - 1), label="bytes of the form past the cut")
    at = MIB - (len(form) - past)
    target = f"{place.url}/place?form={quote(name)}&pad={at}&chunk={chunk}"
    done = _execute(server, key, "generic", target)
    assert done.status_code == 200, done.text[:300]
    body = done.json()["result"]["body"]
    assert isinstance(body, str)
    result = body.encode()
    assert len(result) <= MIB
    assert result[:at] == b"." * at  # nothing before the credential was lost
    assert not _leaks(result, form, at, MIB), result[at - 10 :]


async def _chunks(body: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    at = 0
    for size in sizes:
        if at >= len(body):
            return
        yield body[at : at + size]
        at += size
    if at < len(body):
        yield body[at:]


@settings(max_examples=examples(400), deadline=None)
@given(
    name=st.sampled_from(sorted(FORMS)),
    data=st.data(),
    limit=st.integers(64, 3000),
    sizes=st.lists(st.integers(1, 700), max_size=12),
    tail=st.integers(0, 200),
)
def test_the_body_is_cut_after_the_scrub_at_every_offset(
    name: str, data: st.DataObject, limit: int, sizes: list[int], tail: int
) -> None:
    """The executor's body reader alone, fast enough for every offset: a form of the
    credential crossing the limit (any bytes of it past it, any chunking) never leaves a
    beginning of itself in the result; one wholly before the limit is scrubbed; the text
    before it is kept. (On the code before the fix, cut then scrubbed, it fails at once:
    `HEX`, limit 64.)"""
    form = FORMS[name](_RAW)
    at = data.draw(st.integers(max(0, limit - len(form) - 40), limit + 5), label="form at")
    body = b"." * at + form + b"." * tail
    result = asyncio.run(executor._read_body(_chunks(body, sizes), SCRUBBER, limit))
    assert len(result) <= limit
    assert result[: min(at, limit)] == body[: min(at, limit)]
    assert not _leaks(result, form, at, limit)
    assert form not in result
    if len(body) <= limit:
        assert len(result) == len(body)  # a whole answer is whole (scrubbed)


def test_the_body_reader_stops_reading_past_the_limit() -> None:
    """An endless answer is read only as far as the limit (and what a secret may need)."""
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        while True:
            read += 65536
            yield b"." * 65536

    result = asyncio.run(executor._read_body(endless(), SCRUBBER, MIB))
    assert result == b"." * MIB
    assert read <= MIB + 2 * 65536
