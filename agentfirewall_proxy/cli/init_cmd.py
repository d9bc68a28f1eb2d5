"""`tf init [--platform P]`: create the project's `.tf/` state (and apply a platform template)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentfirewall.errors import AgentFirewallError
from agentfirewall.policy.packs import safe_default_packs
from agentfirewall_proxy.cli.client import AdminClient, in_process
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_OK, CliError
from agentfirewall_proxy.cli.permissions_cmd import ensure_agent
from agentfirewall_proxy.cli.state import (
    DEFAULT_PROXY,
    DEFAULT_SERVER,
    STATE_DIR,
    Config,
    Project,
    Target,
    check_owner,
    load_config,
    open_project,
    read_up_file,
    save_config,
)
from agentfirewall_proxy.cli.templates import TEMPLATES, Template

__all__ = ["create_state", "register"]

SAFE_DEFAULT_PACKS = safe_default_packs()


def port_number(text: str) -> int:
    """A `--port` value: 0 (any free port) to 65535; else a usage error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, not `{text}`") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port from 0 (any free one) to 65535, not {value}"
        )
    return value


def _url(default: str, host: str | None, port: int | None) -> str:
    scheme, _, rest = default.partition("://")
    default_host, _, default_port = rest.rpartition(":")
    return f"{scheme}://{host or default_host}:{default_port if port is None else port}"


def _gitignore(root: Path) -> bool:
    """Add `.tf/` to the project's .gitignore; True when the file changed."""
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if any(line.strip() in (".tf", ".tf/", "/.tf", "/.tf/") for line in text.splitlines()):
        return False
    prefix = "" if not text or text.endswith("\n") else "\n"
    path.write_text(f"{text}{prefix}# TameFlare state: keys, tokens, CA, database\n.tf/\n")
    return True


def _fill_state(state_dir: Path, config: Config) -> None:
    """Every secret file (0600), the CA and config.yaml in `state_dir` (what is missing)."""
    from agentfirewall_proxy.certs import load_or_create_ca
    from agentfirewall_server.bootstrap import ensure_data_dir
    from agentfirewall_server.settings import Settings

    os.chmod(state_dir, 0o700)
    ensure_data_dir(Settings(data_dir=state_dir))
    load_or_create_ca(state_dir)
    config_path = state_dir / "config.yaml"
    if not config_path.exists():
        save_config(config_path, config)
    for path in state_dir.iterdir():
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):  # (a running server's temporary one)
                os.chmod(path, 0o600)


def create_state(
    root: Path, config: Config, prepare: Callable[[Project], object] | None = None
) -> Project:
    """The project's `.tf/`, all or nothing.

    A new state is built in a private temporary directory beside it (then `prepare`, e.g. a
    platform template applied in-process, runs on it) and renamed to `.tf/` only when all of
    that worked; on any failure nothing is left behind. An existing `.tf/` only gets what it
    misses. When another `tf init` or `tf up` renamed its own into place first, that one (it
    is whole) is used.
    """
    state_dir = root / STATE_DIR
    if _holds_state(state_dir):
        open_project(state_dir)  # the user's own, and readable, before anything is added
        _fill_state(state_dir, config)
        project = open_project(state_dir)
        if prepare is not None:
            prepare(project)
        return project
    if state_dir.exists() and (not state_dir.is_dir() or any(state_dir.iterdir())):
        raise CliError(
            f"{state_dir} exists but holds no TameFlare state",
            hint="move it away (or delete it), then run the command again",
        )
    building = Path(tempfile.mkdtemp(prefix=".tf-new-", dir=root))
    try:
        _fill_state(building, config)
        if prepare is not None:
            prepare(Project(building, load_config(building / "config.yaml")))
        if state_dir.exists():  # an empty directory: rename() cannot replace it on every OS
            state_dir.rmdir()
        building.rename(state_dir)
    except BaseException as exc:
        shutil.rmtree(building, ignore_errors=True)
        if isinstance(exc, OSError) and _holds_state(state_dir):  # another made it meanwhile
            project = open_project(state_dir)
            if prepare is not None:
                prepare(project)
            return project
        if isinstance(exc, CliError | AgentFirewallError) or not isinstance(exc, Exception):
            raise
        # the type only: a driver's message may quote a database URL
        raise CliError(
            f"could not create {state_dir} ({type(exc).__name__}): nothing was left behind",
            hint="fix the cause (AGENTFIREWALL_DATABASE_URL? disk space?) and run it again",
        ) from exc
    _gitignore(root)
    return Project(state_dir, load_config(state_dir / "config.yaml"))


def _holds_state(state_dir: Path) -> bool:
    """Whether `state_dir` is a project's state (its configuration or admin token is there)."""
    return state_dir.is_dir() and (
        (state_dir / "config.yaml").exists() or (state_dir / "admin.token").exists()
    )


def _delete_state(state_dir: Path) -> None:
    """Delete `state_dir`, holding the locks a `tf up` (also while it starts) and every server
    on it hold (``up.lock``; ``server.lock`` and its SQLite file's, as `tf restore` takes
    them), else refuse naming the process."""
    from sqlalchemy.engine import URL

    from agentfirewall_proxy.up import DataInUse, holding_up_lock
    from agentfirewall_server.datalock import DataBusy, exclusive

    if read_up_file(state_dir) is not None:
        raise CliError(
            "`tf up` is running on this state", hint="stop it (Ctrl-C) before `tf init --force`"
        )
    # the state's own database file (a server on PostgreSQL holds `server.lock` too)
    database = URL.create("sqlite", database=str((state_dir / "agentfirewall.db").resolve()))
    try:
        with holding_up_lock(state_dir), exclusive(state_dir, database.render_as_string()):
            shutil.rmtree(state_dir)
    except (DataInUse, DataBusy) as exc:
        raise CliError(
            str(exc),
            hint="`tf init --force` deletes what it serves (the database, the vault key, the "
            "credentials): run it again once that process has stopped",
        ) from None


def init(ctx: Context) -> int:
    args = ctx.args
    root = ctx.cwd
    state_dir = root / STATE_DIR
    existed = _holds_state(state_dir)
    if existed:
        check_owner(state_dir)  # another user's is never used, nor deleted (--force)
    if existed and args.force:
        _delete_state(state_dir)
        existed = False
    config = Config(
        server_url=_url(DEFAULT_SERVER, args.host, args.port),
        proxy_url=_url(DEFAULT_PROXY, args.host, args.proxy_port),
        platform=args.platform,
    )
    applied: dict[str, Any] = {}

    def configure(client: AdminClient) -> None:
        if args.platform:
            template, agent = TEMPLATES[args.platform], args.agent or args.platform
            applied.update(_apply(ctx, client, template, agent))
        if args.safe_defaults:
            done = _install_packs(ctx, client, SAFE_DEFAULT_PACKS)
            applied["packs"] = sorted({*applied.get("packs", []), *done})

    def prepare(project: Project) -> None:
        if not args.platform and not args.safe_defaults:
            return
        if existed:  # this project's own server, or in-process (open_client checks which)
            with ctx.client(offline=True) as client:
                configure(client)
        else:  # a state being built: no server can serve it yet, so never ask one
            token, built = project.read_token("admin.token"), project.config
            target = Target(built.server_url, token, built.proxy_url, project, "config")
            with in_process(target) as client:
                configure(client)
        if args.platform:
            project.save(replace(project.config, platform=args.platform))

    doing = "creating keys, tokens and the gateway CA"
    if args.platform:
        doing += f", applying the {args.platform} template"
    if args.safe_defaults:
        doing += ", installing the safe-default policy packs"
    with ctx.out.progress(doing):
        project = create_state(root, config, prepare)
    project = Project(project.state_dir, load_config(project.config_path))
    if existed and any(v is not None for v in (args.port, args.proxy_port, args.host)):
        project = project.save(
            replace(project.config, server_url=config.server_url, proxy_url=config.proxy_url)
        )
    ctx.forget_project()
    payload: dict[str, Any] = {
        "state_dir": str(project.state_dir),
        "created": not existed,
        "server_url": project.config.server_url,
        "proxy_url": project.config.proxy_url,
        "platform": args.platform,
        **applied,
    }
    ctx.out.result(payload, lambda: _render(ctx, project, existed, applied))
    return EXIT_OK


def _apply(ctx: Context, client: AdminClient, template: Template, agent: str) -> dict[str, Any]:
    listed = client.get("/v1/connectors").get("connectors", [])
    existing = {c.get("type") for c in listed}
    vaulted = {c.get("type") for c in listed if c.get("has_credential")}
    connectors = [t for t in template.connectors if t not in existing]
    for kind in connectors:
        client.post("/v1/connectors", {"type": kind})
    ensure_agent(client, agent)  # as `tf permissions set` does: a typo of it is then caught
    rules = 0
    for rule in template.rules:
        body: dict[str, str | None]
        if rule.preset:
            body = {"agent": agent, "connector": rule.connector, "preset": rule.preset}
            rules += len(client.post("/v1/permissions/preset", body).get("permissions", []))
        else:
            body = {
                "agent": agent,
                "connector": rule.connector,
                "action_pattern": rule.pattern,
                "decision": rule.decision,
            }
            client.post("/v1/permissions", body)
            rules += 1
    packs = _install_packs(ctx, client, template.packs)
    return {
        "agent": agent,
        "connectors": connectors,
        "rules": rules,
        "packs": packs,
        "need_credentials": [t for t in template.connectors if t not in vaulted],
    }


def _install_packs(ctx: Context, client: AdminClient, names: Sequence[str]) -> list[str]:
    """Install the built-in policy packs `names` that are missing; the ones now installed."""
    installed = [p["name"] for p in client.get("/v1/policies").get("policies", [])]
    packs = []
    for pack in names:
        if pack not in installed:
            try:
                client.post(f"/v1/policy-packs/{pack}/install")
            except CliError as exc:
                ctx.out.warn(f"policy pack `{pack}` not installed: {exc.message}")
                continue
        packs.append(pack)
    return packs


def _render(ctx: Context, project: Project, existed: bool, applied: dict[str, Any]) -> None:
    where = project.state_dir
    if existed:
        ctx.out.success(f"{where} already initialised: its keys, tokens, CA and data kept")
        ctx.out.info("`tf init --force` starts over (deletes them)")
    else:
        ctx.out.success(f"created {where} (keys, tokens, CA; files 0600; git-ignored)")
    platform = ctx.args.platform
    if platform:
        _render_template(ctx, platform, applied)
    if ctx.args.safe_defaults:
        ctx.out.success("safe-default policy packs installed: " + ", ".join(SAFE_DEFAULT_PACKS))
    else:  # the SDK default stays allow: offer the packs, never impose them
        ctx.out.info(
            "agents in SDK mode may do anything no rule denies: `tf init --safe-defaults` "
            "installs the built-in safe-default packs (" + ", ".join(SAFE_DEFAULT_PACKS) + ")"
        )
    ctx.out.line("next:")
    running = read_up_file(project.state_dir) is not None
    up_step = "tf up                                   # in another terminal, in this directory"
    steps = _template_steps(applied) if platform else _QUICKSTART_STEPS
    for step in (*(() if running else (up_step,)), *steps):
        ctx.out.line("  " + step)


#: What comes after a plain `tf init`: the quickstart's connector, rule and agent.
_QUICKSTART_STEPS = (
    "tf connector add github --token ghp_xxx",
    'tf permissions set --gateway "Bot" --connector github --action "github.pr.*" --decision allow',
    'tf run --name "Bot" python my_agent.py',
)


def _render_template(ctx: Context, platform: str, applied: dict[str, Any]) -> None:
    """What a template made, for whom, and which of its connectors hold a credential."""
    template, agent = TEMPLATES[platform], str(applied["agent"])
    ctx.out.success(f"platform {platform}: {template.description}")
    ctx.out.info(
        f"rules are for the agent `{agent}`: `tf permissions list --gateway "
        f"{_shell_word(agent)}` shows them"
    )
    have = [c for c in template.connectors if c not in applied["need_credentials"]]
    if have:
        names = ", ".join(f"`{c}`" for c in have)
        ctx.out.info(
            f"{names} {'has a credential' if len(have) == 1 else 'have credentials'} already "
            "(`tf connector add TYPE --token ... --replace` swaps one)"
        )


def _template_steps(applied: dict[str, Any]) -> list[str]:
    """A credential for each of the template's connectors without one, then its agent."""
    return [
        *(f"tf connector add {kind} --token ..." for kind in applied["need_credentials"]),
        f"tf run --name {_shell_word(str(applied['agent']))} python my_agent.py",
    ]


def _shell_word(name: str) -> str:
    """`name` as one shell word: in double quotes, as the docs write `"Bot"`, unless the
    shell would expand something in it there (then in single quotes)."""
    return shlex.quote(name) if set(name) & set('"$`\\!') else f'"{name}"'


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "init",
        help="create this project's TameFlare state (.tf/), optionally from a platform template",
        description="Creates .tf/ here: config.yaml, the signing key, the admin and gateway "
        "tokens and the gateway's CA (files 0600), and adds .tf/ to .gitignore; the SQLite "
        "database and the vault's encryption key follow on first use (`tf up`, or a "
        "configuration command). Running it again keeps what exists; --force starts over. "
        "Templates: " + "; ".join(f"{name}: {t.description}" for name, t in TEMPLATES.items()),
        examples="  tf init\n  tf init --safe-defaults\n  tf init --platform langchain\n"
        "  tf init --platform n8n\n"
        "  tf init --platform claude-code --agent claude\n"
        "  tf init --port 3001 --proxy-port 8444",
        common=common,
        handler=init,
    )
    parser.add_argument(
        "--platform",
        choices=sorted(TEMPLATES),
        help="apply a template: its connectors (no credential yet), rules and policy packs",
    )
    parser.add_argument("--agent", metavar="NAME", help="agent the template's rules are for")
    parser.add_argument(
        "--port", type=port_number, help="control-plane port (default 3000; 0 = any)"
    )
    parser.add_argument(
        "--proxy-port", type=port_number, help="gateway port (default 8443; 0 = any)"
    )
    parser.add_argument("--host", help="address both listen on (default 127.0.0.1)")
    parser.add_argument("--force", action="store_true", help="delete the existing state first")
    parser.add_argument(
        "--safe-defaults",
        action="store_true",
        help="install the built-in safe-default policy packs ("
        + ", ".join(SAFE_DEFAULT_PACKS)
        + ")",
    )
