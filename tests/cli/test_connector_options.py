"""`tf connector add --option` and `tf connector update` against a real server, and the
`PATCH /api/v1/connectors/{id}` they use."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.cli.conftest import Project
from tests.livesrv import LiveServer


@pytest.fixture
def remote(bare_project: Project, live_server: LiveServer) -> Project:
    """`bare_project` managing `live_server` (TF_SERVER + TF_ADMIN_TOKEN)."""
    bare_project.env["TF_SERVER"] = live_server.url
    bare_project.env["TF_ADMIN_TOKEN"] = live_server.admin_token
    return bare_project


def records(server: LiveServer) -> dict[str, dict[str, Any]]:
    answer = server.admin("GET", "/v1/connectors")
    assert answer.status_code == 200, answer.text
    return {c["id"]: c for c in answer.json()["connectors"]}


def test_add_with_options_then_update_and_unset(remote: Project, live_server: LiveServer) -> None:
    done = remote.tf(
        "connector", "add", "sendgrid", "--token", "SG.secret-key", "--option", "from=a@acme.com"
    )
    assert "from=a@acme.com" in done.stdout
    assert "SG.secret-key" not in done.stdout + done.stderr
    (record,) = records(live_server).values()
    assert record["options"] == {"from": "a@acme.com"}
    assert record["has_credential"] is True

    listed = remote.tf("connector", "list")
    assert "from=a@acme.com" in listed.stdout
    changed = remote.tf_json("connector", "update", "sendgrid", "--option", "from=ops@acme.com")
    assert changed["options"] == {"from": "ops@acme.com"}
    after = records(live_server)[record["id"]]
    assert after["options"] == {"from": "ops@acme.com"}
    assert after["has_credential"] is True  # the credential is untouched

    remote.tf("connector", "update", record["id"], "--unset-option", "from")
    assert records(live_server)[record["id"]]["options"] == {}
    events = live_server.admin("GET", "/v1/audit", params={"event_type": "connector.updated"})
    kinds = [e["event_type"] for e in events.json()["events"]]
    assert kinds.count("connector.updated") == 2


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("from", "expected KEY=VALUE, got `from`"),
        ("=x@y.z", "expected KEY=VALUE"),
        ("from=", "`from=` has no value"),
    ],
)
def test_bad_option_syntax_is_a_usage_error_that_says_what_to_type(
    remote: Project, live_server: LiveServer, value: str, says: str
) -> None:
    done = remote.tf("connector", "add", "sendgrid", "--token", "SG.k", "--option", value,
                     check=False)  # fmt: skip
    assert done.returncode == 2
    assert says in done.stderr
    assert "--option from=alerts@example.com" in done.stderr
    assert records(live_server) == {}


def test_server_validation_errors_are_shown_with_the_options_the_type_takes(
    remote: Project, live_server: LiveServer
) -> None:
    bad = remote.tf("connector", "add", "sendgrid", "--token", "SG.k", "--option", "from=nobody",
                    check=False)  # fmt: skip
    assert bad.returncode == 1
    assert "`options.from`" in bad.stderr
    assert "must be an email address, not `nobody`" in bad.stderr
    assert "a `sendgrid` connector takes `from` (sender address" in bad.stderr
    assert records(live_server) == {}

    remote.tf("connector", "add", "sendgrid", "--token", "SG.k", "--option", "from=a@acme.com")
    unknown = remote.tf("connector", "update", "sendgrid", "--option", "reply_to=b@acme.com",
                        check=False)  # fmt: skip
    assert unknown.returncode == 1
    assert "unknown option `reply_to` for a `sendgrid` connector" in unknown.stderr
    (record,) = records(live_server).values()
    assert record["options"] == {"from": "a@acme.com"}

    github = remote.tf("connector", "add", "github", "--token", "ghp_x", "--option", "org=acme",
                       check=False)  # fmt: skip
    assert github.returncode == 1
    assert "a `github` connector takes no options" in github.stderr


def test_a_refused_add_keeps_the_connector_it_would_replace(
    remote: Project, live_server: LiveServer
) -> None:
    template = live_server.admin("POST", "/v1/connectors", json={"type": "sendgrid"})
    assert template.status_code == 201, template.text
    done = remote.tf("connector", "add", "sendgrid", "--token", "SG.k", "--option", "from=x",
                     check=False)  # fmt: skip
    assert done.returncode == 1
    assert set(records(live_server)) == {template.json()["id"]}
    remote.tf("connector", "add", "sendgrid", "--token", "SG.k", "--option", "from=a@acme.com")
    (record,) = records(live_server).values()
    assert record["id"] != template.json()["id"]
    assert (record["has_credential"], record["options"]) == (True, {"from": "a@acme.com"})


def test_update_usage_errors(remote: Project, live_server: LiveServer) -> None:
    nothing = remote.tf("connector", "update", "sendgrid", check=False)
    assert nothing.returncode == 2
    assert "tf connector update sendgrid --option from=" in nothing.stderr
    missing = remote.tf("connector", "update", "sendgrid", "--option", "from=a@b.co", check=False)
    assert missing.returncode == 1
    assert "no connector `sendgrid`" in missing.stderr
    both = remote.tf("connector", "update", "sendgrid", "--option", "from=a@b.co",
                     "--unset-option", "from", check=False)  # fmt: skip
    assert both.returncode == 1
    assert "both set and unset" in both.stderr


def test_help_teaches_options_with_examples(bare_project: Project) -> None:
    add = bare_project.tf("connector", "add", "--help").stdout
    assert "--option KEY=VALUE" in add
    assert "tf connector add sendgrid --token-env SENDGRID_KEY --option from=" in add
    update = bare_project.tf("connector", "update", "--help").stdout
    assert "tf connector update sendgrid --option from=" in update.split("examples:")[1]
    assert "--unset-option" in update
    assert "tf connector update" in bare_project.tf("connector", "--help").stdout


def test_patch_api(live_server: LiveServer) -> None:
    created = live_server.admin("POST", "/v1/connectors", json={"type": "sendgrid", "token": "k"})
    cid = created.json()["id"]
    path = f"/v1/connectors/{cid}"
    ok = live_server.admin("PATCH", path, json={"options": {"from": "a@acme.com"}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["options"] == {"from": "a@acme.com"}
    assert "k" not in json.dumps(ok.json()["options"])
    # removing an absent known key is a no-op; an unknown key is 422 with its field
    assert (
        live_server.admin("PATCH", path, json={"options": {"from": None}}).json()["options"] == {}
    )
    assert live_server.admin("PATCH", path, json={"options": {"from": None}}).status_code == 200
    bad = live_server.admin("PATCH", path, json={"options": {"cc": None}})
    assert (bad.status_code, bad.json()["field"]) == (422, "options.cc")
    extra = live_server.admin("PATCH", path, json={"options": {}, "token": "stolen"})
    assert extra.status_code == 422
    empty = live_server.admin("PATCH", path, json={"options": {}})  # was a 200, audited
    assert (empty.status_code, empty.json()["field"]) == (422, "options")
    assert "nothing to change" in empty.json()["message"]
    gone = live_server.admin(
        "PATCH", "/v1/connectors/conn_nope_1", json={"options": {"from": None}}
    )
    assert gone.status_code == 404
    viewer = live_server.admin(
        "POST", "/v1/users", json={"email": "v@acme.com", "password": "password1"}
    )
    assert viewer.status_code == 201, viewer.text
    with httpx.Client(base_url=live_server.api_url, timeout=30) as session:
        login = session.post(
            "/v1/auth/login", json={"email": "v@acme.com", "password": "password1"}
        )
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        refused = session.patch(path, json={"options": {"from": "x@acme.com"}}, headers=csrf)
    assert refused.status_code == 403
    assert records(live_server)[cid]["options"] == {}


def test_options_work_before_the_first_tf_up(bare_project: Project) -> None:
    """Like `connector add`, options are written through the in-process app offline."""
    bare_project.tf("init", "--port", "0", "--proxy-port", "0")
    bare_project.tf("connector", "add", "sendgrid", "--token", "SG.k", "--option", "from=a@b.co")
    bare_project.tf("connector", "update", "sendgrid", "--option", "from=ops@b.co")
    (record,) = bare_project.tf_json("connector", "list")["connectors"]
    assert (record["options"], record["has_credential"]) == ({"from": "ops@b.co"}, True)
    bad = bare_project.tf("connector", "update", "sendgrid", "--option", "from=x", check=False)
    assert bad.returncode == 1
    assert "`options.from`" in bad.stderr
