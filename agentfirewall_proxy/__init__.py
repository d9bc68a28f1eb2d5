"""TameFlare gateway proxy (data plane) and the `tf` CLI.

How the parts fit, bottom-up (a module imports only from its own line or the lines below;
``.importlinter`` checks it, ``tests/test_layers.py`` finds any import circle)::

    entry points  __main__, cli (with isolate), demo, up, main
    composition   gateway: state, listeners, config follower, control-plane client,
                  wires in agentports (per-agent listeners) and the approval watcher;
                  mcpwrap beside it (the MCP front end on the same decisions)
    connection    connection: one client socket served request after request, CONNECT,
                  TLS interception, blind tunnels, keep-alive, resuming a parked request
    exchange      exchange -> respond -> guarded: one request and its response (I/O)
    services      services.Services: the gateway as the layers below see it (a Protocol)
    I/O leaves    approvals (holds and their watcher) -> parking -> client (the client
                  socket and its parser); injection -> upstream (outbound connections);
                  hooks (addons on the request path); metering (the LLM usage a budget
                  settles from, read on or estimated)
    decisions     pipeline: pure functions over a parsed request, no sockets
    config        snapshot (the compiled config) -> budgets; traffic, tracing, guard, relay,
                  codings (the request body's Content-Encoding, decoded or refused)
    control       control (the control-plane client) -> approvalbatch, configfile (a
                  --config-file's shape); flow -> entries
                  (the data one request carries: Flow, Refusal, Tunnel, agent/connector)
    leaves        http1 (sans-IO HTTP/1.1), scrub, wsframes, options, llmusage,
                  certs, runenv, tracecontext, budgetlease, deadline (one read timer
                  per connection) -> feedreader (a StreamReader with a one-frame read),
                  freshlook (one shared, rate-limited config fetch for a key not known yet),
                  eventscan (content rules over an event stream, event by event:
                  eventwire cuts its bytes into events, eventreadings reads each event's
                  data as each consumer does; eventredact redacts them),
                  contact (the --max-config-age watch of the control plane)

Where a lower layer must name an upper one it takes a small Protocol instead:
``services.Services`` (the gateway, for the exchange and the connection),
``agentports.PortsHost`` (the gateway, for the per-agent listeners), ``flow.Spans`` (a
flow's spans, for everything below ``tracing``).
"""
