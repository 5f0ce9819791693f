"""Reports: weekly review, pilot close-out and the pilot scorecard, as JSON, HTML or Markdown."""

from enum import StrEnum
from typing import Annotated

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, Parameter
from sqlmodel import Session

from core import reports

# The HTML report carries its own inline plotly.js and styles, and nothing else.
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)


class ReportFormat(StrEnum):
    json = "json"
    html = "html"
    md = "md"


def _render(report: dict, fmt: ReportFormat, name: str) -> Response:
    if fmt == ReportFormat.json:
        return Response(report)
    if fmt == ReportFormat.md:
        return Response(
            reports.render_markdown(report),
            media_type="text/markdown",
            headers={"content-disposition": f'inline; filename="{name}.md"'},
        )
    return Response(
        reports.render_html(report),
        media_type="text/html",
        headers={
            "content-disposition": f'inline; filename="{name}.html"',
            "content-security-policy": REPORT_CSP,
        },
    )


class ReportController(Controller):
    path = "/reports"
    tags = ["reports"]

    @get("/weekly", sync_to_thread=True)
    def weekly(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str | None] = None,
        week: FromQuery[Annotated[str | None, Parameter(pattern=r"^\d{4}-W\d{2}$")]] = None,
        format: FromQuery[ReportFormat] = ReportFormat.json,
    ) -> Response:
        """Weekly review of a site (or every site) for ISO week `YYYY-Www` in the site's local
        time (default: last complete week): completeness per meter, errors by code, new
        alerts, confirmed issues and actions, avoided energy, next week's focus.
        `format=html` is a self-contained page (charts work offline, prints to PDF)."""
        report = reports.weekly_report(
            db_session, org_id=request.user.org_id, week=week, site_id=site_id
        )
        return _render(report, format, f"cei-weekly-{report['week']}")

    @get("/pilot", sync_to_thread=True)
    def pilot(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        start: FromQuery[str | None] = None,
        end: FromQuery[str | None] = None,
        site_id: FromQuery[str | None] = None,
        cost: FromQuery[Annotated[float | None, Parameter(ge=0, le=1e12)]] = None,
        format: FromQuery[ReportFormat] = ReportFormat.json,
    ) -> Response:
        """Pilot close-out over [start, end) (UTC dates; default: from the first reading to
        today): coverage against the success metrics, key anomalies, recommended and
        implemented changes, the savings range and, given `cost`, the simple payback."""
        report = reports.pilot_report(
            db_session,
            org_id=request.user.org_id,
            start=start,
            end=end,
            site_id=site_id,
            cost=cost,
        )
        return _render(report, format, f"cei-pilot-{report['start_utc'][:10]}")

    @get("/scorecard", sync_to_thread=True)
    def scorecard(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        start: FromQuery[str | None] = None,
        end: FromQuery[str | None] = None,
        site_id: FromQuery[str | None] = None,
    ) -> dict:
        """Each pilot success metric with value, target and pass/fail: coverage > 95 %,
        data-gap alarm hours < 2 %, at least 3 actionable inefficiencies, a savings range."""
        return reports.scorecard(
            db_session, org_id=request.user.org_id, start=start, end=end, site_id=site_id
        )
