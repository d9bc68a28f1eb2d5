"""Whichever events a filter leaves out, the export verifies, and any single change to its
lines is detected (guarantee 7, offline, with only the public key).

The export is written with the server's own line writers (`stub_line`, `export_jsonl`,
`selection_line`, `checkpoint_line`) over a chain the server's functions link; Hypothesis
picks which events are left out and one change: a line deleted, duplicated or swapped with
another, the file cut at any character, an event or a stub edited, an event hidden behind
its true stub or a stub replaced by its true event.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentfirewall.tokens import generate_signing_key
from agentfirewall_server.audit import (
    event_to_dict,
    export_jsonl,
    link_events,
    prepare_event,
    stub_line,
)
from agentfirewall_server.checkpoints import (
    Selected,
    Selection,
    checkpoint_line,
    parse_checkpoint,
    selection_line,
    sign_checkpoint,
    verify_export,
)
from tests.fuzzscale import examples

KEY = generate_signing_key()
KEYS = {KEY.kid: KEY.public_key}
FILTER = {"agent": "B"}


def _chain(agents: list[str]) -> list[dict[str, Any]]:
    prepared = [
        prepare_event("x.y", actor="someone", now=1.7e9 + n, agent=agent, data={"n": n})
        for n, agent in enumerate(agents)
    ]
    return link_events(None, prepared)


def _full(row: dict[str, Any]) -> str:
    return next(export_jsonl([{**event_to_dict(row), "created_ts": row["created_at"]}]))


def _export(rows: list[dict[str, Any]], shown: list[bool], filtered: bool) -> list[str]:
    """The lines the server writes: each event whole or as its stub, then (filtered) the
    signed selection record, then the checkpoint of the last event."""
    tally = Selected()
    lines = []
    for row, show in zip(rows, shown, strict=True):
        tally.add(row["id"], shown=show)
        lines.append(_full(row) if show else stub_line(row))
    if filtered:
        chosen = Selection(rows[-1]["id"], FILTER, tally.shown, tally.left_out,
                           tally.shown_ids_sha256)  # fmt: skip
        lines.append(selection_line(KEY, chosen))
    token = sign_checkpoint(KEY, rows[-1]["id"], rows[-1]["hash"], 1.7e9)
    lines.append(checkpoint_line(parse_checkpoint(token, KEYS, "test")))
    return lines


def _kind(line: str) -> str:
    record = json.loads(line)
    return str(record.get("record", "event"))


def _flip_hex(text: str, at: int) -> str:
    return text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1 :]


CHANGES = ["delete", "duplicate", "swap", "cut", "edit event", "edit stub", "hide", "unhide"]


def _change(lines: list[str], rows: list[dict[str, Any]], data: st.DataObject) -> list[str]:
    """One change to the export's lines (never one that leaves them as they were)."""
    kinds = [_kind(line) for line in lines]
    events = [n for n, k in enumerate(kinds) if k == "event"]
    stubs = [n for n, k in enumerate(kinds) if k == "stub"]
    linked = events + stubs
    change = data.draw(st.sampled_from(CHANGES))
    out = list(lines)
    if change == "delete":
        del out[data.draw(st.integers(0, len(out) - 1))]
    elif change == "duplicate":  # an event, a stub or the selection record once more
        at = data.draw(st.sampled_from([n for n, k in enumerate(kinds) if k != "checkpoint"]))
        out.insert(at, out[at])
    elif change == "swap":  # records after the events are a set: a swap moves an event
        first = data.draw(st.sampled_from(linked))
        second = data.draw(st.integers(0, len(out) - 1).filter(lambda n: n != first))
        out[first], out[second] = out[second], out[first]
    elif change == "cut":  # anywhere before the last line's newline
        text = "".join(out)
        out = [text[: data.draw(st.integers(0, len(text) - 2))]]
    elif change == "edit event":
        assume(events)
        at = data.draw(st.sampled_from(events))
        record = json.loads(out[at])
        field = data.draw(st.sampled_from(["actor", "agent", "event_type", "subject"]))
        record[field] = f"{record[field]}!"
        out[at] = json.dumps(record, sort_keys=True) + "\n"
    elif change == "edit stub":
        assume(stubs)
        at = data.draw(st.sampled_from(stubs))
        record = json.loads(out[at])
        field = data.draw(st.sampled_from(["prev_hash", "hash", "content_digest", "id"]))
        if field == "id":
            record["id"] += data.draw(st.sampled_from([-1, 1]))
        else:
            record[field] = _flip_hex(record[field], data.draw(st.integers(0, 63)))
        out[at] = json.dumps(record, sort_keys=True) + "\n"
    elif change == "hide":  # an event it showed, left out as its own true stub
        assume(events)
        at = data.draw(st.sampled_from(events))
        out[at] = stub_line(rows[at])
    else:  # "unhide": an event it left out, shown whole with its true content
        assume(stubs)
        at = data.draw(st.sampled_from(stubs))
        out[at] = _full(rows[at])
    assume(out != lines)
    return out


_AGENTS = st.lists(st.sampled_from(["A", "B", None]), min_size=1, max_size=12)


@settings(max_examples=examples(150), deadline=None)
@given(agents=_AGENTS, shown=st.lists(st.booleans(), min_size=12, max_size=12), data=st.data())
def test_any_filtered_export_verifies_and_any_single_change_is_detected(
    agents: list[str], shown: list[bool], data: st.DataObject
) -> None:
    rows = _chain(agents)
    shown = shown[: len(rows)]
    filtered = not all(shown) or data.draw(st.booleans(), label="filtered")
    lines = _export(rows, shown, filtered)

    intact = verify_export(lines, KEYS)
    assert intact.ok, intact
    assert intact.events_checked == len(rows)
    assert intact.events_left_out == shown.count(False)
    assert intact.export_filter == (FILTER if filtered else None)

    changed = _change(lines, rows, data)
    result = verify_export(changed, KEYS)
    if all(shown) and changed == [x for x in lines if '"record": "selection"' not in x]:
        # the filter left nothing out: without its record the file is the whole log's
        # export, true to the last byte
        assert result.ok, result
        assert result.export_filter is None
        return
    assert not result.ok, (changed, result)
    assert result.problem
