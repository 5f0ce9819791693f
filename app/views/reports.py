"""Reports: 7-day tables per meter, the weekly review and the pilot close-out, with downloads."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from app import charts, data
from app.auth import current_user
from app.components.first_run import needs_sites
from app.components.health_widget import STYLES, local_time
from core import reports
from core.errors import DomainError

user = current_user()
st.title("Reports")


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


SITE_METER = {"site_id": "Site", "meter_id": "Meter", "rule": "Finding"}


def _money(cur: str) -> dict:
    return {
        "annual_money_low": st.column_config.NumberColumn(f"{cur}/year (low)", format="%,d"),
        "annual_money_high": st.column_config.NumberColumn(f"{cur}/year (high)", format="%,d"),
    }


def _downloads(report: dict, name: str, tables: dict[str, pd.DataFrame], key: str) -> None:
    cols = st.columns(2 + len(tables))
    cols[0].download_button(
        "HTML (prints to PDF)",
        data.report_html(report),
        file_name=f"{name}.html",
        mime="text/html",
        icon=":material/download:",
        key=f"{key}-html",
    )
    cols[1].download_button(
        "Markdown",
        reports.render_markdown(report),
        file_name=f"{name}.md",
        mime="text/markdown",
        icon=":material/download:",
        key=f"{key}-md",
    )
    for col, (label, frame) in zip(cols[2:], tables.items(), strict=True):
        col.download_button(
            f"CSV: {label}",
            _csv(frame),
            file_name=f"{name}-{label.replace(' ', '-')}.csv",
            mime="text/csv",
            icon=":material/table:",
            key=f"{key}-csv-{label}",
        )


def seven_day_tables(org_id: int, sites: list[dict]) -> None:
    st.caption("kWh per local day over the last 7 complete days, per energy meter.")
    for site in sites:
        tz = ZoneInfo(site["timezone"])
        today = data.now().astimezone(tz).date()
        start = datetime.combine(today - timedelta(days=7), time(0), tz).astimezone(ZoneInfo("UTC"))
        end = datetime.combine(today, time(0), tz).astimezone(ZoneInfo("UTC"))
        rows = []
        for m in data.energy_meters(org_id, site["site_id"]):
            points = data.series(
                org_id, site["site_id"], m["meter_id"], start.isoformat(), end.isoformat(), "day"
            )
            row = {"meter_id": m["meter_id"]}
            for p in points:
                row[p["start_local"][:10]] = None if p["kwh"] is None else round(p["kwh"], 1)
            row["total"] = round(sum(p["kwh"] or 0 for p in points), 1)
            row["incomplete days"] = ", ".join(
                f"{p['start_local'][5:10]} ({p['hours']}/{p['expected_hours']} h)"
                for p in points
                if not p["complete"]
            )
            rows.append(row)
        st.markdown(f"##### {site['name']} ({site['site_id']}, {site['timezone']})")
        if not rows:
            st.caption("No energy meters.")
            continue
        frame = pd.DataFrame(rows)
        days = [c for c in frame.columns if c not in ("meter_id", "total", "incomplete days")]
        st.dataframe(
            frame,
            hide_index=True,
            key=f"seven-{site['site_id']}",
            column_config={
                "meter_id": "Meter",
                **{
                    d: st.column_config.NumberColumn(
                        f"{datetime.fromisoformat(d):%a %d %b}", format="%,.1f", help=d
                    )
                    for d in days
                },
                "total": st.column_config.NumberColumn("Total kWh", format="%,.1f"),
                "incomplete days": st.column_config.TextColumn(
                    "Incomplete days", help="Days with missing hours: hours received / expected"
                ),
            },
        )
        st.download_button(
            "CSV",
            _csv(frame),
            file_name=f"cei-7days-{site['site_id']}.csv",
            mime="text/csv",
            key=f"seven-csv-{site['site_id']}",
            icon=":material/table:",
        )


def _alert_table(title: str, rows: list[dict], zones: dict[str, str], empty: str) -> None:
    """A weekly review's alerts, starts in each site's local time."""
    st.markdown(f"##### {title}")
    if not rows:
        st.caption(empty)
        return
    alerts = pd.DataFrame(rows)
    shown = alerts[["site_id", "meter_id", "rule", "start_utc", "hours", "wasted_kwh", "status"]]
    shown = shown.assign(
        start_utc=[
            local_time(t, zones.get(s, "UTC"))
            for t, s in zip(alerts["start_utc"], alerts["site_id"], strict=True)
        ]
    )
    st.dataframe(
        shown,
        hide_index=True,
        key=f"weekly-{title.lower().replace(' ', '-')}",
        column_config={
            **SITE_METER,
            "start_utc": st.column_config.TextColumn("Start (site time)"),
            "hours": st.column_config.NumberColumn("Hours", format="%d"),
            "wasted_kwh": st.column_config.NumberColumn("Wasted kWh", format="%,.0f"),
            "status": "Status",
        },
    )


def weekly(org_id: int, sites: list[dict]) -> None:
    now = data.now_hour()
    weeks = []
    for back in range(0, 9):
        y, w, _ = (now - timedelta(weeks=back)).isocalendar()
        weeks.append(f"{y}-W{w:02d}")
    c1, c2 = st.columns(2)
    week = c1.selectbox(
        "ISO week", weeks, index=1, key="weekly-week",
        format_func=lambda w: w + (" (in progress)" if w == weeks[0] else ""),
    )  # fmt: skip
    scope = c2.selectbox("Scope", ["all sites"] + [s["site_id"] for s in sites], key="weekly-scope")
    report = data.weekly_report(org_id, week, None if scope == "all sites" else scope)
    for line in report["summary"]:
        st.markdown(f"- {line}")
    comp = pd.DataFrame(report["completeness"]["meters"])
    if not comp.empty:
        st.markdown("##### Completeness per meter")
        shown = comp.drop(columns=["kind"])
        # Drivers (temperature, production) have no kWh: a dash, not "None".
        shown["kwh"] = ["–" if pd.isna(v) else f"{v:,.1f}" for v in comp["kwh"]]
        st.dataframe(
            shown,
            hide_index=True,
            key="weekly-comp",
            column_config={
                **SITE_METER,
                "expected_points": st.column_config.NumberColumn("Expected", format="%d"),
                "actual_points": st.column_config.NumberColumn("Received", format="%d"),
                "completeness_pct": st.column_config.NumberColumn("Complete", format="%.1f %%"),
                "missing_hours": st.column_config.NumberColumn("Missing hours", format="%d"),
                "longest_gap_hours": st.column_config.NumberColumn("Longest gap (h)", format="%d"),
                "kwh": st.column_config.TextColumn("kWh"),
            },
        )
    if report["daily_kwh"]:
        st.markdown("##### kWh per local day")
        st.plotly_chart(charts.daily_bars(report["daily_kwh"]), key="weekly-daily")
    zones = {s["site_id"]: s["timezone"] for s in sites}
    _alert_table("New alerts", report["new_alerts"], zones, "No new alerts this week.")
    _alert_table(
        "Still open from earlier weeks",
        report["still_open"],
        zones,
        "Every earlier alert is resolved or dismissed.",
    )
    st.markdown("##### Confirmed issues and actions")
    confirmed = pd.DataFrame(report["confirmed_issues"])
    if confirmed.empty:
        st.caption("No issues confirmed this week.")
    else:
        st.dataframe(
            confirmed[["site_id", "meter_id", "rule", "status", "root_cause", "action"]],
            hide_index=True,
            key="weekly-confirmed",
            column_config={
                **SITE_METER,
                "status": "Status",
                "root_cause": "Root cause",
                "action": "Action",
            },
        )
    focus = pd.DataFrame(report["next_week_focus"])
    st.markdown("##### Next week's focus")
    if focus.empty:
        st.caption("No open opportunities.")
    else:
        cur = report["currency"]
        st.dataframe(
            focus[
                [
                    "site_id",
                    "meter_id",
                    "rule",
                    "annual_money_low",
                    "annual_money_high",
                    "confidence",
                ]
            ],
            hide_index=True,
            key="weekly-focus",
            column_config={**SITE_METER, **_money(cur), "confidence": "Confidence"},
        )
    _downloads(
        report,
        f"cei-weekly-{week}",
        {
            "completeness": comp,
            "new alerts": pd.DataFrame(report["new_alerts"]),
            "still open": pd.DataFrame(report["still_open"]),
            "focus": focus,
        },
        "weekly",
    )


def pilot(org_id: int) -> None:
    c1, c2, c3 = st.columns(3)
    today = data.now_hour().date()
    start = c1.date_input(
        "Pilot start (UTC)",
        value=today - timedelta(days=56),
        min_value=today - timedelta(days=730),
        max_value=today,
        key="pilot-start",
    )
    end = c2.date_input(
        "Pilot end (UTC, excluded)",
        value=today + timedelta(days=1),
        min_value=today - timedelta(days=729),
        max_value=today + timedelta(days=1),
        key="pilot-end",
    )
    cost = c3.number_input(
        "Cost of the changes, for the payback",
        min_value=0.0,
        value=0.0,
        step=1000.0,
        key="pilot-cost",
    )
    if end <= start:
        st.error("The end must be after the start.")
        return
    try:
        with st.spinner("Building the pilot report…"):
            report = data.pilot_report(
                org_id, start.isoformat(), end.isoformat(), None, cost or None
            )
    except DomainError as exc:
        st.error(exc.message[:1].upper() + exc.message[1:] + ".")
        return
    card = report["scorecard"]
    st.markdown("##### Pilot scorecard")
    scorecard = pd.DataFrame(
        [
            {"metric": m["label"], "value": str(m.get("display", m["value"])),
             "target": m["target"], "result": "pass" if m["passed"] else "fail"}
            for m in card["metrics"]
        ]
    )  # fmt: skip
    colour = {"pass": STYLES["good"], "fail": STYLES["poor"]}
    st.dataframe(
        scorecard.style.map(colour.get, subset=["result"]),
        hide_index=True,
        key="pilot-scorecard",
        column_config={
            "metric": "Metric",
            "value": "Value",
            "target": "Target",
            "result": "Result",
        },
    )
    (st.success if card["passed"] else st.warning)(
        "All pilot success metrics met." if card["passed"] else "Not every success metric is met."
    )
    st.markdown(f"**Savings:** {report['savings'].get('narrative', '')}")
    if report.get("payback"):
        p = report["payback"]
        st.markdown(
            f"**Simple payback** of {p['currency']} {p['cost']:,.0f}: "
            f"{p['years_best']}–{p['years_worst']} years."
        )
    opps = pd.DataFrame(report["recommended"])
    st.markdown("##### Recommended changes")
    if opps.empty:
        st.caption("No actionable change found.")
    else:
        cur = report["currency"]
        st.dataframe(
            opps,
            hide_index=True,
            key="pilot-recommended",
            column_config={
                **SITE_METER,
                "action": st.column_config.TextColumn("Recommendation", width="large"),
                **_money(cur),
            },
        )
    coverage = pd.DataFrame(report["coverage"]["meters"])
    _downloads(
        report,
        f"cei-pilot-{report['start_utc'][:10]}",
        {"coverage": coverage, "recommended": opps},
        "pilot",
    )


if not needs_sites(user["org_id"], "reports"):
    sites = data.site_overview(user["org_id"])
    # One section at a time: each builds only what it shows.
    section = st.radio(
        "Report", ["7-day tables", "Weekly review", "Pilot report"], horizontal=True,
        key="reports-section", label_visibility="collapsed",
    )  # fmt: skip
    if section == "7-day tables":
        seven_day_tables(user["org_id"], sites)
    elif section == "Weekly review":
        weekly(user["org_id"], sites)
    else:
        pilot(user["org_id"])
