"""Tables (DESIGN.md section 5). Times are float unix seconds; JSON is stored as text."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "INTEGER_MAX",
    "action_requests",
    "agents",
    "api_keys",
    "approvals",
    "audit_checkpoints",
    "audit_events",
    "budget_usage",
    "budgets",
    "connectors",
    "credentials",
    "gateways",
    "grants",
    "kill_switches",
    "metadata",
    "permissions",
    "policies",
    "policy_versions",
    "rate_limits",
    "refresh_leases",
    "sessions",
    "settings_table",
    "shadow_permissions",
    "shadow_policies",
    "tokens",
    "traffic",
    "used_nonces",
    "users",
]

metadata = MetaData()

#: The largest value of an `Integer` column (32 bits on PostgreSQL): an id compared with a
#: larger one is a database error there, not an empty answer.
INTEGER_MAX = 2**31 - 1

agents = Table(
    "agents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("environment", String(10), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("enforcement_level", String(20), nullable=False),
    Column("sdk_default", String(20), nullable=False),
    Column("rate_limit_per_minute", Integer, nullable=True),
    Column("proxy_port", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # what the name shows as (agentnames.name_key); NULL: a live twin an earlier version
    # stored beside an older agent of the key (0016)
    Column("name_key", String(64), nullable=True),
    # when it was last closed (suspended, removed, activated after a suspension), for
    # information: nothing decides on it, the epoch below decides (0019)
    Column("closed_before", Float, nullable=True),
    # how many times it was closed: an action decided under an earlier epoch never starts
    # (routes/execute.py); 0: never closed (0021)
    Column("closed_epoch", Integer, nullable=False, server_default="0"),
)
# one live agent per name: a revoked agent keeps its row, a new agent may take its name (0011)
Index(
    "uq_agents_live_name",
    agents.c.name,
    unique=True,
    sqlite_where=agents.c.status != "revoked",
    postgresql_where=agents.c.status != "revoked",
)
# one live agent per name as it shows: `Bot` with a Cyrillic o never beside `Bot` (0016)
Index(
    "uq_agents_live_name_key",
    agents.c.name_key,
    unique=True,
    sqlite_where=agents.c.status != "revoked",
    postgresql_where=agents.c.status != "revoked",
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", String(40), ForeignKey("agents.id"), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(12), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    # a `tf run` key's lease: refused from then on unless renewed (NULL: no lease; 0018)
    Column("expires_at", Float, nullable=True),
)

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(10), nullable=False),
    Column("created_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("prefix", String(12), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("user_id", String(40), nullable=True),
    Column("role", String(10), nullable=True),
    Column("name", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)

connectors = Table(
    "connectors",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("type", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("domains", Text, nullable=False),
    Column("base_url", Text, nullable=True),
    Column("auth_type", String(20), nullable=False),
    Column("auth_header", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("options", Text, nullable=True),
)

credentials = Table(
    "credentials",
    metadata,
    Column("owner", String(120), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

permissions = Table(
    "permissions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agent", String(200), nullable=False),
    Column("connector", String(80), nullable=False),
    Column("action_pattern", String(300), nullable=False),
    Column("decision", String(20), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("agent", "connector", "action_pattern", name="uq_permission"),
)

policies = Table(
    "policies",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("enabled", Boolean, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("document", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("policy_id", String(40), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("document", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(320), nullable=False),
)

action_requests = Table(
    "action_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agent_id", String(40), nullable=False),
    Column("agent", String(200), nullable=False),
    Column("action_type", String(600), nullable=False),
    Column("action_spec", Text, nullable=False),
    Column("action_hash", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("decision", Text, nullable=False),
    Column("risk_score", Float, nullable=False),
    Column("idempotency_key", String(200), nullable=True),
    Column("approval_id", String(40), nullable=True),
    Column("response", Text, nullable=True),
    Column("execution", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # NULL until claimed; executing -> executed | failed (routes/execute.py: at most once)
    Column("execution_state", String(20), nullable=True),
    # the replayable decision input (agentfirewall.policy.record), JSON; NULL past retention
    Column("decision_input", Text, nullable=True),
    # the shadow configuration's verdict, when one was installed (agentfirewall_server.shadow)
    Column("shadow_decision", String(20), nullable=True),
    Column("shadow_rule", String(300), nullable=True),
    Column("shadow_diverged", Boolean, nullable=True),
    # the agent's closed_epoch the SDK action was decided under (the deciding replica's
    # snapshot): the execute claim refuses it once the agent's epoch differs, and always
    # when NULL (a row written without it); an earlier version's rows get 0 (0021)
    Column("agent_epoch", Integer, nullable=True, server_default="0"),
    UniqueConstraint("agent_id", "idempotency_key", name="uq_idempotency"),
)
Index("ix_action_requests_created_at", action_requests.c.created_at)
# the few actions still executing, oldest first (routes/stuck.py); migration 0009
Index(
    "ix_action_requests_executing",
    action_requests.c.updated_at,
    sqlite_where=action_requests.c.execution_state == "executing",
    postgresql_where=action_requests.c.execution_state == "executing",
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("status", String(20), nullable=False, index=True),
    Column("agent", String(200), nullable=False),
    Column("connector", String(80), nullable=True),
    Column("action_request_id", String(40), nullable=True),
    Column("source", String(10), nullable=False),
    Column("action_spec", Text, nullable=False),
    Column("action_hash", String(64), nullable=False),
    Column("risk_score", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("request", Text, nullable=True),
    Column("required_approver_roles", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_at", Float, nullable=True),
    Column("decided_by", String(320), nullable=True),
    Column("note", Text, nullable=True),
    Column("used", Boolean, nullable=False, default=False),
    Column("slack_channel", String(80), nullable=True),
    Column("slack_ts", String(80), nullable=True),
    #: who may post its Slack message now (``notify/claims.py``): a server's id, with the
    #: time of its last try, ``refused:<settings>``, or NULL (the next sweep does) (0023)
    Column("slack_claim", String(80), nullable=True),
    Column("slack_claimed_at", Float, nullable=True),
)

used_nonces = Table(
    "used_nonces",
    metadata,
    Column("jti", String(100), primary_key=True),
    Column("action_request_id", String(40), nullable=False),
    Column("used_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

traffic = Table(
    "traffic",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(100), nullable=False),
    Column("agent", String(200), nullable=True),
    # the agent's id (agents.id), as the gateway resolved its key: the name alone may be a
    # removed agent's and a new one's (0015); NULL when no agent was found for the record
    Column("agent_id", String(40), nullable=True),
    Column("connector", String(80), nullable=True),
    Column("action", String(600), nullable=True),
    Column("method", String(16), nullable=True),
    Column("host", String(300), nullable=True),
    Column("path", Text, nullable=True),
    Column("decision", String(20), nullable=True),
    Column("would_outcome", String(20), nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("bytes_in", Integer, nullable=True),
    Column("bytes_out", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", Float, nullable=False, index=True),
    # the replayable decision input (agentfirewall.policy.record), JSON; NULL past retention
    Column("decision_input", Text, nullable=True),
    # the shadow configuration's verdict, when one was installed (agentfirewall_server.shadow)
    Column("shadow_decision", String(20), nullable=True),
    Column("shadow_rule", String(300), nullable=True),
    Column("shadow_diverged", Boolean, nullable=True),
)
#: A record is stored once however often its gateway resends it (routes/gateway.py: a batch
#: whose answer was lost is sent again): its request id and the time it was made name it.
Index("uq_traffic_record", traffic.c.request_id, traffic.c.created_at, unique=True)

#: Shadow policies (agentfirewall_server.shadow): evaluated beside the live ones, never
#: enforced; one replaces the live policy of its name. Promoting makes them live.
shadow_policies = Table(
    "shadow_policies",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("document", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(320), nullable=False),
)

#: The shadow permission set: when it has rows, it replaces every live access rule in the
#: shadow configuration.
shadow_permissions = Table(
    "shadow_permissions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agent", String(200), nullable=False),
    Column("connector", String(80), nullable=False),
    Column("action_pattern", String(300), nullable=False),
    Column("decision", String(20), nullable=False),
    Column("created_at", Float, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("event_type", String(60), nullable=False),
    Column("actor", String(320), nullable=False),
    Column("agent", String(200), nullable=True),
    Column("subject", String(200), nullable=True),
    Column("data", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_type_time", audit_events.c.event_type, audit_events.c.created_at)

# signed chain heads (checkpoints.py); also kept in a file and anchored outside the database
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("kid", String(100), nullable=False),
    Column("reason", String(20), nullable=False),
    Column("token", Text, nullable=False),
)

kill_switches = Table(
    "kill_switches",
    metadata,
    Column("scope", String(20), primary_key=True),
    Column("target", String(200), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("activated_by", String(320), nullable=False),
    Column("activated_at", Float, nullable=False),
)

settings_table = Table(
    "settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

gateways = Table(
    "gateways",
    metadata,
    Column("id", String(120), primary_key=True),
    Column("info", Text, nullable=False),
    Column("last_heartbeat", Float, nullable=False),
)

#: Token buckets of the shared rate limit (PostgreSQL only; UNLOGGED there): ratelimit.py
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("stamp", Float, nullable=False),
    Column("allowed", Boolean, nullable=False),
)
# budgets (budgets.py): the definition is configuration (in the snapshot); usage rows are
# reservations, settled or released, summed over the budget's window
budgets = Table(
    "budgets",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("definition", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

budget_usage = Table(
    "budget_usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("budget_id", String(40), nullable=False),
    Column("reservation", String(40), nullable=False, index=True),
    Column("agent", String(200), nullable=False),
    Column("amount", Float, nullable=False),
    # reserved -> settled | released
    Column("state", String(10), nullable=False),
    Column("request_id", String(100), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("settled_at", Float, nullable=True),
)
Index("ix_budget_usage_window", budget_usage.c.budget_id, budget_usage.c.created_at)

# grants (grants.py): an approval widened to the same action, constrained and bounded
grants = Table(
    "grants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("approval_id", String(40), nullable=True),
    Column("agent", String(200), nullable=False),
    Column("connector", String(80), nullable=True),
    Column("action_type", String(600), nullable=False),
    Column("constraints", Text, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("max_uses", Integer, nullable=True),
    Column("uses", Integer, nullable=False, default=0),
    Column("created_by", String(320), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("revoked_by", String(320), nullable=True),
    #: the role of who made it: it covers only what that role could approve (0014)
    Column("approver_role", String(20), nullable=True),
    #: the host of the request it was made on: it covers only that host (None: any) (0014)
    Column("host", String(300), nullable=True),
    #: who made it (None: a token of no user) and how: "session", "token" or "slack"; it
    #: stands while they hold `approver_role` that way (grants.lapsed; None: no one) (0020)
    Column("maker_user_id", String(40), nullable=True),
    Column("made_via", String(10), nullable=True),
    #: the exact credential it was made with: the API token's row (`tokens.token_hash`)
    #: for "token", the Slack member id for "slack"; it stands while that one does (0022)
    Column("maker_token_id", String(64), nullable=True),
    Column("maker_slack_member", String(40), nullable=True),
)
Index("ix_grants_agent_action", grants.c.agent, grants.c.action_type)

# refresh leases (refreshleases.py): one process at a time refreshes a connector's rotating
# OAuth2 grant; the row lives until the rotation is stored, the lease released or expired
refresh_leases = Table(
    "refresh_leases",
    metadata,
    Column("connector_id", String(120), primary_key=True),
    Column("lease", String(40), nullable=False),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),
)
