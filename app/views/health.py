"""Data health: completeness per meter, a heat map over time, errors by code, longest gaps."""

from datetime import timedelta

import pandas as pd
import streamlit as st

from app import charts, data
from app.auth import current_user
from app.components.first_run import needs_sites
from app.components.health_widget import health_widget, local_time

user = current_user()
st.title("Data health")

if not needs_sites(user["org_id"], "data health"):
    health_widget(user["org_id"], key="health-page", title="Completeness per meter")
    st.subheader("Completeness over time")
    span = st.radio(
        "Heat map",
        ["48 h by hour", "7 d by hour", "30 d by day", "90 d by day"],
        index=2,
        horizontal=True,
        key="health-span",
    )
    hours = {"48 h by hour": 48, "7 d by hour": 168, "30 d by day": 720, "90 d by day": 2160}[span]
    bucket = "hour" if "hour" in span else "day"
    end = data.now_hour()
    start = end - timedelta(hours=hours)
    matrix = data.completeness_matrix(user["org_id"], start.isoformat(), end.isoformat(), bucket)
    if matrix.empty:
        st.caption("No meters registered yet.")
    else:
        st.plotly_chart(charts.heatmap(matrix, bucket), key="health-heatmap")
        st.caption(
            "Share of the expected hourly points received in each cell: green ≥ 95 %, "
            "amber 90–95 %, red < 90 %. Columns are UTC hours or days."
        )
    st.subheader("Refused records by error code, last 30 days")
    errors = data.errors_timeline(user["org_id"], (end - timedelta(days=30)).isoformat())
    if errors.empty:
        st.success("No records refused in the last 30 days.", icon=":material/check_circle:")
    else:
        st.plotly_chart(charts.errors_by_day(errors), key="health-errors")
        totals = errors.groupby("code")["count"].sum().sort_values(ascending=False)
        st.dataframe(
            totals.reset_index(),
            hide_index=True,
            column_config={"code": "Error code", "count": st.column_config.NumberColumn("Records")},
            key="health-error-totals",
        )
        st.caption("What each code means and how to fix it: docs/directtimeseriesingestion.md.")
    st.subheader("Longest gaps, last 7 days")
    metrics = data.ingest_metrics(user["org_id"])
    gaps = pd.DataFrame(metrics["meters"])
    if not gaps.empty:
        gaps = gaps[gaps["missing_hours_7d"] > 0].sort_values(
            "longest_gap_hours_7d", ascending=False
        )
        zones = {s["site_id"]: s["timezone"] for s in data.site_overview(user["org_id"])}
        gaps["last_reading_utc"] = [
            local_time(t, zones.get(s, "UTC"))
            for t, s in zip(gaps["last_reading_utc"], gaps["site_id"], strict=True)
        ]
    if gaps.empty:
        st.success("No missing hours in the last 7 days.", icon=":material/check_circle:")
    else:
        st.dataframe(
            gaps[
                [
                    "site_id",
                    "meter_id",
                    "longest_gap_hours_7d",
                    "missing_hours_7d",
                    "last_reading_utc",
                ]
            ],
            hide_index=True,
            column_config={
                "site_id": "Site",
                "meter_id": "Meter",
                "longest_gap_hours_7d": st.column_config.NumberColumn(
                    "Longest gap (h)", format="%d"
                ),
                "missing_hours_7d": st.column_config.NumberColumn("Missing hours", format="%d"),
                "last_reading_utc": st.column_config.TextColumn("Latest hour stored (site time)"),
            },
            key="health-gaps",
        )
