"""Home: the organisation at a glance and what to do next."""

import pandas as pd
import streamlit as st

from app.auth import current_user
from app.data import site_overview

user = current_user()
st.title("CEI")
st.caption(f"{user['org_name']} · signed in as {user['email']} ({user['role']})")

rows = site_overview(user["org_id"])
if not rows:
    st.info(
        "**No sites yet.** Register your first site and its meters, then give the factory an "
        "integration token so its relay can start sending hourly kWh.",
        icon=":material/flag:",
    )
    st.markdown(
        "1. Create a site: `POST /api/v1/sites` with `site_id`, `name` and an IANA `timezone`.\n"
        "2. Add meters: `POST /api/v1/sites/{site_id}/meters` (`main-incomer` first).\n"
        "3. Mint a relay token: `cei token create --org <org> --name factory-scada-line1`.\n"
        "4. Hand over the integration mapping table: `GET /api/v1/sites/mapping.csv`."
    )
else:
    c1, c2 = st.columns(2)
    c1.metric("Sites", len(rows))
    c2.metric("Meters", sum(r["meter_count"] for r in rows))
    table = pd.DataFrame(rows)[["site_id", "name", "timezone", "meter_count"]]
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "site_id": "Site ID",
            "name": "Site",
            "timezone": "Time zone",
            "meter_count": st.column_config.NumberColumn("Meters", format="%d"),
        },
    )
