"""A redact rule on any content field refuses what the scanner could not read (it cannot
rewrite what it did not read). Needs guard-unread-targets.patch (agentfirewall/policy/guard.py:
`_targets` gives every field's family the unread names, not only `content.secrets`'s)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import HttpRequest
from agentfirewall.content.mime import MAX_DEPTH
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.replay import evaluate_sdk, verdict, with_findings
from agentfirewall_proxy import pipeline
from agentfirewall_proxy.flow import Flow, Refusal
from agentfirewall_proxy.guarded import redact_request
from agentfirewall_proxy.http1 import Head
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.core.test_content_unreadable import FORM_DATA, HOST, PARTS, _forwarded
from tests.core.test_content_unreadable_gateway import UNREADABLE_ANSWER
from tests.proxy.rawupstream import RawUpstream, ask, json_body, start_raw_gateway, status_of
from tests.proxy.support import KEY, connector, key_hash, rule, snapshot


def _policy(field: str) -> dict[str, Any]:
    return {
        "name": "guard",
        "rules": [
            {
                "name": "redact",
                "decision": "redact",
                "conditions": [{"field": field, "operator": "exists"}],
            }
        ],
    }


@pytest.mark.parametrize("field", ["content.pii", "content.secrets"])
@pytest.mark.parametrize(
    ("body", "where"), [(r[1], r[3]) for r in PARTS], ids=[r[0] for r in PARTS]
)
def test_a_redact_rule_refuses_an_upload_it_cannot_read(
    field: str, body: bytes, where: str
) -> None:
    config = compile_snapshot(
        snapshot(
            [rule("*", "allow")],
            connectors=[connector("generic", domains=[HOST], credential=None)],
            policies=[{"name": "guard", "document": _policy(field)}],
        )
    )
    agent = config.agent_for_key(key_hash(KEY))
    flow = Flow(
        request_id="r",
        method="POST",
        scheme="https",
        host=HOST,
        port=443,
        path="/notes",
        agent=agent,
        connector=config.route(HOST),
    )
    request = HttpRequest(
        "POST",
        "https",
        HOST,
        443,
        "/notes",
        "",
        (("Host", HOST), ("Content-Type", FORM_DATA)),
        body,
        True,
    )
    assert pipeline.decide(config, flow, request).outcome == "allow"  # (a redact: an allow)
    head = Head(
        "POST",
        b"/notes",
        [(b"Content-Type", FORM_DATA.encode())],
        "1.1",
        True,
        False,
        len(body),
        [b"content-type"],
    )
    with pytest.raises(Refusal) as refused:
        redact_request(config.guard, flow, head, body, True)
    assert f"a redact rule cannot rewrite unreadable_encoding at {where}+0" in refused.value.message


@pytest.mark.parametrize("field", ["response.injection", "response.secrets"])
def test_a_redact_rule_cuts_an_answer_it_cannot_read(tmp_path: Any, field: str) -> None:
    upstream = RawUpstream()
    conn = connector("generic", domains=["r.example.org"], credential=None)
    running, _ = start_raw_gateway(
        tmp_path, upstream, [conn], [rule("http.*", "allow")], _policy(field)
    )
    try:
        upstream.answers["/a"] = UNREADABLE_ANSWER
        answer = ask(running, "r.example.org", "/a")
        assert status_of(answer) == 502
        assert json_body(answer)["error"] == "response_blocked"
    finally:
        running.stop()
        upstream.stop()


def test_an_sdk_redact_rule_on_personal_data_refuses_an_eml_too_deep() -> None:
    engine = Engine(policies=[load_policy(_policy("content.pii"))])
    plan = guard_plan(engine.policies)
    spec = ActionSpec(
        type="demo.mail.send",
        resource={"provider": "demo"},
        parameters={"raw": base64.b64encode(_forwarded(MAX_DEPTH + 1)).decode()},
    )
    ctx = EvaluationContext(agent="Bot", mode="sdk", now=datetime.now(UTC), connector="demo")
    ctx, found = with_findings(ctx, plan, action_findings(plan, spec, ("parameters.raw:mime",)))
    assert verdict(evaluate_sdk(engine, spec, ctx, plan=plan, findings=found)) == "deny"
