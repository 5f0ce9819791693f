"""Settings (admins): integration tokens, sites and meters, tariff, the mapping table."""

from datetime import time
from zoneinfo import available_timezones

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from app import data
from app.auth import current_user
from core import accounts, sites, tokens
from core.db import session_scope
from core.errors import DomainError
from core.models import (
    IntegrationTokenCreate,
    MeterCreate,
    MeterKind,
    MeterUpdate,
    OrganizationUpdate,
    Schedule,
    SiteCreate,
    SiteUpdate,
)

user = current_user()
st.title("Settings")
if user["role"] != "admin":
    st.warning("Only admins can change settings.", icon=":material/lock:")
    st.stop()

ORG = user["org_id"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
KINDS = [k.value for k in MeterKind]
ZONES = sorted(available_timezones())
SECTORS = ["general", "food_and_beverage", "metalworking"]


def _words(value: str) -> str:
    """'food_and_beverage' as 'Food and beverage', for choices shown to people."""
    return value.replace("_", " ").capitalize()


def _save(write, done: str) -> bool:
    """Run a write in its own transaction; show what went wrong in plain words."""
    try:
        with session_scope() as session:
            write(session)
    except DomainError as exc:
        st.error(exc.message[:1].upper() + exc.message[1:])
        return False
    except ValidationError as exc:
        st.error("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))
        return False
    data.invalidate(ORG)
    st.toast(done, icon=":material/check:")
    return True


def token_section() -> None:
    fresh = st.session_state.pop("new-token", None)
    if fresh:
        st.success(
            f"Token **{fresh['name']}** created. Copy it now: CEI keeps only a hash and will "
            "never show it again.",
            icon=":material/key:",
        )
        st.code(fresh["token"], language=None)
    with st.form("new-token-form", clear_on_submit=True):
        st.markdown("##### New integration token")
        c1, c2, c3 = st.columns([2, 2, 1])
        name = c1.text_input("Name", placeholder="factory-scada-line1")
        scope = c2.multiselect(
            "Limit to sites (empty: every site)", [s["site_id"] for s in data.site_overview(ORG)]
        )
        days = c3.number_input("Expires in days (0: never)", min_value=0, max_value=3650, value=365)
        create = st.form_submit_button("Create token", type="primary")
    if create:
        holder = {}

        def write(session):
            holder["token"] = tokens.create_token(
                session,
                org_id=ORG,
                data=IntegrationTokenCreate(
                    name=name or "relay", expires_in_days=days or None, site_ids=scope or None
                ),
                created_by=user["user_id"],
            )

        if _save(write, "Token created"):
            st.session_state["new-token"] = {
                "name": holder["token"].name,
                "token": holder["token"].token,
            }
            st.rerun()
    listed = data.token_list(ORG)
    if not listed:
        st.caption("No tokens yet.")
        return
    frame = pd.DataFrame(listed)
    frame["sites"] = frame["site_ids"].map(lambda s: ", ".join(s) if s else "all")
    st.dataframe(
        frame[
            ["id", "name", "prefix", "sites", "status", "created_at", "last_used_at", "expires_at"]
        ],
        hide_index=True,
        column_config={
            "id": st.column_config.NumberColumn("#", format="%d"),
            "name": "Name",
            "prefix": "Prefix",
            "sites": "Sites",
            "status": "Status",
            "created_at": "Created (UTC)",
            "last_used_at": "Last used (UTC)",
            "expires_at": "Expires (UTC)",
        },
        key="token-table",
    )
    active = [t for t in listed if t["status"] == "active"]
    if active:
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        victim = c1.selectbox(
            "Revoke a token",
            active,
            format_func=lambda t: f"#{t['id']} {t['name']} ({t['prefix']}…)",
            key="revoke-choice",
        )
        if c2.button("Revoke", icon=":material/block:", key="revoke-button") and _save(
            lambda s: tokens.revoke_token(s, org_id=ORG, token_id=victim["id"]),
            f"Token {victim['name']} revoked",
        ):
            st.rerun()


def _site_form(key: str, current: dict | None) -> dict | None:
    schedule = (current or {}).get("schedule") or Schedule().model_dump()
    with st.form(key, clear_on_submit=current is None):
        c1, c2, c3 = st.columns(3)
        site_id = c1.text_input(
            "Site ID", value=(current or {}).get("site_id", ""), disabled=current is not None,
            placeholder="site-22",
        )  # fmt: skip
        name = c2.text_input("Name", value=(current or {}).get("name", ""))
        zone = (current or {}).get("timezone", "Europe/Rome")
        tz = c3.selectbox("Time zone", ZONES, index=ZONES.index(zone) if zone in ZONES else 0)
        d1, d2, d3, d4, d5 = st.columns([3, 1, 1, 1, 1])
        workdays = d1.multiselect(
            "Working days", DAYS, default=[DAYS[d] for d in schedule["workdays"]]
        )
        start = d2.time_input("Shift start", value=time.fromisoformat(schedule["start"]))
        end = d3.time_input("Shift end", value=time.fromisoformat(schedule["end"]))
        country = d4.text_input(
            "Holidays",
            value=(current or {}).get("country") or "",
            placeholder="IT",
            help="Country code whose public holidays count as rest days (e.g. IT, DE, FR)",
        )
        gap = d5.number_input(
            "Gap alarm after (h)", min_value=1, max_value=168,
            value=int((current or {}).get("gap_alert_hours", 3)),
        )  # fmt: skip
        auto = st.checkbox(
            "Register unknown meter_ids automatically when the relay sends them",
            value=bool((current or {}).get("auto_register_meters", False)),
        )
        submitted = st.form_submit_button("Save site" if current else "Add site", type="primary")
    if not submitted:
        return None
    return {
        "site_id": site_id.strip(),
        "name": name.strip(),
        "timezone": tz,
        "country": country.strip() or None,
        "schedule": Schedule(
            workdays=[DAYS.index(d) for d in workdays],
            start=start.strftime("%H:%M"),
            end=end.strftime("%H:%M"),
        ),
        "gap_alert_hours": int(gap),
        "auto_register_meters": auto,
    }


def sites_section() -> None:
    listed = data.site_overview(ORG)
    if listed:
        st.dataframe(
            pd.DataFrame(listed)[
                ["site_id", "name", "timezone", "country", "gap_alert_hours", "meter_count"]
            ],
            hide_index=True,
            key="site-table",
            column_config={
                "site_id": "Site ID",
                "name": "Name",
                "timezone": "Time zone",
                "country": "Holidays",
                "gap_alert_hours": st.column_config.NumberColumn("Gap alarm after (h)"),
                "meter_count": st.column_config.NumberColumn("Meters"),
            },
        )
    with st.expander("Add a site", expanded=not listed, icon=":material/add:"):
        new = _site_form("add-site", None)
        if new and _save(
            lambda s: sites.create_site(s, org_id=ORG, data=SiteCreate(**new)),
            f"Site {new['site_id']} added",
        ):
            st.rerun()
    if not listed:
        return
    site = st.selectbox(
        "Site", listed, format_func=lambda s: f"{s['name']} ({s['site_id']})", key="settings-site"
    )
    with st.expander("Edit this site", icon=":material/edit:"):
        edit = _site_form(f"edit-{site['site_id']}", site)
        if edit and _save(
            lambda s: sites.update_site(
                s,
                org_id=ORG,
                site_id=site["site_id"],
                data=SiteUpdate(**{k: v for k, v in edit.items() if k != "site_id"}),
            ),
            "Site saved",
        ):
            st.rerun()
    st.markdown(f"##### Meters of {site['site_id']}")
    meters = data.site_meters(ORG, site["site_id"])
    if meters:
        st.dataframe(
            pd.DataFrame(meters)[["meter_id", "name", "kind"]].assign(
                kind=lambda f: f["kind"].map(_words)
            ),
            hide_index=True,
            key="meter-table",
            column_config={"meter_id": "Meter ID", "name": "Description", "kind": "Kind"},
        )
    else:
        st.caption("No meters yet: add the main incomer first.")
    with st.form(f"add-meter-{site['site_id']}", clear_on_submit=True):
        st.markdown("##### Add a meter")
        c1, c2, c3 = st.columns(3)
        meter_id = c1.text_input("Meter ID", placeholder="main-incomer")
        name = c2.text_input("Description", placeholder="Main incomer, LV board 1")
        kind = c3.selectbox("Kind", KINDS, format_func=_words)
        add = st.form_submit_button("Add meter")
    if add and _save(
        lambda s: sites.create_meter(
            s, org_id=ORG, site_id=site["site_id"],
            data=MeterCreate(meter_id=meter_id.strip(), name=name.strip() or meter_id, kind=kind),
        ),
        f"Meter {meter_id} added",
    ):  # fmt: skip
        st.rerun()
    if meters:
        with st.form(f"edit-meter-{site['site_id']}"):
            st.markdown("##### Edit a meter")
            c1, c2, c3 = st.columns(3)
            target = c1.selectbox("Meter", [m["meter_id"] for m in meters])
            new_name = c2.text_input("New description")
            new_kind = c3.selectbox("Kind", ["(unchanged)", *KINDS], format_func=_words)
            edit_meter = st.form_submit_button("Save meter")
        if edit_meter and _save(
            lambda s: sites.update_meter(
                s, org_id=ORG, site_id=site["site_id"], meter_id=target,
                data=MeterUpdate(
                    name=new_name.strip() or None,
                    kind=None if new_kind == "(unchanged)" else new_kind,
                ),
            ),
            f"Meter {target} saved",
        ):  # fmt: skip
            st.rerun()


def org_section() -> None:
    org = data.org_settings(ORG)
    with st.form("org-form"):
        c1, c2, c3 = st.columns(3)
        currency = c1.text_input("Currency (ISO 4217)", value=org["currency"], max_chars=3)
        tariff = c2.number_input(
            "Tariff per kWh", min_value=0.0, max_value=100.0, value=float(org["tariff_per_kwh"]),
            step=0.01, format="%.4f",
        )  # fmt: skip
        sector = c3.selectbox(
            "Sector (for benchmarks)", SECTORS, format_func=_words,
            index=SECTORS.index(org["sector"]) if org["sector"] in SECTORS else 0,
        )  # fmt: skip
        save = st.form_submit_button("Save", type="primary")
    if save and _save(
        lambda s: accounts.update_org(
            s,
            org_id=ORG,
            data=OrganizationUpdate(currency=currency, tariff_per_kwh=tariff, sector=sector),
        ),
        "Organisation saved",
    ):
        st.rerun()
    st.caption(
        "Money figures use this tariff; alerts keep the cost computed when they were raised."
    )


section = st.radio(
    "Section", ["Integration tokens", "Sites and meters", "Organisation", "Mapping table"],
    index=0 if data.site_overview(ORG) else 1,  # a new organisation starts with its sites
    horizontal=True, key="settings-section", label_visibility="collapsed",
)  # fmt: skip
if section == "Integration tokens":
    token_section()
elif section == "Sites and meters":
    sites_section()
elif section == "Organisation":
    org_section()
else:
    st.caption(
        "The table the factory's integrator maps each physical site and meter with: hand it over "
        "with the integration token."
    )
    st.download_button(
        "Download mapping table (CSV)",
        data.mapping_csv(ORG),
        file_name="cei-mapping.csv",
        mime="text/csv",
        icon=":material/download:",
    )
