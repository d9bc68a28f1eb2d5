"""TameFlare control plane: API, store, vault, approvals, audit, dashboard.

How the parts fit, bottom-up: a module imports only from the layers below its own, never
from above or from a sibling of its layer (`.importlinter` enforces it; docs/internals.md
draws it):

- foundation: `store` (schema, migrations, the writer thread, the audit chain's hashing),
  `settings`, `clock`, `web` (errors, JSON bodies), `hub` (in-process events), `metrics`,
  `otel`, `openapi`, `roles`, `vault` (sealing), `faults` (crash-test kill points),
  `agentnames` (the rules of an agent's name, read by `routes.agents` and
  `routes.killswitch`).
- basics: `bootstrap` (data-dir secrets), `datalock`, `signer` (decision tokens), `tracing`,
  `netguard` (where the server may connect), `budgets` (budget rules), `llmprices`,
  `shadow` (the shadow configuration: compiled with the snapshot, judging each decision),
  `pgbackup` (PostgreSQL's part of `backup`: pg_dump, pg_restore, the schema set aside).
- records and keys: `audit` (the hash-chained log), `snapshot` (the
  configuration in memory), `budgetstore` (budget reservations), `identity` (secret
  hashes), `keystore` (key files).
- domain: `grants`, `actionstore`, `replaystore`, `shadowstore`, `signin`, `coverage`,
  `checkpoints`, `vaultcheck`, and `protocols`, which names as Protocols what the parts
  below the composition may read of it (`Services`, `Notifier`); above them `approvals`
  (its publishing and expiry loop take a `Services`), `budgetleases` (gateways' budget
  slices, on `budgetstore`), `refreshleases` (one gateway or replica at a time refreshes a
  rotating OAuth2 grant) and `rotate` (key rotation).
- services the composition starts: `checkpointer`, `notify.slack`, `pgevents` (they take
  a `protocols.Services`, never `state` itself) and `ratelimit` (takes the store).
- composition: `state.AppState` builds, starts and stops everything above this line.
- per request: `auth` (who calls), `decide` (what the policy says), `executor` (run an
  action upstream), on `sdkspend` (what budgets and grants make of an SDK decision); they
  read the `AppState` of the request's app.
- handlers: `routes.*` (one API area each) and `dashboard`.
- the app: `app.create_app`; commands: `main` (`python -m agentfirewall_server`), `backup`.
"""
