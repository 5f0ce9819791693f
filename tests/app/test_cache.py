"""The app's cached reads: a write made in the app shows at once for its organisation, and
invalidating one organisation leaves every other one's cached reads alone."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlmodel import select

from app import data
from core.db import session_scope
from core.health import floor_hour
from core.models import Alert, Role, Site
from tests.app.conftest import open_page, sign_in
from tests.factories import PASSWORD, add_user, make_site, signup

pytestmark = pytest.mark.usefixtures("client")


def _rename_site(engine, org_id: int, site_id: str, name: str) -> None:
    """A write behind the app's back, as the API would make it."""
    with session_scope(engine) as session:
        site = session.exec(
            select(Site).where(Site.org_id == org_id, Site.site_id == site_id)
        ).one()
        site.name = name
        session.add(site)


def test_invalidate_is_per_organisation(client, engine):
    a = signup(client, org="Org A")
    b = signup(client, org="Org B")
    make_site(client, a["headers"], "site-a")
    make_site(client, b["headers"], "site-b")
    assert data.site_overview(a["org_id"])[0]["name"] == "Plant site-a"
    assert data.site_overview(b["org_id"])[0]["name"] == "Plant site-b"
    _rename_site(engine, a["org_id"], "site-a", "A renamed")
    _rename_site(engine, b["org_id"], "site-b", "B renamed")
    # Both cached: neither rename shows yet.
    assert data.site_overview(a["org_id"])[0]["name"] == "Plant site-a"
    assert data.site_overview(b["org_id"])[0]["name"] == "Plant site-b"
    data.invalidate(a["org_id"])
    assert data.site_overview(a["org_id"])[0]["name"] == "A renamed"
    assert data.site_overview(b["org_id"])[0]["name"] == "Plant site-b"  # B's entry survives
    data.invalidate(b["org_id"])
    assert data.site_overview(b["org_id"])[0]["name"] == "B renamed"


def test_triage_shows_in_the_alerts_table_at_once(at, demo, client, engine):
    analyst = add_user(client, org_id=demo["org_id"], role=Role.analyst)
    sign_in(at, analyst["email"], PASSWORD)
    open_page(at, "Alerts")
    at.selectbox(key="alerts-status").set_value("all").run()
    chosen = at.selectbox(key="alerts-chosen").value
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[chosen["id"], "status"] == "open"
    at.selectbox(key=f"triage-status-{chosen['id']}").set_value("acknowledged")
    at.text_input[0].input("compressor left idling")
    at.form_submit_button[0].click().run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[chosen["id"], "status"] == "acknowledged"
    assert table.loc[chosen["id"], "root_cause"] == "compressor left idling"
    assert at.selectbox(key="alerts-chosen").value["status"] == "acknowledged"
    # The dashboard's open count drops by one too.
    with session_scope(engine) as session:
        still_open = len(
            session.exec(
                select(Alert.id).where(Alert.org_id == demo["org_id"], Alert.status == "open")
            ).all()
        )
    open_page(at, "Dashboard")
    assert sum(int(m.value) for m in at.metric if m.label == "Open alerts") == still_open


def test_upload_shows_in_the_health_widget_at_once(at, client):
    user = signup(client, org="Fresh Upload")
    make_site(client, user["headers"], "plant", meters=("main-incomer",))
    sign_in(at, user["email"], PASSWORD)
    assert at.dataframe[0].value["actual_points"].tolist() == [0]  # cached: nothing yet
    end = floor_hour(datetime.now(UTC)) - timedelta(hours=2)  # well inside the last 24 h
    hours = pd.date_range(end - timedelta(hours=10), end, freq="h", inclusive="left")
    rows = ["site_id,meter_id,timestamp_utc,value,unit"] + [
        f"plant,main-incomer,{ts:%Y-%m-%dT%H:%M:%SZ},12.5,kWh" for ts in hours
    ]
    open_page(at, "Upload CSV")
    at.file_uploader[0].upload("backfill.csv", "\n".join(rows).encode(), "text/csv").run()
    next(b for b in at.button if b.label.startswith("Ingest")).click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Stored"] == "10"
    open_page(at, "Dashboard")
    widget = at.dataframe[0].value
    assert widget["actual_points"].tolist() == [10]
    assert widget["status"].tolist() == ["poor"]  # 10 of 24 hours
    assert any(m.label == "Last 24 h" and m.value == "125 kWh" for m in at.metric)
