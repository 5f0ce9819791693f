"""Login form, the signed-in principal in st.session_state, logout, and a login back-off.

The principal is re-read from the users table on every script run, so a user who was demoted
or deactivated loses the rights at their next click, not at their next sign-in."""

import threading
import time

import streamlit as st

from core import accounts
from core.db import session_scope
from core.errors import DomainError, NotFound
from core.settings import get_settings

SESSION_KEY = "principal"
FREE_FAILURES = 5  # failures allowed before the back-off starts
FIRST_WAIT_S = 1.0
MAX_WAIT_S = 300.0

# Per email, in this process: (consecutive failures, monotonic time before which to refuse).
# The API keeps its own; this one only slows guessing through the app's form.
_failures: dict[str, tuple[int, float]] = {}
_lock = threading.Lock()


def _clock() -> float:
    return time.monotonic()


def _key(email: str) -> str:
    return email.strip().lower()


def wait_seconds(email: str) -> float:
    """How long this email must wait before the next attempt (0: go ahead)."""
    with _lock:
        _, until = _failures.get(_key(email), (0, 0.0))
    return max(0.0, until - _clock())


def record_failure(email: str) -> None:
    with _lock:
        count, _ = _failures.get(_key(email), (0, 0.0))
        count += 1
        wait = 0.0
        if count >= FREE_FAILURES:
            wait = min(FIRST_WAIT_S * 2 ** (count - FREE_FAILURES), MAX_WAIT_S)
        _failures[_key(email)] = (count, _clock() + wait)


def record_success(email: str) -> None:
    with _lock:
        _failures.pop(_key(email), None)


def _role(user) -> str:
    return user.role.value if hasattr(user.role, "value") else str(user.role)


def current_user() -> dict | None:
    """The signed-in user of this browser tab: org_id, org_name, user_id, email, role.

    Role and active flag come fresh from the database on each run (one primary-key read)."""
    principal = st.session_state.get(SESSION_KEY)
    if principal is None:
        return None
    try:
        with session_scope() as session:
            user = accounts.get_user(
                session, org_id=principal["org_id"], user_id=principal["user_id"]
            )
            active, role = bool(user.is_active), _role(user)
    except NotFound:
        active, role = False, None
    if not active:
        st.session_state.clear()
        st.session_state["signed-out-reason"] = "Your account is no longer active: sign in again."
        return None
    if role != principal["role"]:
        principal = {**principal, "role": role}
        st.session_state[SESSION_KEY] = principal
    return principal


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
            "role": _role(user),
        }


def login_page() -> None:
    st.title("Sign in to CEI")
    st.caption("Energy analytics for factories: find avoidable kWh, night by night.")
    reason = st.session_state.pop("signed-out-reason", None)
    if reason:
        st.warning(reason, icon=":material/lock:")
    with st.form("login", enter_to_submit=True):
        email = st.text_input("Email", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if not email or not password:
            st.error("Enter your email and password.")
            return
        wait = wait_seconds(email)
        if wait > 0:
            st.error(
                f"Too many failed sign-ins for this email: try again in {wait:.0f} s."
                if wait >= 1
                else "Too many failed sign-ins for this email: try again in a second."
            )
            return
        try:
            principal = sign_in(email, password)
        except DomainError as exc:
            if exc.code == "invalid_credentials":
                record_failure(email)
            st.error(exc.message[:1].upper() + exc.message[1:] + ".")
            return
        record_success(email)
        st.session_state[SESSION_KEY] = principal
        st.rerun()


def logout() -> None:
    """Forget everything this tab held: the principal, widget choices, a fresh token."""
    st.session_state.clear()
    st.rerun()
