"""The `--isolate` defaults in `.tf/config.yaml`: read, written back, and refused when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentfirewall_proxy.cli.state import Config, load_config, save_config
from agentfirewall_proxy.isolate.run import bridges_for


def test_defaults_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    config = Config(isolate=False).with_isolated_agent("Bot", True).with_isolated_agent("B2", True)
    save_config(path, config.with_isolated_agent("B2", False))
    loaded = load_config(path)
    assert loaded.isolate_agents == ("Bot",)
    assert loaded.isolates("Bot")
    assert not loaded.isolates("Other")
    save_config(path, Config(isolate=True))
    assert load_config(path).isolates("Anyone")
    save_config(path, Config())
    assert "isolate" not in path.read_text().split("# isolate", 1)[1].split("\n", 1)[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("isolate: 'yes please'\n", "`isolate` must be true or false"),
        ("isolate_agents: Bot\n", "`isolate_agents` must be a list of agent names"),
    ],
)
def test_wrong_values_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_bridges_lead_to_the_gateway_and_a_local_control_plane_only() -> None:
    local = bridges_for("http://127.0.0.1:8443", "http://localhost:3000")
    assert [(b.port, b.host, b.target_port) for b in local] == [
        (8443, "127.0.0.1", 8443),
        (3000, "localhost", 3000),
    ]
    remote = bridges_for("http://10.0.0.5:9000", "https://tf.example.com")
    assert [(b.port, b.host, b.target_port) for b in remote] == [(9000, "10.0.0.5", 9000)]
