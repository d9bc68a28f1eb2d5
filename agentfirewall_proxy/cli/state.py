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

Which token goes where: ``TF_ADMIN_TOKEN`` only to a server the user named (``--server`` /
``TF_SERVER``; outside any project, the default local one); the project's ``admin.token`` only
to the server its own files name, and only when that server is on this machine. A ``.tf/``
another user owns or could write is refused outright (:func:`check_owner`): its files choose
where the tokens go.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from agentfirewall_proxy.cli.output import EXIT_USAGE, CliError
from agentfirewall_proxy.options import shown_url

__all__ = [
    "CONFIG_FILE",
    "STATE_DIR",
    "UP_FILE",
    "Config",
    "Project",
    "Target",
    "check_owner",
    "check_url",
    "find_project",
    "load_config",
    "on_this_machine",
    "open_project",
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
    """``config.yaml``, every value checked (a ValueError names the file and the key)."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return Config()
    except UnicodeDecodeError:
        raise ValueError(f"`{path}` is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"cannot read `{path}`: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"`{path}` is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"`{path}` must hold a mapping")
    isolate = raw.get("isolate", False)
    if not isinstance(isolate, bool):
        raise ValueError(f"`{path}`: `isolate` must be true or false, not `{isolate}`")
    platform = raw.get("platform")
    if platform is not None and not isinstance(platform, str):
        raise ValueError(f"`{path}`: `platform` must be a name")
    urls = {}
    for key, default in (("server_url", DEFAULT_SERVER), ("proxy_url", DEFAULT_PROXY)):
        value = raw.get(key) or default
        if not isinstance(value, str) or _url_fault(value):
            shown = shown_url(value) if isinstance(value, str) else value
            raise ValueError(
                f"`{path}`: `{key}` must be an http:// or https:// URL with a host and a "
                f"port from 0 to 65535, not `{shown}`"
            )
        urls[key] = value
    return Config(
        server_url=urls["server_url"],
        proxy_url=urls["proxy_url"],
        platform=platform,
        secret_env=_names(path, raw, "secret_env", "environment variable names"),
        isolate=isolate,
        isolate_agents=_names(path, raw, "isolate_agents", "agent names"),
    )


def _names(path: Path, raw: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ValueError(f"`{path}`: `{key}` must be a list of {what}")
    return tuple(str(v) for v in value)


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
        path = self.state_dir / name
        try:
            return path.read_text(encoding="ascii").strip() or None
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a token"
            raise CliError(
                f"cannot read `{path}`: {reason or exc}",
                hint=f"`tf init` writes a missing token: move `{path}` away and run it; or "
                "restore the state from a backup (`tf restore`)",
            ) from None

    def save(self, config: Config) -> Project:
        save_config(self.config_path, config)
        return replace(self, config=config)


def find_project(start: Path) -> Project | None:
    """The nearest ``.tf/`` holding a config or token, from `start` upward (refused when it is
    not the user's own: :func:`check_owner`)."""
    for directory in (start, *start.parents):
        candidate = directory / STATE_DIR
        if (candidate / CONFIG_FILE).is_file() or (candidate / "admin.token").exists():
            return open_project(candidate)
    return None


def open_project(state_dir: Path) -> Project:
    """The project in `state_dir`: the user's own, with a configuration that reads."""
    check_owner(state_dir)
    try:
        return Project(state_dir, load_config(state_dir / CONFIG_FILE))
    except ValueError as exc:
        raise CliError(
            str(exc),
            hint=f"fix it, or delete `{state_dir / CONFIG_FILE}` and run `tf init` in "
            f"{state_dir.parent} (it writes a new one and keeps the keys, tokens and data)",
        ) from None


def check_owner(state_dir: Path) -> None:
    """Refuse a `.tf/` another user owns or may write (as git refuses another user's
    repository): its files name the server `tf` sends tokens and credentials to.

    As root under sudo, the invoking user's (``SUDO_UID``) is the user's own too.
    """
    if not hasattr(os, "geteuid"):  # Windows: no uid to compare
        return
    try:
        info = state_dir.stat()
    except OSError as exc:
        raise CliError(f"cannot read `{state_dir}`: {exc.strerror or exc}") from None
    me = os.geteuid()
    sudo = os.environ.get("SUDO_UID", "")
    owners = {me, int(sudo)} if me == 0 and sudo.isdigit() else {me}
    if info.st_uid not in owners:
        raise CliError(
            f"`{state_dir}` belongs to another user (uid {info.st_uid}): tf uses only a "
            "`.tf/` of your own, since its files choose where your tokens and credentials go",
            hint="to use your own, run `tf init` in your project's directory (after moving "
            f"this one away if it is there); if this one is yours: `chown -R {me} {state_dir}`",
        )
    if info.st_mode & 0o022:
        raise CliError(
            f"`{state_dir}` is writable by other users (mode {info.st_mode & 0o777:o}): any of "
            "them could choose where tf sends your tokens and credentials",
            hint=f"`chmod 700 {state_dir}` (what `tf init` makes), then check its files",
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_up_file(state_dir: Path) -> dict[str, Any] | None:
    """What a running `tf up` recorded, or None when none runs for this state (an up.json
    that is not what `tf up` writes counts as none: the next `tf up` replaces it)."""
    try:
        data = json.loads((state_dir / UP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid, urls = data.get("pid"), (data.get("server_url"), data.get("proxy_url"))
    if type(pid) is not int or pid <= 0 or not pid_alive(pid):
        return None
    if not all(isinstance(url, str) and not _url_fault(url) for url in urls):
        return None
    return data


def _url_fault(url: str) -> str | None:
    """What is wrong with `url` as a server's address (None when nothing)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is no number or too big)
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "not http:// or https://"
    if not parts.hostname:
        return "no host"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "a space or control character in it"
    return None


def check_url(url: str, where: str) -> str:
    """`url` (without a final `/`) when it is an http(s) URL with a host and a valid port; a
    usage error naming `where` (``--server``, ``TF_SERVER``, ``TF_PROXY``) otherwise."""
    fault = _url_fault(url)
    if fault is not None:
        example = (
            "TF_PROXY=http://gateway:8443 (the gateway)"
            if where == "TF_PROXY"
            else f"{where}{'=' if where == 'TF_SERVER' else ' '}https://tameflare.example.com "
            "(the control plane)"
        )
        raise CliError(
            f"{where} `{shown_url(url)}` is not a server URL: {fault}",
            hint=f"e.g. {example}",
            code=EXIT_USAGE,
        )
    return url.rstrip("/")


def on_this_machine(url: str) -> bool:
    """Whether `url`'s host is this machine by its address alone: ``localhost``, a loopback
    address, or ``0.0.0.0``/``::`` (what `tf init --host 0.0.0.0` records). Any other name
    is looked up in DNS, which could answer anything, so it counts as elsewhere."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


@dataclass(frozen=True)
class Target:
    """The control plane a command talks to, and how `tf run` reaches the gateway."""

    server_url: str
    admin_token: str | None
    proxy_url: str
    project: Project | None
    source: str  # "--server", "TF_SERVER", "tf up", "config", "default"
    proxy_named: bool = False  # the gateway came from TF_PROXY (else the project's files)

    @property
    def local(self) -> bool:
        """The project's own server: named by its files, and on this machine."""
        return (
            self.project is not None
            and self.source in ("tf up", "config")
            and on_this_machine(self.server_url)
        )


def resolve_target(project: Project | None, server_flag: str | None, env: dict[str, str]) -> Target:
    """Pick the server by the precedence in this module's docstring, with the token it may
    get: ``TF_ADMIN_TOKEN`` only when the user named it (or no project names one), the
    project's own ``admin.token`` only when it is the project's server on this machine."""
    token = env.get("TF_ADMIN_TOKEN") or None
    proxy = check_url(env["TF_PROXY"], "TF_PROXY") if env.get("TF_PROXY") else None
    explicit = (server_flag, "--server") if server_flag else (env.get("TF_SERVER"), "TF_SERVER")
    if explicit[0]:
        # never send this project's admin token to a server named elsewhere
        url = check_url(explicit[0], explicit[1])
        return Target(
            url, token, proxy or _proxy_of(project), project, explicit[1], proxy is not None
        )
    if project is None:
        return Target(DEFAULT_SERVER, token, proxy or DEFAULT_PROXY, None, "default", True)
    named = proxy is not None
    running = read_up_file(project.state_dir)
    if running is not None:
        url, source = str(running["server_url"]), "tf up"
        proxy = proxy or str(running["proxy_url"])
    else:
        url, source = project.config.server_url, "config"
        proxy = proxy or project.config.proxy_url
    # a server the project's files name gets no token of the user's (a cloned repository's
    # `.tf/config.yaml` is anyone's), and the project's own only when it is on this machine
    admin = project.read_token("admin.token") if on_this_machine(url) else None
    return Target(url, admin, proxy, project, source, named)


def _proxy_of(project: Project | None) -> str:
    if project is None:
        return DEFAULT_PROXY
    running = read_up_file(project.state_dir)
    return str(running["proxy_url"]) if running else project.config.proxy_url
