"""CEI app entry point: page frame, login gate and navigation by role."""

import streamlit as st

from app.auth import current_user, login_page, logout

st.set_page_config(page_title="CEI", page_icon=":material/bolt:", layout="wide")

user = current_user()
if user is None:
    st.navigation([st.Page(login_page, title="Sign in", icon=":material/login:")]).run()
else:
    with st.sidebar:
        st.markdown(f"**{user['org_name']}**")
        st.caption(f"{user['email']} · {user['role']}")
        if st.button("Sign out", icon=":material/logout:"):
            logout()
    pages = {
        "Monitor": [
            st.Page(
                "views/dashboard.py", title="Dashboard", icon=":material/dashboard:", default=True
            ),
            st.Page("views/site.py", title="Site view", icon=":material/show_chart:"),
            st.Page("views/health.py", title="Data health", icon=":material/monitor_heart:"),
        ],
        "Act": [
            st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:"),
            st.Page(
                "views/opportunities.py", title="Opportunities & savings", icon=":material/savings:"
            ),
            st.Page("views/reports.py", title="Reports", icon=":material/summarize:"),
        ],
    }
    manage = []
    if user["role"] in ("admin", "analyst"):
        manage.append(st.Page("views/upload.py", title="Upload CSV", icon=":material/upload:"))
    if user["role"] == "admin":
        manage.append(st.Page("views/settings.py", title="Settings", icon=":material/settings:"))
    if manage:
        pages["Manage"] = manage
    st.navigation(pages).run()
