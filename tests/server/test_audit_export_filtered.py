"""A filtered audit export verifies, and every change to it is still detected (guarantee 7).

`GET /api/v1/audit/export?format=jsonl` with `event_type`, `agent`, `since` or `until` writes
each event the filter leaves out as a stub line (its id, prev_hash, hash and content digest:
nothing the event says) and ends its events with a selection record, signed like a
checkpoint, naming the filter and which events it shows. `verify_export` links the chain
through the stubs, counts them apart, and fails an export whose stubs were edited, deleted,
moved or cut off, or one where an event was hidden behind a stub afterwards. Without a
filter the export is byte for byte the whole-log export it always was. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import Connection, select

from agentfirewall_server.audit import (
    VerifyResult,
    append_events,
    event_to_dict,
    export_jsonl,
    prepare_event,
)
from agentfirewall_server.checkpointer import collect
from agentfirewall_server.checkpoints import checkpoint_line, public_keys, verify_export
from agentfirewall_server.store.schema import audit_events
from tests.server.conftest import Harness

STUB_FIELDS = {"record", "id", "prev_hash", "hash", "content_digest"}
HOUR = 3600.0  # no interval checkpoint lands between an export and the test's reading


def _log_activity(h: Harness) -> None:
    """Events of several types and agents: three agents, one suspended and activated."""
    for name in ("Alpha", "Beta", "Gamma"):
        h.create_agent(name)
    for verb in ("suspend", "activate"):
        assert h.admin("POST", f"/v1/agents/Beta/{verb}").status_code == 200


def _export(h: Harness, filters: dict[str, str]) -> str:
    query = urlencode({"format": "jsonl", **filters})
    answer = h.admin("GET", f"/v1/audit/export?{query}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    text: str = answer.text
    return text


def _verify(h: Harness, text: str) -> VerifyResult:
    keys = public_keys(h.call("GET", "/.well-known/jwks.json").text)
    return verify_export(text.splitlines(keepends=True), keys)


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _listed_ids(h: Harness, filters: dict[str, str]) -> set[int]:
    """The ids `GET /api/v1/audit` lists with the same filters."""
    query = urlencode({**filters, "limit": 1000})
    return {e["id"] for e in h.admin("GET", f"/v1/audit?{query}").json()["events"]}


def _times(h: Harness) -> list[str]:
    events = h.admin("GET", "/v1/audit?limit=1000").json()["events"]
    return [e["created_at"] for e in sorted(events, key=lambda e: e["id"])]


#: each filter alone, combined, and one no event matches (name -> filters from the times)
FILTERS: dict[str, Any] = {
    "event_type": lambda t: {"event_type": "agent.registered"},
    "agent": lambda t: {"agent": "Beta"},
    "since": lambda t: {"since": t[len(t) // 2]},
    "until": lambda t: {"until": t[len(t) // 2]},
    "since and until": lambda t: {"since": t[2], "until": t[-2]},
    "agent and event_type": lambda t: {"agent": "Beta", "event_type": "agent.suspended"},
    "all four": lambda t: {
        "agent": "Beta",
        "event_type": "agent.registered",
        "since": t[0],
        "until": t[-1],
    },
    "an empty result": lambda t: {"agent": "nobody at all"},
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_a_filtered_export_verifies_with_its_left_out_events_linked(
    name: str, harness_factory: Any
) -> None:
    h: Harness = harness_factory(audit_checkpoint_seconds=HOUR)
    _log_activity(h)
    filters = FILTERS[name](_times(h))
    text = _export(h, filters)
    result = _verify(h, text)
    assert result.ok, result
    records = _records(text)
    lines = [r for r in records if r.get("record") not in ("checkpoint", "selection")]
    (selection,) = [r for r in records if r.get("record") == "selection"]
    end = selection["seq"]
    assert [r["id"] for r in lines] == list(range(1, end + 1))  # every event, in order
    shown = {r["id"] for r in lines if r.get("record") != "stub"}
    stubs = [r for r in lines if r.get("record") == "stub"]
    assert shown == {i for i in _listed_ids(h, filters) if i <= end}  # the list's events
    assert all(set(stub) == STUB_FIELDS for stub in stubs)  # nothing an event says
    assert selection["filter"] == filters
    assert (selection["shown"], selection["left_out"]) == (len(shown), len(stubs))
    if name == "an empty result":
        assert shown == set()
    assert result.events_checked == end
    assert result.events_left_out == len(stubs) > 0
    assert result.export_filter == filters
    recorded = h.admin("GET", "/v1/audit?event_type=config.exported").json()["events"][0]
    assert recorded["data"] == {"format": "jsonl", "events": len(shown), "filter": filters}


def _whole_log_export_as_before(h: Harness) -> str:
    """The JSON Lines export as the server wrote it before filters left stubs: every event
    up to the newest checkpoint, then each checkpoint once (the code it had, on the
    database as it is now)."""
    state = h.state

    def read(conn: Connection) -> tuple[list[Any], list[Any]]:
        checkpoints, _problems = collect(state.settings, state.signing_key, conn)
        rows = list(conn.execute(select(audit_events).order_by(audit_events.c.id)).all())
        return rows, checkpoints

    rows, checkpoints = state.db.read_sync(read)
    covered = max(cp.seq for cp in checkpoints)
    events = [{**event_to_dict(r), "created_ts": r.created_at} for r in rows if r.id <= covered]
    unique = {cp.token: cp for cp in checkpoints}.values()
    return "".join([*export_jsonl(events), *(checkpoint_line(cp) for cp in unique)])


def test_an_unfiltered_export_is_byte_identical_to_the_whole_log_export(
    harness_factory: Any,
) -> None:
    h: Harness = harness_factory(audit_checkpoint_seconds=HOUR)
    _log_activity(h)
    for filters in ({}, {"agent": "", "event_type": ""}):  # an empty value filters nothing
        text = _export(h, filters)
        assert text == _whole_log_export_as_before(h)
        assert '"record": "stub"' not in text
        assert '"record": "selection"' not in text
        result = _verify(h, text)
        assert result.ok, result
        assert result.export_filter is None
        assert "filter" not in result.to_dict()
    recorded = h.admin("GET", "/v1/audit?event_type=config.exported").json()["events"][0]
    assert set(recorded["data"]) == {"format", "events"}


def _bulk(h: Harness, count: int) -> set[int]:
    """Append `count` chained events (one agent in seven is `Bulk`); their `Bulk` ids."""
    now = time.time()
    prepared = [
        prepare_event(
            "test.bulk",
            actor="test",
            now=now + n / 1000,
            agent="Bulk" if n % 7 == 0 else f"Other {n % 3}",
            data={"n": n},
        )
        for n in range(count)
    ]
    h.state.db.write_sync(lambda conn: append_events(conn, prepared))
    rows = h.state.db.read_sync(
        lambda conn: conn.execute(select(audit_events.c.id, audit_events.c.agent)).all()
    )
    return {r.id for r in rows if r.agent == "Bulk"}


def test_a_large_filtered_export_streams_across_batches_and_verifies(
    harness_factory: Any,
) -> None:
    h: Harness = harness_factory(audit_checkpoint_seconds=HOUR)
    bulk = _bulk(h, 12_000)  # more than two reads of 5000
    text = _export(h, {"agent": "Bulk"})
    records = _records(text)
    lines = [r for r in records if r.get("record") not in ("checkpoint", "selection")]
    assert len(lines) >= 12_000
    assert [r["id"] for r in lines] == list(range(1, len(lines) + 1))
    assert {r["id"] for r in lines if r.get("record") != "stub"} == bulk
    result = _verify(h, text)
    assert result.ok, result
    assert (result.events_checked, result.events_left_out) == (len(lines), len(lines) - len(bulk))

    whole = _export(h, {})  # and the whole log, across the same batches
    assert whole == _whole_log_export_as_before(h)
    assert _verify(h, whole).ok


def _swap_stub_and_event(lines: list[str]) -> list[str]:
    at = next(n for n, line in enumerate(lines[:-1]) if '"record": "stub"' in line)
    lines[at], lines[at + 1] = lines[at + 1], lines[at]
    return lines


def _hide(lines: list[str], stub_of: dict[int, str]) -> list[str]:
    """An event the filter showed, replaced by its own (true) stub."""
    at = next(n for n, line in enumerate(lines) if '"event_type"' in line)
    lines[at] = stub_of[json.loads(lines[at])["id"]]
    return lines


def _edit(lines: list[str], marker: str, change: Any) -> list[str]:
    at = next(n for n, line in enumerate(lines) if marker in line)
    record = json.loads(lines[at])
    change(record)
    lines[at] = json.dumps(record, sort_keys=True) + "\n"
    return lines


def _flip(value: str) -> str:
    return ("1" if value[0] != "1" else "2") + value[1:]


def test_every_change_to_a_filtered_export_is_detected(harness_factory: Any) -> None:
    h: Harness = harness_factory(audit_checkpoint_seconds=HOUR)
    _log_activity(h)
    text = _export(h, {"agent": "Beta"})
    original = text.splitlines(keepends=True)
    # the true stub of every event, from a filter that shows none of them
    everyone = _export(h, {"agent": "nobody"}).splitlines(keepends=True)
    stub_of = {json.loads(x)["id"]: x for x in everyone if '"record": "stub"' in x}
    assert _verify(h, text).ok
    last = max(json.loads(x).get("id", 0) for x in original)
    stub = '"record": "stub"'
    selection = '"record": "selection"'
    cases: dict[str, Any] = {
        "a stub deleted": lambda x: [y for y in x if stub not in y or json.loads(y)["id"] != 1],
        "a stub's digest edited": lambda x: _edit(
            x, stub, lambda r: r.update(content_digest=_flip(r["content_digest"]))
        ),
        "a stub's hash edited": lambda x: _edit(x, stub, lambda r: r.update(hash=_flip(r["hash"]))),
        "a stub given a field": lambda x: _edit(x, stub, lambda r: r.update(agent="Beta")),
        "a stub and an event swapped": _swap_stub_and_event,
        "an event edited": lambda x: _edit(x, '"event_type"', lambda r: r.update(actor="ceo")),
        "an event hidden behind its stub": lambda x: _hide(x, stub_of),
        "the selection record deleted": lambda x: [y for y in x if selection not in y],
        "the selection's filter edited": lambda x: _edit(
            x, selection, lambda r: r.update(filter={"agent": "Gamma"})
        ),
        "the selection's counts edited": lambda x: _edit(
            x, selection, lambda r: r.update(shown=r["shown"] + 1, left_out=r["left_out"] - 1)
        ),
        "the selection's signature garbled": lambda x: _edit(
            x, selection, lambda r: r.update(token=r["token"][:-4] + "AAAA")
        ),
        "the selection record twice": lambda x: [*x, next(y for y in x if selection in y)],
        "the last event cut off": lambda x: [y for y in x if json.loads(y).get("id") != last],
        "cut after the events": lambda x: [y for y in x if '"record": "checkpoint"' not in y],
        "cut in the middle of a line": lambda x: ["".join(x)[: len("".join(x)) // 2]],
        "an event moved after the checkpoints": lambda x: [*x[1:], x[0]],
    }
    for name, change in cases.items():
        changed = change(list(original))
        assert changed != original, name
        result = _verify(h, "".join(changed))
        assert not result.ok, name
        assert result.problem, name


def test_a_stub_in_a_whole_log_export_is_an_event_hidden(harness_factory: Any) -> None:
    """Only the server's filter leaves an event out: a stub put in an unfiltered export (the
    event's true stub, so the chain still links) fails."""
    h: Harness = harness_factory(audit_checkpoint_seconds=HOUR)
    _log_activity(h)
    whole = _export(h, {}).splitlines(keepends=True)
    stubs = _export(h, {"agent": "nobody"}).splitlines(keepends=True)
    stub_of = {json.loads(x)["id"]: x for x in stubs if '"record": "stub"' in x}
    hidden = _hide(list(whole), stub_of)
    result = _verify(h, "".join(hidden))
    assert not result.ok
    assert "no signed filter record" in str(result.problem)
    assert "hidden" in str(result.problem)
