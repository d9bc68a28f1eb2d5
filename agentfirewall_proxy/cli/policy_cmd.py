"""`tf policy …` (validate, test, explain, list, add, packs, install) and `tf audit …`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfirewall import policy  # its names load on first use (pydantic: only when run)
from agentfirewall.display import visible
from agentfirewall.errors import ActionSpecError, PolicyError
from agentfirewall_proxy.cli.agent_cmd import check_new_agent
from agentfirewall_proxy.cli.client import path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.explain_risk import RouteRisk, route_risk
from agentfirewall_proxy.cli.names import (
    close_matches,
    connector_type,
    did_you_mean,
    unknown_action,
)
from agentfirewall_proxy.cli.output import (
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_USAGE,
    CliError,
)
from agentfirewall_proxy.cli.replay_cmd import add_replay
from agentfirewall_proxy.cli.shadow_cmd import add_shadow

if TYPE_CHECKING:
    from agentfirewall.actions import ActionSpec
    from agentfirewall.decisions import Decision
    from agentfirewall.policy import Explanation
    from agentfirewall.policy.models import FieldCondition
    from agentfirewall_proxy.cli.client import AdminClient
    from agentfirewall_proxy.snapshot import CompiledConfig

__all__ = ["register"]

_EXIT_FOR = {"allow": EXIT_OK, "deny": EXIT_DENIED, "require_approval": EXIT_PENDING}


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read `{path}`: {exc.strerror}") from None


def _type_names(leaf: FieldCondition) -> list[str]:
    """The action names a condition on the action type compares with exactly."""
    if leaf.field not in ("type", "action_spec.type") or leaf.operator not in ("equals", "in"):
        return []
    values = leaf.value if isinstance(leaf.value, list) else [leaf.value]
    return [v for v in values if isinstance(v, str)]


def unseen_actions(text: str, path: str) -> list[str]:
    """Warnings for the action names of a valid policy that its connector's catalogue does
    not know (``github.pull_request.merge``): a scope or condition on such a name never
    matches gateway traffic. A name under no connector (an SDK name such as
    ``payment.transfer.initiate``) is free-form and not checked."""
    from agentfirewall.policy.loader import parse_document
    from agentfirewall.policy.models import field_conditions
    from agentfirewall_proxy.cli.names import connector_types, unknown_action

    document = policy.load_policy(text, source=path)
    lines = parse_document(text, source=path)[1]
    kinds = set(connector_types())
    named: list[tuple[str, str]] = []  # (where, action name or glob)
    for index, pattern in enumerate(document.scope.action_types):
        line = lines.get(("scope", "action_types", index)) or lines.get(("scope",))
        named.append((f"{path}:{line}: `scope.action_types[{index}]`", pattern))
    for index, rule in enumerate(document.rules):
        where = f"{path}:{lines.get(('rules', index))}: `rules[{index}]` ({rule.name})"
        for leaf in field_conditions(rule.conditions):
            named += [(where, name) for name in _type_names(leaf)]
    warnings = []
    for where, name in named:
        kind = name.split(".", 1)[0]
        problem = unknown_action(name, kind) if kind in kinds else None
        if problem is not None:
            warnings.append(f"{where}: {problem.message} (only an SDK action sent under "
                            "that name can match it)")  # fmt: skip
    return warnings


def validate(ctx: Context) -> int:
    report = []
    for path in ctx.args.files:
        text = _read(path)
        errors = policy.validate_policy_text(text, source=path)
        warnings = [] if errors else unseen_actions(text, path)
        report.append({"file": path, "valid": not errors, "errors": [_err(e) for e in errors],
                       "warnings": warnings})  # fmt: skip

    def render() -> None:
        for item in report:
            if item["valid"]:
                ctx.out.success(f"{item['file']}: valid")
            for warning in item["warnings"]:
                ctx.out.warn(warning)
            for error in item["errors"]:
                ctx.out.error(error["text"])

    ctx.out.result(report, render)
    return EXIT_OK if all(r["valid"] for r in report) else EXIT_ERROR


def _err(exc: PolicyError) -> dict[str, Any]:
    return {"message": exc.message, "line": exc.line, "field": exc.field, "text": str(exc)}


def _param(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CliError(f"invalid --param `{text}`: expected KEY=VALUE", code=EXIT_USAGE)
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _spec(ctx: Context) -> ActionSpec:
    args = ctx.args
    provider = args.provider or str(args.action).split(".", 1)[0]
    data = {
        "type": args.action,
        "resource": {"provider": provider, "target": args.target, "environment": args.env},
        "parameters": dict(_param(p) for p in args.param),
    }
    data["resource"] = {k: v for k, v in data["resource"].items() if v is not None}
    from agentfirewall.actions import parse_action_spec

    try:
        return parse_action_spec(data)
    except ActionSpecError as exc:
        raise CliError(f"invalid action: {exc}", code=EXIT_USAGE) from None


def _show(ctx: Context, explanation: Explanation, risk: RouteRisk | None = None) -> int:
    """The steps and the decision; with `risk`, the route risk it was decided with."""
    decision: Decision = explanation.decision
    shown = explanation.to_dict()
    if risk is not None:
        shown["route_risk"] = {"risk": risk.risk, "from": risk.source}

    def render() -> None:
        ctx.out.table(("step", "result", "detail"), _rows(explanation))
        if risk is not None:
            ctx.out.line(f"route risk: {risk.risk} ({visible(risk.source)})")
        style = {"allow": "green", "deny": "red"}.get(decision.outcome, "yellow")
        reason = visible(decision.reason)  # one line: a rule's name may hold a newline
        ctx.out.line(f"decision: {decision.outcome} ({reason})", style=f"bold {style}")

    ctx.out.result(shown, render)
    return _EXIT_FOR.get(decision.outcome, EXIT_ERROR)


def _rows(explanation: Explanation) -> Iterator[tuple[str, str, str]]:
    """A row per step, and one more per further line of a step that lists several (a
    policy's rules): the lines are the engine's own, never split at a newline a policy or
    rule name holds (the table prints that one as its escape)."""
    for step in explanation.steps:
        first, *more = step.lines or (step.detail,)
        yield step.step, step.result, first
        yield from (("", "", line) for line in more)


def _explain(
    engine: policy.Engine, context: policy.EvaluationContext, spec: ActionSpec
) -> Explanation:
    """As the control plane decides it: content rules read the action's strings, and the
    parameters its connector declares base64-encoded decoded (a file GitHub's contents API
    takes)."""
    from agentfirewall.connectors import encoded_parameters
    from agentfirewall.policy.guard import explain_with_content, guard_plan

    encoded = encoded_parameters(spec.provider, spec.type)
    return explain_with_content(engine, guard_plan(engine.policies), spec, context, encoded)


def test(ctx: Context) -> int:
    policies = []
    for path in ctx.args.files:
        try:
            policies.append(policy.load_policy(_read(path), source=path))
        except PolicyError as exc:
            raise CliError(str(exc)) from None
    engine = policy.Engine(policies=policies)
    agent = ctx.args.agent or "agent"
    now = datetime.now(UTC)
    context = policy.EvaluationContext(agent=agent, mode="sdk", now=now)
    return _show(ctx, _explain(engine, context, _spec(ctx)))


def _live_config(client: AdminClient) -> CompiledConfig:
    """The live configuration compiled as the gateway compiles its snapshot: every access
    rule (a `*` agent's too) under each alias, the enabled policies (one that does not read
    stops everything), the kill switches, and the connectors (no credential: routing only)."""
    from agentfirewall_proxy.snapshot import compile_snapshot  # loads every connector

    routing = ("id", "type", "name", "domains", "base_url")
    connectors = client.get("/v1/connectors").get("connectors", [])
    snapshot = {
        "permissions": client.get("/v1/permissions").get("permissions", []),
        "policies": [
            p for p in client.get("/v1/policies").get("policies", []) if p.get("enabled", True)
        ],
        "kill_switches": client.get("/v1/kill-switch").get("active", []),
        "connectors": [{k: c.get(k) for k in routing} for c in connectors],
    }
    return compile_snapshot(snapshot, say=lambda message, level: None)


def _stop(config: CompiledConfig, agent: str, name: str) -> tuple[str, policy.KillSwitch | None]:
    """The connector type `name` stands for (a type, or a configured connector's name or
    id), and the kill switch the gateway refuses the agent's request with before deciding
    it (`kill_switch_for`: all, the agent's, or one on the type, id or name of a configured
    connector of that type; a type: any of them, as the request may be routed to any)."""
    from agentfirewall_proxy.cli.names import connector_types
    from agentfirewall_proxy.entries import AgentEntry

    configured = list(config.connectors.values())
    named = [c for c in configured if name in (c.id, c.name)]
    kind = named[0].type if named and name not in connector_types() else name
    serving = named if kind != name else [c for c in configured if c.type == kind]
    entry = AgentEntry(agent, agent, "active", "full_enforce", None, b"")
    found = [
        *(config.kill_switch_for(entry, c) for c in serving),
        config.kill_switch_for(entry, None),
    ]
    return kind, next((s for s in found if s is not None), None)


def explain(ctx: Context) -> int:
    """What the live gateway would decide: the configuration compiled by its own code
    (`_live_config`), the action decided under its connector's type, a kill switch the
    gateway checks first applied as it does (`_stop`)."""
    args = ctx.args
    with ctx.client() as client:
        if not args.force:  # explaining a typo would explain the deny-all default
            check_new_agent(client, str(args.gateway), flag="--force",
                            meant="to explain for an agent of that name anyway")  # fmt: skip
            problem = unknown_action(str(args.action), connector_type(client, args.connector))
            if problem is not None:
                raise problem
        config = _live_config(client)
        try:
            level = client.get(f"/v1/agents/{path_id(args.gateway)}").get("enforcement_level")
        except CliError:  # not registered yet: `tf run` would create it at the default level
            level = client.get("/v1/settings").get("default_enforcement_level")
    kind, switch = _stop(config, str(args.gateway), str(args.connector))
    spec = _spec(ctx)
    risk = route_risk(kind, spec)  # the connector's type parses the request
    engine = config.engine
    if switch is not None:  # decided by that switch alone (on a connector's name: under it)
        engine = policy.Engine(kill_switches=[switch])
        kind = switch.target if switch.scope == "connector" and switch.target else kind
    context = policy.EvaluationContext(
        agent=args.gateway,
        mode="proxy",
        now=datetime.now(UTC),
        connector=kind,
        enforcement_level=level or "full_enforce",
        risk=risk.risk if risk is not None else None,
    )
    return _show(ctx, _explain(engine, context, spec), risk)


def policy_list(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        data = client.get("/v1/policies")
    rows = [
        (p.get("id"), p.get("name"), p.get("enabled"), p.get("priority"), p.get("version"))
        for p in data.get("policies", [])
    ]
    ctx.out.result(
        data,
        lambda: ctx.out.table(
            ("id", "name", "enabled", "priority", "version"),
            rows,
            empty="no policies: install a pack with `tf policy install github-safe-defaults`",
        ),
    )
    return EXIT_OK


def policy_add(ctx: Context) -> int:
    """Checked here first (every error, with the file's lines, as `validate` shows them);
    a policy of the same name is replaced only with --replace (a new version)."""
    path = ctx.args.file
    text = _read(path)
    errors = policy.validate_policy_text(text, source=path)
    if errors:
        raise CliError("\n".join(str(e) for e in errors),
                       hint=f"`tf policy validate {path}` checks it without adding it")  # fmt: skip
    name = policy.load_policy(text, source=path).name
    for warning in unseen_actions(text, path):
        ctx.out.warn(warning)
    with ctx.client(offline=True) as client:
        names = {p.get("name") for p in client.get("/v1/policies").get("policies", [])}
        if name in names and not ctx.args.replace:
            raise CliError(
                f"a policy named `{name}` is installed",
                hint=f"replace it with `tf policy add {path} --replace` (its versions are kept), "
                f"or rename the policy in {path}",
            )
        if name in names:
            added = client.put(f"/v1/policies/{path_id(name)}", {"document": text})
            verb = f"replaced (version {added.get('version')})"
        else:
            added = client.post("/v1/policies", {"document": text})
            verb = "added"
    ctx.out.result(added, lambda: ctx.out.success(f"policy {added.get('name')} {verb}"))
    return EXIT_OK


def policy_remove(ctx: Context) -> int:
    name = str(ctx.args.name)
    with ctx.client(offline=True) as client:
        client.delete(f"/v1/policies/{path_id(name)}")
    ctx.out.result({"removed": name}, lambda: ctx.out.success(f"policy {name} removed"))
    return EXIT_OK


def packs(ctx: Context) -> int:
    with ctx.client(offline=True) as client:
        data = client.get("/v1/policy-packs")
    rows = [(p.get("name"), p.get("description")) for p in data.get("packs", [])]
    ctx.out.result(data, lambda: ctx.out.table(("pack", "description"), rows))
    return EXIT_OK


def install(ctx: Context) -> int:
    pack = str(ctx.args.pack)
    with ctx.client(offline=True) as client:
        known = [str(p.get("name")) for p in client.get("/v1/policy-packs").get("packs", [])]
        if pack not in known:
            raise CliError(f"no policy pack `{pack}`" + did_you_mean(close_matches(pack, known)),
                           hint="`tf policy packs` lists them", code=EXIT_USAGE)  # fmt: skip
        installed = client.get("/v1/policies").get("policies", [])
        policy = next((p for p in installed if p.get("name") == pack), None)
        if policy is None:
            policy = client.post(f"/v1/policy-packs/{path_id(pack)}/install")
            done = f"pack {pack} installed"
        else:  # kept, as `tf init --safe-defaults` keeps it
            done = (
                f"pack {pack} is already installed (kept as it is; for the built-in version, "
                f"`tf policy remove {pack}` then install it again)"
            )
    ctx.out.result(policy, lambda: ctx.out.success(done))
    return EXIT_OK


def _action_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--action", required=True, metavar="TYPE", help="e.g. github.pr.merge")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="e.g. base=main (repeat)"
    )
    parser.add_argument("--env", metavar="ENV", help="resource environment, e.g. production")
    parser.add_argument("--target", help="resource target, e.g. acme/api")
    parser.add_argument("--provider", help="default: the action's first part")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "policy",
        help="validate, test and explain policies; install packs",
        description="Policies refine access rules with conditions (YAML or JSON; see "
        "docs/policies.md). validate and test work on files without a server.",
        examples="  tf policy validate policies/*.yaml\n"
        "  tf policy test protect-main.yaml --action github.pr.merge --param base=main "
        "--env production\n"
        '  tf policy explain --gateway "Bot" --connector github --action github.pr.merge\n'
        "  tf policy install github-safe-defaults",
        common=common,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def cmd(name: str, text: str, examples: str, handler: Any) -> argparse.ArgumentParser:
        return add_command(
            verbs,
            name,
            help=text,
            description=text,
            examples=examples,
            common=common,
            handler=handler,
        )

    v = cmd(
        "validate",
        "check policy files (exit 1 when one is invalid)",
        "  tf policy validate protect-main.yaml",
        validate,
    )
    v.add_argument("files", nargs="+", metavar="FILE", help="policy files (YAML or JSON)")
    t = cmd(
        "test",
        "decide one action against policy files (exit 0 allow, 3 deny, 4 approval)",
        "  tf policy test protect-main.yaml --action github.pr.merge --param base=main "
        "--env production",
        test,
    )
    t.add_argument("files", nargs="+", metavar="FILE", help="policy files (YAML or JSON)")
    t.add_argument(
        "--agent", metavar="NAME", help="the agent asking, for scopes naming agents (default agent)"
    )
    _action_flags(t)
    e = cmd(
        "explain",
        "explain what the live gateway would decide for an agent's action",
        '  tf policy explain --gateway "Bot" --connector github --action github.repo.delete',
        explain,
    )
    e.add_argument(
        "--gateway",
        "--agent",
        dest="gateway",
        required=True,
        metavar="NAME",
        help="the agent, as `tf run --name` names it",
    )
    e.add_argument(
        "--connector", required=True, metavar="TYPE", help="connector type or name, e.g. github"
    )
    _action_flags(e)
    e.add_argument("--force", action="store_true",
                   help="explain names the catalogue and the agents do not know")  # fmt: skip
    cmd("list", "installed policies", "  tf policy list", policy_list)
    a = cmd("add", "add (or --replace) a policy from a file",
            "  tf policy add protect-main.yaml\n  tf policy add protect-main.yaml --replace",
            policy_add)  # fmt: skip
    a.add_argument("file", metavar="FILE", help="the policy file (YAML or JSON)")
    a.add_argument("--replace", action="store_true",
                   help="replace the installed policy of its name (a new version)")  # fmt: skip
    r = cmd("remove", "remove an installed policy", "  tf policy remove protect-main",
            policy_remove)  # fmt: skip
    r.add_argument("name", metavar="NAME", help="the policy's name (or id)")
    cmd("packs", "built-in policy packs", "  tf policy packs", packs)
    i = cmd(
        "install", "install a built-in pack", "  tf policy install github-safe-defaults", install
    )
    i.add_argument("pack", help="the pack's name (`tf policy packs` lists them)")
    add_replay(cmd)
    add_shadow(cmd, common)
