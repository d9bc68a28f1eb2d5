"""Behind a load balancer: the client address comes from `X-Forwarded-For` only when the
request arrives from a proxy named in `--trusted-proxies`, and then it is the nearest
address no trusted proxy added (a client cannot name itself another one). Unset, the
header is ignored (tests/deploy/test_docs_deploy.py). Sign-in throttling counts per it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentfirewall_server.main import main
from tests.livesrv import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("trusted") / "tf"
    trusted = {"AGENTFIREWALL_TRUSTED_PROXIES": "127.0.0.1, 10.9.0.0/16"}
    running = LiveServer.start(data, env=trusted)
    try:
        yield running
    finally:
        running.stop()


def _failed_from(server: LiveServer, forwarded: str | None) -> str:
    """The address a failed sign-in is recorded under (the one throttling counts)."""
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    email = f"nobody{abs(hash(forwarded))}@example.com"
    refused = httpx.post(f"{server.api_url}/v1/auth/login", headers=headers, timeout=30,
                         json={"email": email, "password": "wrong-password"})  # fmt: skip
    assert refused.status_code == 401
    events = server.admin("GET", "/v1/audit", params={"event_type": "user.login_failed"})
    found = [e for e in events.json()["events"] if e["subject"] == email]
    address: str = found[0]["data"]["address"]
    return address


@pytest.mark.parametrize(
    ("forwarded", "address"),
    [
        ("198.51.100.7", "198.51.100.7"),  # the load balancer's word for its client
        ("203.0.113.9, 198.51.100.7", "198.51.100.7"),  # the client's own claim is skipped
        ("198.51.100.7, 10.9.3.4", "198.51.100.7"),  # through a second trusted proxy
        (None, "127.0.0.1"),  # no header: the peer itself
    ],
)
def test_the_client_is_the_nearest_untrusted_address(
    server: LiveServer, forwarded: str | None, address: str
) -> None:
    assert _failed_from(server, forwarded) == address


@pytest.mark.parametrize("value", ["*", "10.0.0.0/8, lb.internal"])
def test_trusting_anyone_or_a_name_is_refused_at_start(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--port", "0", "--data-dir", str(tmp_path / "tf"), "--trusted-proxies", value])
    err = capsys.readouterr().err
    assert code == 2
    assert "--trusted-proxies / AGENTFIREWALL_TRUSTED_PROXIES" in err
    assert "Traceback" not in err
