"""The API's one wiring point: create_app(settings) -> Litestar."""

import gc
import logging
from importlib.metadata import PackageNotFoundError, version

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders, State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.stores.base import Store
from litestar.types import Message, Scope

from api.auth import BearerAuthMiddleware, integration_scope_guard
from api.deps import provide_session, provide_settings
from api.errors import document_errors, problem_details_config
from api.ratelimit import RateLimiter, make_store, rate_limit_guard, throttle_for
from api.routes import ROUTE_HANDLERS, TEST_ONLY_ROUTE_HANDLERS
from core.db import get_engine
from core.settings import Settings, get_settings

API_PREFIX = "/api/v1"
DOCS_PATH = "/api/docs"

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


async def add_security_headers(message: Message, scope: Scope) -> None:
    """On every response, errors and 404s included (response_headers misses those)."""
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value


OPENAPI_DESCRIPTION = """\
CEI receives hourly energy readings from factories and turns them into evidence of avoidable
waste. People authenticate with `POST /auth/login` (JWT, `Authorization: Bearer <access_token>`);
SCADA relays use an integration token (`Authorization: Bearer cei_int_…`), which may call only the
ingestion and ingest-health routes. Every error is `application/problem+json`:
`{status, title, detail, code[, errors]}`.
"""


def _version() -> str:
    try:
        return version("cei")
    except PackageNotFoundError:
        return "0.0.0"


def _freeze_startup_heap() -> None:
    # Everything imported at startup (pandas, statsmodels, scipy) lives as long as the process:
    # moving it out of the collector's reach keeps full collections cheap under ingest load.
    gc.collect()
    gc.freeze()


def _alert_scans(settings: Settings):
    """Startup/shutdown hooks of the scheduler that scans what accepted batches touched."""
    from core.alerts import IngestScanScheduler

    def start(app: Litestar) -> None:
        if settings.alert_scan_on_ingest:
            scheduler = IngestScanScheduler(
                settings.effective_database_url, delay=settings.alert_scan_delay_seconds
            )
            scheduler.start()
            app.state.alert_scans = scheduler

    def stop(app: Litestar) -> None:
        scheduler = app.state.get("alert_scans")
        if scheduler is not None:
            scheduler.stop()
            app.state.alert_scans = None

    return start, stop


def create_app(settings: Settings | None = None, *, rate_store: Store | None = None) -> Litestar:
    """Build the API for these settings (default: the environment's).

    `rate_store` holds the rate-limit and login counters; by default Redis when configured,
    else memory. Pass one store to several apps to share counters as workers do."""
    settings = settings or get_settings()
    store = rate_store or make_store(settings)
    token_limits = RateLimiter(store, per_minute=settings.rate_limit_token_per_minute)
    user_limits = RateLimiter(store, per_minute=settings.rate_limit_user_per_minute)
    anonymous_limits = RateLimiter(store, per_minute=settings.rate_limit_anonymous_per_minute)
    throttle = throttle_for(settings, store)
    engine = get_engine(settings.effective_database_url)
    handlers = list(ROUTE_HANDLERS)
    if settings.enable_test_auth_routes:
        handlers += TEST_ONLY_ROUTE_HANDLERS
    api = Router(path=API_PREFIX, route_handlers=handlers)
    logging.getLogger("cei").setLevel(logging.INFO)
    start_scans, stop_scans = _alert_scans(settings)

    async def close_store() -> None:
        if rate_store is None:  # ours to close (a Redis connection pool)
            await store.__aexit__(None, None, None)

    app = Litestar(
        route_handlers=[api],
        state=State({"engine": engine, "settings": settings, "login_throttle": throttle}),
        dependencies={
            "db_session": Provide(provide_session),
            "settings": Provide(provide_settings, sync_to_thread=False),
        },
        middleware=[
            DefineMiddleware(
                BearerAuthMiddleware,
                engine=engine,
                settings=settings,
                exclude=[f"^{DOCS_PATH}"],
            )
        ],
        plugins=[ProblemDetailsPlugin(problem_details_config())],
        openapi_config=OpenAPIConfig(
            title="CEI API",
            version=_version(),
            description=OPENAPI_DESCRIPTION,
            path=DOCS_PATH,
            use_handler_docstrings=True,
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin()],
        ),
        cors_config=CORSConfig(allow_origins=settings.cors_origins)
        if settings.cors_origins
        else None,
        before_send=[add_security_headers],
        # App-wide, so a handler mounted anywhere is closed to integration tokens by default.
        guards=[
            integration_scope_guard,
            rate_limit_guard(token_limits, user_limits, anonymous_limits),
        ],
        request_max_body_size=settings.max_body_bytes,
        on_startup=[start_scans, _freeze_startup_heap],
        on_shutdown=[stop_scans, close_store],
        debug=False,
    )
    document_errors(app)
    return app
