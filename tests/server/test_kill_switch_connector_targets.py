"""A `connector:` kill switch names a connector it can stop, or is 422 with the one meant.

Any `connector:` target was stored (200) and audited: `connector:*`, `connector: github`
(a blank at either end), `github` with a zero-width space inside or in full-width letters,
stopped nothing, while the owner believed every GitHub call stopped. Now those are 422
naming `scope` and the scope most likely meant (`all`, `connector:github`), activating and
lifting alike, as an agent's target is; so is a name that reads or shows as a documented
connector type but is not it (`GitHub`: no connector sends such a provider's actions). Any
other provider an SDK action may name stays a target (`connector:ses`), and a switch an
earlier version stored on such a name can still be lifted.
"""

from __future__ import annotations

from agentfirewall_server.store.schema import kill_switches
from tests.server.conftest import SPEC, Harness
from tests.server.test_kill_switch_scopes import KILLED, _kill, _switches

MEANT = {
    "connector:*": "write `all` to stop every action",
    "connector:\uff47\uff49\uff54\uff0a": "write `all` to stop every action",
    "connector: github": "write `connector:github`",
    "connector:github ": "write `connector:github`",
    "connector:git\u200bhub": "write `connector:github`",
    "connector:git\u202ehub": "write `connector:github`",
    "connector:\uff47\uff49\uff54\uff48\uff55\uff42": "write `connector:github`",  # full-width
    "connector:GitHub": "write `connector:github`",
    "connector:g\u0456thub": "write `connector:github`",  # a Cyrillic i
    "connector:\ufb01le": "write `connector:file`",  # a ligature: reads as `file`
}


def test_a_connector_target_that_stops_nothing_meant_is_422_with_the_scope_meant(
    harness: Harness,
) -> None:
    h = harness
    for active in (True, False):
        for scope, hint in MEANT.items():
            answer = _kill(h, active, scope)
            assert answer.status_code == 422, (scope, answer.text)
            assert answer.json()["field"] == "scope"
            assert f"`{scope}`" in answer.json()["message"]
            assert hint in answer.json()["message"]
    assert _switches(h) == []


def test_any_other_provider_is_a_connector_target(harness: Harness) -> None:
    h = harness
    key = h.create_agent("Bot")
    for scope in ("connector:github", "connector:ses", "connector:Acme Mail"):
        assert _kill(h, True, scope).status_code == 200, scope
    assert _switches(h) == [
        ("connector", "github"),
        ("connector", "ses"),
        ("connector", "Acme Mail"),
    ]
    spec = {"type": "email.send", "resource": {"provider": "ses"}}
    decided = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert decided["decision"]["reason"] == KILLED
    decided = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert decided["decision"]["reason"] == KILLED


def test_a_switch_an_earlier_version_stored_on_such_a_name_can_be_lifted(harness: Harness) -> None:
    h = harness
    h.state.db.write_sync(
        lambda c: c.execute(
            kill_switches.insert().values(
                scope="connector", target="github ", reason="old", activated_by="admin",
                activated_at=0.0,
            )
        )
    )  # fmt: skip
    h.client.portal.call(h.state.reload)  # type: ignore[union-attr]
    assert _switches(h) == [("connector", "github ")]
    assert _kill(h, True, "connector:github ").status_code == 422  # not set again
    lifted = _kill(h, False, "connector:github ")
    assert lifted.status_code == 200, lifted.text
    assert _switches(h) == []
