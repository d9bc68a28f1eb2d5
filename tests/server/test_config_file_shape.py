"""A `--config-file` is checked key by key (``agentfirewall_proxy.configfile``); a control
plane's snapshot saved as a file still loads (docs/proxy.md: "The file is the snapshot of
docs/api.md 'Config snapshot'"), so the check cannot drift from what the server serves."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.control import ControlError, load_snapshot_file
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.fuzzscale import examples
from tests.server.conftest import Harness

#: The snapshot's shape is the same on both engines.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

POLICY = """name: hold-merges
rules:
- name: hold
  conditions:
    all:
    - {field: action_spec.type, operator: equals, value: github.pr.merge}
  decision: require_approval
"""


@pytest.fixture
def served(harness: Harness) -> dict[str, Any]:
    """A snapshot with one entry of every kind the server serves."""
    harness.create_agent("Bot")
    harness.admin("POST", "/v1/connectors", json={"type": "github", "token": "ghp_abc"})
    harness.admin("POST", "/v1/permissions", json={"agent": "Bot", "connector": "github",
                                                   "action_pattern": "github.pr.*",
                                                   "decision": "allow"})  # fmt: skip
    assert harness.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    budget = {"agents": ["Bot"], "connector": "github", "action": "github.pr.*",
              "measure": "count", "limit": 10}  # fmt: skip
    assert harness.admin("PUT", "/v1/budgets/merges", json=budget).status_code == 201
    harness.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "github"})
    config: dict[str, Any] = harness.gateway("GET", "/v1/gateway/config").json()
    for section in ("agents", "connectors", "permissions", "policies", "kill_switches",
                    "budgets"):  # fmt: skip
        assert config[section], section
    return config


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@sqlite_only
def test_a_served_snapshot_saved_as_a_file_loads(served: dict[str, Any], tmp_path: Path) -> None:
    loaded = load_snapshot_file(_write(tmp_path, served))
    compiled = compile_snapshot(loaded)
    assert set(compiled.connectors) == {c["id"] for c in served["connectors"]}
    assert [b.name for b in compiled.budgets] == ["merges"]


def _entries(config: dict[str, Any]) -> list[tuple[str | None, int, str]]:
    """(section or None for the top, entry index, key) for every key of `config`."""
    found: list[tuple[str | None, int, str]] = [(None, 0, key) for key in config]
    for section, entries in config.items():
        if isinstance(entries, list):
            found += [(section, i, key) for i, entry in enumerate(entries) for key in entry]
    return found


@sqlite_only
@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data(), typo=st.sampled_from(["drop-last", "double-last", "swap-case"]))
def test_a_misspelt_key_anywhere_is_refused_naming_it(
    served: dict[str, Any], tmp_path: Path, data: st.DataObject, typo: str
) -> None:
    """Any key of a served snapshot, misspelt, stops the load with the entry and the key
    named; before, all but a top-level typo were ignored (an agent without keys: 407s)."""
    section, index, key = data.draw(st.sampled_from(_entries(served)))
    wrong = {"drop-last": key[:-1], "double-last": key + key[-1], "swap-case": key.upper()}[typo]
    config = copy.deepcopy(served)
    entry = config if section is None else config[section][index]
    entry[wrong] = entry.pop(key)
    with pytest.raises(ControlError) as refused:
        load_snapshot_file(_write(tmp_path, config))
    where = "the file" if section is None else f"{section}[{index}]"
    assert f"{where}: unknown key `{wrong}`" in str(refused.value)
    assert str(refused.value).startswith(f"config file `{tmp_path / 'gateway.yaml'}`: ")


_REQUIRED = {"agents": ["name"], "connectors": ["id", "type"],
             "permissions": ["agent", "connector", "action_pattern", "decision"],
             "policies": ["document"], "kill_switches": ["scope"],
             "budgets": ["name", "connector"]}  # fmt: skip


@sqlite_only
@pytest.mark.parametrize(
    ("section", "key"), [(s, k) for s, keys in _REQUIRED.items() for k in keys]
)
def test_a_missing_required_key_is_refused(
    served: dict[str, Any], tmp_path: Path, section: str, key: str
) -> None:
    config = copy.deepcopy(served)
    del config[section][0][key]
    with pytest.raises(ControlError, match=rf"{section}\[0\]: `{key}` is required"):
        load_snapshot_file(_write(tmp_path, config))


def test_the_secret_of_an_unset_credential_env_is_never_guessed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`credential_env` set: the connector carries its value; unset: refused by name (it
    used to forward with no credential); `credential` given beside it wins, as before."""
    connector = {"id": "gh", "type": "github", "credential_env": "TF_SHAPE_TOKEN"}
    monkeypatch.setenv("TF_SHAPE_TOKEN", "ghp_from_env")
    loaded = load_snapshot_file(_write(tmp_path, {"connectors": [connector]}))
    assert loaded["connectors"][0]["credential"] == "ghp_from_env"
    monkeypatch.delenv("TF_SHAPE_TOKEN")
    with pytest.raises(ControlError, match=r"credential_env `TF_SHAPE_TOKEN` is not set"):
        load_snapshot_file(_write(tmp_path, {"connectors": [connector]}))
    both = {**connector, "credential": "ghp_inline"}
    loaded = load_snapshot_file(_write(tmp_path, {"connectors": [both]}))
    assert loaded["connectors"][0]["credential"] == "ghp_inline"
