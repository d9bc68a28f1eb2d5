"""What `tf` prints (data is never markup; --json prints one document); small pure helpers."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime

import pytest

from agentfirewall_proxy.cli.output import Output, short_time
from agentfirewall_proxy.cli.run_cmd import dedicated_port, ports_in_use
from tests.core.test_display import HOSTILE, hidden


def _output(*, json_mode: bool = False) -> tuple[Output, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Output(json_mode=json_mode, stdout=out, stderr=err), out, err


def test_cells_and_lines_are_data_not_markup() -> None:
    output, out, err = _output()
    output.table(("agent", "enabled", "domains"), [("[red]Bot[/red]", True, ["a", "b"])])
    output.error("no agent `[bold]x`", hint="see `tf permissions list`")
    assert "[red]Bot[/red]" in out.getvalue()
    assert "yes" in out.getvalue()
    assert "a, b" in out.getvalue()
    assert "error: no agent `[bold]x`" in err.getvalue()
    assert "see `tf permissions list`" in err.getvalue()


def test_json_mode_prints_the_payload_only() -> None:
    output, out, _ = _output(json_mode=True)
    output.success("ignored in json mode")
    output.result({"connectors": []}, lambda: output.line("table"))
    assert json.loads(out.getvalue()) == {"connectors": []}


def test_empty_tables_say_what_to_do() -> None:
    output, out, _ = _output()
    output.table(("id",), [], empty="no connectors yet: add one with `tf connector add`")
    assert "tf connector add" in out.getvalue()


def test_short_time() -> None:
    assert short_time("2026-11-25T09:00:00.123Z") == "2026-11-25 09:00:00"
    today = datetime.now(UTC).date().isoformat()
    assert short_time(f"{today}T09:00:00.123Z") == "09:00:00"  # today: the time says it
    assert short_time(None) == "-"


def test_dedicated_port_comes_from_the_gateway_heartbeat() -> None:
    status = {"gateway": {"proxies": [{"agent_ports": {"Finance Bot": 10002}}]}}
    assert dedicated_port("Finance Bot", {"proxy_port": None}, status) == 10002
    assert dedicated_port("DevOps Bot", {"proxy_port": 10001}, status) == 10001
    assert dedicated_port("Bot", {"proxy_port": None}, {"gateway": {"proxies": []}}) is None


def test_a_stopped_gateways_ports_are_not_used() -> None:
    """Its ports may now be another program's, or another gateway's for another agent."""
    stopped = {"agent_ports": {"Bot": 10001}, "agent_port_range": [10001, 10010], "online": False}
    running = {"agent_ports": {"Bot": 10005}, "online": True}
    assert dedicated_port("Bot", {"proxy_port": None}, _status(stopped, running)) == 10005
    assert dedicated_port("Bot", {"proxy_port": None}, _status(stopped)) is None
    assert not ports_in_use(_status(stopped))
    assert ports_in_use(_status(stopped, {**stopped, "online": True}))


def _status(*proxies: dict[str, object]) -> dict[str, object]:
    return {"gateway": {"proxies": list(proxies)}}


def test_a_gateway_with_agent_ports_is_seen_before_any_agent_has_one() -> None:
    def status(*proxies: dict[str, object]) -> dict[str, object]:
        return {"gateway": {"proxies": list(proxies)}}

    assert ports_in_use(status({"agent_ports": {}, "agent_port_range": [10001, 10010]}))
    assert ports_in_use(status({"agent_ports": {"Bot": 10001}}))
    assert not ports_in_use(status({"agent_ports": {}, "agent_port_range": None}))
    assert not ports_in_use(status())


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


_STYLES = re.compile(r"\x1b\[[0-9;]*m")  # rich's own colours on a terminal


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_data_never_acts_on_the_terminal(terminal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever an agent put in a target or a path, every way `tf` prints it shows the
    escapes as text: nothing reaches the terminal that moves, clears or reorders it."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    hostile = "".join(HOSTILE)
    out, err = (_Terminal(), _Terminal()) if terminal else (io.StringIO(), io.StringIO())
    output = Output(stdout=out, stderr=err)
    output.table(("id", "target"), [("apv_1", hostile), (hostile, {"k": hostile})])
    output.fields([("target", hostile), ("parameters", {"x": [hostile]})])
    output.line(hostile)
    output.info(hostile)
    output.success(hostile)
    output.note(hostile)
    output.warn(hostile)
    output.error(hostile, hint=hostile)
    for stream in (out, err):
        printed = _STYLES.sub("", stream.getvalue())
        assert not hidden(printed, keep="\n"), printed
        assert "acme/\\u202eipa" in printed
        assert "\\x1b[2J" in printed

    document = io.StringIO()
    Output(json_mode=True, stdout=document).result({"target": hostile, "n": [1, None]}, print)
    assert json.loads(document.getvalue()) == {"target": hostile, "n": [1, None]}
    assert not hidden(document.getvalue(), keep="\n")
