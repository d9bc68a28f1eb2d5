"""The local tools decide a file sent base64-encoded as the control plane and the gateway do.

A connector declares the parameters that carry text base64-encoded (``parameters.content``
of ``github.file.create``, GitHub's contents API); the control plane and the gateway scan
them decoded. `python -m agentfirewall policy explain|test` (case files) and `tf policy
test|explain` scanned them as they are, so a private key committed through the contents
API was explained and tested as allowed where production denies it. Each tool is run in
process here.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentfirewall.__main__ import main as core_main
from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_proxy.cli.context import Context

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7V8y\n-----END RSA PRIVATE KEY-----\n"
CONTENT = base64.b64encode(PEM.encode()).decode()
POLICY = {"name": "guard", "rules": [{"name": "no-secrets", "decision": "deny",
          "conditions": [{"field": "content.secrets", "operator": "exists"}]}]}  # fmt: skip
SPEC = {"type": "github.file.create", "resource": {"provider": "github", "target": "o/r"},
        "parameters": {"path": "id_rsa", "message": "m", "content": CONTENT}}  # fmt: skip
WHERE = "private_key at parameters.content(base64)"


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return path


def test_core_explain_decodes_the_declared_parameters(
    policy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC), encoding="utf-8")
    code = core_main(["policy", "explain", str(spec), "--policy", str(policy_file),
                      "--fail-on-deny"])  # fmt: skip
    shown = capsys.readouterr().out
    assert code == 1, shown
    assert WHERE in shown
    assert "BEGIN RSA" not in shown  # where it was found, never the text


def test_core_case_files_decode_the_declared_parameters(
    policy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = {"policies": [policy_file.name], "action": SPEC, "name": "key in a file",
            "expect": {"outcome": "deny", "reason_contains": WHERE}}  # fmt: skip
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")
    code = core_main(["policy", "test", str(tmp_path / "cases.yaml")])
    shown = capsys.readouterr().out
    assert code == 0, shown
    assert "1 passed, 0 failed" in shown


def _tf_args() -> list[str]:
    return ["--action", SPEC["type"], "--target", "o/r", "--param", "path=id_rsa",
            "--param", f"content={CONTENT}", "--json"]  # fmt: skip


def test_tf_policy_test_decodes_the_declared_parameters(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = tf_main(["policy", "test", str(policy_file), *_tf_args()])
    shown = capsys.readouterr().out
    assert code == 3, shown  # denied
    assert WHERE in json.loads(shown)["decision"]["reason"]


class _ControlPlane:
    """What `tf policy explain` reads from the control plane: the guard policy, and an
    access rule letting the agent use GitHub."""

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        answers: dict[str, dict[str, Any]] = {
            "/v1/permissions": {"permissions": [{"id": "perm_1", "agent": "Bot",
                "connector": "github", "action_pattern": "*", "decision": "allow"}]},
            "/v1/policies": {"policies": [{"document": POLICY, "enabled": True}]},
            "/v1/kill-switch": {"active": []},
        }  # fmt: skip
        return answers.get(path, {"enforcement_level": "full_enforce"})


def test_tf_policy_explain_decodes_the_declared_parameters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @contextlib.contextmanager
    def client(self: Context, *, offline: bool = False) -> Iterator[_ControlPlane]:
        yield _ControlPlane()

    monkeypatch.setattr(Context, "client", client)
    args = ["policy", "explain", "--gateway", "Bot", "--connector", "github", "--force"]
    code = tf_main([*args, *_tf_args()])
    shown = capsys.readouterr().out
    assert code == 3, shown  # denied, as the gateway denies the request
    assert WHERE in json.loads(shown)["decision"]["reason"]
