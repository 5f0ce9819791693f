"""AppTest fixtures: the real app/main.py against the test database."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.alerts import scan_org
from core.demo import load_demo

APP_MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
PAGES = {
    "Dashboard": "views/dashboard.py",
    "Site view": "views/site.py",
    "Data health": "views/health.py",
    "Alerts": "views/alerts.py",
    "Opportunities & savings": "views/opportunities.py",
    "Reports": "views/reports.py",
    "Upload CSV": "views/upload.py",
    "Settings": "views/settings.py",
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    # AppTest runs the app in this process: cached reads must not outlive a test's database.
    st.cache_data.clear()
    yield
    st.cache_data.clear()


class Clock:
    """The app's clock (app.data.utcnow), frozen at `now` until `set` moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def set(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(name="clock")
def clock_fixture(monkeypatch) -> Clock:
    """Freeze the app's clock 3 h 30 min before the real one.

    Deliberately not the real now: a test that recomputes "now" itself instead of using
    `clock.now` (or reading the window off the page) then fails every time, rather than
    flaking once an hour when the hour turns between the app's run and the test's check."""
    clock = Clock(datetime.now(UTC) - timedelta(hours=3, minutes=30))
    monkeypatch.setattr("app.data.utcnow", clock)
    return clock


@pytest.fixture(name="at")
def at_fixture(settings, engine) -> AppTest:
    at = AppTest.from_file(str(APP_MAIN), default_timeout=60)
    at.run()
    return at


@pytest.fixture(name="demo")
def demo_fixture(settings, engine) -> dict:
    """The demo factory with seven weeks of data (28 days to show, the rest to train on)."""
    out = load_demo(engine, settings=settings, reset=True, days=49)
    scan_org(engine, org_id=out["org_id"], lookback=timedelta(days=35))
    return out


def sign_in(at: AppTest, email: str, password: str) -> AppTest:
    at.text_input[0].input(email)
    at.text_input[1].input(password)
    at.button[0].click().run()
    return at


def open_page(at: AppTest, title: str) -> AppTest:
    at.switch_page(PAGES[title]).run()
    assert not at.exception, f"{title}: {at.exception}"
    return at
