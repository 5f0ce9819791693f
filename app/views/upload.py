"""Upload CSV: check the first rows, ingest with progress, see every refused line."""

import io

import pandas as pd
import streamlit as st
from sqlalchemy.exc import OperationalError

from app import data
from app.auth import current_user
from app.components.first_run import needs_sites
from core.accounts import Principal
from core.alerts import scan_org
from core.db import describe_db_failure, get_engine
from core.errors import DomainError
from core.ingestion import CSV_COLUMNS, IngestMode, IngestResult, ingest_csv, preview_csv
from core.models import Role

user = current_user()
st.title("Upload CSV")
if user["role"] not in ("admin", "analyst"):
    st.warning("Viewers cannot upload data.", icon=":material/lock:")
    st.stop()
st.caption(
    "Backfill hourly kWh: columns `" + ",".join(CSV_COLUMNS) + "` (header row; "
    "`idempotency_key` optional). `timestamp_utc` is the start of the hour, ISO 8601 with `Z`. "
    "Re-uploading a file is safe: rows already stored are skipped."
)


def _principal() -> Principal:
    return Principal(
        org_id=user["org_id"], role=Role(user["role"]), kind="user", user_id=user["user_id"]
    )


def _text(raw: bytes) -> io.StringIO:
    return io.StringIO(raw.decode("utf-8-sig"), newline="")


if not needs_sites(user["org_id"], "upload target"):
    sites = data.site_overview(user["org_id"])
    c1, c2 = st.columns(2)
    default_site = c1.selectbox(
        "Site for rows without a site_id", ["(from the file)"] + [s["site_id"] for s in sites],
        key="upload-site",
    )  # fmt: skip
    revise = c2.toggle(
        "Replace stored values that differ",
        help="Off: rows for hours already stored are skipped. On: a different value replaces "
        "the stored one, which stays in the revision history.",
        key="upload-revise",
    )
    mode = IngestMode.revise if revise else IngestMode.insert
    site = None if default_site == "(from the file)" else default_site
    upload = st.file_uploader("CSV file", type=["csv", "txt"], key="upload-file")
    if upload is None:
        st.stop()
    raw = upload.getvalue()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        st.error("The file is not UTF-8 text: save it as CSV UTF-8 and upload it again.")
        st.stop()
    total_rows = max(sum(1 for line in text.splitlines() if line.strip()) - 1, 0)
    if total_rows == 0:
        st.info("The file has no rows below its header: nothing to ingest.")
        st.stop()
    try:
        rows, check = preview_csv(
            get_engine(), principal=_principal(), stream=_text(raw), mode=mode, default_site=site
        )
    except DomainError as exc:
        st.error(exc.message)
        st.stop()
    st.markdown(f"##### Preview: the first {len(rows)} of {total_rows:,} rows")
    verdict = {e.index: f"{e.code}: {e.message}" for e in check.errors}
    preview = pd.DataFrame(rows)
    preview["check"] = [verdict.get(i, "ok") for i in range(len(rows))]
    st.dataframe(preview, hide_index=True, key="upload-preview")
    st.caption(
        f"In these rows: {check.ingested} new, {check.skipped_duplicate} already stored, "
        f"{check.failed} refused."
    )
    if st.button(f"Ingest {total_rows:,} rows", type="primary", icon=":material/upload:"):
        bar = st.progress(0.0, text="Ingesting…")
        done = {"rows": 0}

        def advance(n: int) -> None:
            done["rows"] += n
            share = min(done["rows"] / max(total_rows, 1), 1.0)
            bar.progress(share, text=f"Ingesting… {done['rows']:,} of {total_rows:,} rows")

        committed = IngestResult()  # what is stored, even if a later chunk fails
        try:
            result = ingest_csv(
                get_engine(), principal=_principal(), stream=_text(raw), mode=mode,
                default_site=site, progress=advance, committed=committed,
            )  # fmt: skip
        except (DomainError, OperationalError) as exc:
            message = (
                exc.message
                if isinstance(exc, DomainError)
                else f"The database did not take the rest ({describe_db_failure(exc)})."
            )
            if committed.touched:  # the chunks that made it in are scanned and shown
                scan_org(get_engine(), org_id=user["org_id"], touched=committed.touched)
            data.invalidate(user["org_id"])
            stored = (
                f" {committed.ingested:,} rows were stored before it stopped."
                if committed.ingested
                else ""
            )
            st.error(f"{message}{stored} Send the whole file again: stored rows are skipped.")
            st.stop()
        bar.progress(1.0, text="Done.")
        if result.touched:
            with st.spinner("Checking the new hours for alerts…"):
                scan_org(get_engine(), org_id=user["org_id"], touched=result.touched)
        data.invalidate(user["org_id"])
        st.session_state["upload-result"] = (upload.file_id, result.to_response(mode))
    kept = st.session_state.get("upload-result")
    outcome = kept[1] if kept and kept[0] == upload.file_id else None
    if outcome:
        m = st.columns(3)
        m[0].metric("Stored", f"{outcome['ingested']:,}")
        m[1].metric("Already stored", f"{outcome['skipped_duplicate']:,}")
        m[2].metric("Refused", f"{outcome['failed']:,}")
        if outcome["errors"]:
            errors = pd.DataFrame(outcome["errors"])[["line", "code", "field", "message"]]
            st.dataframe(errors, hide_index=True, key="upload-errors")
            st.download_button(
                "Download the error report (CSV)",
                errors.to_csv(index=False).encode("utf-8"),
                file_name="cei-upload-errors.csv",
                mime="text/csv",
                icon=":material/download:",
            )
            if outcome["failed"] > len(errors):
                st.caption(f"The first {len(errors):,} of {outcome['failed']:,} refused rows.")
        else:
            st.success("Every row was stored or already there.", icon=":material/check_circle:")
