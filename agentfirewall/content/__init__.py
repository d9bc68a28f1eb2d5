"""Content guardrails: detectors for secrets, personal data and prompt injections.

Pure (standard library only): the gateway scans requests and responses with a
:class:`Scanner` built once, and policies read what fired through the fields
``content.secrets``, ``content.pii``, ``response.secrets`` and ``response.injection``
(``agentfirewall.policy.fields``). See docs/policies.md.
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
    "content_attributes",
    "default_scanner",
    "describe",
    "marker",
    "redact_body",
    "redact_text",
    "redact_value",
    "request_pieces",
    "scan_pieces",
    "value_pieces",
]
