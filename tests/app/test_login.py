"""Login gate of the Streamlit app: same users as the API, errors shown, logout works."""

from tests.app.conftest import sign_in as _sign_in
from tests.factories import PASSWORD, make_site, signup


def test_login_page_is_shown_when_signed_out(at):
    assert not at.exception
    assert at.title[0].value == "Sign in to CEI"
    assert len(at.text_input) == 2


def test_wrong_password_shows_an_error_and_stays_signed_out(at, client):
    user = signup(client)
    _sign_in(at, user["email"], "wrong-password-here")
    assert not at.exception
    assert at.error[0].value == "Invalid email or password."
    assert "principal" not in at.session_state


def test_overlong_password_is_an_error_not_a_crash(at, client):
    user = signup(client)
    _sign_in(at, user["email"], "é" * 40)
    assert not at.exception
    assert "72 bytes" in at.error[0].value


def test_sign_in_with_api_user_shows_the_dashboard_of_its_sites(at, client):
    user = signup(client, org="Bologna Works")
    make_site(client, user["headers"], "site-22", meters=("main-incomer", "compressor-bank"))
    _sign_in(at, user["email"].upper(), PASSWORD)
    assert not at.exception
    assert at.session_state["principal"]["org_name"] == "Bologna Works"
    assert at.title[0].value == "Dashboard"
    assert any("Plant site-22" in m.value for m in at.markdown)
    widget = at.dataframe[0].value
    assert widget["meter_id"].tolist() == ["compressor-bank", "main-incomer"]
    assert widget["actual_points"].tolist() == [0, 0]  # registered, silent so far
    assert "Bologna Works" in at.sidebar.markdown[0].value


def test_empty_org_gets_first_run_guidance(at, client):
    user = signup(client, org="Empty Co")
    _sign_in(at, user["email"], PASSWORD)
    assert not at.exception
    assert "No sites yet" in at.info[0].value


def test_sign_out_returns_to_login(at, client):
    user = signup(client)
    _sign_in(at, user["email"], PASSWORD)
    at.sidebar.button[0].click().run()
    assert "principal" not in at.session_state
    assert at.title[0].value == "Sign in to CEI"
