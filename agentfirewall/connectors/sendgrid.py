"""SendGrid v3 API (api.sendgrid.com): ``POST /v3/mail/send`` is ``email.send``.

The action type is the seed's ``email.send`` (CrewAI example, provider ``sendgrid``).
Recipients (``to``: every ``to``, ``cc`` and ``bcc`` address of every personalization,
one address as a string, several as a list), ``subject`` and ``from`` (each
personalization's own, which SendGrid sends instead of the message's, else the message's;
several different ones as a list) become parameters and the recipients the resource
target; a body past 256 KiB is refused, since a recipient could hide past it. An
attachment's ``content`` (base64) is scanned decoded by content rules
(``body.attachments.0.content(base64)``) and redacted inside, re-encoded. Building
``email.send`` takes the seed's parameters ``to`` (one address or a list), ``subject``,
``body`` and ``from``.
"""

from __future__ import annotations

import json

from pydantic import JsonValue

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.connectors.routes import Route
from agentfirewall.connectors.table import Fields, RouteConnector
from agentfirewall.errors import ConnectorError

__all__ = ["CONNECTOR"]

_ROUTES = (
    Route(
        "POST",
        "/v3/mail/send",
        "email.send",
        "medium",
        "Send an email",
        ("from",),
        target="{to}",
        encoded=("attachments.*.content",),
    ),
    Route("GET", "/v3/templates", "sendgrid.template.list", "low", "List templates"),
    Route("GET", "/v3/templates/{template_id}", "sendgrid.template.get", "low", "Get a template"),
    Route("GET", "/v3/user/profile", "sendgrid.user.get", "low", "Get the user profile"),
)


class SendGridConnector(RouteConnector):
    """Route table plus the nested recipient extraction of ``mail/send``."""

    def body_parameters(self, route: Route, body: Fields) -> dict[str, JsonValue]:
        """Every recipient, and each message's sender and subject as SendGrid sends it: a
        personalization's own ``from`` and ``subject`` override the message's (several
        different ones: a list, so a condition on one value does not pass them all)."""
        if route.action != "email.send":
            return {}
        recipients: list[JsonValue] = []
        senders: list[JsonValue] = []
        subjects: list[JsonValue] = []
        personalizations = body.get("personalizations")
        for item in personalizations if isinstance(personalizations, list) else ():
            if not isinstance(item, dict):
                continue
            for kind in ("to", "cc", "bcc"):
                for person in item.get(kind) or ():
                    if (email := _email(person)) is not None:
                        recipients.append(email)
            sender = _email(item["from"]) if "from" in item else _email(body.get("from"))
            subject = item["subject"] if "subject" in item else body.get("subject")
            senders.append(sender)
            subjects.append(subject if isinstance(subject, str) else None)
        if not senders:  # (no personalization: SendGrid refuses it; named from the message)
            subject = body.get("subject")
            senders = [_email(body.get("from"))]
            subjects = [subject if isinstance(subject, str) else None]
        params: dict[str, JsonValue] = {}
        if recipients:
            params["to"] = recipients[0] if len(recipients) == 1 else recipients
        for name, values in (("from", senders), ("subject", subjects)):
            distinct: list[JsonValue] = list(dict.fromkeys(v for v in values if isinstance(v, str)))
            if distinct:
                params[name] = distinct[0] if len(distinct) == 1 else distinct
        return params

    def build_request(self, spec: ActionSpec, *, base_url: str | None = None) -> HttpRequest:
        if spec.type != "email.send":
            return super().build_request(spec, base_url=base_url)
        params = spec.parameters
        to = params.get("to", spec.resource.target)
        addresses = to if isinstance(to, list) else [to]
        for name, value in (
            ("to", to),
            ("from", params.get("from")),
            ("subject", params.get("subject")),
        ):
            if not value:
                hint = " (or set the connector's `from` option)" if name == "from" else ""
                raise ConnectorError(
                    f"missing parameter `{name}` for `email.send`{hint}", connector=self.name
                )
        payload = {
            "personalizations": [{"to": [{"email": str(a)} for a in addresses]}],
            "from": {"email": params["from"]},
            "subject": params["subject"],
            "content": [{"type": "text/plain", "value": str(params.get("body") or "")}],
        }
        base = (base_url or self.base_url or "").rstrip("/")
        return HttpRequest.from_url(
            "POST",
            base + "/v3/mail/send",
            headers=(("Content-Type", "application/json"),),
            body=json.dumps(payload, separators=(",", ":")).encode(),
        )


def _email(person: object) -> str | None:
    """The address of ``{"email": ...}``, else None."""
    if isinstance(person, dict) and isinstance(person.get("email"), str):
        return str(person["email"])
    return None


CONNECTOR = SendGridConnector(
    name="sendgrid",
    description="SendGrid v3 API",
    routes=_ROUTES,
    default_domains=("api.sendgrid.com",),
    base_url="https://api.sendgrid.com",
    body_limit=256 * 1024,
    truncated="error",
)
CONNECTOR.notes = __doc__ or ""
#: Which subuser sends: bound to an approval.
CONNECTOR.bound_headers = ("on-behalf-of",)
