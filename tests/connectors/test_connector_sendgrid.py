"""SendGrid connector: email.send with recipients and subject."""

from __future__ import annotations

import json

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector

SG = get_connector("sendgrid")
URL = "https://api.sendgrid.com"

MAIL = {
    "personalizations": [{"to": [{"email": "a@x.com"}], "cc": [{"email": "c@y.com"}]}],
    "from": {"email": "bot@acme.com"},
    "subject": "Status",
    "content": [{"type": "text/plain", "value": "hi"}],
}


@pytest.mark.parametrize(
    ("method", "path", "body", "action", "risk", "params"),
    [
        (
            "POST",
            "/v3/mail/send",
            MAIL,
            "email.send",
            "medium",
            {"to": ["a@x.com", "c@y.com"], "subject": "Status", "from": "bot@acme.com"},
        ),
        (
            "POST",
            "/v3/mail/send",
            {"personalizations": [{"to": [{"email": "a@x.com"}], "subject": "Per"}]},
            "email.send",
            "medium",
            {"to": "a@x.com", "subject": "Per"},
        ),
        ("GET", "/v3/templates", None, "sendgrid.template.list", "low", {}),
        ("GET", "/v3/templates/t1", None, "sendgrid.template.get", "low", {"template_id": "t1"}),
        ("GET", "/v3/user/profile", None, "sendgrid.user.get", "low", {}),
    ],
)
def test_sendgrid_row(
    method: str, path: str, body: object, action: str, risk: str, params: dict[str, object]
) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    parsed = SG.parse(HttpRequest.from_url(method, URL + path, body=data))
    assert (parsed.action_type, parsed.risk, parsed.spec.parameters) == (action, risk, params)
    assert parsed.spec.resource.provider == "sendgrid"


def test_recipients_are_the_target() -> None:
    parsed = SG.parse(
        HttpRequest.from_url("POST", URL + "/v3/mail/send", body=json.dumps(MAIL).encode())
    )
    assert parsed.spec.resource.target == "a@x.com,c@y.com"


def test_truncated_mail_is_refused() -> None:
    prefix = json.dumps(MAIL).encode()[:40]
    with pytest.raises(ConnectorError, match="larger than"):
        SG.parse(
            HttpRequest.from_url("POST", URL + "/v3/mail/send", body=prefix, body_complete=False)
        )


def test_build_seed_crewai_email() -> None:
    spec = parse_action_spec(
        {
            "type": "email.send",
            "resource": {
                "provider": "sendgrid",
                "account": "main",
                "target": "a@x.com",
                "environment": "production",
            },
            "parameters": {"to": "a@x.com", "subject": "S", "body": "B", "from": "bot@acme.com"},
            "risk_hints": {"external_recipient": True},
        }
    )
    built = SG.build_request(spec)
    assert (built.method, built.url) == ("POST", "https://api.sendgrid.com/v3/mail/send")
    again = SG.parse(built)
    assert again.action_type == "email.send"
    assert again.spec.parameters == {"to": "a@x.com", "subject": "S", "from": "bot@acme.com"}


def test_build_names_the_missing_parameter() -> None:
    spec = parse_action_spec(
        {"type": "email.send", "parameters": {"to": "a@x.com", "subject": "S"}}
    )
    with pytest.raises(ConnectorError, match="missing parameter `from`"):
        SG.build_request(spec)


def test_a_personalizations_sender_and_subject_are_named() -> None:
    """SendGrid sends each personalization with its own ``from`` and ``subject`` when it
    has them: 0.1.0 named the message's (`noreply@`, `Newsletter`), so a rule on
    ``parameters.from`` passed a mail sent as `ceo@` with another subject."""
    body = {
        "personalizations": [
            {"to": [{"email": "victim@ext.example"}], "from": {"email": "ceo@corp.example"},
             "subject": "Urgent wire transfer"},
            {"to": [{"email": "team@corp.example"}]},
        ],
        "from": {"email": "noreply@corp.example"},
        "subject": "Newsletter",
        "content": [{"type": "text/plain", "value": "x"}],
    }  # fmt: skip
    request = HttpRequest.from_url("POST", "https://api.sendgrid.com/v3/mail/send",
                                   body=json.dumps(body).encode())  # fmt: skip
    params = get_connector("sendgrid").parse(request).spec.parameters
    assert params["from"] == ["ceo@corp.example", "noreply@corp.example"]
    assert params["subject"] == ["Urgent wire transfer", "Newsletter"]
    body["personalizations"] = body["personalizations"][:1]  # type: ignore[index]
    request = HttpRequest.from_url("POST", "https://api.sendgrid.com/v3/mail/send",
                                   body=json.dumps(body).encode())  # fmt: skip
    params = get_connector("sendgrid").parse(request).spec.parameters
    assert (params["from"], params["subject"]) == ("ceo@corp.example", "Urgent wire transfer")
