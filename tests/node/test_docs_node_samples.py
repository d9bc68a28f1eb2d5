"""docs/sdk-node.md, followed literally: its code samples compile and run as pasted.

The page's ``js`` blocks (the client, then Mode A) and its ``ts`` block (``raiseForDenial``)
are taken from the Markdown, not copied here, so an edit to the page is what gets tested:

- compiled with ``tsc --strict`` (module ``nodenext``, the settings ``tsc --init`` writes)
  against the package's published typings, the ``ts`` block after the two ``js`` ones,
  together with every option of the options table and every error class and field of the
  error tree, as a TypeScript user writes them;
- run with ``node`` from a directory where the package is installed, against a real
  control plane with a ``github`` connector to the fake GitHub: allowed, the server merges
  the pull request with its vaulted token; denied, the snippet prints the policy's reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeUpstream, FakeUpstreams, github
from tests.livesrv import LiveServer
from tests.node.support import PACKAGE, install_dev_dependencies

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sdk-node.md"
VAULTED = "ghp_vaulted_by_the_docs_test"

pytestmark = [pytest.mark.node, pytest.mark.timeout(400)]


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _js_blocks() -> list[str]:
    return re.findall(r"^```js\n(.*?)^```", _text(), re.MULTILINE | re.DOTALL)


def _ts_blocks() -> list[str]:
    return re.findall(r"^```ts\n(.*?)^```", _text(), re.MULTILINE | re.DOTALL)


def _sdk_imports(code: str) -> set[str]:
    """The names `code` imports from the package itself."""
    lists = re.findall(r'^import \{([^}]*)\} from "@agentfirewall/sdk";', code, re.MULTILINE)
    return {name for names in lists for name in re.findall(r"\w+", names)}


def _sample() -> str:
    """The client block, then the Mode A block: what a reader pastes into one file."""
    blocks = _js_blocks()
    assert len(blocks) == 2, f"expected the client and the Mode A block, found {len(blocks)}"
    client, mode_a = blocks
    assert "new AgentFirewall(" in client
    assert "requestAction(" in mode_a
    return client + "\n" + mode_a


def _options() -> list[str]:
    """The option names of the options table (`| \\`apiKey\\` | default | ... |`)."""
    table = _text().split("| option | default |", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)


def _error_tree() -> dict[str, list[str]]:
    """Each class of the error tree and the fields its line names (`.statusCode`...)."""
    tree = _text().split("## Errors", 1)[1].split("```", 2)[1]
    found: dict[str, list[str]] = {}
    for line in tree.splitlines():
        match = re.match(r"^[\s│├└─]*(\w+Error)\b(.*)$", line)
        if match:
            found[match.group(1)] = re.findall(r"\.(\w+)", match.group(2))
    return found


def _typescript_usage() -> str:
    values = {
        "apiKey": "process.env.AAF_API_KEY",
        "baseUrl": '"http://localhost:3000/api"',
        "fetch": "globalThis.fetch",
    }
    options = ",\n  ".join(f"{name}: {values.get(name, '1')}" for name in _options())
    tree = _error_tree()
    typed = "\n".join(_ts_blocks())
    imported = sorted(set(tree) - _sdk_imports(typed))  # the ts block imports its own
    checks = "\n".join(
        f"  if (error instanceof {name}) console.log({', '.join(['error.message', *shown])});"
        for name, fields in tree.items()
        for shown in [[f"error.{field}" for field in fields]]
    )
    return (
        f'import {{ {", ".join(imported)} }} from "@agentfirewall/sdk";\n'
        f"{_sample()}\n{typed}\n"
        f"const configured = new AgentFirewall({{\n  {options},\n}});\n"
        'try {\n  await configured.dryRun({ type: "github.pr.merge" });\n} catch (error) {\n'
        f"{checks}\n}}\n"
    )


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs Node.js and npm on PATH (Debian: apt-get install nodejs npm)")
    install_dev_dependencies(npm)  # typescript and @types/node, from the package's lockfile
    return node, str(PACKAGE / "node_modules" / "typescript" / "bin" / "tsc")


def _project(where: Path) -> Path:
    """A reader's project with the package installed (as `npm install ./packages/sdk-node`
    does: a link) and the types of Node."""
    modules = where / "node_modules"
    (modules / "@agentfirewall").mkdir(parents=True)
    (modules / "@agentfirewall" / "sdk").symlink_to(PACKAGE, target_is_directory=True)
    (modules / "@types").symlink_to(PACKAGE / "node_modules" / "@types")
    (where / "package.json").write_text(json.dumps({"name": "reader", "type": "module"}))
    return where


def test_the_doc_names_the_samples_options_and_errors() -> None:
    assert _options() == [
        "apiKey",
        "baseUrl",
        "timeoutSeconds",
        "maxRetries",
        "retryBackoffSeconds",
        "maxRetryWaitSeconds",
        "fetch",
    ]
    tree = _error_tree()
    assert tree["APIError"] == ["statusCode", "code", "body", "retryable"]
    assert tree["TokenError"] == ["code"]
    assert tree["ActionDeniedError"] == ["decision", "actionRequestId"]
    assert tree["ApprovalError"] == ["status", "actionRequestId"]
    assert tree["DecisionTokenRejectedError"] == ["reason"]
    assert len(tree) == 15, tree
    [typed] = _ts_blocks()
    assert ".raiseForDenial()" in typed
    assert _sdk_imports(typed) == {"ActionDeniedError", "ApprovalError"}


def test_samples_options_and_errors_compile_with_strict_typescript(tmp_path: Path) -> None:
    node, tsc = _node_tools()
    project = _project(tmp_path)
    (project / "agent.ts").write_text(_typescript_usage(), encoding="utf-8")
    config = {
        "compilerOptions": {
            "module": "nodenext",
            "target": "esnext",
            "types": ["node"],
            "strict": True,
            "exactOptionalPropertyTypes": True,
            "noUncheckedIndexedAccess": True,
            "verbatimModuleSyntax": True,
            "isolatedModules": True,
            "skipLibCheck": True,
            "noEmit": True,
        },
        "files": ["agent.ts"],
    }
    (project / "tsconfig.json").write_text(json.dumps(config))
    result = subprocess.run(
        [node, tsc, "-p", "."], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr + _typescript_usage()


@pytest.fixture(scope="module")
def executing(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, FakeUpstream]]:
    _node_tools()
    fakes = FakeUpstreams([github()]).start()
    server = LiveServer.start(tmp_path_factory.mktemp("docs-node") / "data")
    try:
        answer = server.admin(
            "POST",
            "/v1/connectors",
            json={"type": "github", "token": VAULTED, "base_url": fakes["github"].http_url},
        )
        assert answer.status_code == 201, answer.text
        yield server, fakes["github"]
    finally:
        server.stop()
        fakes.stop()


def _run(server: LiveServer, key: str, where: Path) -> subprocess.CompletedProcess[str]:
    node, _ = _node_tools()
    project = _project(where)
    (project / "my_agent.mjs").write_text(_sample(), encoding="utf-8")
    env = {**os.environ, "AAF_API_KEY": key, "AAF_BASE_URL": server.api_url}
    return subprocess.run(
        [node, "my_agent.mjs"], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_mode_a_sample_runs_as_pasted_and_the_server_merges(
    executing: tuple[LiveServer, FakeUpstream], tmp_path: Path
) -> None:
    server, fake = executing
    key = server.create_agent("docs-node-allowed", environment="test")
    result = _run(server, key, tmp_path)
    assert result.returncode == 0, result.stderr
    merges = fake.received("PUT", "/repos/acme/api/pulls/42/merge")
    assert len(merges) == 1
    assert merges[0].header("authorization") == f"token {VAULTED}"


@pytest.mark.slow
def test_mode_a_sample_prints_the_reason_when_denied(
    executing: tuple[LiveServer, FakeUpstream], tmp_path: Path
) -> None:
    server, fake = executing
    key = server.create_agent("docs-node-denied", environment="test")
    document = "\n".join(
        [
            "name: docs-node-no-merges",
            "scope: {action_types: ['*'], agents: [docs-node-denied]}",
            "rules:",
            "  - name: no-merge",
            "    conditions: {all: [{field: action_spec.type, operator: equals, "
            "value: github.pr.merge}]}",
            "    decision: deny",
            "    reason: merges are frozen",
        ]
    )
    answer = server.admin("POST", "/v1/policies", json={"document": document})
    assert answer.status_code == 201, answer.text
    before = len(fake.received("PUT"))
    result = _run(server, key, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Blocked: merges are frozen\n"
    assert len(fake.received("PUT")) == before
