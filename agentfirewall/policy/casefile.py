"""Policy test cases in YAML, run by ``python -m agentfirewall policy test`` (like ``opa test``).

A case file holds one case, or shared settings plus ``cases:``::

    name: merges to main wait for a human
    policies: [../policies/protect-main.yaml]      # files (relative to this file),
                                                   # inline documents, or {text: "<yaml>"}
    packs: [github-safe-defaults]
    access_rules: ["Bot:github:github.pr.*=allow"] # or {agent, connector, action_pattern, decision}
    kill_switches: [{scope: agent, target: Bot}]
    context: {agent: Bot, mode: proxy, connector: github, now: "2026-01-05T12:00:00Z"}
    cases:
      - name: merge into main
        action: {type: github.pr.merge, parameters: {base: main}}
        expect: {outcome: require_approval, rule: protect-main/merge-to-main}

``expect`` keys: outcome, rule (``matched_rules[0]``; ``default`` for "no rule, the
default applied"), reason, reason_contains, decided_outcome, default_applied,
kill_switch, risk_score, matched_policies, errors (true/false or a substring), and
for broken configurations ``error: {message_contains, line, field}``.

Cases are decided as the gateway and the control plane decide, with two of the connectors'
functions, which ``python -m agentfirewall policy test`` passes (this layer cannot import
the connectors):

- ``encoded`` (``agentfirewall.connectors.encoded_parameters``): content rules read the
  action's strings as the control plane scans them, the parameters its connector declares
  base64-encoded decoded too;
- ``compile_rules`` (``agentfirewall.connectors.aliases.alias_rules``): the access rules
  compiled as the gateway compiles its own, each under every spelling of its pattern (the
  integration guide's ``generic.get`` grants what the generic connector names ``http.get``).

Without them a case reads its rules and parameters as written.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agentfirewall.actions import parse_action_spec
from agentfirewall.decisions import Decision
from agentfirewall.errors import ActionSpecError, PolicyError
from agentfirewall.policy.engine import Engine, EvaluationContext
from agentfirewall.policy.guard import explain_with_content, guard_plan
from agentfirewall.policy.loader import load_policy, load_policy_file, parse_document
from agentfirewall.policy.models import Policy
from agentfirewall.policy.packs import load_pack
from agentfirewall.policy.permissions import AccessRule, KillSwitch

__all__ = [
    "Case",
    "CaseResult",
    "load_cases",
    "parse_access_rule",
    "run_case",
    "run_case_file",
    "run_cases",
]

DEFAULT_NOW = "2026-01-05T12:00:00+00:00"  # a Monday, noon UTC
_SHARED = ("policies", "packs", "access_rules", "kill_switches", "context", "action")
_CASE_KEYS = ("name", "expect", *_SHARED)
_EXPECT_KEYS = ("outcome", "rule", "reason", "reason_contains", "decided_outcome",
                "default_applied", "kill_switch", "risk_score", "matched_policies", "approval",
                "errors", "error")  # fmt: skip
_ERROR_KEYS = ("message_contains", "line", "field")

#: Where an action's parameters carry text base64-encoded, by its provider and type
#: (``agentfirewall.connectors.encoded_parameters``).
Encoded = Callable[[str | None, str], Sequence[str]]
#: The access rules an engine holds for the rules written: the gateway's compiles each under
#: every alias of its pattern (``agentfirewall.connectors.aliases.alias_rules``).
CompileRules = Callable[[Iterable[AccessRule]], Sequence[AccessRule]]


def _no_encoded(provider: str | None, action: str) -> Sequence[str]:
    return ()


def _as_written(rules: Iterable[AccessRule]) -> Sequence[AccessRule]:
    return list(rules)


@dataclass(frozen=True, slots=True)
class _Lookups:
    """The connectors' functions a case is decided with (the module docstring)."""

    encoded: Encoded = _no_encoded
    compile_rules: CompileRules = _as_written


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The result of one case: where it is, whether it passed and why not."""

    file: str
    name: str
    passed: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class Case:
    """One case as written (shared settings merged in), with the file it came from."""

    file: Path
    name: str
    data: dict[str, Any]


def parse_access_rule(text: str) -> AccessRule:
    """Parse ``agent:connector:pattern=decision`` (the agent may contain colons)."""
    head, sep, decision = text.rpartition("=")
    parts = head.rsplit(":", 2)
    if not sep or len(parts) != 3 or not all(parts):
        raise ValueError(f"invalid access rule `{text}`: expected agent:connector:pattern=decision")
    return AccessRule(parts[0], parts[1], parts[2], decision.strip())  # type: ignore[arg-type]


def _policies(items: list[Any], base: Path, name: str) -> list[Policy]:
    policies = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            policies.append(load_policy_file(base / item))
        elif isinstance(item, Mapping) and set(item) == {"text"}:
            policies.append(load_policy(str(item["text"]), source=f"{name}#policies[{index}]"))
        elif isinstance(item, Mapping):
            policies.append(load_policy(item, source=f"{name}#policies[{index}]"))
        else:
            raise ValueError(f"`policies[{index}]` must be a file name or a policy document")
    return policies


def _access_rules(items: list[Any]) -> list[AccessRule]:
    rules = []
    for item in items:
        if isinstance(item, str):
            rules.append(parse_access_rule(item))
        else:
            rules.append(AccessRule(**item))
    return rules


def _context(data: Mapping[str, Any]) -> EvaluationContext:
    fields = dict(data)
    fields.setdefault("agent", "agent")
    fields.setdefault("mode", "sdk")
    now = fields.get("now", DEFAULT_NOW)
    fields["now"] = datetime.fromisoformat(str(now).replace("Z", "+00:00"))
    return EvaluationContext(**fields)


def _check(decision: Decision, expect: Mapping[str, Any]) -> list[str]:
    problems = []

    def differs(key: str, actual: object) -> None:
        if key in expect and expect[key] != actual:
            problems.append(f"{key}: expected `{expect[key]}`, got `{actual}`")

    differs("outcome", decision.outcome)
    differs("reason", decision.reason)
    differs("decided_outcome", decision.decided_outcome)
    differs("default_applied", decision.default_applied)
    differs("kill_switch", decision.kill_switch)
    differs("risk_score", decision.risk_score)
    differs("matched_policies", list(decision.matched_policies))
    if "rule" in expect:
        actual = decision.matched_rules[0] if decision.matched_rules else "default"
        differs("rule", actual)
    if "reason_contains" in expect and str(expect["reason_contains"]) not in decision.reason:
        problems.append(f"reason: `{decision.reason}` lacks `{expect['reason_contains']}`")
    wanted = expect.get("errors")
    if isinstance(wanted, bool) and wanted != bool(decision.errors):
        problems.append(f"errors: expected {'some' if wanted else 'none'}, got {decision.errors}")
    elif isinstance(wanted, str) and not any(wanted in e for e in decision.errors):
        problems.append(f"errors: none mentions `{wanted}`: {decision.errors}")
    if "approval" in expect:
        actual_approval = decision.approval.to_dict() if decision.approval else None
        if expect["approval"] != actual_approval:
            problems.append(f"approval: expected {expect['approval']}, got {actual_approval}")
    return problems


def _check_error(exc: Exception, expect: Mapping[str, Any]) -> list[str]:
    problems = []
    if "message_contains" in expect and str(expect["message_contains"]) not in str(exc):
        problems.append(f"error `{exc}` lacks `{expect['message_contains']}`")
    for key in ("line", "field"):
        if key in expect and getattr(exc, key, None) != expect[key]:
            problems.append(
                f"error {key}: expected `{expect[key]}`, got `{getattr(exc, key, None)}`"
            )
    return problems


def _unknown_key(data: Mapping[str, Any], known: tuple[str, ...], where: str) -> str:
    """The complaint about the first key of `data` that is not one of `known` (empty: none).

    A misspelt key would be ignored, and a case that checks nothing passes: refused."""
    for key in data:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f": did you mean `{near[0]}`?" if near else f": expected {', '.join(known)}"
            return f"unknown {where} key `{key}`{hint}"
    return ""


def _engine(case: Mapping[str, Any], policies: list[Policy], lookups: _Lookups) -> Engine:
    """The engine a case is decided by: its rules compiled as the gateway compiles them."""
    rules = _access_rules(list(case.get("access_rules") or []))
    return Engine(
        access_rules=lookups.compile_rules(rules),
        policies=policies,
        kill_switches=[KillSwitch(**k) for k in case.get("kill_switches") or []],
    )


def _run_one(case: Mapping[str, Any], base: Path, file: str, lookups: _Lookups) -> CaseResult:
    name = str(case.get("name", "unnamed case"))
    expect = case.get("expect") or {}
    if not isinstance(expect, Mapping) or not expect:
        return CaseResult(file, name, False, "the case has no `expect`")
    error = expect.get("error")
    problem = _unknown_key(case, _CASE_KEYS, "case") or _unknown_key(
        expect, _EXPECT_KEYS, "`expect`"
    )
    if not problem and isinstance(error, Mapping):
        problem = _unknown_key(error, _ERROR_KEYS, "`expect.error`")
    if problem:
        return CaseResult(file, name, False, problem)
    try:
        policies = _policies(list(case.get("policies") or []), base, file)
        policies += [load_pack(str(p)) for p in case.get("packs") or []]
        engine = _engine(case, policies, lookups)
        spec, ctx = parse_action_spec(case.get("action")), _context(case.get("context") or {})
        # content rules read what the action's strings hold, as the control plane scans them
        plan, fields = guard_plan(tuple(policies)), lookups.encoded(spec.provider, spec.type)
        decision = explain_with_content(engine, plan, spec, ctx, fields).decision
    except (PolicyError, ActionSpecError, ValueError, TypeError) as exc:
        if "error" not in expect:
            return CaseResult(file, name, False, f"unexpected error: {exc}")
        problems = _check_error(exc, expect["error"])
        return CaseResult(file, name, not problems, "; ".join(problems))
    if "error" in expect:
        return CaseResult(file, name, False, f"expected an error, got {decision.outcome}")
    problems = _check(decision, expect)
    return CaseResult(file, name, not problems, "; ".join(problems))


def _cases(data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    if "cases" not in data:
        yield dict(data)
        return
    shared = {key: data[key] for key in _SHARED if key in data}
    for case in data["cases"]:
        merged = {**shared, **case}
        if "context" in shared and "context" in case:
            merged["context"] = {**shared["context"], **case["context"]}
        yield merged


def _read(file: Path) -> tuple[list[Case], CaseResult | None]:
    try:  # as a policy document is read: a duplicate key would hide a case or its expectation
        data, _ = parse_document(file.read_bytes(), source=file.name)
    except (OSError, PolicyError) as exc:
        return [], CaseResult(str(file), file.name, False, f"cannot read case file: {exc}")
    if not isinstance(data, Mapping):
        return [], CaseResult(str(file), file.name, False, "a case file must be a mapping")
    problem = _unknown_key(data, ("cases", *_SHARED), "shared") if "cases" in data else ""
    if problem:  # a misspelt shared setting would reach no case
        return [], CaseResult(str(file), file.name, False, problem)
    cases = [Case(file, str(c.get("name", "unnamed case")), c) for c in _cases(data)]
    return cases, None


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        file
        for file in [*root.rglob("*.yaml"), *root.rglob("*.yml")]
        if not any(part.startswith("_") for part in file.relative_to(root).parts[:-1])
    )


def load_cases(path: str | Path) -> list[Case]:
    """Every case of a file, or of every ``*.yaml``/``*.yml`` under a directory (sorted).

    Files under a directory whose name starts with ``_`` (e.g. ``_policies/``) are not
    cases: keep the policies the cases refer to there. Raises ValueError for a case file
    that cannot be read.
    """
    cases: list[Case] = []
    for file in _files(Path(path)):
        found, problem = _read(file)
        if problem is not None:
            raise ValueError(f"{problem.file}: {problem.message}")
        cases.extend(found)
    return cases


def run_case(
    case: Case, encoded: Encoded = _no_encoded, *, compile_rules: CompileRules = _as_written
) -> CaseResult:
    """Run one case (`encoded`, `compile_rules`: the module docstring; pass the connectors'
    functions to decide as the gateway and the control plane do)."""
    lookups = _Lookups(encoded, compile_rules)
    return _run_one(case.data, case.file.parent, str(case.file), lookups)


def run_case_file(
    path: str | Path, encoded: Encoded = _no_encoded, *, compile_rules: CompileRules = _as_written
) -> list[CaseResult]:
    """Run every case of one YAML file (an unreadable file is one failed result)."""
    cases, problem = _read(Path(path))
    if problem is not None:
        return [problem]
    return [run_case(case, encoded, compile_rules=compile_rules) for case in cases]


def run_cases(
    path: str | Path, encoded: Encoded = _no_encoded, *, compile_rules: CompileRules = _as_written
) -> list[CaseResult]:
    """Run one case file, or every case file under a directory (see `load_cases`)."""
    files = _files(Path(path))
    return [r for f in files for r in run_case_file(f, encoded, compile_rules=compile_rules)]
