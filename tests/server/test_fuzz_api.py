"""No input gets a 500: every JSON endpoint of the OpenAPI document, fuzzed over HTTP.

A real server (uvicorn, in a subprocess) answers generated and mutated bodies sent by
several keep-alive clients with the credential each endpoint documents. Any 5xx, a
request that hangs (no answer in 30 s) or a connection reset fails the test, and the
server must stay healthy with no traceback in its log.

``AGENTFIREWALL_FUZZ_REQUESTS`` sets the number of requests on SQLite (default 5,000, CI's
slice: each example sends its bodies to every endpoint, so every endpoint gets 10 bodies
an example; ``nox -s fuzz`` runs 200,000); PostgreSQL gets a fifth of them.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.livesrv import LiveServer
from tests.server.apiwalk import Endpoint, World

REQUESTS = int(os.environ.get("AGENTFIREWALL_FUZZ_REQUESTS", "5000"))
BODIES = 10  # per Hypothesis example; each goes to every endpoint
WORKERS = 4
TIMEOUT = 30.0

NASTY: list[Any] = [
    "\ud800",
    "a\udfffb",
    "",
    " ",
    "x" * 5000,
    "\u0000",
    "\r\n",
    "<script>",
    "../../etc/passwd",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_x",
    "ftp://example.com/x",
    "http://127.0.0.1:99999/",
    "http://[::1/",
    "not a url",
    "http:///x",
    "//host",
    "http://" + "a" * 300 + ".com/",
    "https://hooks.example.com:0/",
    10**400,
    -(10**400),
    2**63,
    -(2**63) - 1,
    2**64,
    1e308,
    -1e308,
    5e-324,
    0,
    -1,
    True,
    None,
    [],
    {},
    "github.pr.merge",
    "*",
    "all",
    "owner",
]

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.text(st.characters(codec=None, categories=["Cs", "Co", "Cc"]), max_size=4)
    | st.sampled_from(NASTY)
)
JSON_VALUES = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(string.ascii_lowercase + "_.", max_size=12), inner, max_size=4)
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")  # ensure_ascii: surrogates go as \ud800


@st.composite
def _mutated(draw: st.DrawFn, seed: Any) -> bytes:
    paths = list(_paths(seed))
    kind = draw(st.sampled_from(["replace", "replace", "drop", "add", "nest", "bytes"]))
    if kind == "replace":
        where = draw(st.sampled_from(paths))
        return _encode(_replace(seed, where, draw(JSON_VALUES)))
    if kind == "drop" and isinstance(seed, dict) and seed:
        key = draw(st.sampled_from(sorted(seed)))
        return _encode({k: v for k, v in seed.items() if k != key})
    if kind == "add":
        extra = draw(st.text(string.ascii_lowercase, min_size=1, max_size=8))
        body = dict(seed) if isinstance(seed, dict) else {}
        return _encode({**body, extra: draw(JSON_VALUES)})
    if kind == "nest":
        depth = draw(st.sampled_from([65, 200, 1000, 1025, 5000, 100_000]))
        where = draw(st.sampled_from(paths))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        marker = "__NEST__"
        text = json.dumps(_replace(seed, where, marker))
        return text.replace(f'"{marker}"', opener * depth + "1" + closer * depth).encode()
    raw = _encode(seed)
    cut = draw(st.integers(0, max(0, len(raw) - 1)))
    noise = draw(st.binary(max_size=8))
    return raw[:cut] + noise + raw[cut + len(noise) :]


def _bodies(endpoints: list[Endpoint]) -> st.SearchStrategy[tuple[bytes, str]]:
    """A body (mutated from an endpoint's seed, or generated) and its content type."""
    seeds = [e.seed for e in endpoints]

    @st.composite
    def one(draw: st.DrawFn) -> tuple[bytes, str]:
        seed = draw(st.sampled_from(seeds))
        body = draw(
            _mutated(seed)
            | JSON_VALUES.map(_encode)
            | st.binary(max_size=64)
            | st.sampled_from([b"", b"null", b"{}", b"[]", b'"\\ud800"', b"1e400", b"{" * 3000])
        )
        ctype = draw(
            st.sampled_from(["application/json"] * 8 + ["text/plain", "application/x-www-form"])
        )
        return body, ctype

    return one()


def _send(client: httpx.Client, items: list[tuple[Endpoint, bytes, str]]) -> list[tuple[str, str]]:
    failures = []
    for endpoint, body, ctype in items:
        headers = {"content-type": ctype}
        if endpoint.token:
            headers["authorization"] = f"Bearer {endpoint.token}"
        label = f"{endpoint.method} {endpoint.template} {body[:120]!r}"
        try:
            r = client.request(endpoint.method, endpoint.path, content=body, headers=headers)
        except httpx.TimeoutException:
            failures.append((label, "hang: no answer in 30 s"))
            continue
        except httpx.TransportError as exc:
            failures.append((label, f"connection failed: {type(exc).__name__}: {exc}"))
            continue
        if r.status_code >= 500:
            failures.append((label, f"{r.status_code} {r.text[:200]}"))
        elif r.status_code >= 400:
            try:
                error = r.json()
            except ValueError:
                failures.append((label, f"{r.status_code} without a JSON error body"))
                continue
            if not (isinstance(error, dict) and {"error", "message"} <= error.keys()):
                failures.append((label, f"{r.status_code} error shape: {r.text[:200]}"))
    return failures


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    server = LiveServer.start(
        tmp_path / "tf",
        env={  # NORMAL: the fuzz needs no fsync per write, only a live server
            "AGENTFIREWALL_DATABASE_URL": database_url,
            "AGENTFIREWALL_SQLITE_SYNCHRONOUS": "NORMAL",
        },
    )
    try:
        yield World.build(server)
    finally:
        server.stop()


@pytest.mark.timeout(max(600, REQUESTS // 40))  # about 4 ms a request on a loaded machine
def test_no_input_gets_a_500(world: World, database_url: str) -> None:
    total = REQUESTS if database_url.startswith("sqlite") else REQUESTS // 5
    per_example = BODIES * len(world.endpoints)
    server = world.server
    clients = [
        httpx.Client(base_url=server.url, timeout=TIMEOUT, http1=True) for _ in range(WORKERS)
    ]
    sent = 0
    pool = ThreadPoolExecutor(WORKERS)

    @settings(
        max_examples=max(1, -(-total // per_example)),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(bodies=st.lists(_bodies(world.endpoints), min_size=BODIES, max_size=BODIES))
    def run(bodies: list[tuple[bytes, str]]) -> None:
        nonlocal sent
        batch = [(e, body, ctype) for body, ctype in bodies for e in world.endpoints]
        chunks = [batch[i::WORKERS] for i in range(WORKERS)]
        results = pool.map(_send, clients, chunks)
        failures = [f for chunk in results for f in chunk]
        sent += len(batch)
        assert not failures, "\n".join(f"{label}: {why}" for label, why in failures[:10])

    try:
        run()
    finally:
        pool.shutdown()
        for client in clients:
            client.close()
    assert sent >= total
    assert server.request("GET", "/api/health").status_code == 200
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    print(f"fuzz: {sent} requests over {len(world.endpoints)} JSON endpoints, no 5xx")
