"""Slack Web API (``https://slack.com/api/<method>``): chat, conversations, files, users,
reactions, pins, usergroups, admin.

Every method answers POST (JSON or form body) and GET (query), as Slack does; ``channel``
and the other listed arguments become parameters from whichever carries them (the same
argument in both with different values is refused). What a message says (``text``,
``markdown_text``, ``blocks``, ``attachments``, ``link_names``, ``parse``, and a shared
file's ``initial_comment``) is among them, so a policy can read its mentions. Bodies past
256 KiB are refused.
Unknown ``admin.*`` methods fall back to ``slack.unknown.post`` (``slack.unknown.get`` when
called by GET) with high risk.
"""

from __future__ import annotations

from agentfirewall.actions import Risk
from agentfirewall.connectors.routes import Route
from agentfirewall.connectors.table import RouteConnector

__all__ = ["CONNECTOR"]

C = ("channel",)
#: What a message says: policies read mentions here (slack-safe-defaults). ``link_names``
#: and ``parse: full`` make a plain ``@channel`` in ``text`` a mention; ``markdown_text`` is
#: the message too.
T = ("text", "markdown_text", "blocks", "attachments", "link_names", "parse")

# (Slack method, action, risk, parameters, description)
_METHODS: tuple[tuple[str, str, Risk, tuple[str, ...], str], ...] = (
    ("chat.postMessage", "slack.message.send", "medium", (*C, "thread_ts", *T), "Post a message"),
    (
        "chat.postEphemeral",
        "slack.message.send_ephemeral",
        "low",
        (*C, "user", *T),
        "Post an ephemeral message",
    ),
    (
        "chat.scheduleMessage",
        "slack.message.schedule",
        "medium",
        (*C, "post_at", *T),
        "Schedule a message",
    ),
    ("chat.update", "slack.message.update", "low", (*C, "ts", *T), "Edit a message"),
    ("chat.delete", "slack.message.delete", "medium", (*C, "ts"), "Delete a message"),
    (
        "chat.getPermalink",
        "slack.message_permalink.get",
        "low",
        (*C, "message_ts"),
        "Get a message permalink",
    ),
    ("chat.meMessage", "slack.message.me", "low", (*C, "text"), "Post a /me message"),
    ("conversations.list", "slack.channel.list", "low", ("types",), "List channels"),
    ("conversations.info", "slack.channel.get", "low", C, "Get a channel"),
    ("conversations.history", "slack.channel.history", "low", C, "Read a channel's history"),
    ("conversations.replies", "slack.channel.replies", "low", (*C, "ts"), "Read a thread"),
    ("conversations.members", "slack.channel_member.list", "low", C, "List channel members"),
    (
        "conversations.create",
        "slack.channel.create",
        "low",
        ("name", "is_private"),
        "Create a channel",
    ),
    ("conversations.archive", "slack.channel.archive", "medium", C, "Archive a channel"),
    ("conversations.unarchive", "slack.channel.unarchive", "low", C, "Unarchive a channel"),
    ("conversations.rename", "slack.channel.rename", "medium", (*C, "name"), "Rename a channel"),
    (
        "conversations.invite",
        "slack.channel.invite",
        "medium",
        (*C, "users"),
        "Invite users to a channel",
    ),
    (
        "conversations.kick",
        "slack.channel.kick",
        "medium",
        (*C, "user"),
        "Remove a user from a channel",
    ),
    ("conversations.join", "slack.channel.join", "low", C, "Join a channel"),
    ("conversations.leave", "slack.channel.leave", "low", C, "Leave a channel"),
    ("conversations.setTopic", "slack.channel.set_topic", "low", C, "Set a channel topic"),
    ("conversations.setPurpose", "slack.channel.set_purpose", "low", C, "Set a channel purpose"),
    ("conversations.mark", "slack.channel.mark", "low", C, "Move the read cursor"),
    ("conversations.open", "slack.dm.open", "low", ("users",), "Open a direct message"),
    ("conversations.close", "slack.dm.close", "low", C, "Close a direct message"),
    # a file shared in a channel is posted with `initial_comment` as its message (an
    # external upload with `blocks` when there is no comment): policies read mentions there
    (
        "files.upload",
        "slack.file.upload",
        "medium",
        ("initial_comment",),
        "Upload a file (legacy, multipart)",
    ),
    (
        "files.getUploadURLExternal",
        "slack.file.upload_url",
        "low",
        ("filename",),
        "Start an external file upload",
    ),
    (
        "files.completeUploadExternal",
        "slack.file.share",
        "medium",
        ("channel_id", "channels", "initial_comment", "blocks"),  # channels: "C1,U2"
        "Finish an upload and share it",
    ),
    ("files.list", "slack.file.list", "low", C, "List files"),
    ("files.info", "slack.file.get", "low", ("file",), "Get a file"),
    ("files.delete", "slack.file.delete", "medium", ("file",), "Delete a file"),
    (
        "files.sharedPublicURL",
        "slack.file.make_public",
        "high",
        ("file",),
        "Publish a file on a public URL",
    ),
    ("users.list", "slack.user.list", "low", (), "List users"),
    ("users.info", "slack.user.get", "low", ("user",), "Get a user"),
    ("users.lookupByEmail", "slack.user.lookup", "low", ("email",), "Find a user by email"),
    ("users.conversations", "slack.user_channel.list", "low", ("user",), "List a user's channels"),
    ("users.getPresence", "slack.user_presence.get", "low", ("user",), "Get presence"),
    ("users.setPresence", "slack.user.set_presence", "low", ("presence",), "Set presence"),
    ("users.profile.get", "slack.user_profile.get", "low", ("user",), "Get a profile"),
    ("users.profile.set", "slack.user_profile.update", "low", ("user",), "Edit a profile"),
    ("reactions.add", "slack.reaction.add", "low", (*C, "name", "timestamp"), "Add a reaction"),
    (
        "reactions.remove",
        "slack.reaction.remove",
        "low",
        (*C, "name", "timestamp"),
        "Remove a reaction",
    ),
    ("reactions.get", "slack.reaction.get", "low", (*C, "timestamp"), "Get reactions"),
    ("reactions.list", "slack.reaction.list", "low", ("user",), "List reactions"),
    ("pins.add", "slack.pin.add", "low", (*C, "timestamp"), "Pin a message"),
    ("pins.remove", "slack.pin.remove", "low", (*C, "timestamp"), "Unpin a message"),
    ("pins.list", "slack.pin.list", "low", C, "List pins"),
    ("bookmarks.add", "slack.bookmark.add", "low", ("channel_id", "title"), "Add a bookmark"),
    ("reminders.add", "slack.reminder.add", "low", ("time",), "Add a reminder"),
    ("search.messages", "slack.message_search.list", "low", ("query",), "Search messages"),
    ("auth.test", "slack.auth.test", "low", (), "Check the token"),
    ("team.info", "slack.team.get", "low", (), "Get the workspace"),
    ("usergroups.create", "slack.usergroup.create", "medium", ("name",), "Create a user group"),
    (
        "usergroups.users.update",
        "slack.usergroup.update_members",
        "medium",
        ("usergroup", "users"),
        "Replace a user group's members",
    ),
    (
        "admin.users.invite",
        "slack.admin.user_invite",
        "high",
        ("email", "channel_ids"),
        "Invite a user to the workspace",
    ),
    (
        "admin.users.remove",
        "slack.admin.user_remove",
        "high",
        ("user_id", "team_id"),
        "Remove a user from the workspace",
    ),
    (
        "admin.users.setAdmin",
        "slack.admin.user_set_admin",
        "high",
        ("user_id", "team_id"),
        "Make a user an admin",
    ),
    (
        "admin.conversations.archive",
        "slack.admin.channel_archive",
        "high",
        ("channel_id",),
        "Archive any channel",
    ),
    (
        "admin.conversations.delete",
        "slack.admin.channel_delete",
        "high",
        ("channel_id",),
        "Delete a channel",
    ),
    (
        "admin.apps.approve",
        "slack.admin.app_approve",
        "high",
        ("app_id",),
        "Approve an app install",
    ),
)

_ROUTES = tuple(
    Route(http, f"/api/{method}", action, risk, what, params)
    for method, action, risk, params, what in _METHODS
    for http in ("POST", "GET")
)

CONNECTOR = RouteConnector(
    name="slack",
    description="Slack Web API",
    routes=_ROUTES,
    default_domains=("slack.com", "api.slack.com"),
    base_url="https://slack.com",
    body_format="auto",
    body_limit=256 * 1024,
    truncated="error",
    targets=("{channel}", "{channel_id}", "{channels}"),
    fallback_risks=(("/api/admin.", "high"),),
)
CONNECTOR.notes = __doc__ or ""
#: The Web API reads no request header but the token's (the gateway's): none is bound.
CONNECTOR.bound_headers = ()
