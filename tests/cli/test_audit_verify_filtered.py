"""`tf audit verify --file` on a filtered export: it passes, saying how many events the
export's filter left out (linked, not shown), and still fails one changed afterwards.

A real server on 127.0.0.1; the exports are fetched with the filters the dashboard's
Export buttons send (`GET /api/v1/audit/export?format=jsonl&agent=…`), and verified offline
with only the server's public key (its JWKS), as an auditor would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from agentfirewall_proxy.cli.app import main as tf_main
from tests.livesrv import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer.start(tmp_path_factory.mktemp("filtered") / "tf")
    try:
        for name in ("A", "B", "C"):
            live.create_agent(name)
        assert live.admin("POST", "/v1/agents/B/suspend").status_code == 200
        yield live
    finally:
        live.stop()


def _export(server: LiveServer, **filters: str) -> str:
    answer = server.admin("GET", "/v1/audit/export?" + urlencode({"format": "jsonl", **filters}))
    assert answer.status_code == 200, answer.text
    return answer.text


def _tf_verify(
    server: LiveServer, tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *json_: str
) -> tuple[int, str, str]:
    """`tf audit verify --file` on `text`: its exit code, standard output and error."""
    keys = tmp_path / "jwks.json"
    keys.write_text(server.request("GET", "/.well-known/jwks.json").text)
    export = tmp_path / "audit.jsonl"
    export.write_text(text)
    capsys.readouterr()
    code = tf_main(["audit", "verify", "--file", str(export), "--key", str(keys), *json_])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "filters",
    [
        {"event_type": "agent.registered"},
        {"agent": "B"},
        {"agent": "B", "event_type": "agent.suspended"},
        {"agent": "nobody"},
    ],
    ids=["event_type", "agent", "agent and event_type", "nothing matches"],
)
def test_tf_audit_verify_passes_a_filtered_export_and_counts_what_it_left_out(
    server: LiveServer,
    filters: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no project: the key is the one given
    text = _export(server, **filters)
    code, out, err = _tf_verify(server, tmp_path, text, capsys)
    assert code == 0, err
    assert "audit chain intact" in out
    left_out = text.count('"record": "stub"')
    assert left_out > 0
    events = "event" if left_out == 1 else "events"
    assert f"{left_out} {events} left out by the export's filter (linked, not shown)" in out
    for name, value in filters.items():
        assert f"{name}={json.dumps(value)}" in out

    code, out, _err = _tf_verify(server, tmp_path, text, capsys, "--json")
    result: dict[str, Any] = json.loads(out)
    assert code == 0
    assert result["ok"] is True
    assert result["events_left_out"] == left_out
    assert result["filter"] == filters


def _hide_first_event(whole: str, stubs: str) -> str:
    """The first event `whole` shows, replaced by its true stub (from `stubs`)."""
    stub_of = {
        json.loads(line)["id"]: line
        for line in stubs.splitlines(keepends=True)
        if '"record": "stub"' in line
    }
    lines = whole.splitlines(keepends=True)
    at = next(n for n, line in enumerate(lines) if '"event_type"' in line)
    lines[at] = stub_of[json.loads(lines[at])["id"]]
    return "".join(lines)


def test_tf_audit_verify_fails_a_filtered_export_changed_afterwards(
    server: LiveServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    filtered = _export(server, agent="B")
    everything_stubbed = _export(server, agent="nobody")
    lines = filtered.splitlines(keepends=True)
    first_stub = next(n for n, line in enumerate(lines) if '"record": "stub"' in line)
    changed = {
        "a stub deleted": ("".join(lines[:first_stub] + lines[first_stub + 1 :]), "deleted"),
        "an event hidden behind its stub": (
            _hide_first_event(filtered, everything_stubbed),
            "hidden",
        ),
        "a stub in a whole-log export": (
            _hide_first_event(_export(server), _export(server, agent="nobody")),
            "no signed filter record",
        ),
        "cut short": ("".join(lines[: len(lines) // 2]), "checkpoint"),
    }
    for name, (text, said) in changed.items():
        code, out, err = _tf_verify(server, tmp_path, text, capsys)
        assert code == 1, name
        assert "audit chain intact" not in out, name
        assert said in err, (name, err)
