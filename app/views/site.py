"""Site view: a meter's kWh against its baseline band, anomalies, the 7-day forecast, fit
quality and KPIs, in the site's local time."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import streamlit as st

from app import charts, data
from app.auth import current_user
from app.components.first_run import needs_data, needs_sites

user = current_user()
st.title("Site view")

if not needs_sites(user["org_id"], "site view"):
    sites = data.site_overview(user["org_id"])
    # Wide enough for "Bologna Plant - Main (site-22)" and a whole date range.
    c1, c2, c3, c4 = st.columns([3, 3, 3, 2], vertical_alignment="bottom")
    site = c1.selectbox(
        "Site",
        sites,
        format_func=lambda s: f"{s['name']} ({s['site_id']})",
        key="site-view-site",
    )
    meters = data.energy_meters(user["org_id"], site["site_id"])
    if not meters:
        st.info(
            "This site has no energy meters yet: add its main incomer in Settings.",
            icon=":material/electric_meter:",
        )
        st.stop()
    ids = [m["meter_id"] for m in meters]
    default = [next((m["meter_id"] for m in meters if m["kind"] == "main_incomer"), ids[0])]
    chosen = c2.multiselect(
        "Meters", ids, default=default, key="site-view-meters", max_selections=4
    )
    tz = ZoneInfo(site["timezone"])
    today = data.now().astimezone(tz).date()
    picked = c3.date_input(
        "Range (local dates)",
        value=(today - timedelta(days=27), today),
        min_value=today - timedelta(days=365),
        max_value=today,
        key="site-view-range",
        help="Up to a year; click a first and a last day",
    )
    resolution = c4.selectbox(
        "Resolution",
        ["hour", "day", "week"],
        format_func={"hour": "Hourly", "day": "Daily", "week": "Weekly"}.get,
        key="site-view-resolution",
    )
    # While a range is being picked the widget holds one date (or none): wait for both.
    days = list(picked) if isinstance(picked, tuple | list) else [picked]
    if len(days) != 2:
        st.info("Pick the first and the last day of the range.", icon=":material/date_range:")
        st.stop()
    first, last = days
    start = datetime.combine(first, time(0), tz).astimezone(ZoneInfo("UTC"))
    end = min(
        datetime.combine(last + timedelta(days=1), time(0), tz).astimezone(ZoneInfo("UTC")),
        data.now_hour(),
    )
    if end <= start or (end - start).days > 366:
        st.info(
            "Pick a range of whole hours that have passed, a year at most (today's first hour "
            "is not over yet).",
            icon=":material/date_range:",
        )
        st.stop()
    st.caption(
        f"Times in {site['timezone']}. The baseline is trained on up to a year before the range "
        "and predicts each hour from weekday, hour, holidays, weather and production; the band "
        "holds 95 % of normal hours."
    )
    if not chosen:
        st.info("Pick at least one meter.")
    for meter_id in chosen:
        with st.container(border=True):
            st.markdown(f"#### {meter_id}")
            view = data.meter_view(
                user["org_id"], site["site_id"], meter_id, start.isoformat(), end.isoformat()
            )
            out = view["baseline"]
            if not out["ok"]:
                if not data.meter_has_readings(user["org_id"], site["site_id"], meter_id):
                    needs_data(0, "chart", key=meter_id)
                    continue
                st.warning(f"No baseline for this range: {out['reason']}.", icon=":material/info:")
                points = data.series(
                    user["org_id"],
                    site["site_id"],
                    meter_id,
                    start.isoformat(),
                    end.isoformat(),
                    resolution,
                )
                if any(p["kwh"] is not None for p in points):
                    st.plotly_chart(
                        charts.readings_only(points, site["timezone"], resolution),
                        key=f"trend-{meter_id}",
                    )
                else:
                    st.info("No readings in this range: pick other dates.", icon=":material/info:")
                continue
            events = view["events"]
            fig = charts.trend(out, events=events, resolution=resolution)
            st.plotly_chart(fig, key=f"trend-{meter_id}")
            fit = out["fit"]
            g14 = fit["ashrae_g14_hourly"]
            k = view["kpis"]
            anomalies_above = sum(1 for e in events if e["direction"] == "above")

            def share(value: float | None) -> str:
                return "–" if value is None else f"{100 * value:.1f} %"

            def per_hour(value: float | None) -> str:
                return "–" if value is None else f"{value:,.1f} kWh/h"

            cards = [
                ("CV(RMSE)", f"{fit['cv_rmse_pct']:.1f} %",
                 f"Hourly fit error; ASHRAE Guideline 14 asks ≤ {g14['limits']['cv_rmse_pct']} %"),
                ("NMBE", f"{round(fit['nmbe_pct'], 2) + 0.0:+.2f} %",
                 f"Bias; Guideline 14 asks within ±{g14['limits']['nmbe_pct']} %"),
                ("Guideline 14, hourly", "meets" if g14["meets"] else "does not meet", None),
                ("R²", f"{fit['r2']:.2f}", "Share of the hourly variation the baseline explains"),
                ("Total", f"{k['total_kwh']:,.0f} kWh", None),
                ("Peak", per_hour(k["peak_kwh"]), None),
                ("Baseload", per_hour(k["baseload_kwh"]), "5th percentile of the hourly load"),
                ("Load factor", "–" if k["load_factor"] is None else f"{k['load_factor']:.2f}",
                 "Mean over peak load"),
                ("Night share", share(k["night_share"]), "Working days outside the schedule"),
                ("Weekend share", share(k["weekend_share"]), "Rest days and public holidays"),
                ("Completeness", f"{k['completeness_pct']:.1f} %", None),
                ("Anomalies", str(anomalies_above), "Events above the band in the range"),
            ]  # fmt: skip
            for row in range(0, len(cards), 4):
                cols = st.columns(4)
                for col, (label, value, tip) in zip(cols, cards[row : row + 4], strict=True):
                    col.metric(label, value, help=tip)
