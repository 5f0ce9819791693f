"""Alerts: list, read with history, triage (analysts and admins; viewers read only)."""

from datetime import datetime
from typing import Annotated

from litestar import Controller, Request, get, patch
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, Parameter
from sqlmodel import Session

from api.auth import requires_role
from core import alerts
from core.models import AlertUpdate, Role

AlertId = Annotated[int, Parameter(ge=1, le=2**31 - 1)]


class AlertController(Controller):
    path = "/alerts"
    tags = ["alerts"]

    @get("/", sync_to_thread=True)
    def list_alerts(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        status: FromQuery[str | None] = None,
        site_id: FromQuery[str | None] = None,
        rule: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        limit: FromQuery[Annotated[int, Parameter(ge=1, le=500)]] = 100,
        offset: FromQuery[Annotated[int, Parameter(ge=0, le=10_000_000)]] = 0,
    ) -> dict:
        """Alerts, newest first. `status` open/acknowledged/resolved/dismissed; `rule`
        night-load/weekend-load/spike/baseload/baseline-deviation/data-gap; `since` keeps the
        alerts still running at or after that time. Paged: `count` is the total."""
        return alerts.list_alerts(
            db_session,
            org_id=request.user.org_id,
            status=status,
            site_id=site_id,
            rule=rule,
            since=since,
            limit=limit,
            offset=offset,
        )

    @get("/{alert_id:int}", sync_to_thread=True)
    def get_alert(
        self, request: Request, db_session: NamedDependency[Session], alert_id: AlertId
    ) -> dict:
        """One alert with its evidence (hourly actual vs expected kWh) and full history."""
        return alerts.get_alert(db_session, org_id=request.user.org_id, alert_id=alert_id)

    @patch("/{alert_id:int}", guards=[requires_role(Role.admin, Role.analyst)], sync_to_thread=True)
    def update_alert(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        alert_id: AlertId,
        data: JSONBody[AlertUpdate],
    ) -> dict:
        """Triage: `status` (open → acknowledged → resolved, or dismissed; resolved and
        dismissed alerts can be reopened), `root_cause`, `action`, `notes`,
        `impact_kwh_per_week` (the kWh a week the action saves). Illegal transitions are 409."""
        return alerts.update_alert(
            db_session,
            org_id=request.user.org_id,
            alert_id=alert_id,
            data=data,
            user_id=request.user.user_id,
        )
