"""Analytics read endpoints: ingest metrics, KPIs, benchmark, baseline, anomalies, opportunities."""

from datetime import datetime

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from sqlmodel import Session

from core import health
from core.analytics import AnalyticsService
from core.baselines import DEFAULT_TRAINING_WEEKS


class AnalyticsController(Controller):
    path = "/analytics"
    tags = ["analytics"]

    @get("/ingest-metrics", sync_to_thread=True)
    def ingest_metrics(self, request: Request, db_session: NamedDependency[Session]) -> dict:
        """Per meter: last seen, completeness over 24 h and 7 d, ingest errors by code and
        gap hours (missing and longest run) over 7 d."""
        return health.ingest_metrics(db_session, org_id=request.user.org_id)

    @get("/kpis", sync_to_thread=True)
    def kpis(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str],
        meter_id: FromQuery[str],
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
    ) -> dict:
        """Total/mean/peak kWh, load factor, baseload (kWh and ratio), night and weekend shares
        (site local time) and completeness over [start, end) (default: the last 28 days)."""
        service = AnalyticsService(db_session, org_id=request.user.org_id)
        return service.compute_kpis(site_id, meter_id, start, end)

    @get("/benchmark", sync_to_thread=True)
    def benchmark(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str],
        meter_id: FromQuery[str],
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
    ) -> dict:
        """KPIs against the organisation's sector reference ranges, with their source and an
        `indicative` flag where the ranges are estimates rather than survey data."""
        service = AnalyticsService(db_session, org_id=request.user.org_id)
        return service.benchmark_against_industry(site_id, meter_id, start, end)

    @get("/baseline", sync_to_thread=True)
    def baseline(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str],
        meter_id: FromQuery[str],
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
        training_weeks: FromQuery[int] = DEFAULT_TRAINING_WEEKS,
    ) -> dict:
        """The meter's baseline, trained on the `training_weeks` before `start` (default 8;
        up to a year when there is more history): fit statistics against ASHRAE Guideline 14,
        hourly actual vs expected with the 95 % band, and a 7-day forecast. With too little
        history `ok` is false and `reason` says why."""
        service = AnalyticsService(
            db_session, org_id=request.user.org_id, training_weeks=training_weeks
        )
        return service.baseline(site_id, meter_id, start, end)

    @get("/anomalies", sync_to_thread=True)
    def anomalies(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str],
        meter_id: FromQuery[str],
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
    ) -> dict:
        """Hours outside the baseline band merged into events (start, end, peak, excess kWh,
        severity, spike or sustained)."""
        service = AnalyticsService(db_session, org_id=request.user.org_id)
        return service.anomalies(site_id, meter_id, start, end)

    @get("/opportunities", sync_to_thread=True)
    def opportunities(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str],
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
    ) -> dict:
        """Ranked waste opportunities of a site's energy meters: avoidable kWh (low-high),
        annualised kWh and money at the org's tariff, confidence, evidence, explanation."""
        service = AnalyticsService(db_session, org_id=request.user.org_id)
        return service.site_opportunities(site_id, start, end)

    @get("/savings", sync_to_thread=True)
    def savings(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromQuery[str | None] = None,
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
    ) -> dict:
        """'X-Y % avoidable kWh, A-B per year' for a site, or the whole organisation."""
        service = AnalyticsService(db_session, org_id=request.user.org_id)
        return service.savings(site_id, start, end)
