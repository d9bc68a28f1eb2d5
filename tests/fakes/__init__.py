"""Fake upstream APIs on real HTTP and real TLS, shared by every test suite.

Usage (sync or async tests alike; the fakes run on their own thread)::

    from tests.fakes import start_fakes

    with start_fakes() as fakes:
        github = fakes["github"]           # FakeUpstream
        github.url                         # https://127.0.0.1:<port> (cert for api.github.com too)
        github.http_url                    # http://127.0.0.1:<port>
        fakes.ca_path                      # PEM of the CA that signed every fake's certificate
        fakes.resolve_entries()            # ["api.github.com=127.0.0.1:<tls port>", ...]
        ...
        github.last().header("authorization")   # what reached "GitHub"
        github.received("PUT", "/repos/acme/api/pulls/1/merge")

Fakes: ``github`` (api.github.com), ``stripe`` (api.stripe.com), ``slack`` (slack.com,
api.slack.com), ``openai`` (api.openai.com, SSE streaming chat), ``anthropic``
(api.anthropic.com, SSE streaming messages), ``mcp`` (mcp.example.com, JSON-RPC at /mcp),
``git`` (github.com, smart HTTP serving ``acme/api.git``). There is also a pytest fixture,
``fakes``, in ``tests/fakes/fixtures.py``: add ``pytest_plugins = ["tests.fakes.fixtures"]``
to a conftest.
"""

from __future__ import annotations

from collections.abc import Iterable

from tests.fakes.ai import anthropic, mcp, openai
from tests.fakes.apis import github, slack, stripe
from tests.fakes.aws import aws
from tests.fakes.base import FakeUpstream, FakeUpstreams, RecordedRequest
from tests.fakes.git import git_server

__all__ = [
    "ALL",
    "FakeUpstream",
    "FakeUpstreams",
    "RecordedRequest",
    "anthropic",
    "aws",
    "git_server",
    "github",
    "mcp",
    "openai",
    "slack",
    "start_fakes",
    "stripe",
]

ALL = {
    "github": github,
    "stripe": stripe,
    "slack": slack,
    "openai": openai,
    "anthropic": anthropic,
    "mcp": mcp,
    "git": git_server,
    "aws": aws,
}


def start_fakes(names: Iterable[str] | None = None) -> FakeUpstreams:
    """Start the named fakes (default: all) and return the running set (a context manager)."""
    chosen = list(names) if names is not None else list(ALL)
    return FakeUpstreams([ALL[name]() for name in chosen]).start()
