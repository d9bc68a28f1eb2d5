"""Content guardrails: detectors for secrets, personal data and prompt injections.

Pure (standard library only): the gateway scans requests and responses with a
:class:`Scanner` built once, and policies read what fired through the fields
``content.secrets``, ``content.pii``, ``response.secrets`` and ``response.injection``
(``agentfirewall.policy.fields``). See docs/policies.md. What an approver is shown of a held
request, every credential masked: ``shown.py``.
"""

from __future__ import annotations

from agentfirewall.content.detectors import DETECTORS, PII, SECRETS, Detector
from agentfirewall.content.injection import INJECTION, INJECTION_VERSION
from agentfirewall.content.locate import (
    Finding,
    body_pieces,
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
    masked,
    masked_query,
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
    "default_scanner",
    "describe",
    "marker",
    "masked",
    "masked_query",
    "redact_body",
    "redact_text",
    "redact_value",
    "request_pieces",
    "scan_pieces",
    "shown_target",
    "shown_text",
    "value_pieces",
]
