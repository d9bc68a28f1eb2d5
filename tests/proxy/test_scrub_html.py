"""The gateway's scrubber for a configured ``Basic`` credential finds its password in an
upstream's HTML error page, its ``&"'<>`` written as character references, through the
body path a response takes (decoded, then scrubbed read by read). The forms themselves:
``tests/core/test_scrubbing_forms.py``."""

from __future__ import annotations

import base64
import gzip
import html

from agentfirewall_proxy.scrub import ScrubbedBody, body_decoder
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.proxy.support import connector, snapshot

PASSWORD = "s3cr&t\"pa<ss>'word"


def test_a_password_an_error_page_echoes_html_escaped_never_reaches_the_agent() -> None:
    basic = base64.b64encode(f"deploy:{PASSWORD}".encode()).decode()
    entry = connector(
        "generic", domains=["git.example"], auth_type="header", credential=f"Basic {basic}"
    )
    scrubber = compile_snapshot(snapshot(connectors=[entry])).connectors["conn_generic_1"].scrubber
    assert scrubber is not None
    page = f"<html><body><h1>401</h1><p>Bad credentials: {html.escape(PASSWORD)}</p></body></html>"
    _, decoder = body_decoder([(b"Content-Encoding", b"gzip")])
    body = ScrubbedBody(scrubber.stream(), decoder)
    packed = gzip.compress(page.encode())
    out = b"".join(body.feed(packed[at : at + 7]) for at in range(0, len(packed), 7))
    out += body.finish()
    assert (len(out), body.count) == (len(page), 1)
    assert PASSWORD not in html.unescape(out.decode())
    assert b"Bad credentials: [REDACTED by TameFlare]" in out
