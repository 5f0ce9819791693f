"""Dashboard: each site's last 24 h against its baseline, open alerts, and the data health."""

import pandas as pd
import streamlit as st

from app import data
from app.auth import current_user
from app.components.first_run import needs_sites
from app.components.health_widget import health_widget

user = current_user()
org = data.org_settings(user["org_id"])
st.title("Dashboard")
st.caption(f"{org['name']} · tariff {org['currency']} {org['tariff_per_kwh']:.3f} per kWh")

if not needs_sites(user["org_id"], "dashboard"):
    end = data.now_hour().isoformat()
    open_alerts = data.alert_list(user["org_id"], status="open")["data"]
    for site in data.site_overview(user["org_id"]):
        with st.container(border=True):
            st.markdown(f"#### {site['name']} · `{site['site_id']}`")
            if not data.energy_meters(user["org_id"], site["site_id"]):
                st.caption("No energy meters at this site yet.")
                continue
            day = data.last_24h(user["org_id"], site["site_id"], end)
            c1, c2, c3, c4 = st.columns(4)
            c1.metric(
                "Last 24 h",
                f"{day['actual_kwh']:,.0f} kWh",
                help=f"{day['hours']} hours with data, from {', '.join(day['meters'])}",
            )
            if day["expected_kwh"] > 0:
                diff = day["compared_kwh"] - day["expected_kwh"]
                c2.metric(
                    "Baseline, same hours",
                    f"{day['expected_kwh']:,.0f} kWh",
                    delta=f"{diff:+,.0f} kWh ({100 * diff / day['expected_kwh']:+.1f} %)",
                    delta_color="inverse",
                    help="What the baseline expects for the same hours (weekday, hour, holidays, "
                    "weather, production); the delta is actual minus baseline",
                )
            else:
                c2.metric("Baseline, same hours", "–", help="No baseline yet: it needs 14 days")
            c3.metric(
                "Cost, last 24 h",
                f"{org['currency']} {day['actual_kwh'] * org['tariff_per_kwh']:,.0f}",
            )
            site_open = [a for a in open_alerts if a["site_id"] == site["site_id"]]
            c4.metric("Open alerts", len(site_open))
            if day["without_baseline"]:
                st.caption(
                    "No baseline yet for "
                    + ", ".join(day["without_baseline"])
                    + " (needs 14 days)."
                )
    health_widget(user["org_id"], key="dashboard-health")
    st.subheader("Latest open alerts")
    if open_alerts:
        frame = pd.DataFrame(open_alerts[:8])[
            ["site_id", "meter_id", "rule", "severity", "summary", "start_utc"]
        ]
        st.dataframe(
            frame,
            hide_index=True,
            column_config={
                "site_id": "Site",
                "meter_id": "Meter",
                "rule": "Rule",
                "severity": "Severity",
                "summary": st.column_config.TextColumn("Finding", width="large"),
                "start_utc": "Start (UTC)",
            },
        )
        if st.button("Triage alerts", icon=":material/notifications:"):
            st.switch_page("views/alerts.py")
    else:
        st.success("No open alerts.", icon=":material/check_circle:")
