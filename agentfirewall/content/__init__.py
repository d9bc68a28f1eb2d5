"""Content guardrails: detectors for secrets, personal data and prompt injections.

Pure (standard library only): the gateway scans requests and responses with a
:class:`Scanner` built once, and policies read what fired through the fields
``content.secrets``, ``content.pii``, ``response.secrets`` and ``response.injection``
(``agentfirewall.policy.fields``). See docs/policies.md. What an approver is shown of a held
request, every credential masked: ``shown.py``. Fields a connector names as carrying text
base64-encoded (a file written or read through GitHub's contents API) are decoded and
scanned too, and redacted inside: ``encoded.py``. A body is read as its reader reads it, in
the charset it names and a multipart's parts one by one: ``bodies.py``. Whether a text
streamed piece by piece may end in the beginning of a secret the next piece completes (the
gateway holds such an event back): ``unfinished.py``.
"""

from __future__ import annotations

from agentfirewall.content.bodies import body_pieces
from agentfirewall.content.detectors import DETECTORS, PII, SECRETS, Detector
from agentfirewall.content.encoded import (
    decoded_pieces,
    encoded_body_pieces,
    redact_encoded,
    redact_encoded_value,
)
from agentfirewall.content.injection import INJECTION, INJECTION_VERSION
from agentfirewall.content.locate import (
    Finding,
    content_attributes,
    describe,
    marker,
    redact_body,
    redact_text,
    redact_value,
    request_pieces,
    scan_pieces,
    value_pieces,
)
from agentfirewall.content.scanner import Hit, Scanner, default_scanner
from agentfirewall.content.shown import (
    body_preview,
    credential_name,
    masked,
    masked_field,
    masked_query,
    shown_action,
    shown_path,
    shown_target,
    shown_text,
)

__all__ = [
    "DETECTORS",
    "INJECTION",
    "INJECTION_VERSION",
    "PII",
    "SECRETS",
    "Detector",
    "Finding",
    "Hit",
    "Scanner",
    "body_pieces",
    "body_preview",
    "content_attributes",
    "credential_name",
    "decoded_pieces",
    "default_scanner",
    "describe",
    "encoded_body_pieces",
    "marker",
    "masked",
    "masked_field",
    "masked_query",
    "redact_body",
    "redact_encoded",
    "redact_encoded_value",
    "redact_text",
    "redact_value",
    "request_pieces",
    "scan_pieces",
    "shown_action",
    "shown_path",
    "shown_target",
    "shown_text",
    "value_pieces",
]
