"""What `tf run --isolate` tells `tf logs` and stderr: a record the control plane refuses
loses no other record, and the summary says what became of them and why."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from agentfirewall_proxy.isolate.packets import Blocked, parse_frame
from agentfirewall_proxy.isolate.report import MAX_LINES, MAX_RECORDS, BlockedLog
from agentfirewall_server.routes.gateway import TrafficBatch
from agentfirewall_server.web import ApiError, parse_model
from tests.isolate.test_packets import TOO_LONG, dns_query, dns_refused


class ControlPlane:
    """The traffic endpoint, validating as the server does (its own model), refusing any batch
    that holds a record for `refused_host` (a rule of the server's this side cannot know)."""

    def __init__(self, *, refused_host: str | None = None, status: int | None = None) -> None:
        self.stored: list[dict[str, str]] = []
        self.batches = 0
        self._refused_host = refused_host
        self._status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.batches += 1
        if self._status is not None:
            return httpx.Response(self._status)
        try:
            batch = parse_model(request.content, TrafficBatch)
        except ApiError as exc:
            return httpx.Response(exc.status)
        records = [r.model_dump(exclude_none=True) for r in batch.records]
        if any(r.get("host") == self._refused_host for r in records):
            return httpx.Response(422)
        self.stored += records
        return httpx.Response(200, json={"stored": len(records)})


Handler = Callable[[httpx.Request], httpx.Response]


TOKEN = "tfg_test"


def _log(handler: Handler, gateway_token: str | None = TOKEN) -> tuple[BlockedLog, list[str]]:
    said: list[str] = []
    log = BlockedLog(
        "Bot",
        server_url="http://127.0.0.1:1",
        gateway_token=gateway_token,
        say=said.append,
        transport=httpx.MockTransport(handler),
    )
    return log.start(), said


ATTEMPTS = [Blocked("tcp", "127.0.0.1", 5432), Blocked("tcp", "127.0.0.1", 6379)]


def test_a_crafted_name_erases_no_attempt_from_tf_logs() -> None:
    """probe_3's crafted DNS query: a name of 6 x 63 characters (the server takes 300)."""
    poison = parse_frame(dns_refused(dns_query(TOO_LONG)))
    assert poison is not None
    server = ControlPlane()
    log, said = _log(server)
    for blocked in [ATTEMPTS[0], poison, ATTEMPTS[1]]:
        log.add(blocked)
    log.close()
    assert [r["method"] for r in server.stored] == ["TCP", "DNS", "TCP"]
    assert (
        said[-1] == 'tf: --isolate blocked 3 direct connections; `tf logs --agent "Bot"` lists them'
    )


def test_one_refused_record_loses_no_other() -> None:
    server = ControlPlane(refused_host="refused.example")
    log, said = _log(server)
    for blocked in [ATTEMPTS[0], Blocked("dns", "10.0.0.2", 53, "refused.example"), ATTEMPTS[1]]:
        log.add(blocked)
    log.close()
    assert [r["host"] for r in server.stored] == ["127.0.0.1:5432", "127.0.0.1:6379"]
    assert said[-1] == (
        "tf: --isolate blocked 3 direct connections (1 not recorded: the control plane answered"
        ' HTTP 422); `tf logs --agent "Bot"` lists 2'
    )


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (None, "no gateway token to send them with"),
        (0, "the control plane was unreachable"),
        (401, "the control plane answered HTTP 401"),
        (503, "the control plane answered HTTP 503"),
    ],
)
def test_the_summary_says_why_records_are_missing(status: int | None, why: str) -> None:
    server = ControlPlane(status=status or None)
    handler = _unreachable if status == 0 else server
    log, said = _log(handler, gateway_token=None if status is None else TOKEN)
    for blocked in ATTEMPTS:
        log.add(blocked)
    log.close()
    assert said[-1] == f"tf: --isolate blocked 2 direct connections (2 not recorded: {why})"
    assert server.batches == (1 if status else 0)  # refused whole for its own reason: not split


def test_attempts_too_fast_to_be_told_apart_are_counted() -> None:
    server = ControlPlane()
    log, said = _log(server)
    log.add(ATTEMPTS[0])
    log.close(missed=40)
    assert said[-1] == (
        "tf: --isolate blocked 41 direct connections (40 too many at once to be told apart);"
        ' `tf logs --agent "Bot"` lists 1'
    )
    assert json.dumps(server.stored).count("127.0.0.1:5432") == 1


def test_a_count_cut_short_is_said_to_be_a_lower_bound() -> None:
    log, said = _log(ControlPlane())
    log.add(ATTEMPTS[0])
    log.close(0, complete=False)
    assert said[-1].startswith("tf: --isolate blocked at least 1 direct connection;")


def test_a_flood_of_destinations_names_only_the_first_on_stderr() -> None:
    server = ControlPlane()
    log, said = _log(server)
    for port in range(MAX_LINES + 30):
        log.add(Blocked("tcp", "127.0.0.1", 1000 + port))
    log.close()
    assert len(said) == MAX_LINES + 2  # each of the first, one line for the rest, the summary
    assert said[MAX_LINES - 1] == (
        f"tf: blocked TCP connection to 127.0.0.1:{1000 + MAX_LINES - 1}: the client ignored the"
        " proxy variables"
    )
    assert said[MAX_LINES] == (
        f"tf: blocked more than {MAX_LINES} destinations: the rest are only counted"
    )
    assert len(server.stored) == MAX_LINES + 30  # every one in `tf logs`


def test_the_cap_counts_the_batch_in_flight() -> None:
    """probe_5: while a batch is being sent (a slow control plane), the attempts that come
    in are over the cap too; the summary's numbers agree with what `tf logs` holds."""
    server = ControlPlane()

    def slow(request: httpx.Request) -> httpx.Response:
        if not server.batches:  # the counter goes on while the first batch is in flight
            for port in range(MAX_RECORDS):
                log.add(Blocked("tcp", "10.0.0.2", port))
        return server(request)

    log, said = _log(slow)
    for port in range(MAX_RECORDS):
        log.add(Blocked("tcp", "10.0.0.1", port))
    log.flush()
    log.add(ATTEMPTS[0])
    log.close()
    assert len(server.stored) == MAX_RECORDS
    assert said[-1] == (
        f"tf: --isolate blocked {2 * MAX_RECORDS + 1} direct connections ({MAX_RECORDS + 1} over"
        f' the {MAX_RECORDS} recorded per run); `tf logs --agent "Bot"` lists {MAX_RECORDS}'
    )
