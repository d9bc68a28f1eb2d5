"""Only a page's script sends its forms: before the script has run (a slow link) or when it
failed, the browser itself sends no field, and never one in a URL (address bar, history, a
proxy's access log). Every form is `method="post"` (sent anyway, it is a POST the page's
route refuses, 405); a form with a password or a credential keeps its fields in a disabled
`<fieldset class="until-ready">` its page's script enables once it handles the form."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import agentfirewall_server.dashboard as dashboard

TEMPLATES = Path(dashboard.__file__).parent / "templates"
SECRET = "correct-horse-battery-staple"
#: The forms with a password or a credential field: (page, form id).
SECRET_FORMS = [
    ("/login", "login-form"),
    ("/setup?token=tfs_example", "setup-form"),
    ("/settings", "integrations-form"),
    ("/settings", "user-form"),
    ("/connectors", "connector-form"),
]


class _Forms(HTMLParser):
    """Each form of a template: its attributes and its controls, each with whether a
    disabled `until-ready` fieldset holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[dict[str, str | None], list[tuple[dict[str, str | None], bool]]]]
        self.forms = []
        self.inside = False
        self.fieldsets: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.forms.append((found, []))
            self.inside = True
        elif tag == "fieldset":
            self.fieldsets.append(found)
        elif tag in ("input", "select", "textarea", "button") and self.inside:
            held = any("disabled" in f and f.get("class") == "until-ready" for f in self.fieldsets)
            self.forms[-1][1].append((found, held))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "fieldset":
            self.fieldsets.pop()


def _forms() -> Iterator[
    tuple[str, dict[str, str | None], list[tuple[dict[str, str | None], bool]]]
]:
    for template in sorted(TEMPLATES.glob("*.html")):
        parser = _Forms()
        parser.feed(template.read_text())
        for attrs, controls in parser.forms:
            yield template.name, attrs, controls


def test_every_form_is_posted_never_sent_in_a_url() -> None:
    forms = list(_forms())
    assert len(forms) > 10
    for template, attrs, _ in forms:
        assert attrs.get("method") in ("post", "dialog"), (template, attrs)


def test_a_form_with_a_secret_is_disabled_until_its_script_handles_it() -> None:
    """Every control of a form with a password field (a person's, a connector's credential,
    a Slack token) is in a disabled `until-ready` fieldset; these are `SECRET_FORMS`."""
    secret = set()
    for template, attrs, controls in _forms():
        if any(control.get("type") == "password" for control, _ in controls):
            secret.add(attrs["id"])
            assert all(held for _, held in controls), (template, attrs["id"])
    assert secret == {form for _, form in SECRET_FORMS}


def _api(route: Any) -> None:
    """An API that signs the owner in and answers nothing else: a signed-in page stays (its
    script would leave for the sign-in page on a 401)."""
    if route.request.url.endswith("/auth/me"):
        route.fulfill(json={"user": {"id": "u1", "email": "o@example.com", "role": "owner"},
                            "csrf_token": "x"})  # fmt: skip
    else:
        route.fulfill(status=503, json={"error": "unavailable", "message": "not in this test"})


@pytest.mark.browser
@pytest.mark.parametrize(("path", "form"), SECRET_FORMS, ids=[f for _, f in SECRET_FORMS])
def test_before_its_script_a_form_sends_no_field(
    browser: Any, shell_url: str, path: str, form: str
) -> None:
    """Scripts refused: the fields are disabled; submitted anyway, with a secret in every
    field, the form is a POST that carries no field, and the page's route refuses it. Once
    the page's script runs, the fields are enabled."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.route("**/api/v1/**", _api)
        page.route("**/static/js/**", lambda route: route.abort())
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        page.goto(f"{shell_url}{path}")
        fields = f"#{form} input:not([type=checkbox]), #{form} textarea"
        assert page.locator(fields).count() >= 1
        assert page.eval_on_selector_all(
            fields, "(all) => all.every((f) => f.matches(':disabled'))"
        )
        page.eval_on_selector_all(
            fields, "(all, secret) => all.forEach((f) => f.value = secret)", SECRET
        )
        with page.expect_navigation() as sent:
            page.eval_on_selector(f"#{form}", "(f) => f.requestSubmit()")
        assert sent.value.request.method == "POST"
        assert sent.value.status == 405
        assert sent.value.request.post_data in (None, "")
        assert not [url for url in urls if SECRET in url]

        page.unroute("**/static/js/**")
        page.goto(f"{shell_url}{path}")
        page.wait_for_function(f"!document.querySelector('#{form} fieldset').disabled")
    finally:
        context.close()
