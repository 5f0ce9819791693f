"""Every controller of the API, in OpenAPI order."""

from api.routes.accounts import AccountController, AuthTestController, OrganizationController
from api.routes.alerts import AlertController
from api.routes.analytics import AnalyticsController
from api.routes.health import HealthController
from api.routes.reports import ReportController
from api.routes.sites import MeterController, SiteController
from api.routes.timeseries import TimeseriesController
from api.routes.tokens import IntegrationTokenController

ROUTE_HANDLERS = [
    HealthController,
    AccountController,
    OrganizationController,
    IntegrationTokenController,
    SiteController,
    MeterController,
    TimeseriesController,
    AnalyticsController,
    AlertController,
    ReportController,
]

TEST_ONLY_ROUTE_HANDLERS = [AuthTestController]
