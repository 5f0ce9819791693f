"""The data health widget: one row per meter with expected/actual points, completeness, last
seen; green ≥ 95 %, amber 90–95 %, red < 90 %. Used on the Dashboard and the Data health page."""

import pandas as pd
import streamlit as st

from app import data

WINDOWS = {"24 h": 24, "7 d": 168}


def status(pct: float) -> str:
    return "good" if pct >= 95 else "degraded" if pct >= 90 else "poor"


def health_table(org_id: int, window_hours: int, site_id: str | None = None) -> pd.DataFrame:
    rows = data.ingest_health(org_id, window_hours, site_id)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["status"] = frame["completeness_pct"].map(status)
    frame["last_seen_ago"] = frame["last_seen"].map(data.ago)
    frame["last_reading"] = frame["last_reading_utc"].fillna("never")
    return frame


def _colour(pct: float) -> str:
    if pct >= 95:
        return "background-color: #E8F5E9; color: #1B5E20"
    if pct >= 90:
        return "background-color: #FFF8E1; color: #8D6E00"
    return "background-color: #FFEBEE; color: #B71C1C"


def health_widget(
    org_id: int, *, key: str, site_id: str | None = None, title: str = "Data health"
) -> pd.DataFrame:
    """Render the widget with its window selector; returns the table shown."""
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.subheader(title)
    label = right.radio(
        "Window", list(WINDOWS), horizontal=True, key=f"{key}-window", label_visibility="collapsed"
    )
    frame = health_table(org_id, WINDOWS[label], site_id)
    if frame.empty:
        st.info("No meters registered yet.", icon=":material/sensors_off:")
        return frame
    shown = frame[
        [
            "site_id",
            "meter_id",
            "expected_points",
            "actual_points",
            "completeness_pct",
            "status",
            "last_seen_ago",
            "last_reading",
        ]
    ]
    st.dataframe(
        shown.style.map(_colour, subset=["completeness_pct"]).map(
            lambda v: _colour({"good": 100, "degraded": 92}.get(v, 0)), subset=["status"]
        ),
        hide_index=True,
        key=f"{key}-table",
        column_config={
            "site_id": "Site",
            "meter_id": "Meter",
            "expected_points": st.column_config.NumberColumn("Expected", format="%d"),
            "actual_points": st.column_config.NumberColumn("Actual", format="%d"),
            "completeness_pct": st.column_config.NumberColumn("Complete", format="%.1f %%"),
            "status": "Status",
            "last_seen_ago": st.column_config.TextColumn(
                "Last seen", help="When CEI last received a reading for this meter"
            ),
            "last_reading": st.column_config.TextColumn(
                "Last reading (UTC)", help="The latest hour stored for this meter"
            ),
        },
    )
    poor = frame[frame["completeness_pct"] < 95]
    if not poor.empty:
        st.caption(
            f"{len(poor)} of {len(frame)} meters below 95 % over the last {label}: "
            + ", ".join(f"{r.site_id}/{r.meter_id}" for r in poor.itertuples())
        )
    return frame
