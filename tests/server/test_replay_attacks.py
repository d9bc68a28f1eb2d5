"""Replay and suggest, attacked by a viewer and by an agent (task H2).

- A viewer reads every stored decision input masked (``GET /api/v1/traffic``: an email
  address or a card number replaced by its marker, a token withheld). A replay runs the
  viewer's own candidate on the stored inputs and answers counts, the deciding rule and
  the record's id: a rule ``parameters.email starts_with "alice"`` is an oracle that reads
  the masked value back one guess at a time (one replay can carry 200 policies). A viewer's
  replay now reads each record as the viewer reads it: a value masked for them is withheld
  (absent to every rule, the record counted ``partial``).
- An SDK agent names its action's provider, and suggest turns the provider into the
  suggested rule's connector: ``*`` became a rule for every connector (an action the
  catalogue calls high risk suggested ``allow`` on all of them), a name with a control or
  invisible character one ``--apply`` fails on half way. Such a name gets no rule now (the
  closing deny covers it) and is counted under ``skipped``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_server.routes.replay import as_viewer_reads
from agentfirewall_server.routes.shownspec import masked_input
from tests.fuzzscale import examples
from tests.server.conftest import SPEC, Harness

EMAIL = "alice.secret@example.com"


def _viewer(h: Harness) -> dict[str, str]:
    """A signed-in viewer's headers (the client's cookie is theirs from now on)."""
    person = {"email": "vic@example.com", "password": "password-1", "role": "viewer"}
    made = h.admin("POST", "/v1/users", json=person)
    assert made.status_code == 201, made.text
    h.client.cookies.clear()
    login = h.call("POST", "/v1/auth/login",
                   json={"email": "vic@example.com", "password": "password-1"})  # fmt: skip
    assert login.status_code == 200, login.text
    return {"X-CSRF-Token": login.json()["csrf_token"]}


def _guess(prefix: str, index: int) -> str:
    return f"""version: 1
name: guess-{index}
priority: {100 + index}
rules:
  - name: starts-{index}
    conditions:
      field: action_spec.parameters.email
      operator: starts_with
      value: ["{prefix}"]
    decision: deny
    reason: guessed
"""


def _replay(h: Harness, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    answer = h.call("POST", "/v1/policies/replay", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def test_a_viewers_replay_reads_no_value_masked_for_them(harness: Harness) -> None:
    """The oracle: a viewer's traffic shows the email masked; a replay's candidate rules
    must not tell `alice` from `bob` in it."""
    key = harness.create_agent("Bot")
    spec = {**SPEC, "parameters": {"pull_number": 42, "email": EMAIL}}
    done = harness.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert done.is_success, done.text
    headers = _viewer(harness)
    right = _replay(harness, headers, {"policies": [_guess("alice", 1)]})
    wrong = _replay(harness, headers, {"policies": [_guess("bob", 1)]})
    assert right["total"] == wrong["total"] == 1
    assert right["changes"] == wrong["changes"]  # no answer differs with the guess
    assert right["partial"] == 1  # the masked value was withheld from the viewer's replay
    harness.client.cookies.clear()
    answer = harness.admin("POST", "/v1/policies/replay", json={"policies": [_guess("alice", 1)]})
    admin = answer.json()
    assert admin["partial"] == 0  # a member and up: as stored
    assert admin["changed"] == 1


@pytest.mark.parametrize("provider", ["*", "git\u200bhub", " github", "git\x1bhub"])
def test_an_agents_provider_never_becomes_a_broad_or_broken_rule(
    harness: Harness, provider: str
) -> None:
    key = harness.create_agent("Bot")
    spec = {"type": "github.repo.delete", "resource": {"provider": provider}}
    done = harness.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert done.is_success, done.text
    found = harness.admin("GET", "/v1/permissions/suggest?agent=Bot").json()
    assert found["observed"] == 1
    assert [(r["connector"], r["action_pattern"], r["decision"]) for r in found["rules"]] == [
        ("*", "*", "deny")
    ]
    assert found["skipped"] == 1
    for rule in found["rules"]:  # what `tf permissions suggest --apply` writes is accepted
        keys = ("agent", "connector", "action_pattern", "decision")
        written = harness.admin("POST", "/v1/permissions", json={k: rule[k] for k in keys})
        assert written.is_success, written.text


_SECRETS = ["alice@example.com", "4111 1111 1111 1111", "ghp_" + "a1B2" * 9, "usd", "main",
            "Bearer abcdefghijklmnop1234", "sk-live-" + "x9" * 10, "acme/api", 42, True,
            None]  # fmt: skip
_values = st.one_of(st.sampled_from(_SECRETS), st.text(max_size=30),
                    st.lists(st.sampled_from(_SECRETS), max_size=2),
                    st.dictionaries(st.sampled_from(["to", "n"]), st.sampled_from(_SECRETS),
                                    max_size=2))  # fmt: skip
_parts = st.dictionaries(st.sampled_from(["email", "note", "n", "base", "to"]), _values,
                         max_size=4)  # fmt: skip


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    target = draw(st.sampled_from(["acme/api", "/v1/x?email=bob@example.com", "ghp_" + "z" * 36]))
    data: dict[str, Any] = {"v": 1, "t": "github.pr.merge", "m": "proxy", "c": "github",
                            "r": {"target": target}, "p": draw(_parts), "n": 1.0}  # fmt: skip
    if hints := draw(_parts):
        data["h"] = hints
    if draw(st.booleans()):
        data["x"] = [{"t": "github.pr.merge", "k": "low", "p": draw(_parts)}]
    return data


def _parts_of(data: dict[str, Any]) -> list[Any]:
    actions = [data, *(m for m in data.get("x", []) if isinstance(m, dict))]
    return [a.get(key) for a in actions for key in ("r", "p", "h")]


@settings(max_examples=examples(200), deadline=None)
@given(_records())
def test_a_viewers_replay_holds_only_what_the_viewer_reads(data: dict[str, Any]) -> None:
    """The class, not the email: whatever a record holds, a viewer's replay keeps a value
    only when the viewer reads it as it is, and withholds (names under `"w"`) the rest."""
    shown = as_viewer_reads(data)
    assert _parts_of(masked_input(shown)) == _parts_of(shown)  # nothing masked is left
    kept = [(a, k) for a, k in zip(_parts_of(data), _parts_of(masked_input(data)), strict=True)]
    for (stored, masked), now in zip(kept, _parts_of(shown), strict=True):
        if isinstance(stored, dict):  # what masking leaves as it is stays
            kept_now = now or {}  # (a part left empty by what is withheld is removed)
            assert kept_now == {n: v for n, v in stored.items() if n in masked and masked[n] == v}
    assert bool(shown.get("w")) == (_parts_of(shown) != _parts_of(data))
