"""`tf run --isolate`: the agent in network, mount and PID namespaces of its own whose only
way out is the gateway (and the control plane on this machine).

Modules: :mod:`.kernel` (the Linux calls), :mod:`.sandbox` (the helper process and the
agent's PID 1), :mod:`.bridge` (`tf run`'s relay and packet counter), :mod:`.packets` (which
frames are a refused direct connection), :mod:`.report` (stderr and `tf logs`),
:mod:`.run` (the CLI glue and `tf doctor --isolate`).
"""
