"""Where `tf` keeps its state and how it finds the server it manages.

A project's state is the ``.tf/`` directory (found upward from the working directory)::

    .tf/config.yaml      server and proxy addresses, token-env names, platform (this module)
    .tf/up.json          written by a running `tf up`: its pid and the addresses it bound
    .tf/admin.token      admin API token (owner)            ┐
    .tf/gateway.token    the gateway's token                 │ written by the server's
    .tf/agentfirewall.db SQLite store                        │ bootstrap, all 0600
    .tf/ca.crt, ca.key   the gateway's interception CA       ┘
    .tf/run/             CA bundle, sitecustomize and Node preload for `tf run`

The server to talk to is, in order: ``--server`` / ``TF_SERVER`` (with ``TF_ADMIN_TOKEN``), the
addresses of a running `tf up` (``up.json``), then ``config.yaml``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CONFIG_FILE",
    "STATE_DIR",
    "UP_FILE",
    "Config",
    "Project",
    "Target",
    "find_project",
    "load_config",
    "pid_alive",
    "read_up_file",
    "save_config",
]

STATE_DIR = ".tf"
CONFIG_FILE = "config.yaml"
UP_FILE = "up.json"
DEFAULT_SERVER = "http://127.0.0.1:3000"
DEFAULT_PROXY = "http://127.0.0.1:8443"


@dataclass(frozen=True)
class Config:
    """The contents of ``.tf/config.yaml``."""

    server_url: str = DEFAULT_SERVER
    proxy_url: str = DEFAULT_PROXY
    platform: str | None = None
    secret_env: tuple[str, ...] = ()
    isolate: bool = False  # `tf run --isolate` by default, for every agent
    isolate_agents: tuple[str, ...] = ()  # ... for these agents (`tf agent add --isolate`)

    def isolates(self, agent: str) -> bool:
        return self.isolate or agent in self.isolate_agents

    def to_yaml(self) -> str:
        data: dict[str, Any] = {
            "version": 1,
            "server_url": self.server_url,
            "proxy_url": self.proxy_url,
            "platform": self.platform,
            "secret_env": list(self.secret_env),
        }
        if self.isolate:
            data["isolate"] = True
        if self.isolate_agents:
            data["isolate_agents"] = list(self.isolate_agents)
        head = (
            "# TameFlare project state, written by `tf init` and `tf connector add`.\n"
            "# server_url / proxy_url: where `tf up` listens (port 0 = any free port; a running\n"
            "#   `tf up` records the ports it bound in up.json).\n"
            "# secret_env: environment variables that hold real secrets (`--token-env`);\n"
            "#   `tf run` removes them from the agent's environment.\n"
            "# isolate: true / isolate_agents: [names]: `tf run --isolate` by default (Linux).\n"
        )
        return head + yaml.safe_dump(data, sort_keys=False)

    def with_isolated_agent(self, name: str, on: bool) -> Config:
        others = tuple(a for a in self.isolate_agents if a != name)
        return replace(self, isolate_agents=(*others, name) if on else others)

    def with_secret_env(self, name: str) -> Config:
        if name in self.secret_env:
            return self
        return replace(self, secret_env=(*self.secret_env, name))


def load_config(path: Path) -> Config:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return Config()
    except yaml.YAMLError as exc:
        raise ValueError(f"`{path}` is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"`{path}` must hold a mapping")
    secret_env = raw.get("secret_env") or []
    isolate = raw.get("isolate", False)
    isolate_agents = raw.get("isolate_agents") or []
    if not isinstance(isolate, bool):
        raise ValueError(f"`{path}`: `isolate` must be true or false, not `{isolate}`")
    if not isinstance(isolate_agents, list):
        raise ValueError(f"`{path}`: `isolate_agents` must be a list of agent names")
    return Config(
        server_url=str(raw.get("server_url") or DEFAULT_SERVER),
        proxy_url=str(raw.get("proxy_url") or DEFAULT_PROXY),
        platform=raw.get("platform"),
        secret_env=tuple(str(v) for v in secret_env),
        isolate=isolate,
        isolate_agents=tuple(str(v) for v in isolate_agents),
    )


def save_config(path: Path, config: Config) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(config.to_yaml())
    tmp.replace(path)


@dataclass(frozen=True)
class Project:
    """A `.tf/` directory and its configuration."""

    state_dir: Path
    config: Config = field(default_factory=Config)

    @property
    def root(self) -> Path:
        return self.state_dir.parent

    @property
    def config_path(self) -> Path:
        return self.state_dir / CONFIG_FILE

    def read_token(self, name: str) -> str | None:
        try:
            return (self.state_dir / name).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def save(self, config: Config) -> Project:
        save_config(self.config_path, config)
        return replace(self, config=config)


def find_project(start: Path) -> Project | None:
    """The nearest ``.tf/`` holding a config or token, from `start` upward."""
    for directory in (start, *start.parents):
        candidate = directory / STATE_DIR
        if (candidate / CONFIG_FILE).is_file() or (candidate / "admin.token").is_file():
            return Project(candidate, load_config(candidate / CONFIG_FILE))
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_up_file(state_dir: Path) -> dict[str, Any] | None:
    """What a running `tf up` recorded, or None when none runs for this state."""
    try:
        data = json.loads((state_dir / UP_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or not pid_alive(int(data.get("pid", 0) or 0)):
        return None
    return data


@dataclass(frozen=True)
class Target:
    """The control plane a command talks to, and how `tf run` reaches the gateway."""

    server_url: str
    admin_token: str | None
    proxy_url: str
    project: Project | None
    source: str  # "--server", "TF_SERVER", "tf up", "config"

    @property
    def local(self) -> bool:
        return self.project is not None and self.source in ("tf up", "config")


def resolve_target(project: Project | None, server_flag: str | None, env: dict[str, str]) -> Target:
    """Pick the server by the precedence in this module's docstring."""
    token = env.get("TF_ADMIN_TOKEN") or None
    proxy = env.get("TF_PROXY") or None
    explicit = (server_flag, "--server") if server_flag else (env.get("TF_SERVER"), "TF_SERVER")
    if explicit[0]:
        # never send this project's admin token to a server named elsewhere
        return Target(
            explicit[0].rstrip("/"), token, proxy or _proxy_of(project), project, explicit[1]
        )
    if project is None:
        return Target(DEFAULT_SERVER, token, proxy or DEFAULT_PROXY, None, "default")
    admin = token or project.read_token("admin.token")
    running = read_up_file(project.state_dir)
    if running is not None:
        return Target(
            str(running["server_url"]),
            admin,
            proxy or str(running["proxy_url"]),
            project,
            "tf up",
        )
    return Target(
        project.config.server_url, admin, proxy or project.config.proxy_url, project, "config"
    )


def _proxy_of(project: Project | None) -> str:
    if project is None:
        return DEFAULT_PROXY
    running = read_up_file(project.state_dir)
    return str(running["proxy_url"]) if running else project.config.proxy_url
