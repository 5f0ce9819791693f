"""The data health widget's colours and ages, and the app's "3 h ago" clock."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from app import data
from app.components import health_widget
from app.components.health_widget import SHOWN, STYLES, status, styles
from core.health import floor_hour
from tests.app.conftest import sign_in
from tests.factories import PASSWORD, ingest_series, make_site, signup


@pytest.mark.parametrize(
    ("pct", "expected"),
    [
        (100.0, "good"),
        (95.0, "good"),  # 95 % is green
        (94.99, "degraded"),  # just below: amber
        (90.0, "degraded"),  # 90 % is still amber
        (89.99, "poor"),  # just below: red
        (0.0, "poor"),
    ],
)
def test_status_boundaries(pct, expected):
    assert status(pct) == expected


def test_each_status_has_its_colour():
    # Green, amber and red text on a pale background of the same hue.
    assert STYLES["good"] == "background-color: #E8F5E9; color: #1B5E20"
    assert STYLES["degraded"] == "background-color: #FFF8E1; color: #8D6E00"
    assert STYLES["poor"] == "background-color: #FFEBEE; color: #B71C1C"
    frame = pd.DataFrame({"status": ["good", "degraded", "poor"]}, index=[10, 11, 12])
    css = styles(frame)
    assert list(css.columns) == SHOWN
    for row, state in zip(css.index, frame["status"], strict=True):
        # Completeness and status carry the row's colour; no other cell is coloured.
        assert css.loc[row, "completeness_pct"] == STYLES[state]
        assert css.loc[row, "status"] == STYLES[state]
        others = css.loc[row].drop(["completeness_pct", "status"])
        assert set(others) == {""}


NOW = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(hours=3), "3 h ago"),
        (timedelta(seconds=90), "2 min ago"),
        (timedelta(seconds=89), "just now"),
        (timedelta(minutes=45), "45 min ago"),
        (timedelta(days=2), "2 d ago"),
    ],
)
def test_ago_at_a_fixed_now(age, expected):
    when = NOW - age
    assert data.ago(when, now=NOW) == expected
    assert data.ago(when.isoformat().replace("+00:00", "Z"), now=NOW) == expected


def test_ago_and_now_hour_read_the_app_clock(monkeypatch):
    # core.db.utcnow, as imported by app.data: one clock to freeze for the whole app.
    monkeypatch.setattr("app.data.utcnow", lambda: NOW + timedelta(minutes=25))
    assert data.ago("2025-03-04T12:25:00Z") == "3 h ago"
    assert data.ago(None) == "never"
    assert data.now_hour() == NOW


def test_local_time_carries_the_site_zone():
    local = health_widget.local_time
    assert local("2025-03-04T13:05:00Z", "Europe/Rome") == "2025-03-04 14:05 CET"
    assert local("2025-07-04T13:05:00Z", "Europe/Rome") == "2025-07-04 15:05 CEST"
    assert local("2025-07-04T13:05:00Z", "America/New_York") == "2025-07-04 09:05 EDT"
    assert local(None, "Europe/Rome") == "never"


def test_widget_last_seen_is_an_age_and_the_site_local_time(clock, at, client, engine):
    """Two sites on two clocks: each row's last-seen moment in its own site's zone."""
    user = signup(client, org="Two Clocks")
    make_site(client, user["headers"], "rome", meters=("main-incomer",))
    make_site(
        client, user["headers"], "ohio", meters=("main-incomer",), timezone="America/New_York"
    )
    end = floor_hour(datetime.now(UTC))
    index = pd.date_range(end - timedelta(hours=6), end, freq="h", inclusive="left")
    for site in ("rome", "ohio"):
        ingest_series(engine, user["org_id"], site, "main-incomer", index, [10.0] * len(index))
    sign_in(at, user["email"], PASSWORD)
    widget = at.dataframe[0].value.set_index("site_id")
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d [A-Z]{3,4}$")
    for site, zone in (("rome", "Europe/Rome"), ("ohio", "America/New_York")):
        row = widget.loc[site]
        assert stamp.match(row["last_seen_local"]), row["last_seen_local"]
        zones = ("CET", "CEST") if site == "rome" else ("EST", "EDT")
        assert row["last_seen_local"].endswith(zones)
        # The newest stored hour is index[-1], shown on the site's clock.
        newest = index[-1].to_pydatetime().astimezone(ZoneInfo(zone))
        assert row["last_reading_local"] == newest.strftime("%Y-%m-%d %H:%M %Z")
    # "3 h ago" is measured on the app's clock: move it 3 h past the moment the readings came.
    seen = widget.loc["rome", "last_seen_local"]
    core_seen = datetime.strptime(seen[:16], "%Y-%m-%d %H:%M").replace(
        tzinfo=ZoneInfo("Europe/Rome")
    )
    clock.set(core_seen + timedelta(hours=3, minutes=1))
    at.run()
    assert not at.exception
    assert at.dataframe[0].value["last_seen_ago"].tolist() == ["3 h ago", "3 h ago"]
