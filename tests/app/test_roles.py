"""Roles in the app: a viewer can change nothing anywhere; role and active flag are re-read on
every run, so a demotion or a deactivation takes effect at the user's next click."""

import pytest
from sqlmodel import select

from core.db import session_scope
from core.models import Role, User
from tests.app.conftest import PAGES, sign_in
from tests.factories import PASSWORD, add_user, signup

pytestmark = pytest.mark.usefixtures("client")

# Buttons that only move between pages or end the session; anything else would be a write.
NAVIGATION = {"Sign out", "Triage alerts"}
# Every section a page switches between with a radio, each visited in turn.
SECTIONS = {"Reports": ("reports-section", ["7-day tables", "Weekly review", "Pilot report"])}


def _assert_read_only(at, where: str) -> None:
    assert not at.exception, f"{where}: {at.exception}"
    assert not at.form_submit_button, f"{where}: a form"
    assert {b.label for b in at.button} <= NAVIGATION, f"{where}: {[b.label for b in at.button]}"
    for kind in ("file_uploader", "text_input", "text_area", "toggle", "checkbox"):
        assert not at.get(kind), f"{where}: a {kind}"


def _pages_a_viewer_opens(at) -> list[str]:
    opened = []
    for title, path in PAGES.items():
        try:
            at.switch_page(path)
        except ValueError:  # not in this user's navigation
            continue
        at.run()
        opened.append(title)
        _assert_read_only(at, title)
        if title in SECTIONS and any(r.key == SECTIONS[title][0] for r in at.radio):
            key, options = SECTIONS[title]
            for option in options:
                at.radio(key=key).set_value(option).run()
                _assert_read_only(at, f"{title}: {option}")
    return opened


def test_viewer_has_no_write_control_on_any_page(at, demo, client):
    viewer = add_user(client, org_id=demo["org_id"], role=Role.viewer)
    sign_in(at, viewer["email"], PASSWORD)
    opened = _pages_a_viewer_opens(at)
    assert set(PAGES) - set(opened) == {"Upload CSV", "Settings"}
    # Every alert a viewer picks shows its evidence and history, and no triage form.
    at.switch_page(PAGES["Alerts"]).run()
    at.selectbox(key="alerts-status").set_value("all").run()
    for option in at.selectbox(key="alerts-chosen").options[:5]:
        at.selectbox(key="alerts-chosen").set_value(option).run()
        _assert_read_only(at, f"Alerts: {option}")


def test_viewer_of_an_empty_org_gets_guidance_not_buttons(at, client):
    admin = signup(client, org="Empty Viewers")
    viewer = add_user(client, org_id=admin["org_id"], role=Role.viewer)
    sign_in(at, viewer["email"], PASSWORD)
    opened = _pages_a_viewer_opens(at)
    assert set(PAGES) - set(opened) == {"Upload CSV", "Settings"}
    assert any("Ask an admin" in c.value for c in at.caption)


def _set_user(engine, email: str, **fields) -> None:
    with session_scope(engine) as session:
        user = session.exec(select(User).where(User.email == email)).one()
        for name, value in fields.items():
            setattr(user, name, value)
        session.add(user)


def test_a_demoted_admin_loses_settings_at_the_next_run(at, demo, engine):
    sign_in(at, demo["email"], demo["password"])
    at.switch_page(PAGES["Settings"]).run()
    assert at.title[0].value == "Settings"
    _set_user(engine, demo["email"], role=Role.viewer)
    at.run()  # the next click
    assert not at.exception
    assert at.session_state["principal"]["role"] == "viewer"
    assert "viewer" in at.sidebar.caption[0].value
    assert at.title[0].value != "Settings"
    assert not at.form_submit_button
    for title in ("Settings", "Upload CSV"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(PAGES[title])


def test_a_deactivated_user_is_signed_out_at_the_next_run(at, demo, engine):
    sign_in(at, demo["email"], demo["password"])
    assert at.title[0].value == "Dashboard"
    _set_user(engine, demo["email"], is_active=False)
    at.run()
    assert not at.exception
    assert "principal" not in at.session_state
    assert at.title[0].value == "Sign in to CEI"
    assert any("no longer active" in w.value for w in at.warning)
