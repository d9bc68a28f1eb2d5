"""docs/cli.md, read by a newcomer: the obvious mistakes get an answer that says what is
wrong and what to do next, with the documented exit code (2 usage, 1 error), and no
traceback; `--json` output stays machine-readable.

The argument checks run in-process (`main([...])`, nothing listens); what needs a store runs
`tf` against the project's state in-process (offline), and the rest against one `tf up`.
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.cli import monitor
from agentfirewall_proxy.cli.app import main
from agentfirewall_proxy.cli.context import Context
from agentfirewall_proxy.cli.output import Output
from tests.cli.conftest import Project

_ENV = ("TF_SERVER", "TF_ADMIN_TOKEN", "TF_PROXY", "TF_CA_CERT")


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory as the working directory, with no `TF_*` pointing anywhere."""
    monkeypatch.chdir(tmp_path)
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _tf(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- arguments: checked before anything runs -------------------------------------------


def test_a_mistyped_flag_names_the_help_of_its_own_command(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _tf(capsys, "connector", "add", "github", "--tokn", "ghp_x")
    assert code == 2
    assert "unrecognized arguments: --tokn ghp_x" in err
    assert "`tf connector add --help`" in err
    code, _, err = _tf(capsys, "up", "--porrt", "3000")
    assert (code, "`tf up --help`" in err) == (2, True)


def test_tf_run_name_after_the_command_is_explained(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _tf(capsys, "run", "python", "my_agent.py", "--name", "Bot")
    assert code == 2
    assert "`--name` comes after the command" in err
    assert 'tf run --name "Bot" python my_agent.py' in err
    code, _, err = _tf(capsys, "run", "python", "my_agent.py")
    assert (code, "needs --name NAME" in err) == (2, True)


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (("--port", "99999"), 2, "expected a port from 0 (any free one) to 65535"),
        (("--proxy-port", "-1"), 2, "expected a port from 0"),
        (("--log-level", "loud"), 2, "invalid choice: 'loud'"),
        (("--upstream-ca", "missing-ca.pem"), 1, "cannot read --upstream-ca `missing-ca.pem`"),
        (("--upstream-ca", "not-a-ca.pem"), 1, "holds no PEM certificate"),
        (("--database-url", "notaurl"), 2, "--database-url is not a database URL"),
    ],
)
def test_tf_up_refuses_a_bad_option_before_it_starts(
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    said: str,
) -> None:
    (elsewhere / "not-a-ca.pem").write_text("hello\n")
    done, _, err = _tf(capsys, "up", *args)
    assert done == code
    assert said in err
    assert "Traceback" not in err
    assert not (elsewhere / ".tf").exists()  # refused before the state was made


def test_init_refuses_a_port_out_of_range(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _tf(capsys, "init", "--port", "70000")
    assert (code, "to 65535, not 70000" in err) == (2, True)
    assert not (elsewhere / ".tf").exists()


def test_logs_last_must_be_a_positive_count(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("0", "-3", "many"):
        code, _, err = _tf(capsys, "logs", "--last", bad)
        assert code == 2, bad
        assert "argument --last/-n" in err


def test_server_must_be_a_url(elsewhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _tf(capsys, "status", "--server", "notaurl")
    assert code == 2
    assert "--server `notaurl` is not a server URL" in err


def test_kill_switch_verb_and_flag_that_contradict_are_refused(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`activate --deactivate` used to activate (the verb won, silently)."""
    for args in (("activate", "--deactivate"), ("status", "--activate")):
        code, _, err = _tf(capsys, "kill-switch", *args)
        assert code == 2, args
        assert "contradict each other" in err


def test_permissions_set_half_a_rule_says_which_half_is_missing(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_rule = ("permissions", "set", "--gateway", "Bot", "--connector", "github")
    code, _, err = _tf(capsys, *set_rule, "--action", "github.pr.*")
    assert code == 2
    assert "give --decision allow|deny|require_approval too" in err
    assert '--action "github.pr.*" --decision allow' in err  # the example to copy


def test_mcp_config_file_that_is_not_there_is_not_told_to_pass_one(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _tf(capsys, "mcp", "list", "--client", "cursor", "--config-file", "mcp.json")
    assert code == 1
    assert "no MCP config at `mcp.json`" in err
    assert "check the path given to --config-file" in err


# -- tf logs --follow ------------------------------------------------------------------


class _Stop(Exception):
    pass


class _Traffic:
    """`GET /v1/traffic`: records 1-5 exist; record 6 arrives after `--follow` started."""

    def __init__(self, polls: int) -> None:
        self.records = [_record(i) for i in range(1, 6)]
        self.calls, self.polls = 0, polls

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        assert path == "/v1/traffic"
        self.calls += 1
        if self.calls > self.polls:
            raise _Stop
        if self.calls == 2:
            self.records.append(_record(6))
        newest = sorted(self.records, key=lambda r: int(r["id"]), reverse=True)
        return {"traffic": newest[: int(params["limit"])]}


def _record(n: int) -> dict[str, Any]:
    return {
        "id": n, "source": "proxy", "agent": "Bot", "action": "github.pr.get", "method": "GET",
        "host": "api.github.com", "path": f"/call/{n}", "decision": "allow",
        "status_code": 200, "latency_ms": 1.0, "created_at": "2026-12-01T09:00:00Z",
    }  # fmt: skip


def _follow(tmp_path: Path, *, json_mode: bool) -> str:
    """`tf logs --follow --last 1`: the newest record, then what comes."""
    out = io.StringIO()
    args = argparse.Namespace(agent=None, diverged=False, interval=0.0, follow=True)
    ctx = Context(
        args=args,
        out=Output(json_mode=json_mode, stdout=out, stderr=io.StringIO()),
        cwd=tmp_path,
        env={},
    )
    client: Any = _Traffic(polls=3)
    with pytest.raises(_Stop):
        monitor._follow(ctx, client, [_record(5)])
    return out.getvalue()


def test_follow_shows_only_new_records_after_the_last_ones(tmp_path: Path) -> None:
    """`--last 1` shows record 5; records 1-4 are older, never printed as new traffic."""
    printed = _follow(tmp_path, json_mode=False)
    assert [int(n) for n in re.findall(r"/call/(\d+)", printed)] == [5, 6]


def test_follow_json_is_json_lines(tmp_path: Path) -> None:
    lines = _follow(tmp_path, json_mode=True).splitlines()
    assert [json.loads(line)["id"] for line in lines] == [5, 6]


# -- against the project's store, with no server ---------------------------------------


def test_typos_in_agent_names_are_refused_where_they_would_change_nothing(
    bare_project: Project,
) -> None:
    """`permissions suggest --agent bot` (for `Bot`) used to answer "0 recorded calls" and,
    with --apply, write a deny-all rule for an agent nobody runs; `policy replay` likewise
    replayed nothing and reported no change."""
    tf = bare_project.tf
    tf("init", "--port", "0", "--proxy-port", "0")
    tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
       "--action", "github.pr.*", "--decision", "allow")  # fmt: skip
    before = json.loads(tf("permissions", "list", "--json").stdout)
    done = tf("permissions", "suggest", "--agent", "bot", "--apply", check=False)
    assert done.returncode == 1
    assert "unknown agent `bot`: did you mean `Bot`?" in done.stderr
    assert json.loads(tf("permissions", "list", "--json").stdout) == before
    done = tf("policy", "replay", "--agent", "bot", check=False)
    assert done.returncode == 1
    assert "did you mean `Bot`?" in done.stderr
    assert tf("permissions", "suggest", "--agent", "Bot").returncode == 0  # known, no traffic


def test_init_says_what_it_made_and_enforcement_set_says_it_registered(
    bare_project: Project,
) -> None:
    """The database and the vault key come on first use: `tf init` said it made them."""
    made = bare_project.tf("init", "--port", "0", "--proxy-port", "0")
    assert "database" not in made.stdout
    assert not (bare_project.root / ".tf" / "agentfirewall.db").exists()
    done = bare_project.tf("enforcement", "set", "--gateway", "Night Bot", "monitor")
    assert "new agent `Night Bot` registered" in done.stderr  # as `permissions set` says it
    again = bare_project.tf("enforcement", "set", "--gateway", "Night Bot", "full_enforce")
    assert "registered" not in again.stderr


def test_installing_an_installed_pack_again_is_not_an_error(bare_project: Project) -> None:
    """It said `conflict: … update it with PUT` (exit 1): API talk, and `tf init
    --safe-defaults` keeps an installed pack as a success."""
    bare_project.tf("init", "--port", "0", "--proxy-port", "0")
    bare_project.tf("policy", "install", "github-safe-defaults")
    again = bare_project.tf("policy", "install", "github-safe-defaults", check=False)
    assert again.returncode == 0, again.stderr
    assert "already installed" in again.stdout
    listed = json.loads(bare_project.tf("policy", "list", "--json").stdout)["policies"]
    assert [p["name"] for p in listed] == ["github-safe-defaults"]


def test_a_named_server_without_a_token_says_the_project_token_is_not_sent(
    bare_project: Project,
) -> None:
    bare_project.tf("init", "--port", "0", "--proxy-port", "0")
    done = bare_project.tf("status", "--server", "http://127.0.0.1:9", check=False)
    assert done.returncode == 1
    assert "never gets a project's `.tf/admin.token`" in done.stderr
    assert "TF_ADMIN_TOKEN" in done.stderr
    assert "run `tf init`" not in done.stderr  # it was run: that advice led nowhere


# -- against a running `tf up` ---------------------------------------------------------


@pytest.mark.slow
def test_mistakes_against_a_running_gateway(bare_project: Project) -> None:
    tf = bare_project.tf
    tf("init", "--port", "0", "--proxy-port", "0")
    bare_project.up()
    tf("agent", "add", "Finance Bot")

    # a budget on a mistyped agent, connector or action caps nothing
    for args, said in (
        (("--agent", "Finance-Bot", "--connector", "stripe"), "did you mean `Finance Bot`?"),
        (("--connector", "stirpe"), "did you mean `stripe`?"),
        (("--connector", "stripe", "--action", "stripe.trasnfer.*"), "matches nothing"),
    ):
        done = tf("budget", "set", "daily", *args, "--limit", "5", check=False)
        assert (done.returncode, said in done.stderr) == (2, True), done.stderr
    assert json.loads(tf("budget", "list", "--json").stdout)["budgets"] == []
    tf("budget", "set", "daily", "--connector", "payments", "--limit", "5", "--force")

    # there is no `tf actions list`: the hint names the command that lists
    done = tf("actions", "resolve", "act_01M8WRBHJ3F8", "--outcome", "retry", check=False)
    assert done.returncode == 1
    assert "`tf actions stuck`" in done.stderr

    # no shadow configuration, no divergence: not "no traffic yet"
    done = tf("logs", "--diverged")
    assert "no diverged calls" in done.stdout

    # nothing is active: say so, not "active: off; … clears them all"
    done = tf("kill-switch", "--deactivate", "--scope", "Finance Bot", check=False)
    assert done.returncode == 2
    assert "no kill switch is active" in done.stderr

    # `audit export -o FILE --json` answers a JSON document; a named checkpoints file
    # that does not exist is an error, not "no anchor" (the chain then passed unanchored)
    written = json.loads(tf("audit", "export", "-o", "audit.jsonl", "--json").stdout)
    assert written == {
        "output": "audit.jsonl",
        "format": "jsonl",
        "bytes": (bare_project.root / "audit.jsonl").stat().st_size,
    }
    done = tf("audit", "verify", "--file", "audit.jsonl", "--checkpoints", "anchor.jsonl",
              check=False)  # fmt: skip
    assert done.returncode == 1
    assert "cannot read `anchor.jsonl`: No such file or directory" in done.stderr
    done = tf("audit", "verify", "--file", "audit.jsonl", "--key", "jwks.json", check=False)
    assert "cannot read `jwks.json`" in done.stderr  # the key, not the export, is missing
