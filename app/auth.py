"""Login form, the signed-in principal in st.session_state, logout, and the login back-off.

The principal is re-read from the users table on every script run, so a user who was demoted
or deactivated loses the rights at their next click, not at their next sign-in.

Wrong passwords are counted by the API's LoginThrottle (api/ratelimit.py) with the same keys
(email and client address) and the same store (memory in this process, or Redis at
CEI_REDIS_URL, shared with the API): guessing through the app or the API counts against both,
and guessing from one address does not lock the owner out from another."""

import asyncio
import logging
import threading

import streamlit as st

from api.ratelimit import LoginThrottle, throttle_for
from core import accounts
from core.db import session_scope
from core.errors import DomainError, NotFound
from core.settings import get_settings

SESSION_KEY = "principal"
log = logging.getLogger("cei.app")

# The throttle is asynchronous (Litestar stores); the app's script threads hand its calls to
# one event loop of their own, so the memory store's lock and a Redis pool live on one loop.
_loop: asyncio.AbstractEventLoop | None = None
_throttles: dict[tuple, LoginThrottle] = {}
_lock = threading.Lock()


def _run(coro):
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            runner = threading.Thread(target=_loop.run_forever, name="cei-login", daemon=True)
            runner.start()
    return asyncio.run_coroutine_threadsafe(coro, _loop).result(timeout=30)


def login_throttle() -> LoginThrottle:
    """The throttle for the current settings, one per process (the API builds the same)."""
    settings = get_settings()
    key = (
        settings.redis_url,
        settings.login_max_failures,
        settings.login_lockout_seconds,
        settings.login_lockout_max_seconds,
        settings.login_max_failures_per_email,
    )
    with _lock:
        if key not in _throttles:
            _throttles[key] = throttle_for(settings)
        return _throttles[key]


def client_address() -> str:
    """The browser's address as the API would see it (Streamlit reports loopback as None)."""
    return st.context.ip_address or "127.0.0.1"


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
        throttle, address = login_throttle(), client_address()
        try:
            wait = _run(throttle.begin(email, address))
        except Exception:
            log.exception("login throttle unavailable")
            st.error("Sign-in is unavailable right now: try again in a minute.")
            return
        if wait is not None:
            st.error(
                f"Too many failed sign-ins for this email: try again in {wait:.0f} s."
                if wait >= 1
                else "Too many failed sign-ins for this email: try again in a second."
            )
            return
        outcome = "error"  # a database outage releases the attempt without counting it
        try:
            principal = sign_in(email, password)
            outcome = "ok"
        except DomainError as exc:
            if exc.code == "invalid_credentials":
                outcome = "wrong"
            st.error(exc.message[:1].upper() + exc.message[1:] + ".")
            return
        finally:
            try:
                _run(throttle.end(email, address, outcome=outcome))
            except Exception:  # the store failed; the sign-in's own outcome stands
                log.exception("login throttle could not record the attempt")
        st.session_state[SESSION_KEY] = principal
        st.rerun()


def logout() -> None:
    """Forget everything this tab held: the principal, widget choices, a fresh token."""
    st.session_state.clear()
    st.rerun()
