"""Login form, the signed-in principal in st.session_state, logout."""

import streamlit as st

from core import accounts
from core.db import session_scope
from core.errors import DomainError
from core.settings import get_settings

SESSION_KEY = "principal"


def current_user() -> dict | None:
    """The signed-in user of this browser tab: org_id, org_name, user_id, email, role."""
    return st.session_state.get(SESSION_KEY)


def sign_in(email: str, password: str) -> dict:
    """Check credentials against the users table (same as the API); raises DomainError."""
    with session_scope() as session:
        user = accounts.authenticate(
            session, email=email, password=password, settings=get_settings()
        )
        org = accounts.get_org(session, org_id=user.org_id)
        return {
            "org_id": user.org_id,
            "org_name": org.name,
            "user_id": user.id,
            "email": user.email,
            "role": user.role.value if hasattr(user.role, "value") else str(user.role),
        }


def login_page() -> None:
    st.title("Sign in to CEI")
    st.caption("Energy analytics for factories: find avoidable kWh, night by night.")
    with st.form("login", enter_to_submit=True):
        email = st.text_input("Email", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if not email or not password:
            st.error("Enter your email and password.")
            return
        try:
            st.session_state[SESSION_KEY] = sign_in(email, password)
        except DomainError as exc:
            st.error(exc.message[:1].upper() + exc.message[1:] + ".")
            return
        st.rerun()


def logout() -> None:
    st.session_state.pop(SESSION_KEY, None)
    st.rerun()
