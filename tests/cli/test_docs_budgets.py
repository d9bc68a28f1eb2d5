"""docs/budgets.md, read by a newcomer and run: its blocks (taken from the page, so they
cannot drift) in a `tf init` project against one `tf up`, stripe-python under `tf run`
against the fake Stripe, the page's SDK sample, grants, the policy on what remains.

Then the newcomer's mistakes: a typo'd field or flag, a zero, negative or non-finite limit,
an unknown window or time zone, a currency or time zone the budget would ignore. Each is
refused with what to do, exit 2 when `tf` can tell by itself, and nothing is stored.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.cli.app import main
from tests.cli.conftest import Project, wait_for
from tests.fakes import FakeUpstreams

DOC = (Path(__file__).resolve().parents[2] / "docs" / "budgets.md").read_text(encoding="utf-8")

#: A stripe-python agent: N transfers of AMOUNT cents, one line of outcome each.
TRANSFERS = """\
import os, sys, stripe
client = stripe.StripeClient(os.environ["STRIPE_API_KEY"], max_network_retries=0)
for _ in range(int(sys.argv[1])):
    try:
        client.v1.transfers.create(params={"amount": 2500, "currency": "usd",
                                           "destination": "acct_1"})
        print("ok")
    except stripe.StripeError as exc:
        print(exc.http_status, exc.error.code, exc.user_message, sep="|")
"""

pytestmark = pytest.mark.slow


def _block(start: str, language: str = "bash") -> str:
    """The page's fenced block whose code begins with `start`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", DOC, flags=re.S | re.M)
    [found] = [b for b in blocks if b.lstrip().startswith(start)]
    return found


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, tf_bin: Path, upstreams: FakeUpstreams
) -> Iterator[Project]:
    """One `tf up` (fake Stripe) for every check of the page."""
    root = tmp_path_factory.mktemp("budgets") / "myproject"
    root.mkdir()
    project = Project(root, tf_bin, upstreams)
    project.tf("init", "--port", "0", "--proxy-port", "0")
    project.tf("connector", "add", "stripe", "--token", "sk_test_" + "4" * 24)
    project.up()
    try:
        yield project
    finally:
        project.stop_up()


def _api(project: Project, method: str, path: str, **kwargs: Any) -> httpx.Response:
    up = json.loads((project.root / ".tf" / "up.json").read_text())
    token = (project.root / ".tf" / "admin.token").read_text().strip()
    return httpx.request(method, up["server_url"] + path, timeout=30,
                         headers={"Authorization": f"Bearer {token}"}, **kwargs)  # fmt: skip


def _agent(project: Project, name: str, *rule: str) -> str:
    """Register `name` (its SDK key) and give it one rule on stripe."""
    key = str(project.tf_json("agent", "add", name)["api_key"])
    project.tf("permissions", "set", "--gateway", name, "--connector", "stripe", *rule)
    return key


def _sdk(project: Project, key: str, **parameters: Any) -> Any:
    from agentfirewall import AgentFirewall

    base = json.loads((project.root / ".tf" / "up.json").read_text())["server_url"] + "/api"
    with AgentFirewall(api_key=key, base_url=base) as tf:
        return tf.request_action("stripe.transfer.create", provider="stripe",
                                 parameters=parameters)  # fmt: skip


def _state(project: Project, name: str) -> dict[str, Any]:
    state: dict[str, Any] = project.tf_json("budget", "show", name)["state"]
    return state


def test_finance_bot_at_most_1000_a_day(running: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worked example: forty $25 transfers go, the 41st is refused in Stripe's shape;
    the page's SDK sample is refused with the reason the page shows."""
    key = _agent(running, "Finance Bot", "--action", "stripe.*", "--decision", "allow")
    done = running.bash(_block("tf budget set stripe-daily"))
    assert "budget stripe-daily: 100,000 usd per calendar_day" in done.stdout
    assert "window: calendar_day (Europe/Paris)" in done.stdout
    assert "past the limit: deny" in done.stdout
    running.agent("transfers.py", TRANSFERS)

    done = running.tf("run", "--name", "Finance Bot", "python", "transfers.py", "39")
    assert done.stdout.split() == ["ok"] * 39
    # the gateway hands its idle slice back: the control plane then sees 97500 spent
    wait_for(lambda: _state(running, "stripe-daily")["leased"] == 0, what="the slice back")

    # the page's SDK sample, as written (its key and URL from the environment)
    monkeypatch.setenv("AAF_API_KEY", key)
    up = json.loads((running.root / ".tf" / "up.json").read_text())
    monkeypatch.setenv("AAF_BASE_URL", up["server_url"] + "/api")
    sample: dict[str, Any] = {}
    source = _block("from agentfirewall import AgentFirewall", "python")
    exec(compile(source, "docs/budgets.md", "exec"), sample)  # noqa: S102
    assert sample["result"].status == "denied"
    assert sample["result"].decision.reason == (
        "budget `stripe-daily` exceeded: 97500 of 100000 usd used this day, this request needs 5000"
    )
    assert '"budget `stripe-daily` exceeded: 97500 of 100000 usd ...' in DOC

    done = running.tf("run", "--name", "Finance Bot", "python", "transfers.py", "2")
    fortieth, refused = done.stdout.splitlines()
    assert fortieth == "ok"
    status, code, message = refused.split("|")
    assert (status, code) == ("403", "budget_exceeded")  # a StripeError, Stripe's shape
    assert message == ("TameFlare: budget `stripe-daily` exceeded: 100000 of 100000 usd used "
                       "this day, this request needs 2500")  # fmt: skip
    assert message in " ".join(DOC.split())
    assert running.fakes is not None
    assert len(running.fakes["stripe"].received("POST", "/v1/transfers")) == 40  # not the 41st

    state = wait_for(lambda: (s := _state(running, "stripe-daily"))["used"] == 100_000 and s,
                     what="the reported spend")  # fmt: skip
    assert (state["remaining"], state["by_agent"]) == (0, {"Finance Bot": 100_000})
    assert state["resets_at"].endswith("T23:00:00.000Z") or state["resets_at"].endswith(
        "T22:00:00.000Z"
    )  # midnight in Paris (winter or summer time)

    def refusal_logged() -> bool:  # (the gateway ships its records in batches)
        traffic = running.tf_json("logs", "--agent", "Finance Bot", "--last", "5")["traffic"]
        return ("deny", 403) in {(t["decision"], t["status_code"]) for t in traffic}

    wait_for(refusal_logged, what="the 41st transfer's refusal in the traffic log")

    metrics = _api(running, "GET", "/metrics").text
    assert 'aaf_budget_limit{budget="stripe-daily"} 100000.0' in metrics
    refusals = re.search(r'aaf_budget_refusals_total\{budget="stripe-daily",outcome="deny"\} '
                         r"([0-9.]+)", metrics)  # fmt: skip
    assert refusals is not None
    assert float(refusals.group(1)) >= 2  # the SDK's and the 41st

    _policy_on_what_remains(running)

    running.tf("budget", "remove", "stripe-daily")
    events = _api(running, "GET", "/api/v1/audit", params={"limit": 500}).json()["events"]
    kinds = {(e["event_type"], e["subject"]) for e in events}
    assert {("budget.set", "stripe-daily"), ("budget.removed", "stripe-daily")} <= kinds


def _policy_on_what_remains(running: Project) -> None:
    """The page's policy: with `stripe-daily` spent (0 remains), large transfers of another
    agent are held; small ones and a policy naming a budget that does not exist pass."""
    policy = _block("name: hold-large-transfers-when-low", "yaml")
    (running.root / "low.yaml").write_text(policy, encoding="utf-8")
    running.tf("policy", "add", "low.yaml")
    key = _agent(running, "Payout Bot", "--action", "stripe.*", "--decision", "allow")
    try:
        held = _sdk(running, key, amount=6000, currency="usd")
        assert held.status == "pending_approval"
        assert "hold-large-transfers-when-low/low-budget" in held.decision.reason
        assert _sdk(running, key, amount=4000, currency="usd").status == "allowed"
        missing = policy.replace("stripe-daily", "no-such-budget").replace(
            "hold-large-transfers-when-low", "names-no-budget"
        )
        (running.root / "missing.yaml").write_text(missing, encoding="utf-8")
        running.tf("policy", "remove", "hold-large-transfers-when-low")
        running.tf("policy", "add", "missing.yaml")
        assert _sdk(running, key, amount=6000, currency="usd").status == "allowed"
    finally:
        for name in ("hold-large-transfers-when-low", "names-no-budget"):
            running.tf("policy", "remove", name, check=False)


def test_an_llm_spend_cap(running: Project) -> None:
    if shutil.which("jq") is None:
        pytest.skip("the page's block reads `.tf/up.json` with jq")
    done = running.bash(_block("TF=$(jq"))
    assert "budget llm-daily: 50 usd per calendar_day" in done.stdout
    assert "budget llm-tokens: 2,000,000 tokens per day" in done.stdout
    budgets = {b["name"]: b for b in running.tf_json("budget", "list")["budgets"]}
    assert (budgets["llm-daily"]["measure"], budgets["llm-daily"]["outcome"]) == (
        "cost", "require_approval")  # fmt: skip
    assert (budgets["llm-tokens"]["window"], budgets["llm-tokens"]["outcome"]) == ("day", "deny")
    prices = _api(running, "GET", "/api/v1/llm-prices").json()
    assert prices["prices"]["gpt-4o-mini*"] == {"input": 0.15, "output": 0.6}
    assert prices["unit"] == "usd per 1m tokens"
    for name in ("llm-daily", "llm-tokens"):
        running.tf("budget", "remove", name)


def test_grants_as_the_page_writes_them(running: Project) -> None:
    """`tf approvals approve ID --for 1h --max-uses 5 --where …` from the page: the next
    matching request goes with the grant's id, others are held; a `deny` budget refuses a
    granted request without spending a use; revoked, nothing more goes."""
    key = _agent(running, "Grant Bot", "--action", "stripe.transfer.create", "--decision",
                 "require_approval")  # fmt: skip
    first = _sdk(running, key, amount=5000, currency="usd")
    assert first.status == "pending_approval"
    [pending] = [a for a in running.tf_json("approvals", "list")["approvals"]
                 if a["agent"] == "Grant Bot"]  # fmt: skip
    approve, listing, revoke = _block("tf approvals approve").splitlines()
    running.tf(*shlex.split(approve)[1:3], pending["id"], *shlex.split(approve)[4:])
    [grant] = running.tf_json(*shlex.split(listing)[1:])["grants"]
    assert (grant["max_uses"], grant["uses"], grant["agent"]) == (5, 0, "Grant Bot")
    assert [c["field"] for c in grant["constraints"]] == [
        "action_spec.parameters.amount", "action_spec.parameters.currency"]  # fmt: skip

    granted = _sdk(running, key, amount=5000, currency="usd")
    assert (granted.status, granted.decision.reason) == (
        "allowed", f"approved by grant {grant['id']}")  # fmt: skip
    assert _sdk(running, key, amount=20_000, currency="usd").status == "pending_approval"
    assert _sdk(running, key, amount=5000, currency="eur").status == "pending_approval"

    running.tf("budget", "set", "grant-cap", "--agent", "Grant Bot", "--connector", "stripe",
               "--action", "stripe.transfer.*", "--limit", "1", "--window", "hour")  # fmt: skip
    assert _sdk(running, key, amount=100, currency="usd").status == "allowed"  # 1 of 1
    refused = _sdk(running, key, amount=100, currency="usd")
    assert refused.status == "denied"
    assert refused.decision.reason.startswith("budget `grant-cap` exceeded: 1 of 1 requests")
    uses = running.tf_json("grants", "list")["grants"][0]["uses"]
    assert uses == 2  # the refused one spent no use
    events = _api(running, "GET", "/api/v1/audit", params={"limit": 500}).json()["events"]
    assert sum(e["event_type"] == "grant.used" and e["subject"] == grant["id"]
               for e in events) == 2  # fmt: skip

    running.tf(*shlex.split(revoke)[1:3], grant["id"][:12])  # a unique prefix
    running.tf("budget", "remove", "grant-cap")
    assert _sdk(running, key, amount=100, currency="usd").status == "pending_approval"
    assert running.tf_json("grants", "list")["grants"] == []
    assert running.tf_json("grants", "list", "--all")["grants"][0]["status"] == "revoked"

    # the API's form, with each constraint spelling the page lists
    body = {"grant": {"for_seconds": 3600, "max_uses": 5,
                      "where": ["amount lte 10000", "currency in [usd]", "channel equals C123",
                                {"field": "amount", "operator": "gt", "value": 0}]}}  # fmt: skip
    assert '{"grant": {"for_seconds": 3600, "max_uses": 5, "where": ["amount<=10000"]}}' in DOC
    [held] = [a for a in running.tf_json("approvals", "list")["approvals"]
              if a["agent"] == "Grant Bot"][:1]  # fmt: skip
    answer = _api(running, "POST", f"/api/v1/approvals/{held['id']}/approve", json=body)
    assert answer.status_code == 200, answer.text
    made = answer.json()["grant"]
    assert [c["field"] for c in made["constraints"]] == [
        "action_spec.parameters.amount", "action_spec.parameters.currency",
        "action_spec.parameters.channel", "action_spec.parameters.amount"]  # fmt: skip
    assert _api(running, "GET", f"/api/v1/grants/{made['id']}").json()["id"] == made["id"]
    assert _api(running, "POST", f"/api/v1/grants/{made['id']}/revoke").status_code == 200
    assert _api(running, "GET", "/api/v1/grants", params={"status": "active"}).json() == {
        "grants": []}  # fmt: skip


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (("--limit", "0"), 2, "argument --limit: expected a number above 0 in the measure's "
                              "unit, not `0`"),
        (("--limit", "-5"), 2, "not `-5`"),
        (("--limit", "nan"), 2, "not `nan`"),  # it reached the server: a traceback
        (("--limit", "inf"), 2, "not `inf`"),
        (("--limit", "5 usd"), 2, "not `5 usd`"),
        (("--limit", "5", "--window", "weekly"), 2, "invalid choice: 'weekly'"),
        (("--limit", "5", "--measure", "amount"), 2, "invalid choice: 'amount'"),
        (("--limit", "5", "--windw", "day"), 2,
         "unrecognized arguments: --windw day → `tf budget set --help` lists the options"),
        (("--limit", "5", "--timezone", "Paris"), 1,
         "unknown time zone `Paris`: use an IANA name like `Europe/Paris`"),
        (("--limit", "5", "--currency", "usd"), 1,
         "`currency` applies to the `sum` measure only: a `count` budget would cover "
         "requests in every currency"),
        (("--limit", "5", "--window", "day", "--timezone", "Europe/Paris"), 1,
         "`timezone` applies to calendar windows only: `day` is the last 24 hours; for days "
         "from midnight in `Europe/Paris` use `calendar_day`"),
        (("--limit", "5", "--measure", "tokens"), 1,
         "the `tokens` measure needs an openai or anthropic connector"),
        (("--limit", "5", "--parameter", "amount"), 1,
         "`parameter` applies to the `sum` measure only"),
    ],
)  # fmt: skip
def test_a_budget_that_would_not_do_what_it_says_is_refused(
    running: Project,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    said: str,
) -> None:
    monkeypatch.chdir(running.root)
    for name in ("TF_SERVER", "TF_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    try:
        done, err = _main(capsys, "budget", "set", "oops", "--connector", "stripe", *args)
        assert (done, said in " ".join(err.split())) == (code, True), err
        assert "Traceback" not in err
        assert _api(running, "GET", "/api/v1/budgets/oops").status_code == 404  # not stored
    finally:
        _api(running, "DELETE", "/api/v1/budgets/oops")


def test_the_api_refuses_typos_with_the_field_named(running: Project) -> None:
    for body, said in (
        ({"connector": "stripe", "limt": 5}, "unknown field `limt`"),
        ({"connector": "stripe", "limit": 5, "windw": "day"}, "unknown field `windw`"),
        ({"connector": "stripe", "limit": 5, "window": "week"}, "invalid `window`"),
        ({"connector": "stripe", "limit": 0}, "invalid `limit`"),
        ({"connector": "stripe", "limit": 5, "measure": "count", "currency": "usd"},
         "`currency` applies to the `sum` measure only"),
    ):  # fmt: skip
        answer = _api(running, "PUT", "/api/v1/budgets/oops", json=body)
        assert (answer.status_code, said in answer.json()["message"]) == (422, True), body
    assert "unknown field `limt`" in DOC
    assert _api(running, "GET", "/api/v1/budgets/oops").status_code == 404  # nothing stored
    # the fields the page's table lists are the ones a budget has
    fields = set(re.findall(r"^\| `(\w+)` \|", DOC, flags=re.M))
    answer = _api(running, "PUT", "/api/v1/budgets/oops", json={"connector": "stripe",
                                                                 "limit": 1})  # fmt: skip
    assert set(answer.json()) - {"id", "name"} == fields
    _api(running, "DELETE", "/api/v1/budgets/oops")
