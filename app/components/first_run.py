"""Guidance for an organisation that has nothing yet, instead of an empty page or an error."""

import streamlit as st

from app import data


def needs_sites(org_id: int, what: str) -> bool:
    """Show the first-run guide and return True when the org has no sites yet."""
    if data.site_overview(org_id):
        return False
    st.info(
        f"**No sites yet, so no {what} to show.** Set up your factory in three steps:",
        icon=":material/flag:",
    )
    st.markdown(
        "1. **Settings → Sites and meters**: add a site (its time zone and working hours) and "
        "its meters, the main incomer first.\n"
        "2. **Settings → Integration tokens**: mint a token for the factory's relay and send it "
        "the mapping table.\n"
        "3. **Upload CSV** to backfill history, or let the relay push hourly kWh. Baselines and "
        "waste findings appear after two weeks of data."
    )
    if st.session_state.get("principal", {}).get("role") != "admin":
        st.caption("Ask an admin of your organisation to do this.")
    elif st.button("Go to Settings", icon=":material/settings:", key=f"first-run-{what}"):
        st.switch_page("views/settings.py")
    return True


def needs_data(rows: int, what: str, *, key: str = "") -> bool:
    """Guidance when sites and meters exist but no readings arrived yet."""
    if rows:
        return False
    st.info(
        f"**No data yet, so no {what}.** Send readings from the factory's relay to "
        "`POST /api/v1/timeseries/batch` with an integration token (Settings → Integration "
        "tokens), or backfill history with **Upload CSV**. Baselines and waste findings appear "
        "after 14 days of data.",
        icon=":material/hourglass_empty:",
    )
    role = st.session_state.get("principal", {}).get("role")
    if role in ("admin", "analyst") and st.button(
        "Upload CSV", icon=":material/upload:", key=f"no-data-{what}-{key}"
    ):
        st.switch_page("views/upload.py")
    return True
