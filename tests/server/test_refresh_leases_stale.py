"""A rotation refreshed under a lease that ended is not stored over another holder's turn.

The defect (security review, probe 1): a gateway whose refresh outlived its lease stored
its rotation when the answer came at last, and storing ended every lease on the connector:
the second holder's too, which was refreshing meanwhile, so a third could take the grant's
turn as well. Now a rotation names its lease; when that lease ended while another holder's
lasts, it is refused (409 ``field: lease``) and that lease stays. The same rotation sent
again once stored (a retry whose first answer was lost) is a 200 that ends no lease taken
since. In-process (TestClient), on SQLite and PostgreSQL; an ended lease is one released
here (as a holder that expired is: its row gone or another's).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.server.conftest import Harness

FIRST = "rt_first_grant_0000"


def _lease_path(cid: str) -> str:
    return f"/v1/gateway/connectors/{cid}/refresh-lease"


def _take(h: Harness, cid: str, holder: str) -> Any:
    return h.gateway("POST", _lease_path(cid), {"holder": holder})


def _store(h: Harness, cid: str, previous: str, token: str, lease: str | None) -> Any:
    body = {"previous_sha256": hashlib.sha256(previous.encode()).hexdigest(),
            "refresh_token": token, "lease": lease}  # fmt: skip
    return h.gateway("POST", f"/v1/gateway/connectors/{cid}/refresh-token", body)


def _vaulted(h: Harness, cid: str) -> str:
    config = h.gateway("GET", "/v1/gateway/config").json()
    (found,) = [c for c in config["connectors"] if c["id"] == cid]
    return str(json.loads(found["credential"])["refresh_token"])


def test_a_late_rotation_neither_overwrites_nor_ends_another_holders_turn(
    harness: Harness,
) -> None:
    document = {"kind": "oauth2", "token_url": "https://auth.example.com/token",
                "client_id": "c", "client_secret": "cs_x", "grant": "refresh_token",
                "refresh_token": FIRST}  # fmt: skip
    made = harness.admin("POST", "/v1/connectors", json={
        "type": "generic", "domains": ["api.example.com"], "auth_type": "oauth2",
        "token": json.dumps(document)})  # fmt: skip
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    slow = _take(harness, cid, "gw-slow").json()["lease"]
    ended = harness.gateway("DELETE", f"{_lease_path(cid)}/{slow}")  # (its lease ran out)
    assert ended.json()["released"] is True
    other = _take(harness, cid, "gw-other")
    assert other.status_code == 200, other.text
    assert other.json()["refresh_token"] == FIRST

    late = _store(harness, cid, FIRST, "rt_from_the_slow_one", slow)
    assert late.status_code == 409, late.text
    assert late.json()["field"] == "lease"
    assert "rt_from_the_slow_one" not in late.text
    assert _vaulted(harness, cid) == FIRST
    assert _take(harness, cid, "gw-third").status_code == 409  # gw-other's turn lasts

    stored = _store(harness, cid, FIRST, "rt_from_the_other", other.json()["lease"])
    assert stored.json() == {"connector": cid, "stored": True}, stored.text
    assert _vaulted(harness, cid) == "rt_from_the_other"
    third = _take(harness, cid, "gw-third")  # the store ended gw-other's lease
    assert third.status_code == 200, third.text
    retry = _store(harness, cid, FIRST, "rt_from_the_other", other.json()["lease"])
    assert retry.json() == {"connector": cid, "stored": False}, retry.text
    assert _take(harness, cid, "gw-fourth").status_code == 409  # gw-third's turn lasts
