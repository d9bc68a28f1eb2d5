"""Ids that can be copied: any unique prefix is accepted (like git), tables show short
unique ids that never wrap at 80 columns, ambiguous and too-short prefixes are refused."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall import AgentFirewall
from agentfirewall_proxy.cli.names import resolve_prefix, short_ids
from agentfirewall_proxy.cli.output import CliError
from tests.cli.conftest import Project

_CHARS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ids_strategy = st.lists(
    st.text(_CHARS, min_size=26, max_size=26).map(lambda s: "apv_" + s),
    min_size=1, max_size=30, unique=True,
).flatmap(  # most share a long prefix, as ids made in the same second do
    lambda ids: st.just([ids[0][:12] + i[12:] for i in ids[: len(ids) // 2]] + ids)
).map(lambda ids: list(dict.fromkeys(ids)))  # fmt: skip


@given(ids_strategy)
def test_short_ids_are_unique_prefixes_that_resolve_back(ids: list[str]) -> None:
    shorts = short_ids(ids)
    for full, short in zip(ids, shorts, strict=True):
        assert full.startswith(short)
        assert len(short) >= len("apv_") + 12 or short == full
        assert [i for i in ids if i.startswith(short)] == [full]
        assert resolve_prefix("approval", short, ids) == full


def test_prefixes_refused_when_ambiguous_unknown_or_too_short() -> None:
    ids = ["apv_01AAAA0001", "apv_01AAAA0002", "apv_99ZZZZ0003"]
    with pytest.raises(CliError, match="ambiguous: 2 approvals"):
        resolve_prefix("approval", "apv_01AA", ids)
    with pytest.raises(CliError, match="too short"):
        resolve_prefix("approval", "apv_9", ids)
    with pytest.raises(CliError, match="no approval `apv_7`"):
        resolve_prefix("approval", "apv_7", ids)
    assert resolve_prefix("approval", "apv_99ZZ", ids) == "apv_99ZZZZ0003"


def test_approval_ids_by_prefix_and_tables_at_80_columns(project: Project) -> None:
    project.tf("init")
    up = project.up()
    server = up["server_url"]
    key = project.tf_json("agent", "add", "Bot")["api_key"]
    project.tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
               "--action", "github.pr.merge", "--decision", "require_approval")  # fmt: skip
    with AgentFirewall(api_key=key, base_url=server + "/api") as firewall:
        for number in (1, 2, 3):
            held = firewall.request_action(
                action_type="github.pr.merge", provider="github", target=f"acme/api#{number}",
                parameters={"number": number},
            )  # fmt: skip
            assert held.status == "pending_approval"
    pending = project.tf_json("approvals", "list")["approvals"]
    ids = [a["id"] for a in pending]
    assert len(ids) == 3

    table = project.tf("approvals", "list", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in table.splitlines()) <= 80
    shorts = short_ids(ids)
    for short in shorts:  # each whole on one line, so a double-click copies it
        assert any(short in line for line in table.splitlines()), (short, table)
        assert short != ids[shorts.index(short)]

    first = shorts[0]
    shown = project.tf_json("approvals", "show", first)
    assert shown["id"] == ids[0]
    approved = project.tf("approvals", "approve", first)
    assert ids[0] in approved.stdout
    assert project.tf_json("approvals", "show", ids[0])["status"] == "approved"
    denied = project.tf_json("approvals", "deny", shorts[1])
    assert (denied["id"], denied["status"]) == (ids[1], "denied")

    ambiguous = project.tf("approvals", "deny", "apv_", check=False)
    assert ambiguous.returncode == 1
    assert "ambiguous" in ambiguous.stderr
    assert project.tf_json("approvals", "show", ids[2])["status"] == "pending"
    token = (project.root / ".tf" / "admin.token").read_text().strip()
    answer = httpx.get(
        f"{server}/api/v1/approvals/apv_0", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code in (400, 409)  # too short or ambiguous: never a guess
    assert answer.json()["field"] == "id"

    # permissions too: a unique prefix removes the rule
    rule = project.tf_json("permissions", "list")["permissions"][0]["id"]
    project.tf("permissions", "remove", rule[:12])
    assert project.tf_json("permissions", "list")["permissions"] == []
