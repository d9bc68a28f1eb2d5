"""Bad input is a message that says what is wrong and what to do, never a traceback, and a bad
`tf up` flag is refused before `.tf/` is created.

One row per broken input: the project files it is given (``None`` makes a directory where a
file belongs), the command, the exit code and what the message must say.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from tests.cli.conftest import Project

_ALIVE = str(os.getpid())  # a pid that is alive while the test runs: the test's own


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int
    said: tuple[str, ...]
    files: dict[str, bytes | None] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def _project(config: bytes, **more: bytes | None) -> dict[str, bytes | None]:
    return {".tf/config.yaml": config, ".tf/admin.token": b"tfa_x\n", **more}


_DOWN = b'server_url: "http://127.0.0.1:1"\n'
CASES = {
    "config bad yaml": Case(
        ("status",), 1, ("config.yaml` is not valid YAML", "fix it, or delete"),
        _project(b"server_url: [unclosed\n"),
    ),
    "config not a mapping": Case(
        ("status",), 1, ("config.yaml` must hold a mapping",), _project(b"- a\n- b\n")
    ),
    "config secret_env a number": Case(
        ("status",), 1, ("`secret_env` must be a list of environment variable names",),
        _project(b"secret_env: 5\n"),
    ),
    "config isolate_agents a mapping": Case(
        ("status",), 1, ("`isolate_agents` must be a list of agent names",),
        _project(b"isolate_agents: {a: 1}\n"),
    ),
    "config not utf-8": Case(
        ("status",), 1, ("config.yaml` is not UTF-8 text",), _project(b"\xff\xfe\x00bad\n")
    ),
    "config server_url bad port": Case(
        ("status",), 1, ("`server_url` must be an http:// or https:// URL",),
        _project(b'server_url: "http://127.0.0.1:abc"\n'),
    ),
    "config server_url a number": Case(
        ("status",), 1, ("`server_url` must be an http:// or https:// URL",),
        _project(b"server_url: 5\n"),
    ),
    "config proxy_url not http": Case(
        ("status",), 1, ("`proxy_url` must be an http:// or https:// URL",),
        _project(b'proxy_url: "ftp://gateway"\n'),
    ),
    "config is a directory": Case(
        ("status",), 1, ("cannot read", "config.yaml`: Is a directory"),
        {".tf/config.yaml": None, ".tf/admin.token": b"tfa_x\n"},
    ),
    "up.json pid not a number": Case(
        ("status",), 1, ("no TameFlare server at http://127.0.0.1:1",),
        _project(_DOWN, **{".tf/up.json": b'{"pid": "abc"}'}),
    ),
    "up.json without addresses": Case(
        ("status",), 1, ("no TameFlare server at http://127.0.0.1:1",),
        _project(_DOWN, **{".tf/up.json": b'{"pid": ' + _ALIVE.encode() + b"}"}),
    ),
    "up.json bad port": Case(
        ("status",), 1, ("no TameFlare server at http://127.0.0.1:1",),
        _project(_DOWN, **{".tf/up.json": b'{"pid": ' + _ALIVE.encode() + b', "server_url": '
                           b'"http://127.0.0.1:abc", "proxy_url": "http://127.0.0.1:1"}'}),
    ),
    "admin.token a directory": Case(
        ("status",), 1, ("admin.token`: Is a directory", "tf init"),
        {".tf/config.yaml": _DOWN, ".tf/admin.token": None},
    ),
    "--server unclosed ipv6": Case(
        ("status", "--server", "http://[::1"), 2, ("--server `http://[::1` is not a server URL",),
        env={"TF_ADMIN_TOKEN": "tfa_x"},
    ),
    "--server port not a number": Case(
        ("status", "--server", "http://127.0.0.1:abc"), 2,
        ("--server `http://127.0.0.1:abc` is not a server URL",), env={"TF_ADMIN_TOKEN": "tfa_x"},
    ),
    "TF_SERVER port not a number": Case(
        ("status",), 2, ("TF_SERVER `http://127.0.0.1:abc` is not a server URL",),
        env={"TF_SERVER": "http://127.0.0.1:abc", "TF_ADMIN_TOKEN": "tfa_x"},
    ),
    "TF_PROXY port too big": Case(
        ("run", "--name", "Bot", "true"), 2, ("TF_PROXY `http://127.0.0.1:99999` is not a",),
        env={"TF_PROXY": "http://127.0.0.1:99999", "TF_ADMIN_TOKEN": "tfa_x"},
    ),
    "up --database-url port not a number": Case(
        ("up", "--database-url", "postgresql://u:s3cret-pw@db:notaport/tf"), 2,
        ("--database-url is not a database URL",),
    ),
    "up --database-url without a driver": Case(
        ("up", "--database-url", "mysql://u:s3cret-pw@127.0.0.1/tf"), 1,
        ("database `mysql://u:***@127.0.0.1/tf` cannot be opened: no driver for it",
         "TameFlare runs on sqlite:/// and postgresql://"),
    ),
    "up --database-url nobody listens": Case(
        ("up", "--database-url", "postgresql://u:s3cret-pw@127.0.0.1:1/tf"), 1,
        ("database `postgresql://u:***@127.0.0.1:1/tf` cannot be opened: connection failed",),
    ),
    "up --database-url password with a slash": Case(
        ("up", "--database-url", "postgresql://u:s3cret-pw/x@127.0.0.1:1/tf"), 1,
        ("database `postgresql://u:***@127.0.0.1:1/tf` cannot be opened",),
    ),
    "up --database-url password with an at sign": Case(
        ("up", "--database-url", "postgresql://u:pw@s3cret-pw@127.0.0.1:1/tf"), 1,
        ("database `postgresql://u:***@127.0.0.1:1/tf` cannot be opened",),
    ),
    "up --database-url in memory": Case(
        ("up", "--database-url", "sqlite:///:memory:"), 1,
        ("an in-memory SQLite database is lost when the server stops",),
    ),
    "up --resolve garbage": Case(
        ("up", "--resolve", "garbage"), 2, ("invalid resolve entry `garbage`",)
    ),
    "up --agent-ports backwards": Case(
        ("up", "--agent-ports", "5-1"), 2, ("invalid port range `5-1`",)
    ),
    "mcp install --config-file a directory": Case(
        ("mcp", "install", "--client", "cursor", "--name", "Bot", "--config-file", "somedir"),
        1, ("cannot read the MCP config `somedir`: Is a directory",), {"somedir/x": b""},
    ),
    "mcp list --config-file a directory": Case(
        ("mcp", "list", "--client", "cursor", "--config-file", "somedir"),
        1, ("cannot read the MCP config `somedir`: Is a directory",), {"somedir/x": b""},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_clear_message(bare_project: Project, name: str) -> None:
    case = CASES[name]
    root = bare_project.root
    for relative, content in case.files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
    had_state = (root / ".tf").exists()
    done = bare_project.tf(*case.args, env=case.env, check=False, timeout=60)
    said = done.stdout + done.stderr
    assert "Traceback" not in said, said
    assert done.returncode == case.code, said
    for fragment in case.said:
        assert fragment in done.stderr, done.stderr
    assert "s3cret-pw" not in said  # a database URL's password is never printed
    if case.args[0] == "up":  # refused before anything is created
        assert (root / ".tf").exists() == had_state
