"""Slack connector: one row per Web API method, channel from JSON, form or query."""

from __future__ import annotations

import json

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector

SLACK = get_connector("slack")
JSON = (("Content-Type", "application/json; charset=utf-8"),)
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)

# Slack method | action risk | JSON arguments | expected parameters
TABLE = """
chat.postMessage | slack.message.send medium | {"channel": "C1", "text": "hi"} | {"channel": "C1", "text": "hi"}
chat.postMessage | slack.message.send medium | {"channel": "C1", "text": "@here", "parse": "full"} | {"channel": "C1", "text": "@here", "parse": "full"}
chat.postEphemeral | slack.message.send_ephemeral low | {"channel": "C1", "user": "U1"} | {"channel": "C1", "user": "U1"}
chat.scheduleMessage | slack.message.schedule medium | {"channel": "C1", "post_at": 1700000000} | {"channel": "C1", "post_at": 1700000000}
chat.update | slack.message.update low | {"channel": "C1", "ts": "1.2"} | {"channel": "C1", "ts": "1.2"}
chat.delete | slack.message.delete medium | {"channel": "C1", "ts": "1.2"} | {"channel": "C1", "ts": "1.2"}
chat.getPermalink | slack.message_permalink.get low | {"channel": "C1", "message_ts": "1.2"} | {"channel": "C1", "message_ts": "1.2"}
chat.meMessage | slack.message.me low | {"channel": "C1"} | {"channel": "C1"}
conversations.list | slack.channel.list low | {"types": "public_channel"} | {"types": "public_channel"}
conversations.info | slack.channel.get low | {"channel": "C1"} | {"channel": "C1"}
conversations.history | slack.channel.history low | {"channel": "C1"} | {"channel": "C1"}
conversations.replies | slack.channel.replies low | {"channel": "C1", "ts": "1.2"} | {"channel": "C1", "ts": "1.2"}
conversations.members | slack.channel_member.list low | {"channel": "C1"} | {"channel": "C1"}
conversations.create | slack.channel.create low | {"name": "ops", "is_private": true} | {"name": "ops", "is_private": true}
conversations.archive | slack.channel.archive medium | {"channel": "C1"} | {"channel": "C1"}
conversations.unarchive | slack.channel.unarchive low | {"channel": "C1"} | {"channel": "C1"}
conversations.rename | slack.channel.rename medium | {"channel": "C1", "name": "x"} | {"channel": "C1", "name": "x"}
conversations.invite | slack.channel.invite medium | {"channel": "C1", "users": "U1,U2"} | {"channel": "C1", "users": "U1,U2"}
conversations.kick | slack.channel.kick medium | {"channel": "C1", "user": "U1"} | {"channel": "C1", "user": "U1"}
conversations.join | slack.channel.join low | {"channel": "C1"} | {"channel": "C1"}
conversations.leave | slack.channel.leave low | {"channel": "C1"} | {"channel": "C1"}
conversations.setTopic | slack.channel.set_topic low | {"channel": "C1", "topic": "t"} | {"channel": "C1"}
conversations.setPurpose | slack.channel.set_purpose low | {"channel": "C1", "purpose": "p"} | {"channel": "C1"}
conversations.mark | slack.channel.mark low | {"channel": "C1", "ts": "1"} | {"channel": "C1"}
conversations.open | slack.dm.open low | {"users": "U1"} | {"users": "U1"}
conversations.close | slack.dm.close low | {"channel": "D1"} | {"channel": "D1"}
files.upload | slack.file.upload medium | null | {}
files.getUploadURLExternal | slack.file.upload_url low | {"filename": "a.txt", "length": 3} | {"filename": "a.txt"}
files.completeUploadExternal | slack.file.share medium | {"channel_id": "C1", "files": []} | {"channel_id": "C1"}
files.completeUploadExternal | slack.file.share medium | {"channels": "C1,U2", "files": []} | {"channels": "C1,U2"}
files.completeUploadExternal | slack.file.share medium | {"channel_id": "C1", "files": [], "initial_comment": "<!here>", "blocks": []} | {"channel_id": "C1", "initial_comment": "<!here>", "blocks": []}
files.list | slack.file.list low | {"channel": "C1"} | {"channel": "C1"}
files.info | slack.file.get low | {"file": "F1"} | {"file": "F1"}
files.delete | slack.file.delete medium | {"file": "F1"} | {"file": "F1"}
files.sharedPublicURL | slack.file.make_public high | {"file": "F1"} | {"file": "F1"}
users.list | slack.user.list low | {} | {}
users.info | slack.user.get low | {"user": "U1"} | {"user": "U1"}
users.lookupByEmail | slack.user.lookup low | {"email": "a@b.c"} | {"email": "a@b.c"}
users.conversations | slack.user_channel.list low | {"user": "U1"} | {"user": "U1"}
users.getPresence | slack.user_presence.get low | {"user": "U1"} | {"user": "U1"}
users.setPresence | slack.user.set_presence low | {"presence": "away"} | {"presence": "away"}
users.profile.get | slack.user_profile.get low | {"user": "U1"} | {"user": "U1"}
users.profile.set | slack.user_profile.update low | {"user": "U1", "profile": {}} | {"user": "U1"}
reactions.add | slack.reaction.add low | {"channel": "C1", "name": "tada", "timestamp": "1"} | {"channel": "C1", "name": "tada", "timestamp": "1"}
reactions.remove | slack.reaction.remove low | {"channel": "C1", "name": "tada"} | {"channel": "C1", "name": "tada"}
reactions.get | slack.reaction.get low | {"channel": "C1", "timestamp": "1"} | {"channel": "C1", "timestamp": "1"}
reactions.list | slack.reaction.list low | {"user": "U1"} | {"user": "U1"}
pins.add | slack.pin.add low | {"channel": "C1", "timestamp": "1"} | {"channel": "C1", "timestamp": "1"}
pins.remove | slack.pin.remove low | {"channel": "C1"} | {"channel": "C1"}
pins.list | slack.pin.list low | {"channel": "C1"} | {"channel": "C1"}
bookmarks.add | slack.bookmark.add low | {"channel_id": "C1", "title": "t"} | {"channel_id": "C1", "title": "t"}
reminders.add | slack.reminder.add low | {"time": "in 5 minutes", "text": "x"} | {"time": "in 5 minutes"}
search.messages | slack.message_search.list low | {"query": "deploy"} | {"query": "deploy"}
auth.test | slack.auth.test low | {} | {}
team.info | slack.team.get low | {} | {}
usergroups.create | slack.usergroup.create medium | {"name": "oncall"} | {"name": "oncall"}
usergroups.users.update | slack.usergroup.update_members medium | {"usergroup": "S1", "users": "U1"} | {"usergroup": "S1", "users": "U1"}
admin.users.invite | slack.admin.user_invite high | {"email": "x@y.z", "channel_ids": "C1"} | {"email": "x@y.z", "channel_ids": "C1"}
admin.users.remove | slack.admin.user_remove high | {"user_id": "U1", "team_id": "T1"} | {"user_id": "U1", "team_id": "T1"}
admin.users.setAdmin | slack.admin.user_set_admin high | {"user_id": "U1", "team_id": "T1"} | {"user_id": "U1", "team_id": "T1"}
admin.conversations.archive | slack.admin.channel_archive high | {"channel_id": "C1"} | {"channel_id": "C1"}
admin.conversations.delete | slack.admin.channel_delete high | {"channel_id": "C1"} | {"channel_id": "C1"}
admin.apps.approve | slack.admin.app_approve high | {"app_id": "A1"} | {"app_id": "A1"}
"""  # noqa: E501 - a data table reads better one row per line

ROWS = [tuple(part.strip() for part in line.split("|")) for line in TABLE.strip().splitlines()]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_slack_row(row: tuple[str, ...]) -> None:
    method, expected, arguments, params = row
    action, risk = expected.split()
    data = json.loads(arguments)
    body = b"" if data is None else json.dumps(data).encode()
    headers = JSON if data is not None else (("Content-Type", "multipart/form-data; boundary=b"),)
    parsed = SLACK.parse(
        HttpRequest.from_url("POST", f"https://slack.com/api/{method}", headers=headers, body=body)
    )
    assert (parsed.action_type, parsed.risk, parsed.spec.parameters) == (
        action,
        risk,
        json.loads(params),
    )
    # the same method by GET with the arguments in the query names the same action
    if data and all(isinstance(v, str) for v in data.values()):
        query = "&".join(f"{k}={v}" for k, v in data.items())
        by_get = SLACK.parse(
            HttpRequest.from_url("GET", f"https://api.slack.com/api/{method}?{query}")
        )
        assert by_get.action_type == action


def test_every_slack_action_has_a_row() -> None:
    named = {row[1].split()[0] for row in ROWS}
    assert named == {info.type for info in SLACK.actions()}
    assert len(named) >= 35


def test_channel_from_a_form_body_is_the_target() -> None:
    request = HttpRequest.from_url(
        "POST", "https://slack.com/api/chat.postMessage", headers=FORM, body=b"channel=C9&text=a+b"
    )
    parsed = SLACK.parse(request)
    assert parsed.spec.parameters == {"channel": "C9", "text": "a b"}
    assert parsed.spec.resource.target == "C9"


def test_form_body_without_content_type_is_read_as_a_form() -> None:
    request = HttpRequest.from_url(
        "POST", "https://slack.com/api/chat.delete", body=b"channel=C1&ts=1"
    )
    assert SLACK.parse(request).spec.parameters == {"channel": "C1", "ts": "1"}


@pytest.mark.parametrize(
    ("query", "body", "headers", "message"),
    [
        ("channel=C1", b"channel=C2", FORM, "conflicting `channel`"),
        ("", b"channel=C1&channel=C2", FORM, "duplicate `channel`"),
        ("", b'{"channel": "C1"', JSON, "invalid JSON"),
    ],
)
def test_ambiguous_or_broken_requests_are_refused(
    query: str, body: bytes, headers: tuple[tuple[str, str], ...], message: str
) -> None:
    request = HttpRequest(
        "POST", "https", "slack.com", None, "/api/chat.postMessage", query, headers, body
    )
    with pytest.raises(ConnectorError, match=message):
        SLACK.parse(request)


def test_truncated_body_is_refused() -> None:
    request = HttpRequest.from_url(
        "POST",
        "https://slack.com/api/chat.postMessage",
        headers=FORM,
        body=b"text=aaa",
        body_complete=False,
    )
    with pytest.raises(ConnectorError, match="larger than"):
        SLACK.parse(request)


def _multipart(fields: dict[str, str], file: bytes = b"PK") -> bytes:
    parts = [
        f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\n'
        + file
        + b"\r\n"
    )
    return b"".join(parts) + b"--b--\r\n"


MULTIPART = (("Content-Type", "multipart/form-data; boundary=b"),)


@pytest.mark.parametrize(
    ("query", "body", "headers"),
    [
        ("", _multipart({"channels": "C1", "initial_comment": "<!everyone> hi"}), MULTIPART),
        ("", b"channels=C1&content=x&initial_comment=%3C%21everyone%3E+hi", FORM),
        ("initial_comment=%3C%21everyone%3E+hi", _multipart({"channels": "C1"}), MULTIPART),
    ],
    ids=["multipart", "form", "query"],
)
def test_a_shared_files_comment_is_read_in_every_encoding(
    query: str, body: bytes, headers: tuple[tuple[str, str], ...]
) -> None:
    # files.upload posts `initial_comment` in the channel as a message: a policy must see it
    request = HttpRequest(
        "POST", "https", "slack.com", None, "/api/files.upload", query, headers, body
    )
    parsed = SLACK.parse(request)
    assert parsed.action_type == "slack.file.upload"
    assert parsed.spec.parameters == {"initial_comment": "<!everyone> hi"}


def test_a_file_upload_past_the_limit_is_refused_since_a_comment_could_follow_it() -> None:
    body = _multipart({"channels": "C1"}, file=b"x" * 64)
    request = HttpRequest.from_url(
        "POST",
        "https://slack.com/api/files.upload",
        headers=MULTIPART,
        body=body[:80],
        body_complete=False,
    )
    with pytest.raises(ConnectorError, match="larger than"):
        SLACK.parse(request)


def test_unknown_admin_method_falls_back_with_high_risk() -> None:
    parsed = SLACK.parse(HttpRequest.from_url("POST", "https://slack.com/api/admin.teams.create"))
    assert (parsed.action_type, parsed.risk, parsed.route) == (
        "slack.unknown.post",
        "high",
        "fallback",
    )
    other = SLACK.parse(HttpRequest.from_url("POST", "https://slack.com/api/emoji.list"))
    assert (other.action_type, other.risk) == ("slack.unknown.post", "medium")


def test_method_name_is_case_insensitive_so_it_cannot_be_disguised() -> None:
    parsed = SLACK.parse(HttpRequest.from_url("POST", "https://slack.com/api/ADMIN.users.REMOVE"))
    assert parsed.action_type == "slack.admin.user_remove"


def test_build_message_send_takes_the_channel_from_the_target() -> None:
    spec = parse_action_spec(
        {
            "type": "slack.message.send",
            "resource": {"provider": "slack", "target": "C1"},
            "parameters": {"text": "hello"},
        }
    )
    built = SLACK.build_request(spec)
    assert (built.method, built.url) == ("POST", "https://slack.com/api/chat.postMessage")
    assert json.loads(built.body) == {"text": "hello", "channel": "C1"}
    assert SLACK.parse(built).action_type == "slack.message.send"
