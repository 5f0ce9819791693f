"""Dashboard: each site's last 24 h against its baseline, open alerts, and the data health."""

import pandas as pd
import streamlit as st

from app import data
from app.auth import current_user
from app.components.first_run import needs_data, needs_sites
from app.components.health_widget import health_widget, local_time

user = current_user()
org = data.org_settings(user["org_id"])
st.title("Dashboard")
st.caption(f"{org['name']} · tariff {org['currency']} {org['tariff_per_kwh']:.3f} per kWh")

if not needs_sites(user["org_id"], "dashboard"):
    end = data.now_hour().isoformat()
    open_counts = data.open_alert_counts(user["org_id"])
    for site in data.site_overview(user["org_id"]):
        with st.container(border=True):
            st.markdown(f"#### {site['name']} · `{site['site_id']}`")
            if not data.energy_meters(user["org_id"], site["site_id"]):
                st.caption("No energy meters at this site yet.")
                continue
            if not data.site_has_readings(user["org_id"], site["site_id"]):
                needs_data(0, "kWh to show for this site", key=site["site_id"])
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
            c4.metric("Open alerts", open_counts.get(site["site_id"], 0))
            if day["without_baseline"]:
                st.caption(
                    "No baseline yet for "
                    + ", ".join(day["without_baseline"])
                    + " (needs 14 days)."
                )
    health_widget(user["org_id"], key="dashboard-health")
    latest = data.alert_list(user["org_id"], status="open", limit=8)
    st.subheader("Latest open alerts")
    if latest["data"]:
        zones = {s["site_id"]: s["timezone"] for s in data.site_overview(user["org_id"])}
        # The finding names the meter and the rule: no separate columns, so it shows in full.
        frame = pd.DataFrame(latest["data"])[["site_id", "severity", "summary", "start_utc"]]
        frame["start_utc"] = [
            local_time(a["start_utc"], zones.get(a["site_id"], "UTC")) for a in latest["data"]
        ]
        st.dataframe(
            frame,
            hide_index=True,
            column_config={
                "site_id": "Site",
                "severity": "Severity",
                "summary": st.column_config.TextColumn("Finding", width="large"),
                "start_utc": st.column_config.TextColumn("Start (site time)"),
            },
        )
        if latest["count"] > len(latest["data"]):
            st.caption(f"The newest {len(latest['data'])} of {latest['count']} open alerts.")
        if st.button("Triage alerts", icon=":material/notifications:"):
            st.switch_page("views/alerts.py")
    else:
        st.success("No open alerts.", icon=":material/check_circle:")
