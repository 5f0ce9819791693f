"""The only place that turns failures into HTTP: one application/problem+json shape for all."""

import logging
from http import HTTPStatus

from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException
from sqlalchemy.exc import DataError, DBAPIError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger("cei.api")

RETRY_AFTER_S = "5"

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    Unauthorized: 401,
    InvalidInput: 400,
    Unavailable: 503,
}

CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def problem(
    status: int,
    detail: str,
    code: str,
    *,
    errors: list | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemDetailsException:
    """The one error shape: {status, title, detail, code[, errors]}."""
    extra: dict = {"code": code}
    if errors:
        extra["errors"] = errors
    return ProblemDetailsException(
        status_code=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        extra=extra,
        headers=headers,
    )


def _status_for(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def domain_to_problem(exc: DomainError) -> ProblemDetailsException:
    status = _status_for(exc)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif status == 503:
        headers = {"Retry-After": RETRY_AFTER_S}
    return problem(status, exc.message, exc.code, headers=headers)


def http_to_problem(exc: HTTPException) -> ProblemDetailsException:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else None
        return problem(400, "request validation failed", "validation_error", errors=errors)
    detail = exc.detail or HTTPStatus(status).phrase
    if status == 413:
        detail = f"{detail}: the request body is larger than this server accepts"
    errors = exc.extra if isinstance(exc.extra, list) else None
    headers = dict(exc.headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return problem(
        status, detail, CODE_BY_STATUS.get(status, "error"), errors=errors, headers=headers or None
    )


# What "the database cannot answer now; retry" looks like. SQLite primary result codes:
# BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL (a locking race).
SQLITE_UNAVAILABLE_CODES = frozenset({5, 6, 8, 10, 13, 14, 15})
SQLITE_UNAVAILABLE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "readonly database",
    "disk i/o error",
    "database or disk is full",
    "unable to open database",
    "locking protocol",
)
# PostgreSQL SQLSTATE classes: connection (08), transaction rollback: serialization failure and
# deadlock (40), insufficient resources: disk full, out of memory, too many connections (53),
# operator intervention: shutdown, cannot connect now, statement timeout (57), system/I-O (58);
# and single codes: read-only transaction, lock not available.
PG_UNAVAILABLE_CLASSES = ("08", "40", "53", "57", "58")
PG_UNAVAILABLE_CODES = frozenset({"25006", "55P03"})


def database_unavailable(exc: DBAPIError) -> bool:
    """True when the error means the database is down, busy, locked, full, failing I/O or
    read-only (worth a retry: 503); False for a fault in the statement or schema (500)."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in SQLITE_UNAVAILABLE_CODES
    state = getattr(orig, "sqlstate", None)
    if state:
        return state.startswith(PG_UNAVAILABLE_CLASSES) or state in PG_UNAVAILABLE_CODES
    if type(orig).__module__.startswith("psycopg"):
        # No SQLSTATE: the client library's own failure (refused, reset, timed out).
        return isinstance(exc, OperationalError)
    message = str(orig).lower()
    return any(m in message for m in SQLITE_UNAVAILABLE_MESSAGES)


def _unavailable() -> ProblemDetailsException:
    return problem(
        503,
        "the database is not answering; retry later",
        "database_unavailable",
        headers={"Retry-After": RETRY_AFTER_S},
    )


def database_to_problem(exc: DBAPIError) -> ProblemDetailsException:
    """Database errors that a retry can cure are 503 with Retry-After; any other (no such table,
    a syntax error) is a fault of ours: 500, logged, no details to the client."""
    if not database_unavailable(exc):
        return unexpected_to_problem(exc)
    log.warning("database unavailable: %s", exc.__class__.__name__)
    return _unavailable()


def pool_timeout_to_problem(exc: PoolTimeout) -> ProblemDetailsException:
    """Every connection of the pool is busy for longer than the pool waits: busy, retry."""
    log.warning("database connection pool exhausted")
    return _unavailable()


def internal_db_to_problem(exc: InternalError) -> ProblemDetailsException:
    """A read-only database (PostgreSQL in recovery, a read-only replica or setting) is
    unavailable for writing: 503 and retry. Any other internal error is a 500."""
    return database_to_problem(exc)


def data_error_to_problem(exc: DataError) -> ProblemDetailsException:
    """The database refused a value the request carried (a NUL character, a number out of
    range): the client's input is wrong, so 400, never a 500."""
    log.info("database refused a value: %s", type(exc.orig).__name__)
    return problem(400, "a value in the request cannot be stored or searched for", "invalid_value")


def unexpected_to_problem(exc: Exception) -> ProblemDetailsException:
    # Logged with its traceback here; the client gets no internals.
    log.error("unhandled error", exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged", "internal_error")


def problem_details_config() -> ProblemDetailsConfig:
    return ProblemDetailsConfig(
        exception_to_problem_detail_map={
            DomainError: domain_to_problem,
            HTTPException: http_to_problem,
            OperationalError: database_to_problem,
            InternalError: internal_db_to_problem,
            DataError: data_error_to_problem,
            PoolTimeout: pool_timeout_to_problem,
            Exception: unexpected_to_problem,
        },
    )


PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["status", "title", "detail", "code"],
    "properties": {
        "status": {"type": "integer"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
ERROR_MEANINGS = {
    "400": "The request is malformed or a field is invalid (`errors` names each field)",
    "401": "Missing, expired or revoked credentials",
    "403": "The caller's role or token may not do this",
    "404": "No such resource in the caller's organisation",
    "409": "Conflicts with the current state (e.g. an illegal alert transition)",
    "413": "The body or batch is too large",
    "429": "Rate limited: retry after the Retry-After seconds",
    "503": "The database is unavailable: retry after the Retry-After seconds",
}


def document_errors(app) -> None:
    """Every operation documents its error answers as they are sent: problem+json."""
    from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Schema

    schema = Schema(
        type="object",
        required=PROBLEM_SCHEMA["required"],
        properties={k: Schema(**v) if "items" not in v else Schema(type="array")
                    for k, v in PROBLEM_SCHEMA["properties"].items()},
    )  # fmt: skip
    content = {"application/problem+json": OpenAPIMediaType(schema=schema)}
    text = OpenAPIMediaType(schema=Schema(type="string"))
    for name, path in (app.openapi_schema.paths or {}).items():
        if name.endswith(("/reports/weekly", "/reports/pilot")) and path.get:
            # format=html|md answers in those media types instead of JSON.
            ok = path.get.responses["200"]
            ok.content = {**(ok.content or {}), "text/html": text, "text/markdown": text}
        for method in ("get", "post", "put", "patch", "delete"):
            operation = getattr(path, method, None)
            if operation is None:
                continue
            responses = operation.responses or {}
            for status, meaning in ERROR_MEANINGS.items():
                responses[status] = OpenAPIResponse(description=meaning, content=content)
            operation.responses = responses
