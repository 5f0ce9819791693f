"""CEI app entry point: page frame, login gate and navigation."""

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
    st.navigation(
        {
            "Monitor": [
                st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
            ],
        }
    ).run()
