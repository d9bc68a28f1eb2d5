"""docs/server.md, "Running", followed literally: what a newcomer sees when a start works
and when it does not.

Every refused start is one line on stderr saying what to fix (the setting named as the
operator sets it, never its value or password), no traceback, and leaves no token file
behind, so the next start still prints the first-start message. With `--port 0` the links
of that message name the port the server listens on.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

from agentfirewall_server.bootstrap import Bootstrap
from agentfirewall_server.main import first_start_message, main
from agentfirewall_server.settings import Settings
from tests.livesrv import LiveServer

_ENV = (
    "AGENTFIREWALL_DATABASE_URL",
    "AGENTFIREWALL_ADMIN_TOKEN",
    "AGENTFIREWALL_GATEWAY_TOKEN",
    "AGENTFIREWALL_UPSTREAM_CA",
    "AGENTFIREWALL_LOG_LEVEL",
    "SIGNING_KEY_PRIVATE",
    "AGENTFIREWALL_SIGNING_KEY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return code, err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://tf:hunter2@127.0.0.1:1/tameflare", "connection"),  # nothing listens
        ("mysql://tf@127.0.0.1/tameflare", "no driver"),
        ("postgres//tf@db/tameflare", "parse"),
    ],
    ids=["unreachable", "unsupported", "malformed"],
)
def test_a_database_that_does_not_open_stops_the_start_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, expected: str
) -> None:
    data = tmp_path / "tf"
    args = ["--port", "0", "--data-dir", str(data), "--database-url", url]
    code, err = _refused(capsys, args)
    assert code == 1
    assert "cannot be opened" in err
    assert expected in err
    assert "AGENTFIREWALL_DATABASE_URL" in err
    assert "hunter2" not in err
    assert not (data / "admin.token").exists()  # the next start still prints the message


def test_a_bad_signing_key_or_ca_bundle_stops_the_start_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "tf"
    args = ["--port", "0", "--data-dir", str(data)]
    monkeypatch.setenv("SIGNING_KEY_PRIVATE", "not a key")
    code, err = _refused(capsys, args)
    assert code == 2
    assert "SIGNING_KEY_PRIVATE" in err
    assert "PEM" in err
    monkeypatch.delenv("SIGNING_KEY_PRIVATE")
    monkeypatch.setenv("AGENTFIREWALL_UPSTREAM_CA", str(tmp_path / "missing.pem"))
    code, err = _refused(capsys, args)
    assert code == 2
    assert "AGENTFIREWALL_UPSTREAM_CA" in err
    assert "missing.pem" in err
    assert not (data / "admin.token").exists()


def test_an_unknown_log_level_is_an_invalid_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _refused(capsys, ["--port", "0", "--data-dir", str(tmp_path / "tf"),
                                  "--log-level", "verbose"])  # fmt: skip
    assert code == 2
    assert "--log-level / AGENTFIREWALL_LOG_LEVEL" in err
    assert "debug" in err


def test_invalid_settings_are_named_as_the_operator_sets_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFIREWALL_SQLITE_SYNCHRONOUS", "off")
    code, err = _refused(capsys, ["--data-dir", str(tmp_path / "tf")])
    assert code == 2
    assert err.startswith("error: invalid settings: AGENTFIREWALL_SQLITE_SYNCHRONOUS: ")
    assert "errors.pydantic.dev" not in err
    monkeypatch.delenv("AGENTFIREWALL_SQLITE_SYNCHRONOUS")
    same = "tfa_" + "s" * 40
    monkeypatch.setenv("AGENTFIREWALL_ADMIN_TOKEN", same)
    monkeypatch.setenv("AGENTFIREWALL_GATEWAY_TOKEN", same)
    code, err = _refused(capsys, ["--data-dir", str(tmp_path / "tf")])
    assert "`AGENTFIREWALL_ADMIN_TOKEN` and `AGENTFIREWALL_GATEWAY_TOKEN` are the same" in err
    assert same not in err


def test_a_taken_port_stops_the_start_before_a_token_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "tf"
        code, err = _refused(capsys, ["--port", str(port), "--data-dir", str(data)])
    assert code == 1
    assert f"127.0.0.1:{port}" in err
    assert "--port" in err
    assert not (data / "admin.token").exists()  # the next start still prints the message


def test_generic_key_variables_of_other_programs_are_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the documented names: an `ENCRYPTION_KEY` another program left in the
    environment must not become the vault key (nor reach a backup's manifest as one)."""
    for name in ("SETTINGS_ENCRYPTION_KEY", "AGENTFIREWALL_ENCRYPTION_KEY",
                 "AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENCRYPTION_KEY", "11" * 32)
    monkeypatch.setenv("SIGNING_KEY", "someone else's")
    monkeypatch.setenv("ENCRYPTION_KEYS_PREVIOUS", "22" * 32)
    settings = Settings()
    assert settings.encryption_key is None
    assert settings.signing_key is None
    assert settings.encryption_keys_previous is None
    monkeypatch.setenv("SETTINGS_ENCRYPTION_KEY", "33" * 32)
    monkeypatch.setenv("AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS", "44" * 32)
    settings = Settings()
    assert settings.encryption_key is not None
    assert settings.encryption_key.get_secret_value() == "33" * 32
    assert settings.encryption_keys_previous is not None
    assert Settings(encryption_key="55" * 32).encryption_key is not None  # by field name


def _first_start(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(("INFO", "WARNING"))]


def test_port_0_links_name_the_port_the_server_listens_on(live_server: LiveServer) -> None:
    log = live_server.log()
    setup = re.search(r"one-time link\): (\S+)", log)
    assert setup is not None, log
    assert setup.group(1).startswith(f"{live_server.url}/dashboard/setup?token="), log
    assert f"curl -X POST {live_server.api_url}/v1/agents " in log
    page = httpx.get(setup.group(1), timeout=10)
    assert page.status_code == 200
    assert "Create the owner account" in page.text


def test_a_deleted_token_file_prints_only_its_new_token(live_server: LiveServer) -> None:
    """server.md, Identity: after revoking the bootstrap admin token, delete `admin.token`
    and restart. The start says it made a new admin token; not "created" the data directory,
    and no owner link when an owner exists (a link that would only answer 409)."""
    data = live_server.data_dir
    setup = (data / "setup.token").read_text().strip()
    owner = {"setup_token": setup, "email": "owner@example.com", "password": "password-own-1"}
    made = live_server.request("POST", "/api/v1/auth/setup", json=owner)
    assert made.status_code == 200, made.text
    old = live_server.admin_token
    live_server.stop()
    before = len(live_server.log())
    (data / "admin.token").unlink()
    live_server.launch(port=0)
    lines = _first_start(live_server.log()[before:])
    assert lines[0] == f"TameFlare: made a new admin token in {data}", lines
    assert not any("one-time link" in line for line in lines), lines
    assert not (data / "setup.token").exists()
    assert live_server.admin_token != old
    assert live_server.admin_token in "\n".join(lines)
    assert live_server.admin("GET", "/v1/agents").status_code == 200


def test_a_new_gateway_token_file_shows_no_secret() -> None:
    boot = Bootstrap("tfa_admin", "tfg_gateway", None, True, Path("/srv/tf"), ("gateway.token",))
    text = first_start_message(Settings(data_dir=Path("/srv/tf")), boot)
    assert text.splitlines()[0] == "TameFlare: made a new gateway token in /srv/tf"
    assert "tfa_admin" not in text
    assert "tfg_gateway" not in text
    assert "/srv/tf/gateway.token" in text


def test_links_to_an_ipv6_address_are_bracketed() -> None:
    assert Settings(host="::1", port=3000).base_url == "http://[::1]:3000"
    assert Settings(host="0.0.0.0", port=3000).base_url == "http://127.0.0.1:3000"
