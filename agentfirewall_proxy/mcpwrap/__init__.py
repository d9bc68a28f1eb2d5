"""`tf mcp wrap`: a local stdio MCP server governed like the gateway governs HTTP.

The modules, each with one concern:

- ``framing``   newline-delimited JSON-RPC over pipes, with a message size limit
- ``messages``  JSON-RPC building blocks: ids, errors, progress, tools/list filtering
- ``gate``      naming (the mcp connector's functions) and deciding (the gateway's engine,
                kill switches and enforcement levels) one client message
- ``binding``   what an approval of a held message binds
- ``follower``  the config long poll, each config applied, the ``--max-config-age`` watch
- ``relay``     the session: the child process, both directions, holds, kill switch, death
- ``clients``   Claude Desktop / Cursor / VS Code config files (`tf mcp install`)
"""
