"""`tf run` holds its proxy key on a lease (`RunLease`): renewed from a daemon thread while
the agent runs, a failed renewal tried again without a word until the lease has passed (then
one warning, and one note once a renewal succeeds again), and the key revoked when the agent
has exited, whatever ended it. A `tf run` killed outright leaves a key that expires with its
lease (tests/server/test_run_key_leases.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentfirewall_proxy.cli.output import CliError
from agentfirewall_proxy.cli.run_cmd import RunLease

PATH = "/v1/agents/agt_1/run-keys/7"


class FakeServer:
    """An `AdminClient` that records calls; `failing` renewals raise what the client does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.failing: BaseException | None = None
        self.called = threading.Condition()

    def request(self, method: str, path: str, *, json: Any = None, timeout: Any = None) -> Any:
        with self.called:
            self.calls.append((method, path, json))
            self.called.notify_all()
        if self.failing is not None and method == "POST":
            raise self.failing
        return {}

    def wait_for(self, count: int) -> None:
        """Until `count` renewals were asked for (fails after 10 s)."""
        with self.called:
            assert self.called.wait_for(lambda: self.renewals() >= count, timeout=10)

    def renewals(self) -> int:
        return sum(1 for method, _, _ in self.calls if method == "POST")


def _lease(server: FakeServer, said: list[str], **timing: float) -> RunLease:
    return RunLease(
        server,  # type: ignore[arg-type]
        PATH,
        lambda text: said.append("note: " + text),
        lambda text: said.append("warning: " + text),
        **timing,
    )


def test_the_key_is_renewed_while_the_agent_runs_and_revoked_after() -> None:
    server, said = FakeServer(), []
    with _lease(server, said, lease=300, every=0.001):
        server.wait_for(3)
    renewed = server.renewals()
    assert server.calls[0] == ("POST", PATH + "/renew", {"lease_seconds": 300})
    assert server.calls[-1] == ("DELETE", PATH, None)
    assert said == []
    assert server.renewals() <= renewed + 1  # (one may have been on its way): none after


def test_the_key_is_revoked_when_the_agent_ends_in_an_exception() -> None:
    server = FakeServer()
    with pytest.raises(KeyboardInterrupt), _lease(server, [], every=3600):
        raise KeyboardInterrupt
    assert server.calls == [("DELETE", PATH, None)]


def test_failed_renewals_are_quiet_until_the_lease_has_passed_then_said_once() -> None:
    server, said = FakeServer(), []
    server.failing = CliError("no TameFlare server at http://127.0.0.1:3000: ConnectError")
    lease = _lease(server, said, lease=0.0, every=0.001)  # passed at once: a failure lapses it
    with lease:
        server.wait_for(5)
        assert len(said) == 1
        assert said[0].startswith("warning: this run's proxy key has expired")
        assert "(no TameFlare server at http://127.0.0.1:3000: ConnectError)" in said[0]
        server.failing = None  # the control plane is back: renewed (an expired key too)
        server.wait_for(server.renewals() + 2)
    assert said[1:] == [
        "note: tf: this run's proxy key is renewed: the agent's traffic passes again"
    ]


def test_failures_within_the_lease_say_nothing_and_never_stop_the_agent() -> None:
    server, said = FakeServer(), []
    server.failing = RuntimeError("anything at all")
    with _lease(server, said, lease=3600, every=0.001):
        server.wait_for(5)
    assert said == []
    assert server.calls[-1] == ("DELETE", PATH, None)


def test_a_revocation_that_fails_says_the_key_expires_by_itself() -> None:
    class Down(FakeServer):
        def request(self, method: str, path: str, **kw: Any) -> Any:
            raise CliError("no TameFlare server at http://127.0.0.1:3000: ConnectError")

    said: list[str] = []
    with _lease(Down(), said, lease=300, every=3600):
        pass
    assert said == [
        "warning: could not revoke this run's proxy key (no TameFlare server at "
        "http://127.0.0.1:3000: ConnectError): it stops working by itself within 300 s"
    ]
