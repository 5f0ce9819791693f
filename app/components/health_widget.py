"""The data health widget: one row per meter with expected/actual points, completeness, last
seen; green ≥ 95 %, amber 90–95 %, red < 90 %. Used on the Dashboard and the Data health page.

The colour and status are judged on the exact share of points received, not on the rounded
percentage shown (94.96 % is amber even though it reads 95.0 %)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from app import data

WINDOWS = {"24 h": 24, "7 d": 168}
STYLES = {
    "good": "background-color: #E8F5E9; color: #1B5E20",
    "degraded": "background-color: #FFF8E1; color: #8D6E00",
    "poor": "background-color: #FFEBEE; color: #B71C1C",
}


def status(pct: float) -> str:
    """good ≥ 95 %, degraded 90–95 %, poor < 90 %, on the unrounded percentage."""
    return "good" if pct >= 95 else "degraded" if pct >= 90 else "poor"


def local_time(ts: str | None, tz: str) -> str:
    """A UTC ISO timestamp on the site's clock, e.g. '2025-03-04 14:05 CET'."""
    if not ts:
        return "never"
    when = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(ZoneInfo(tz))
    return when.strftime("%Y-%m-%d %H:%M %Z")


def health_table(org_id: int, window_hours: int, site_id: str | None = None) -> pd.DataFrame:
    rows = data.ingest_health(org_id, window_hours, site_id)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    zones = {s["site_id"]: s["timezone"] for s in data.site_overview(org_id)}
    tz = frame["site_id"].map(lambda s: zones.get(s, "UTC"))
    exact = (
        100.0
        * frame["actual_points"]
        / frame["expected_points"].where(frame["expected_points"] > 0)
    )
    frame["exact_pct"] = exact.fillna(0.0)
    frame["status"] = frame["exact_pct"].map(status)
    frame["last_seen_ago"] = frame["last_seen"].map(data.ago)
    frame["last_seen_local"] = [
        local_time(t, z) for t, z in zip(frame["last_seen"], tz, strict=True)
    ]
    frame["last_reading_local"] = [
        local_time(t, z) for t, z in zip(frame["last_reading_utc"], tz, strict=True)
    ]
    return frame


SHOWN = [
    "site_id",
    "meter_id",
    "expected_points",
    "actual_points",
    "completeness_pct",
    "status",
    "last_seen_ago",
    "last_seen_local",
    "last_reading_local",
]


def styles(frame: pd.DataFrame) -> pd.DataFrame:
    """The CSS of each shown cell: completeness and status coloured by the row's status."""
    css = pd.DataFrame("", index=frame.index, columns=SHOWN)
    row_css = frame["status"].map(STYLES)
    css["completeness_pct"] = row_css
    css["status"] = row_css
    return css


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
    css = styles(frame)
    st.dataframe(
        frame[SHOWN].style.apply(lambda _: css, axis=None),
        hide_index=True,
        key=f"{key}-table",
        column_config={
            "site_id": "Site",
            "meter_id": "Meter",
            "expected_points": st.column_config.NumberColumn(
                "Expected", format="%d", help=f"Hourly points in the last {label}"
            ),
            "actual_points": st.column_config.NumberColumn("Received", format="%d"),
            "completeness_pct": st.column_config.NumberColumn(
                "Complete", format="%.1f %%", help="Green ≥ 95 %, amber 90–95 %, red < 90 %"
            ),
            "status": "Status",
            "last_seen_ago": st.column_config.TextColumn(
                "Last seen", help="When CEI last received a reading for this meter"
            ),
            "last_seen_local": st.column_config.TextColumn(
                "Last seen at (site time)", help="The same moment on the site's clock"
            ),
            "last_reading_local": st.column_config.TextColumn(
                "Latest hour stored (site time)",
                help="Start of the newest hour of data, which can lag behind a backfill",
            ),
        },
    )
    poor = frame[frame["status"] != "good"]
    if not poor.empty:
        st.caption(
            f"{len(poor)} of {len(frame)} meters below 95 % over the last {label}: "
            + ", ".join(f"{r.site_id}/{r.meter_id}" for r in poor.itertuples())
        )
    return frame
