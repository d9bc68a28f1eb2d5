"""`tf mcp wrap`: a local stdio MCP server governed like the gateway governs HTTP.

The modules, each with one concern:

- ``framing``     newline-delimited JSON-RPC over pipes, with a message size limit
- ``messages``    JSON-RPC building blocks: ids, errors, progress, tools/list filtering
- ``gate``        naming (the mcp connector's functions) and deciding (the gateway's engine,
                  kill switches and enforcement levels) one client message
- ``binding``     what an approval of a held message binds
- ``session``     what the parts of a session reach it for (a Protocol: none imports the relay)
- ``pending``     the unanswered client requests by id: forwarded, held, cut off
- ``child``       the wrapped server's process: its stdin, and its end
- ``follower``    the config long poll, each config applied, the ``--max-config-age`` watch
- ``holding``     held messages: approval recorded, progress sent, forwarded or refused
- ``contentguard`` content guardrails: client messages scanned (``content.*``) and
                  redacted, server messages checked by the response rules (cut, redacted)
- ``from_client`` client to server: each message read, named, decided, budgets counted
- ``from_server`` server to client: scrubbed, answers matched, tools/list filtered, stderr
- ``relay``       the session: its parts composed and run; forwarding, refusing, its end
                  (EOF, the server's exit, a kill switch, a cut)
- ``clients``     Claude Desktop / Cursor / VS Code config files (`tf mcp install`)
"""
