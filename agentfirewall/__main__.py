"""``python -m agentfirewall policy …``: validate, test, explain and describe policies.

Exit codes: 0 success, 1 a policy is invalid / a case failed / the action is denied
(explain --fail-on-deny), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from agentfirewall._version import __version__
from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import encoded_parameters
from agentfirewall.connectors.aliases import alias_rules
from agentfirewall.errors import ActionSpecError, PolicyError
from agentfirewall.policy import (
    Engine,
    EvaluationContext,
    KillSwitch,
    list_packs,
    load_pack,
    load_policy_file,
    validate_policy_text,
)
from agentfirewall.policy.casefile import parse_access_rule, run_cases
from agentfirewall.policy.guard import explain_with_content, guard_plan
from agentfirewall.policy.schema import document_schema

__all__ = ["main"]

_EPILOG = """\
examples:
  python -m agentfirewall policy validate examples/policies/*.yaml
  python -m agentfirewall policy test tests/core/policy_corpus
  python -m agentfirewall policy explain examples/policies/merge-to-main.json \\
      --policy examples/policies/protect-main.yaml --agent Bot
  echo '{"type": "github.repo.delete"}' | python -m agentfirewall policy explain - \\
      --mode proxy --rule "Bot:github:github.*=allow" --pack github-safe-defaults --agent Bot
  python -m agentfirewall policy schema > policy.schema.json
  python -m agentfirewall policy packs

docs: docs/policies.md (format, operators, evaluation order) and docs/policy-packs.md
"""


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.files:
        path = Path(name)
        try:
            errors = validate_policy_text(path.read_bytes(), source=str(path))
        except OSError as exc:
            errors = [PolicyError(f"cannot read file: {exc.strerror}", file=str(path))]
        for error in errors:
            print(error)
        if errors:
            failed += 1
        elif not args.quiet:
            policy = load_policy_file(path)
            print(f"{path}: ok: policy `{policy.name}`, {len(policy.rules)} rule(s)")
    return 1 if failed else 0


def _cmd_test(args: argparse.Namespace) -> int:
    # read as the gateway and the control plane read them: base64 declarations, rule aliases
    results = [
        r
        for path in args.paths
        for r in run_cases(path, encoded_parameters, compile_rules=alias_rules)
    ]
    for result in results:
        if result.passed and not args.quiet:
            print(f"PASS {result.file}: {result.name}")
        elif not result.passed:
            print(f"FAIL {result.file}: {result.name}: {result.message}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


def _read_spec(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    return Path(source).read_text(encoding="utf-8")


def _attributes(items: list[str]) -> dict[str, object]:
    attributes: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid attribute `{item}`: expected key=value")
        attributes[key] = value
    return attributes


def _kill_switch(text: str) -> KillSwitch:
    scope, _, target = text.partition(":")
    return KillSwitch(scope, target or None)  # type: ignore[arg-type]


def _cmd_explain(args: argparse.Namespace) -> int:
    data = json.loads(_read_spec(args.spec))
    if isinstance(data, dict) and "action_spec" in data:
        data = data["action_spec"]  # the body of POST /api/v1/actions works too
    spec = parse_action_spec(data)
    now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    policies = [load_policy_file(p) for p in args.policy] + [load_pack(n) for n in args.pack]
    engine = Engine(
        access_rules=alias_rules(parse_access_rule(r) for r in args.rule),
        policies=policies,
        kill_switches=[_kill_switch(k) for k in args.kill_switch],
    )
    ctx = EvaluationContext(
        agent=args.agent,
        mode=args.mode,
        now=now if now.tzinfo else now.replace(tzinfo=UTC),
        connector=args.connector,
        enforcement_level=args.level,
        sdk_default=args.sdk_default,
        risk=args.risk,
        attributes=_attributes(args.attr),
    )
    plan, encoded = guard_plan(tuple(policies)), encoded_parameters(spec.provider, spec.type)
    explanation = explain_with_content(engine, plan, spec, ctx, encoded)
    if args.json:
        print(json.dumps(explanation.to_dict(), indent=2))
    else:
        print(f"action `{spec.type}` by agent `{ctx.agent}` ({ctx.mode} mode)")
        print(explanation.render())
    return 1 if args.fail_on_deny and explanation.decision.outcome == "deny" else 0


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(document_schema(), indent=2))
    return 0


def _cmd_packs(args: argparse.Namespace) -> int:
    for pack in list_packs():
        print(f"{pack.name}: {pack.description}")
    return 0


def _explain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = sub.add_parser(
        "explain",
        help="decide on one action and show every step",
        description="Evaluate one action spec (JSON) and print each step: kill switch, "
        "access rules, each policy in scope, enforcement.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("spec", help="action spec JSON file, or - for stdin")
    explain.add_argument("--agent", default="agent", help="agent name (default: agent)")
    explain.add_argument("--mode", choices=["sdk", "proxy"], default="sdk")
    explain.add_argument("--connector", help="connector type (default: the spec's provider)")
    explain.add_argument("--policy", action="append", default=[], metavar="FILE")
    explain.add_argument("--pack", action="append", default=[], metavar="NAME")
    explain.add_argument(
        "--rule", action="append", default=[], metavar="AGENT:CONNECTOR:PATTERN=DECISION"
    )
    explain.add_argument(
        "--kill-switch", action="append", default=[], metavar="all|connector:NAME|agent:NAME"
    )
    explain.add_argument(
        "--level", default="full_enforce", choices=["monitor", "soft_enforce", "full_enforce"]
    )
    explain.add_argument("--sdk-default", default="allow", choices=["allow", "deny"])
    explain.add_argument("--risk", choices=["low", "medium", "high"], help="route risk")
    explain.add_argument("--now", help="evaluation time, ISO 8601 (default: now, UTC)")
    explain.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE")
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.add_argument("--fail-on-deny", action="store_true", help="exit 1 on deny")
    explain.set_defaults(func=_cmd_explain)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m agentfirewall``."""
    parser = argparse.ArgumentParser(
        prog="python -m agentfirewall",
        description="TameFlare (agentfirewall) policy tooling.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"agentfirewall {__version__}")
    top = parser.add_subparsers(dest="command", required=True)
    policy = top.add_parser("policy", help="validate, test and explain policies", epilog=_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = policy.add_subparsers(dest="policy_command", required=True)
    validate = sub.add_parser(
        "validate",
        help="check policy files (errors: file:line: field)",
        description="Check YAML/JSON policy documents; print `file:line: `field`: message` "
        "for each error and exit 1 when any file is invalid.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    validate.set_defaults(func=_cmd_validate)
    test = sub.add_parser(
        "test",
        help="run YAML test cases (a file or a directory)",
        description="Run policy test cases (action + context -> expected outcome and rule), "
        "like `opa test`; the case format is in docs/policies.md. Exit 1 on a failure.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("paths", nargs="+", metavar="DIR")
    test.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    test.set_defaults(func=_cmd_test)
    _explain_parser(sub)
    sub.add_parser("schema", help="print the JSON Schema of policy documents").set_defaults(
        func=_cmd_schema
    )
    sub.add_parser("packs", help="list the built-in policy packs").set_defaults(func=_cmd_packs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (PolicyError, ActionSpecError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
