"""A gateway cut off from its control plane enforces its last config for a bounded time only.

Past ``--max-config-age`` without word from the control plane, the config in force may miss
a kill switch: every request is refused (503 ``control_plane_unreachable``), held ones too,
until the control plane answers again; its answer, changed or not, is then enforced.

The partition is a blackhole (calls and answers hang, no error: a long poll or heartbeat in
flight never returns), between the gateway and an in-memory control plane; the bound is one
second so that the test waits little.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.main import parse_args
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.partitioned import (  # Partitioned: test_cut_answered.py imports it from here
    USER,
    Partitioned,
    answers_until,
    ask,
    gateway_cut_off_by,
    statuses_until,
)
from tests.proxy.rawclient import auth_header, read_response, status_of
from tests.proxy.support import (
    RunningGateway,
    connector,
    cut_download,
    gateway_options,
    github_bot,
    rule,
    snapshot,
)

RULES = [
    rule("github.*", "allow"),
    rule("github.unknown.get", "allow"),
    rule("github.pr.merge", "require_approval"),
]
MERGE = (b"PUT http://api.github.com/repos/acme/api/pulls/7/merge HTTP/1.1\r\n"
         b"Host: api.github.com\r\nContent-Length: 2\r\n")  # fmt: skip


@pytest.fixture
def gateway(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[tuple[RunningGateway, Partitioned]]:
    with gateway_cut_off_by(Partitioned, RULES, fakes, tmp_path) as both:
        yield both


def error_of(answer: bytes) -> tuple[int, str, str]:
    body = json.loads(answer.partition(b"\r\n\r\n")[2] or b"{}")
    return status_of(answer), str(body.get("error")), str(body.get("reason"))


def test_past_max_config_age_every_request_is_refused_held_ones_too(
    gateway: tuple[RunningGateway, Partitioned], fakes: FakeUpstreams
) -> None:
    """The owner activates the kill switch during the partition: the gateway cannot know,
    so it stops forwarding once the bound passes, and enforces the switch once healed."""
    running, control = gateway
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as held:
        held.sendall(MERGE + auth_header() + b"\r\n{}")
        deadline = time.monotonic() + 10
        while not control.inner.pending():
            assert time.monotonic() < deadline, "the merge was not held"
            time.sleep(0.02)
        assert status_of(ask(running)) == 200
        control.link.clear()
        kill = [{"scope": "all", "target": None, "reason": "incident"}]
        control.inner.update(snapshot(RULES, connectors=[connector("github")],
                                      kill_switches=kill))  # fmt: skip
        status, error, reason = error_of(read_response(held, timeout=10))
    assert (status, error) == (503, "control_plane_unreachable")
    answers_until(running, lambda status: status == 503)
    status, error, reason = error_of(ask(running))
    assert (status, error) == (503, "control_plane_unreachable")
    assert reason.startswith("no word from the control plane for ")
    assert reason.endswith(" s (--max-config-age 1)")
    control.link.set()
    after = answers_until(running, lambda status: status != 503)
    assert after[-1] == 403  # the kill switch of the config it fetched, never the old one
    assert fakes["github"].received("PUT") == []


def test_an_unchanged_answer_ends_the_outage(
    gateway: tuple[RunningGateway, Partitioned],
) -> None:
    running, control = gateway
    assert status_of(ask(running)) == 200
    control.link.clear()
    answers_until(running, lambda status: status == 503)
    control.link.set()
    assert answers_until(running, lambda status: status != 503)[-1] == 200


def test_an_exchange_in_flight_is_cut_once_the_bound_passes(
    gateway: tuple[RunningGateway, Partitioned],
) -> None:
    """A download (or a tunnel, a stream) begun before the partition went on for as long
    as it lasted, past any kill switch the gateway could not hear of. It is cut at the
    bound, and its record says why."""
    running, control = gateway
    record = cut_download(running, control.inner, control.link.clear, control.link.set)
    assert record["reason"].startswith("control_plane_unreachable: the exchange was cut")


def test_a_frozen_live_control_plane_stops_the_gateway_until_it_answers(
    tmp_path: Path, fakes: FakeUpstreams
) -> None:
    """The real server process stopped (SIGSTOP: its sockets accept and never answer, the
    gateway's long poll hangs on one): past the bound every request is refused; once it
    runs again, a kill switch activated at once is what the gateway enforces."""
    server = LiveServer.start(tmp_path / "tf")
    running = None
    try:
        key = github_bot(server, fakes)
        control = HttpControl(server.url, server.gateway_token)
        options = gateway_options(tmp_path, fakes, max_config_age=1.0)
        running = RunningGateway(options, control).start()

        def answer() -> bytes:
            return ask(running, USER, key=key)  # type: ignore[arg-type]

        assert status_of(answer()) == 200
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            seen = statuses_until(answer, lambda status: status == 503)
            assert set(seen) <= {200, 503}
            assert error_of(answer())[:2] == (503, "control_plane_unreachable")
        finally:
            server.process.send_signal(signal.SIGCONT)
        body = {"active": True, "scope": "github", "reason": "incident"}
        assert server.admin("POST", "/v1/kill-switch", json=body).status_code == 200
        after = statuses_until(answer, lambda status: status not in (200, 503))
        assert after[-1] == 403
    finally:
        if running is not None:
            running.stop()
        server.stop()
    assert fakes["github"].received("GET")  # the first request went through, no other


@pytest.mark.parametrize(("given", "age"), [([], 60.0), (["--max-config-age", "0"], 0.0),
                                            (["--max-config-age", "2.5"], 2.5)])  # fmt: skip
def test_max_config_age_option(given: list[str], age: float) -> None:
    assert parse_args(["--config-file", "g.yaml", *given]).max_config_age == age


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_a_negative_max_config_age_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        parse_args(["--config-file", "g.yaml", "--max-config-age", value])
    assert done.value.code == 2
    assert "--max-config-age must be 0 (no bound) or a positive number" in capsys.readouterr().err
