"""Sites, meters and the integration mapping table."""

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from sqlmodel import Session

from api.auth import requires_admin
from api.deps import PageLimit, PageOffset, page
from core import sites
from core.models import (
    MeterCreate,
    MeterPublic,
    MetersPublic,
    MeterUpdate,
    SiteCreate,
    SitePublic,
    SitesPublic,
    SiteUpdate,
)


class SiteController(Controller):
    path = "/sites"
    tags = ["sites and meters"]

    @get("/", sync_to_thread=True)
    def list_sites(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        limit: FromQuery[PageLimit] = 500,
        offset: FromQuery[PageOffset] = 0,
    ) -> SitesPublic:
        """The organisation's sites with their meter counts; paged, `count` is the total."""
        rows = sites.list_sites(db_session, org_id=request.user.org_id)
        return SitesPublic(data=page(rows, limit, offset), count=len(rows))

    @post("/", sync_to_thread=True, guards=[requires_admin])
    def create_site(
        self, request: Request, db_session: NamedDependency[Session], data: JSONBody[SiteCreate]
    ) -> SitePublic:
        """Register a site. `site_id` is unique across CEI; `timezone` is an IANA name."""
        site = sites.create_site(db_session, org_id=request.user.org_id, data=data)
        return sites.site_public(site, 0)

    @get("/mapping.csv", sync_to_thread=True, media_type="text/csv")
    def mapping_csv(self, request: Request, db_session: NamedDependency[Session]) -> Response[str]:
        """The integration mapping table (physical names ↔ site_id/meter_id) as CSV."""
        body = sites.mapping_csv(db_session, org_id=request.user.org_id)
        return Response(
            body,
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="cei-integration-mapping.csv"'},
        )

    @get("/{site_id:str}", sync_to_thread=True)
    def get_site(
        self, request: Request, db_session: NamedDependency[Session], site_id: FromPath[str]
    ) -> SitePublic:
        """One site."""
        site = sites.get_site(db_session, org_id=request.user.org_id, site_id=site_id)
        return sites.site_public(site, sites.count_meters(db_session, site=site))

    @patch("/{site_id:str}", sync_to_thread=True, guards=[requires_admin])
    def update_site(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromPath[str],
        data: JSONBody[SiteUpdate],
    ) -> SitePublic:
        """Rename a site or change its time zone or operating schedule (site_id is fixed)."""
        site = sites.update_site(db_session, org_id=request.user.org_id, site_id=site_id, data=data)
        return sites.site_public(site, sites.count_meters(db_session, site=site))


class MeterController(Controller):
    path = "/sites/{site_id:str}/meters"
    tags = ["sites and meters"]

    @get("/", sync_to_thread=True)
    def list_meters(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromPath[str],
        limit: FromQuery[PageLimit] = 500,
        offset: FromQuery[PageOffset] = 0,
    ) -> MetersPublic:
        """The meters registered at a site; paged, `count` is the total."""
        site, meters = sites.list_meters(db_session, org_id=request.user.org_id, site_id=site_id)
        rows = [sites.meter_public(m, site) for m in page(meters, limit, offset)]
        return MetersPublic(data=rows, count=len(meters))

    @post("/", sync_to_thread=True, guards=[requires_admin])
    def create_meter(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromPath[str],
        data: JSONBody[MeterCreate],
    ) -> MeterPublic:
        """Register a meter at a site; `meter_id` is unique within the site."""
        org_id = request.user.org_id
        meter = sites.create_meter(db_session, org_id=org_id, site_id=site_id, data=data)
        return sites.meter_public(meter, sites.get_site(db_session, org_id=org_id, site_id=site_id))

    @get("/{meter_id:str}", sync_to_thread=True)
    def get_meter(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromPath[str],
        meter_id: FromPath[str],
    ) -> MeterPublic:
        """One meter."""
        site, meter = sites.get_meter(
            db_session, org_id=request.user.org_id, site_id=site_id, meter_id=meter_id
        )
        return sites.meter_public(meter, site)

    @patch("/{meter_id:str}", sync_to_thread=True, guards=[requires_admin])
    def update_meter(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        site_id: FromPath[str],
        meter_id: FromPath[str],
        data: JSONBody[MeterUpdate],
    ) -> MeterPublic:
        """Rename a meter or change its kind (meter_id is fixed)."""
        site, meter = sites.update_meter(
            db_session, org_id=request.user.org_id, site_id=site_id, meter_id=meter_id, data=data
        )
        return sites.meter_public(meter, site)
