"""Cached reads from core for the views, keyed by org_id and plain parameters."""

import streamlit as st

from core import sites
from core.db import session_scope


@st.cache_data(ttl=60, show_spinner=False)
def site_overview(org_id: int) -> list[dict]:
    """The org's sites as plain rows (site_id, name, timezone, meter_count)."""
    with session_scope() as session:
        return [s.model_dump() for s in sites.list_sites(session, org_id=org_id)]
