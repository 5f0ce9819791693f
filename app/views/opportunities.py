"""Opportunities and savings: what could be avoided, ranked by money, with the evidence."""

from datetime import timedelta

import pandas as pd
import streamlit as st

from app import charts, data
from app.auth import current_user
from app.components.first_run import needs_data, needs_sites

user = current_user()
st.title("Opportunities & savings")

if not needs_sites(user["org_id"], "opportunities"):
    sites = data.site_overview(user["org_id"])
    days = st.radio(
        "Analysed period", [28, 56, 91], format_func=lambda d: f"last {d} days",
        horizontal=True, key="opps-days",
    )  # fmt: skip
    end = data.now_hour()
    start = end - timedelta(days=days)
    total = data.savings(user["org_id"], start.isoformat(), end.isoformat())
    with st.container(border=True):
        st.markdown(f"### {total['narrative']}")
        c = st.columns(2) + st.columns(2)
        c[0].metric("Consumption in the period", f"{total['consumption_kwh']:,.0f} kWh")
        c[1].metric(
            "Avoidable in the period",
            f"{total['avoidable_kwh_low']:,.0f}–{total['avoidable_kwh_high']:,.0f} kWh",
        )
        c[2].metric(
            "Avoidable share",
            f"{total['avoidable_pct_low']:.1f}–{total['avoidable_pct_high']:.1f} %",
        )
        c[3].metric(
            "Per year",
            f"{total['currency']} {total['annual_money_low']:,.0f}–"
            f"{total['annual_money_high']:,.0f}",
        )
        st.caption(
            "Ranges: the low end counts only what clearly exceeds the baseline's noise and "
            "bias. Site totals come from main incomers; sub-meter findings show where the waste "
            "is and are not added on top."
        )
    site = st.selectbox(
        "Site", sites, format_func=lambda s: f"{s['name']} ({s['site_id']})", key="opps-site"
    )
    found = data.site_opportunities(
        user["org_id"], site["site_id"], start.isoformat(), end.isoformat()
    )
    opps = sorted(found["opportunities"], key=lambda o: -o["annual_money_high"])
    for skipped in found["meters_without_baseline"]:
        st.caption(f"{skipped['meter_id']}: no baseline ({skipped['reason']}).")
    if not opps and not data.site_has_readings(user["org_id"], site["site_id"]):
        needs_data(0, "opportunities at this site", key=site["site_id"])
        st.stop()
    if not opps:
        st.success(
            "No avoidable waste found at this site in the period.", icon=":material/check_circle:"
        )
        st.stop()
    cur = opps[0]["currency"]
    table = pd.DataFrame(opps)[
        ["meter_id", "rule", "avoidable_kwh_low", "avoidable_kwh_high", "annual_money_low",
         "annual_money_high", "confidence", "counted"]
    ]  # fmt: skip
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "meter_id": "Meter",
            "rule": "Finding",
            "avoidable_kwh_low": st.column_config.NumberColumn("kWh (low)", format="%,.0f"),
            "avoidable_kwh_high": st.column_config.NumberColumn("kWh (high)", format="%,.0f"),
            "annual_money_low": st.column_config.NumberColumn(f"{cur}/year (low)", format="%,d"),
            "annual_money_high": st.column_config.NumberColumn(f"{cur}/year (high)", format="%,d"),
            "confidence": "Confidence",
            "counted": st.column_config.CheckboxColumn("In site total"),
        },
    )
    for i, o in enumerate(opps):
        label = (
            f"{o['meter_id']} · {o['rule']} · {cur} {o['annual_money_low']:,}–"
            f"{o['annual_money_high']:,} per year"
        )
        with st.expander(label, expanded=i == 0):
            st.write(o["explanation"])
            # Chart titles are page text: a plotly title collides with a legend that wraps.
            if o["evidence"].get("profile_by_local_hour"):
                st.markdown("**Evidence hours: actual vs baseline**")
                st.plotly_chart(charts.profile(o["evidence"]), key=f"opp-{i}")
            elif "baseload_ratio" in o["evidence"]:
                ev = o["evidence"]
                st.metric(
                    "Baseload share of average load",
                    f"{100 * ev['baseload_ratio']:.0f} %",
                    help=f"Sector typical up to {100 * (ev['benchmark_high'] or 0):.0f} %",
                )
                out = found["baselines"].get(o["meter_id"], {"ok": False})
                if out["ok"]:
                    st.markdown("**Load by hour of day against the baseload**")
                    st.plotly_chart(
                        charts.baseload_profile(
                            out["series"], out["timezone"], ev["benchmark_high"]
                        ),
                        key=f"opp-{i}",
                    )
                    st.caption(
                        "Even the quietest hours stay above what the sector typically needs: "
                        "look for what runs all night and all weekend (compressed-air leaks, "
                        "chillers, ventilation, standby lines)."
                    )
