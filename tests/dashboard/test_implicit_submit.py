"""No keystroke in a text field decides anything: only the decision's own button does.

A browser submits a form when Enter is pressed in one of its text fields, as if its first
submit button had been clicked ("implicit submission"). On a card holding an action for a
human that button was "Approve once": an approver who typed why they refuse in the Note
field and pressed Enter approved the action. Here every field of every form that decides
something gets Enter (and the form a submission with no button at all); nothing may be
decided, and the decision's button, clicked or pressed from the keyboard, still decides.
Each test ends on an explicit decision, then reads everything the page sent: a decision
the keystroke had set off would be there (or would have taken the card away first).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.dashboard.conftest import Dashboard, _create_people, admin_client
from tests.dashboard.scenario import HOLD_POLICY, spec
from tests.livesrv import LiveServer

if TYPE_CHECKING:
    from tests.dashboard.conftest import Watched

pytestmark = pytest.mark.browser

#: The fields of an approval card a person types in, by label (the textarea takes Enter
#: as a line break: it is typed in all the same).
CARD_FIELDS = ["Note (optional)", "For how long", "Max uses", "Only where"]


@pytest.fixture(scope="module")
def board(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """One live server (owner, member, viewer) holding transfers for a human."""
    server = LiveServer.start(tmp_path_factory.mktemp("implicit-submit") / "tf")
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    try:
        with admin_client(server.url, headers) as admin:
            _create_people(server.url, admin, server.data_dir)
            dash = Dashboard(server.url, admin, browser, server.data_dir)
            dash.api("POST", "/policies", {"document": HOLD_POLICY})
            yield dash
            for context in dash.contexts:
                context.close()
    finally:
        server.stop()


def _key(board: Dashboard, name: str) -> str:
    key: str = board.api("POST", "/agents", {"name": name, "sdk_default": "allow"})["api_key"]
    return key


def _held(board: Dashboard, key: str) -> str:
    answer = httpx.post(f"{board.url}/api/v1/actions", json={"action_spec": spec(250_000)},
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    assert answer.json()["status"] == "pending_approval", answer.text
    approval_id: str = answer.json()["approval"]["id"]
    return approval_id


def _sent(watched: Watched) -> list[tuple[str, str]]:
    """Every write the page sends from now on, as (method, path), in order."""
    sent: list[tuple[str, str]] = []

    def record(request: Any) -> None:
        if request.method != "GET" and "/api/v1/" in request.url:
            sent.append((request.method, request.url.split("/api/v1", 1)[1]))

    watched.page.on("request", record)
    return sent


@contextlib.contextmanager
def _still_there(sent: list[tuple[str, str]]) -> Iterator[None]:
    """Steps on a form a keystroke must have left alone: gone, it was decided."""
    try:
        yield
    except PlaywrightTimeoutError:
        pytest.fail(f"the form went away before its button was used; the page sent {sent}")


def _card(board: Dashboard, watched: Watched, approval_id: str) -> Any:
    board.goto(watched.page, "/approvals")
    card = watched.page.locator(f"article[data-approval-id='{approval_id}']")
    card.locator("summary", has_text="Grant more than this request").click()  # every field
    return card


def _approval(board: Dashboard, approval_id: str) -> dict[str, Any]:
    found: dict[str, Any] = board.api("GET", f"/approvals/{approval_id}")
    return found


def test_enter_in_any_field_of_an_approval_card_decides_nothing(board: Dashboard) -> None:
    key = _key(board, "Payments Bot")
    approval_id = _held(board, key)
    watched = board.open("member")
    card = _card(board, watched, approval_id)
    sent = _sent(watched)
    with _still_there(sent):
        for label in CARD_FIELDS:
            field = card.get_by_label(label)
            field.fill("1h" if label == "For how long" else "2" if label == "Max uses" else "x")
            field.press("Enter")
        note = card.get_by_label("Note (optional)")
        note.fill("suspicious transfer to an unknown IBAN - deny")
        note.press("Enter")
        # A submission with no button at all (a script's, a browser's): no fallback decision.
        card.locator("form").evaluate("form => form.requestSubmit()")
        card.locator("form").evaluate(
            "form => form.dispatchEvent(new SubmitEvent('submit', {cancelable: true}))"
        )
        card.get_by_role("button", name="Deny").click()
    card.wait_for(state="detached")
    assert sent == [("POST", f"/approvals/{approval_id}/deny")]
    decided = _approval(board, approval_id)
    assert (decided["status"], decided["note"]) == (
        "denied",
        "suspicious transfer to an unknown IBAN - deny",
    )
    assert board.api("GET", "/grants?status=all")["grants"] == []
    watched.assert_clean()


#: Each decision's button, the key pressed on it, and what it decides.
KEYBOARD = [
    ("Approve once", "Enter", "approved"),
    ("Deny", "Space", "denied"),
    ("Approve with grant", "Enter", "approved"),
]


def test_the_decisions_button_pressed_from_the_keyboard_decides(board: Dashboard) -> None:
    """Keyboard activation (the button focused, Enter or Space) is an explicit choice."""
    held = [_held(board, _key(board, f"Keyboard Bot {n}")) for n in range(len(KEYBOARD))]
    watched = board.open("member")
    sent = _sent(watched)
    for approval_id, (button, keystroke, status) in zip(held, KEYBOARD, strict=True):
        card = _card(board, watched, approval_id)
        card.get_by_label("Note (optional)").fill("checked by phone")
        card.get_by_label("For how long").fill("1h")
        card.get_by_role("button", name=button, exact=True).focus()
        watched.page.keyboard.press(keystroke)
        card.wait_for(state="detached")
        verb = "deny" if status == "denied" else "approve"
        assert sent.pop() == ("POST", f"/approvals/{approval_id}/{verb}")
        assert sent == []
        decided = _approval(board, approval_id)
        assert (decided["status"], decided["note"]) == (status, "checked by phone")
        grants = [g for g in board.api("GET", "/grants?status=all")["grants"]
                  if g["approval_id"] == approval_id]  # fmt: skip
        assert len(grants) == (1 if button == "Approve with grant" else 0)
    watched.assert_clean()


def _crashed_execution(board: Dashboard) -> str:
    """An allowed SDK action whose execution a crash cut short an hour ago (as
    test_stuck_page.py leaves the store)."""
    key = _key(board, "Crashed Bot")
    answer = httpx.post(f"{board.url}/api/v1/actions", json={"action_spec": {
        "type": "payment.refund.create", "resource": {"provider": "bank"}}},
        headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    assert answer.json()["status"] == "allowed", answer.text
    action_id: str = answer.json()["action_request_id"]
    with sqlite3.connect(board.data_dir / "agentfirewall.db", timeout=30) as db:
        changed = db.execute(
            "UPDATE action_requests SET execution_state = 'executing', updated_at = ? WHERE id = ?",
            (time.time() - 3600, action_id),
        ).rowcount
    assert changed == 1
    return action_id


def test_enter_in_a_stuck_executions_note_settles_nothing(board: Dashboard) -> None:
    """Settling says what happened upstream; "let the agent retry" when it took effect
    runs the action twice. It is chosen, never a default, and only Settle sends it."""
    action_id = _crashed_execution(board)
    watched = board.open("owner")
    page = watched.page
    board.goto(page, "/approvals")
    row = page.locator(f"#stuck-table tr[data-action-id='{action_id}']")
    label = "payment.refund.create for Crashed Bot"
    sent = _sent(watched)
    note = row.get_by_label(f"Note on {label}")
    with _still_there(sent):
        note.fill("the refund went through at the bank")
        note.press("Enter")
        row.locator("form").evaluate("form => form.requestSubmit()")
        row.get_by_role("button", name="Settle").click()  # no outcome chosen yet: says so
        outcome = row.get_by_label(f"Outcome of {label}")
        assert outcome.evaluate("select => select.validity.valueMissing"), "an outcome by default"
        outcome.select_option("executed")
        row.get_by_role("button", name="Settle").click()
    row.wait_for(state="detached")
    assert sent == [("POST", f"/actions/{action_id}/resolve")]
    [event] = [e for e in board.api("GET", "/audit?event_type=action.execution_resolved")["events"]
               if e["subject"] == action_id]  # fmt: skip
    assert (event["data"]["outcome"], event["data"]["note"]) == (
        "executed",
        "the refund went through at the bank",
    )
    watched.assert_clean()


def test_enter_in_a_custom_rules_pattern_allows_nothing(board: Dashboard) -> None:
    """An access rule's decision is chosen, never defaulted to allow: Enter in the pattern
    with no decision chosen adds nothing."""
    _key(board, "Rules Bot")
    watched = board.open("owner")
    page = watched.page
    board.goto(page, "/agents/Rules%20Bot")
    sent = _sent(watched)
    pattern = page.get_by_label("Action pattern")
    pattern.fill("github.repo.delete")
    pattern.press("Enter")
    page.get_by_role("button", name="Add custom rule").click()
    decision = page.get_by_label("Decision")
    assert decision.evaluate("select => select.validity.valueMissing"), "a decision by default"
    decision.select_option("deny")
    page.get_by_role("button", name="Add custom rule").click()
    page.locator("#perm-table").get_by_role(
        "cell", name="github.repo.delete", exact=True
    ).wait_for()
    assert sent == [("POST", "/permissions")]
    rules = board.api("GET", "/permissions?agent=Rules%20Bot")["permissions"]
    assert [(r["action_pattern"], r["decision"]) for r in rules] == [("github.repo.delete", "deny")]
    watched.assert_clean()


def test_enter_in_the_kill_switchs_reason_asks_first(board: Dashboard) -> None:
    """The kill switch's form asks before it acts; Enter again answers Cancel (the
    dialog's first button), and nothing is switched."""
    watched = board.open("owner")
    page = watched.page
    board.goto(page, "/settings")
    sent = _sent(watched)
    reason = page.get_by_label("Reason")
    reason.fill("incident #42")
    reason.press("Enter")
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    assert sent == []
    assert board.api("GET", "/kill-switch")["active"] == []
    watched.assert_clean()
