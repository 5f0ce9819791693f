"""Alerts: filter, inspect the evidence and history, and triage (analysts and admins)."""

from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from app import charts, data
from app.auth import current_user
from app.components.first_run import needs_sites
from app.components.health_widget import local_time
from core.alerts import TRANSITIONS, update_alert
from core.db import session_scope
from core.errors import DomainError
from core.models import AlertRule, AlertStatus, AlertUpdate

PAGE_SIZE = 100


def baseload_evidence(alert: dict) -> dict | None:
    """The baseline over the alert's window (a year at most), or None when there is none."""
    end = datetime.fromisoformat(alert["end_utc"].replace("Z", "+00:00"))
    start = max(
        datetime.fromisoformat(alert["start_utc"].replace("Z", "+00:00")),
        end - timedelta(days=366),
    )
    try:
        out = data.baseline(
            user["org_id"], alert["site_id"], alert["meter_id"], start.isoformat(), end.isoformat()
        )
    except DomainError:
        return None
    return out if out["ok"] else None


user = current_user()
can_triage = user["role"] in ("admin", "analyst")
st.title("Alerts")

if not needs_sites(user["org_id"], "alerts"):
    sites = data.site_overview(user["org_id"])
    tz_of = {s["site_id"]: s["timezone"] for s in sites}
    f1, f2, f3 = st.columns(3)
    status = f1.selectbox(
        "Status", ["open", "acknowledged", "resolved", "dismissed", "all"], key="alerts-status"
    )
    site_id = f2.selectbox("Site", ["all"] + [s["site_id"] for s in sites], key="alerts-site")
    rule = f3.selectbox("Rule", ["all"] + [r.value for r in AlertRule], key="alerts-rule")
    filters = {
        "status": None if status == "all" else status,
        "site_id": None if site_id == "all" else site_id,
        "rule": None if rule == "all" else rule,
    }
    # One page of rows at a time; the count is core's total for the filters.
    page = int(st.session_state.get("alerts-page", 1))
    listing = data.alert_list(
        user["org_id"], **filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    pages = max(1, -(-listing["count"] // PAGE_SIZE))
    if page > pages:  # the filters changed under a later page: back to the first
        st.session_state["alerts-page"] = page = 1
        listing = data.alert_list(user["org_id"], **filters, limit=PAGE_SIZE, offset=0)
    rows = listing["data"]
    if not rows:
        st.success(
            "No alerts match. The scan runs after every accepted batch and from `cei alerts scan`.",
            icon=":material/check_circle:",
        )
        st.stop()
    first = (page - 1) * PAGE_SIZE + 1
    if pages > 1:
        p1, p2 = st.columns([1, 5], vertical_alignment="center")
        p1.number_input("Page", min_value=1, max_value=pages, step=1, key="alerts-page")
        p2.caption(
            f"Showing alerts {first}–{first + len(rows) - 1} of {listing['count']}, newest "
            f"first; {pages} pages of {PAGE_SIZE}."
        )
    else:
        st.caption(f"{listing['count']} alerts, newest first.")
    frame = pd.DataFrame(rows)[
        ["id", "site_id", "meter_id", "rule", "severity", "status", "start_utc", "hours",
         "wasted_kwh", "wasted_money", "root_cause"]
    ]  # fmt: skip
    frame["root_cause"] = frame["root_cause"].fillna("")
    frame["start_utc"] = [local_time(a["start_utc"], tz_of.get(a["site_id"], "UTC")) for a in rows]
    # Each alert keeps the currency it was raised in.
    frame["wasted_money"] = [f"{a['currency']} {a['wasted_money']:,.0f}" for a in rows]
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "id": st.column_config.NumberColumn("#", format="%d"),
            "site_id": "Site",
            "meter_id": "Meter",
            "rule": "Rule",
            "severity": "Severity",
            "status": "Status",
            "start_utc": st.column_config.TextColumn("Start (site time)"),
            "hours": st.column_config.NumberColumn("Hours", format="%d"),
            "wasted_kwh": st.column_config.NumberColumn("Wasted kWh", format="%,.0f"),
            "wasted_money": st.column_config.TextColumn("Cost"),
            "root_cause": "Root cause",
        },
        height=min(38 + 35 * len(frame), 360),
    )
    chosen = st.selectbox(
        "Alert",
        rows,
        format_func=lambda a: f"#{a['id']} · {a['summary']} · {a['status']}",
        key="alerts-chosen",
    )
    alert = data.alert_detail(user["org_id"], chosen["id"])
    tz = tz_of.get(alert["site_id"], "UTC")
    with st.container(border=True):
        st.markdown(f"#### #{alert['id']} · {alert['summary']}")
        m = st.columns(5)
        m[0].metric("Wasted", f"{alert['wasted_kwh']:,.0f} kWh")
        m[1].metric("Cost", f"{alert['currency']} {alert['wasted_money']:,.0f}")
        m[2].metric("Hours", alert["hours"])
        m[3].metric("Severity", alert["severity"])
        m[4].metric("Status", alert["status"])
        st.caption(
            f"From {local_time(alert['start_utc'], tz)} to {local_time(alert['end_utc'], tz)}"
            + (", still going at the last scan" if alert["ongoing"] else "")
            + f"; times and charts in the site's time zone, {tz}."
        )
        hours = alert["evidence"].get("hours")
        # Chart titles are page text: a plotly title collides with a legend that wraps.
        if hours:
            st.markdown("**Actual vs baseline over the alert's hours**")
            st.plotly_chart(charts.evidence(hours, tz), key=f"evidence-{alert['id']}")
        elif alert["rule"] == "data-gap":
            st.info(
                f"No readings for {alert['hours']} hours from {local_time(alert['start_utc'], tz)}."
            )
        else:
            ev = alert["evidence"]
            st.info(
                f"Baseload {100 * ev.get('baseload_ratio', 0):.0f} % of average load, sector "
                f"typical up to {100 * (ev.get('benchmark_high') or 0):.0f} %: "
                f"{ev.get('excess_kwh_per_hour', 0):.1f} kWh every hour above it."
            )
            if alert["rule"] == "baseload":
                out = baseload_evidence(alert)
                if out is not None:
                    st.markdown("**Load by hour of day over the alert's window**")
                    st.plotly_chart(
                        charts.baseload_profile(out["series"], tz, ev.get("benchmark_high")),
                        key=f"evidence-{alert['id']}",
                    )
        st.markdown("##### History")
        st.dataframe(
            pd.DataFrame(
                [
                    {"at": local_time(h["at"], tz), "who": h["actor"], "what": h["kind"],
                     "changes": "; ".join(
                         f"{k}: {'–' if v[0] is None else v[0]} → {v[1]}"
                         for k, v in h["changes"].items()
                     )}
                    for h in alert["history"]
                ]
            ),
            hide_index=True,
            column_config={"changes": st.column_config.TextColumn("Changes", width="large")},
        )  # fmt: skip
    if not can_triage:
        st.caption("Viewers can read alerts; an analyst or admin triages them.")
        st.stop()
    with st.form(f"triage-{alert['id']}"):
        st.markdown("##### Triage")
        moves = [alert["status"], *sorted(TRANSITIONS[AlertStatus(alert["status"])])]
        # Keyed by alert: a choice made for one alert must not carry over to the next.
        new_status = st.selectbox("Status", moves, key=f"triage-status-{alert['id']}")
        root_cause = st.text_input("Root cause", value=alert["root_cause"] or "", max_chars=2000)
        action = st.text_input("Action taken", value=alert["action"] or "", max_chars=2000)
        notes = st.text_area("Notes", value=alert["notes"] or "", max_chars=10000)
        impact = st.number_input(
            "Estimated saving, kWh per week",
            min_value=0.0,
            value=float(alert["estimated_impact_kwh_per_week"]),
            help="What the fix saves; by default the waste rate the alert measured",
        )
        saved = st.form_submit_button("Save", type="primary")
    if saved:
        fields = {
            "root_cause": root_cause.strip() or None,
            "action": action.strip() or None,
            "notes": notes.strip() or None,
        }
        if new_status != alert["status"]:
            fields["status"] = new_status
        if abs(impact - alert["estimated_impact_kwh_per_week"]) > 0.05:
            fields["impact_kwh_per_week"] = impact
        try:
            with session_scope() as session:
                update_alert(
                    session,
                    org_id=user["org_id"],
                    alert_id=alert["id"],
                    data=AlertUpdate(**fields),
                    user_id=user["user_id"],
                )
        except DomainError as exc:
            st.error(exc.message)
        else:
            data.invalidate(user["org_id"])
            st.toast(f"Alert #{alert['id']} saved.", icon=":material/check:")
            st.rerun()
