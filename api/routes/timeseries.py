"""Ingestion (JSON batch, CSV upload) and reading back: summary, series, export, ingest health."""

import codecs
import io
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated, Any

import msgspec
from anyio import to_thread
from litestar import Controller, Request, get, post
from litestar.datastructures import State, UploadFile
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromQuery, Parameter
from litestar.response import Stream
from sqlmodel import Session

from api.auth import requires_role
from core import health, readings
from core.accounts import Principal
from core.db import session_scope
from core.errors import InvalidInput
from core.ingestion import IngestMode, IngestResult, ingest_csv, ingest_records
from core.models import Role
from core.settings import Settings

WINDOW = Annotated[int, Parameter(ge=1, le=24 * 366)]
writers = requires_role(Role.admin, Role.analyst)
TOKEN_OK = {"integration_token": True}
_SPOOL_BYTES = 8 * 1024 * 1024


# The two ingest routes read the raw body themselves (speed, limits, one error per bad record),
# so Litestar cannot infer their bodies: these document them for clients and the fuzzer.
_RECORD = Schema(
    type=OpenAPIType.OBJECT,
    required=["site_id", "meter_id", "timestamp_utc", "value"],
    properties={
        "site_id": Schema(type=OpenAPIType.STRING, max_length=64),
        "meter_id": Schema(type=OpenAPIType.STRING, max_length=64),
        "timestamp_utc": Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.DATE_TIME,
            description="ISO 8601 UTC with Z: the START of the hour",
        ),
        "value": Schema(type=OpenAPIType.NUMBER, minimum=0, description="kWh in that hour"),
        "unit": Schema(type=OpenAPIType.STRING, description="kWh (default) or the meter's unit"),
        "idempotency_key": Schema(type=OpenAPIType.STRING, max_length=200),
    },
)
_RECORDS = Schema(type=OpenAPIType.ARRAY, items=_RECORD)
BATCH_BODY = RequestBody(
    required=True,
    description='A JSON list of records, or `{"records": [...]}`; each record is checked on its '
    "own and reported in `errors` when refused.",
    content={
        "application/json": OpenAPIMediaType(
            schema=Schema(
                one_of=[
                    _RECORDS,
                    Schema(
                        type=OpenAPIType.OBJECT,
                        required=["records"],
                        properties={"records": _RECORDS},
                    ),
                ]
            )
        )
    },
)
UPLOAD_BODY = RequestBody(
    required=True,
    description="The CSV (UTF-8, header row `site_id,meter_id,timestamp_utc,value[,unit]"
    "[,idempotency_key]`) as the body, or as the multipart field `file`.",
    content={
        "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
        "multipart/form-data": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                required=["file"],
                properties={"file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)},
            )
        ),
    },
)


@dataclass
class _BatchOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = BATCH_BODY


@dataclass
class _UploadOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = UPLOAD_BODY


def _records_from_body(body: bytes, limit: int) -> list[Any]:
    try:
        doc = msgspec.json.decode(body)  # fast path
    except (msgspec.DecodeError, RecursionError, ValueError):
        doc = None
    try:
        # The standard library also reads NaN/Infinity literals: those records then fail
        # alone with INVALID_VALUE instead of sinking the whole batch.
        doc = json.loads(body) if doc is None else doc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}", code="malformed_json") from None
    except RecursionError:
        raise InvalidInput("malformed JSON: nested too deeply", code="malformed_json") from None
    records = doc.get("records") if isinstance(doc, dict) else doc
    if not isinstance(records, list):
        raise InvalidInput(
            'body must be a JSON list of records or {"records": [...]}', code="invalid_body"
        )
    if len(records) > limit:
        raise HTTPException(
            status_code=413,
            detail=f"batch of {len(records)} records exceeds the limit of {limit}; "
            "split it into smaller batches",
        )
    return records


class TimeseriesController(Controller):
    path = "/timeseries"
    tags = ["timeseries"]

    @post(
        "/batch",
        guards=[writers],
        opt=TOKEN_OK,
        status_code=200,
        operation_class=_BatchOperation,
    )
    async def ingest_batch(
        self,
        request: Request,
        state: State,
        settings: NamedDependency[Settings],
        mode: FromQuery[IngestMode] = IngestMode.insert,
    ) -> dict:
        """Store hourly kWh records; bad records are reported, good ones kept.

        Body: a JSON list of records, or `{"records": [...]}`, each
        `{"site_id", "meter_id", "timestamp_utc", "value", "unit"?, "idempotency_key"?}`.
        `timestamp_utc` is ISO 8601 UTC with `Z` and is the START of the hour whose energy
        `value` (kWh, finite, >= 0) holds. `idempotency_key` defaults to
        `site_id-meter_id-timestamp_utc`. Retried records count as `skipped_duplicate`. A
        different value for a stored hour is VALUE_CONFLICT unless `mode=revise`, which
        replaces it and keeps the old value in the revision history (the response then also
        has `revised`). Response: `{"ingested", "skipped_duplicate", "failed", "errors": [{"index",
        "code", "field", "message"}]}`.
        """
        # The body is read before the transaction opens, so a slow client holds no lock.
        records = _records_from_body(await request.body(), settings.max_batch_records)
        result = await to_thread.run_sync(
            partial(_ingest_batch, state.engine, request.user, records, mode)
        )
        _schedule_scan(state, request.user, result)
        return result.to_response(mode)

    @post(
        "/upload",
        guards=[writers],
        opt=TOKEN_OK,
        status_code=200,
        request_max_body_size=None,  # CSV backfills are large: limited below by settings
        operation_class=_UploadOperation,
    )
    async def upload_csv(
        self,
        request: Request,
        state: State,
        settings: NamedDependency[Settings],
        mode: FromQuery[IngestMode] = IngestMode.insert,
        site_id: FromQuery[str | None] = None,
    ) -> dict:
        """Backfill from CSV: `multipart/form-data` field `file`, or the CSV as a `text/csv` body.

        Columns `site_id, meter_id, timestamp_utc, value, unit` (header row required;
        `idempotency_key` optional; `site_id` may come from the query instead). Same rules and
        response as /batch; errors carry the CSV `line`. Streamed in chunks, each committed on
        its own, so re-sending a file after a failure is safe.
        """
        spool = await _spool_upload(request, settings.max_upload_bytes)
        # Chunks commit one by one: if a later one fails, those already stored still go to
        # the alert scan.
        committed = IngestResult()
        try:
            args = (state.engine, request.user, spool, mode, site_id, committed)
            await to_thread.run_sync(partial(_ingest_spooled, *args))
        finally:
            spool.close()
            _schedule_scan(state, request.user, committed)
        return committed.to_response(mode)

    @get("/summary", sync_to_thread=True)
    def get_summary(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str],
        window_hours: FromQuery[WINDOW] = 24,
    ) -> dict:
        """Per meter of a site over the last `window_hours` whole hours: points vs expected,
        total/min/max/mean kWh, first and last timestamp."""
        return readings.summary(
            db_session, org_id=request.user.org_id, site_id=site_id, window_hours=window_hours
        )

    @get("/series", sync_to_thread=True)
    def get_series(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str],
        meter_id: FromQuery[str],
        start: FromQuery[datetime],
        end: FromQuery[datetime],
        resolution: FromQuery[readings.Resolution] = readings.Resolution.hour,
    ) -> dict:
        """A meter's kWh in [start, end). Hourly points have `kwh: null` for missing hours.
        `day`/`week` buckets are whole local days/ISO weeks of the site, each with `hours`
        covered, `expected_hours` (23/25 on DST days) and `complete`."""
        return readings.series(
            db_session,
            org_id=request.user.org_id,
            site_id=site_id,
            meter_id=meter_id,
            start=start,
            end=end,
            resolution=resolution,
        )

    @get("/export", sync_to_thread=True, media_type="text/csv")
    def export(
        self,
        request: Request,
        state: State,
        site_id: FromQuery[str],
        meter_id: FromQuery[str | None] = None,
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
    ) -> Stream:
        """CSV in the ingest columns (plus idempotency_key): uploading it back changes nothing."""
        for bound in (start, end):
            if bound is not None and bound.tzinfo is None:
                raise InvalidInput("start and end must carry a time zone, e.g. ...T00:00:00Z")
        org_id = request.user.org_id
        # Checked now, so a bad id is a 404 rather than a stream that breaks off.
        with session_scope(state.engine) as session:
            readings.export_csv(
                session, org_id=org_id, site_id=site_id, meter_id=meter_id, start=start, end=end
            )

        def body():
            with session_scope(state.engine) as session:
                yield from readings.export_csv(
                    session,
                    org_id=org_id,
                    site_id=site_id,
                    meter_id=meter_id,
                    start=start,
                    end=end,
                )

        name = f"cei-{site_id}{'-' + meter_id if meter_id else ''}.csv"
        return Stream(
            body(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @get("/ingest_health", sync_to_thread=True, opt=TOKEN_OK)
    def get_ingest_health(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        window_hours: FromQuery[WINDOW] = 24,
        site_id: FromQuery[str | None] = None,
    ) -> dict:
        """Completeness per registered meter over the last `window_hours` whole hours (UTC),
        meters that sent nothing included at 0 %. `last_seen` is when data last arrived."""
        principal: Principal = request.user
        return health.ingest_health(
            db_session,
            org_id=principal.org_id,
            window_hours=window_hours,
            site_id=site_id,
            site_ids=principal.site_ids,
        )


async def _spool_upload(request: Request, limit: int) -> tempfile.SpooledTemporaryFile:
    """Copy the uploaded CSV to a spooled temporary file (memory, then disk), enforcing `limit`."""
    content_type = request.headers.get("content-type", "")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"upload exceeds the limit of {limit} bytes")
    # Closed by the caller once ingested (or below on failure).
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b")  # noqa: SIM115
    try:
        # Decoded as it arrives, so a file that is not UTF-8 is refused before any row is stored.
        utf8 = codecs.getincrementaldecoder("utf-8")()
        if content_type.startswith("multipart/form-data"):
            if declared is None:
                raise HTTPException(status_code=411, detail="multipart uploads need Content-Length")
            form = await request.form()
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("multipart upload needs a file field named 'file'")
            while chunk := await upload.read(1024 * 1024):
                _check_utf8(utf8, chunk)
                spool.write(chunk)
            await upload.close()
        else:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(
                        status_code=413, detail=f"upload exceeds the limit of {limit} bytes"
                    )
                _check_utf8(utf8, chunk)
                spool.write(chunk)
        _check_utf8(utf8, b"", final=True)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


def _check_utf8(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool = False) -> None:
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError:
        raise InvalidInput("the CSV must be UTF-8 text", code="invalid_csv") from None


def _schedule_scan(state: State, principal: Principal, result) -> None:
    """Committed readings go to the alert scan (coalesced, in the background)."""
    scheduler = state.get("alert_scans")
    if scheduler is not None and result.touched:
        scheduler.notify(principal.org_id, result.touched)


def _ingest_batch(engine, principal, records, mode):
    with session_scope(engine) as session:
        return ingest_records(session, principal=principal, records=records, mode=mode)


def _ingest_spooled(engine, principal, spool, mode, site_id, committed):
    text = io.TextIOWrapper(spool, encoding="utf-8-sig", newline="")
    try:
        return ingest_csv(
            engine,
            principal=principal,
            stream=text,
            mode=mode,
            default_site=site_id,
            committed=committed,
        )
    except UnicodeDecodeError:
        raise InvalidInput("the CSV must be UTF-8 text", code="invalid_csv") from None
    finally:
        text.detach()
