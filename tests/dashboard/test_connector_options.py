"""Connector options on the Connectors page, in a real browser against a live server: shown on
each connector, set when adding, edited in place by admins; credentials never shown."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.browser

SECRET = "SG.sendgrid-secret-key-0123456789"


def sendgrid(dash: Dashboard, sender: str = "alerts@acme.com") -> dict[str, Any]:
    body = {"type": "sendgrid", "token": SECRET, "options": {"from": sender}}
    created: dict[str, Any] = dash.api("POST", "/connectors", body)
    return created


def record(dash: Dashboard, cid: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in dash.api("GET", "/connectors")["connectors"] if c["id"] == cid
    )
    return found


def test_admin_edits_options_in_place_and_sees_the_servers_refusal(dash: Dashboard) -> None:
    cid = sendgrid(dash)["id"]
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/connectors")
    card = page.locator(f"article.connector[data-connector='{cid}']")
    expect(card.locator(".connector-options")).to_have_text("from = alerts@acme.com")
    editor = card.locator("form.options-editor")
    expect(editor).to_be_hidden()
    toggle = card.get_by_role("button", name=f"Edit options of {cid}")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    field = editor.get_by_label("Option from")
    expect(field).to_have_value("alerts@acme.com")
    expect(field).to_be_focused()
    assert editor.locator("input[type=password]").count() == 0  # credentials are write-only

    field.fill("not-an-email")
    editor.get_by_role("button", name="Save options").click()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(editor.locator(".error")).to_contain_text("must be an email address")
    expect(page.locator("#notice")).to_contain_text("must be an email address")
    assert record(dash, cid)["options"] == {"from": "alerts@acme.com"}
    dash.screenshot(page, "connector-options-invalid-1280")

    field.fill("ops@acme.com")
    editor.get_by_role("button", name="Save options").click()
    expect(card.locator(".connector-options")).to_have_text("from = ops@acme.com")
    expect(editor).to_be_hidden()
    saved = record(dash, cid)
    assert (saved["options"], saved["has_credential"]) == ({"from": "ops@acme.com"}, True)

    toggle.click()
    editor.get_by_label("Option from").fill("")
    editor.get_by_role("button", name="Save options").click()
    expect(card.locator(".connector-options")).to_have_text("none")
    assert record(dash, cid)["options"] == {}
    assert SECRET not in page.content()
    events = dash.api("GET", "/audit?event_type=connector.updated")["events"]
    assert len(events) == 2
    watched.assert_clean("422")


def test_add_form_takes_the_options_of_the_selected_type(dash: Dashboard) -> None:
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/connectors")
    form = page.locator("#connector-form")
    form.get_by_label("Type", exact=True).select_option("github")
    expect(form.locator("input[data-option]")).to_have_count(0)
    form.get_by_label("Type", exact=True).select_option("sendgrid")
    sender = form.get_by_label("Option from")
    expect(sender).to_be_visible()
    expect(form).to_contain_text("sender address")
    form.get_by_label("Credential (write-only)").fill(SECRET)
    sender.fill("nobody")
    form.get_by_role("button", name="Add connector").click()
    expect(sender).to_have_attribute("aria-invalid", "true")
    assert dash.api("GET", "/connectors")["connectors"] == []
    expect(form.get_by_label("Credential (write-only)")).to_have_value("")  # never kept

    form.get_by_label("Credential (write-only)").fill(SECRET)
    sender.fill("billing@acme.com")
    form.get_by_role("button", name="Add connector").click()
    card = page.locator("article.connector", has_text="sendgrid")
    expect(card.locator(".connector-options")).to_have_text("from = billing@acme.com")
    (created,) = dash.api("GET", "/connectors")["connectors"]
    assert (created["options"], created["has_credential"]) == ({"from": "billing@acme.com"}, True)
    assert SECRET not in json.dumps(created)
    assert SECRET not in page.content()
    catalogue = page.locator("#catalogue details", has_text="sendgrid")
    catalogue.locator("summary").click()
    expect(catalogue).to_contain_text("Options: from — sender address")
    dash.screenshot(page, "connector-options-added-1280")
    watched.assert_clean("422")


def test_an_open_editor_survives_a_live_refresh(dash: Dashboard) -> None:
    cid = sendgrid(dash)["id"]
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/connectors")
    card = page.locator(f"article.connector[data-connector='{cid}']")
    card.get_by_role("button", name=f"Edit options of {cid}").click()
    card.get_by_label("Option from").fill("draft@acme.com")
    dash.api("POST", "/connectors", {"type": "github", "token": "ghp_other"})  # a config event
    page.locator("article.connector", has_text="github").wait_for()
    expect(card.locator("form.options-editor")).to_be_visible()
    expect(card.get_by_label("Option from")).to_have_value("draft@acme.com")
    card.get_by_role("button", name="Cancel").click()
    expect(card.locator("form.options-editor")).to_be_hidden()
    assert record(dash, cid)["options"] == {"from": "alerts@acme.com"}
    watched.assert_clean()


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_below_admin_options_are_shown_not_editable(dash: Dashboard, role: str) -> None:
    cid = sendgrid(dash)["id"]
    watched = dash.open(role)
    page = watched.page
    dash.goto(page, "/connectors")
    card = page.locator(f"article.connector[data-connector='{cid}']")
    expect(card.locator(".connector-options")).to_have_text("from = alerts@acme.com")
    assert card.get_by_role("button", name=f"Edit options of {cid}").count() == 0
    assert card.locator("form.options-editor").count() == 0
    assert SECRET not in page.content()
    watched.assert_clean()
