"""No credential in the gateway's access log (``--access-log``), nor cut in two in a
traffic record's path.

The defects: the access log printed each request's host, path and reason as they were (a
token in a path, a refusal quoting a Host header), though the control plane masks every
credential in what it stores; and a path longer than a record keeps (2,048 characters) was
cut before the control plane masked it, so a token straddling the cut was stored in part
(``ghp_`` and 13 of its characters), which no detector finds. Now the access log masks as
the control plane does, and an overlong path is masked before it is cut.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.hooks import AccessLog
from agentfirewall_proxy.pipeline import recorded_path
from agentfirewall_server.routes.trafficrows import masked_record

GITHUB = "ghp_" + "6m0H4S30hpw3JKmxSF6wUpXRWH3xYVtAhQQf"
AWS = "AKIA" + "XXJMSTLWKBT5O52E"
NAMED = "Corr3ct-Horse-B4ttery"


def _flows() -> list[Flow]:
    return [
        Flow(request_id="r1", method="GET", host="api.example.org",
             path=f"/files/{GITHUB}?per_page=10&access_token={NAMED}", status=200,
             reason="allowed"),
        Flow(request_id="r2", method="GET", host=f"{AWS}.example.org", path="/x", status=421,
             reason=f"Host header `{GITHUB}` does not match `api.example.org`"),
        Flow(request_id="r3", method="CONNECT", host=f"{AWS}.example.org", port=443,
             status=403, reason="no connector"),
    ]  # fmt: skip


@pytest.mark.parametrize("as_json", [False, True])
def test_the_access_log_masks_every_credential(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AccessLog(json=as_json)
    for flow in _flows():
        log.done(flow)
    printed = capsys.readouterr().err
    lines = printed.splitlines()
    assert len(lines) == 3, printed
    for secret in (GITHUB, AWS, NAMED):
        assert secret not in printed, printed
    assert "/files/[REDACTED:github_token]" in lines[0], lines[0]
    assert "per_page=10" in lines[0], lines[0]  # the other fields kept
    if as_json:
        first = json.loads(lines[0])
        assert first["path"].startswith("/files/[REDACTED:github_token]?per_page=10&"), first
        assert json.loads(lines[2])["path"] is None  # (a CONNECT has none)


@settings(max_examples=150, deadline=None)
@given(at=st.integers(1900, 2100), secret=st.sampled_from([GITHUB, AWS]))
def test_a_credential_across_the_cut_of_a_long_path_is_never_stored_in_part(
    at: int, secret: str
) -> None:
    path = "/" + "a/" * (at // 2) + secret + "/tail"
    recorded = recorded_path(Flow(request_id="r", method="GET", path=path))
    assert len(recorded) <= 2048
    stored = masked_record({"path": recorded})["path"]
    for part in (secret[:12], secret[-12:]):
        assert part not in stored, stored[-80:]
