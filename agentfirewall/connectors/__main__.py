"""``python -m agentfirewall.connectors``: print the connector catalogue (Markdown)."""

from __future__ import annotations

import sys

from agentfirewall.connectors.catalogue import render_catalogue

if __name__ == "__main__":
    sys.stdout.write(render_catalogue())
