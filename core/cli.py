"""The `cei` command: run the API and app, migrate the database, create users and tokens."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import click

from core.db import current_revision, migrate, session_scope
from core.errors import DomainError
from core.models import IntegrationTokenCreate, Role
from core.settings import get_settings


def _fail(exc: DomainError) -> None:
    raise click.ClickException(exc.message)


def _app_main() -> Path:
    spec = importlib.util.find_spec("app")
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException("the 'app' package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "main.py"


def _api_argv(host: str, port: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "api.main:create_app",
        "--host",
        host,
        "--port",
        str(port),
        "--no-server-header",
    ]
    proxies = get_settings().forwarded_allow_ips
    if proxies:  # the client address comes from these proxies' X-Forwarded-For
        argv += ["--forwarded-allow-ips", proxies]
    return argv


def _app_config_flags() -> list[str]:
    """The project's .streamlit/config.toml as command-line flags, so the theme applies from
    whatever directory `cei up` is started in (Streamlit only reads the current one's)."""
    import tomllib

    path = _app_main().parent.parent / ".streamlit" / "config.toml"
    if not path.is_file():
        return []
    flags = []
    for section, values in tomllib.loads(path.read_text(encoding="utf-8")).items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += [f"--{section}.{key}", text]
    return flags


def _app_argv(port: int, host: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(_app_main()),
        *_app_config_flags(),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]


@click.group()
def main() -> None:
    """CEI: find avoidable energy waste in factories."""


@main.command()
@click.option("--host", default=None, help="Interface for both servers (default 127.0.0.1).")
@click.option("--api-port", type=int, default=None, help="API port (default 8000).")
@click.option("--app-port", type=int, default=None, help="App port (default 8501).")
def up(host: str | None, api_port: int | None, app_port: int | None) -> None:
    """Migrate the database, then run the API and the app together; Ctrl-C stops both."""
    settings = get_settings()
    host = host or settings.api_host
    api_port = api_port or settings.api_port
    app_port = app_port or settings.app_port
    migrate()
    procs = [
        subprocess.Popen(_api_argv(host, api_port)),
        subprocess.Popen(_app_argv(app_port, host)),
    ]
    click.echo(f"CEI API  http://{host}:{api_port}/api/v1/health  (docs: /api/docs)")
    click.echo(f"CEI app  http://{host}:{app_port}")
    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.3)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
    if failed and not stopping:
        raise SystemExit(1)


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
def api(host: str | None, port: int | None, workers: int) -> None:
    """Run the API server."""
    settings = get_settings()
    argv = _api_argv(host or settings.api_host, port or settings.api_port)
    if workers > 1:
        argv += ["--workers", str(workers)]
    raise SystemExit(subprocess.call(argv))


@main.command(name="app")
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8501).")
def run_app(host: str | None, port: int | None) -> None:
    """Run the Streamlit app."""
    settings = get_settings()
    raise SystemExit(
        subprocess.call(_app_argv(port or settings.app_port, host or settings.api_host))
    )


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration."""
    migrate()
    click.echo(f"database at revision {current_revision()}")


@db.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
def backup(target: Path) -> None:
    """Copy the embedded SQLite database to TARGET while CEI keeps running.

    Uses SQLite's online backup API, so the copy is consistent even during ingestion. For
    PostgreSQL use pg_dump (see docs/operations.md).
    """
    import sqlite3

    from sqlalchemy.engine import make_url

    url = make_url(get_settings().effective_database_url)
    if url.get_backend_name() != "sqlite":
        raise click.ClickException("this is PostgreSQL: back it up with pg_dump")
    source = Path(url.database or "")
    if not source.is_file():
        raise click.ClickException(f"no database at {source}")
    if target.exists():
        raise click.ClickException(f"{target} exists; choose a new file")
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst, pages=4096)
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        raise click.ClickException(f"the copy failed its integrity check: {check}")
    click.echo(f"backed up {source} to {target} ({target.stat().st_size:,} bytes, checked)")


@main.group()
def user() -> None:
    """People who sign in."""


@user.command(name="create")
@click.option("--email", required=True)
@click.option("--org", "org_ref", help="Existing organisation (id or exact name).")
@click.option("--new-org", help="Create this organisation and make the user its admin.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=None,
    help="Role in an existing org (default analyst).",
)
@click.password_option(help="Prompted for when not given.")
def create_user(
    email: str, org_ref: str | None, new_org: str | None, role: str | None, password: str
) -> None:
    """Create a user in an organisation, or a new organisation with its admin."""
    from core import accounts

    settings = get_settings()
    if bool(org_ref) == bool(new_org):
        raise click.UsageError("give exactly one of --org or --new-org")
    try:
        with session_scope() as session:
            if new_org:
                if role not in (None, Role.admin.value):
                    raise click.UsageError("the first user of a new organisation is its admin")
                u, org = accounts.signup(
                    session,
                    email=email,
                    password=password,
                    organization_name=new_org,
                    settings=settings,
                )
            else:
                org = accounts.find_org(session, ref=org_ref)
                u = accounts.create_user(
                    session,
                    org_id=org.id,
                    email=email,
                    password=password,
                    role=Role(role or Role.analyst),
                    settings=settings,
                )
            click.echo(f"created {u.role} {u.email} in organisation {org.id} ({org.name})")
    except DomainError as exc:
        _fail(exc)


@main.group()
def token() -> None:
    """Integration tokens for SCADA relays."""


@token.command(name="create")
@click.option("--org", "org_ref", required=True, help="Organisation (id or exact name).")
@click.option("--name", required=True, help="What the token is for, e.g. factory-scada-line1.")
@click.option("--site", "site_ids", multiple=True, help="Limit to this site_id (repeatable).")
@click.option("--expires-in-days", type=int, default=None)
def create_token(
    org_ref: str, name: str, site_ids: tuple[str, ...], expires_in_days: int | None
) -> None:
    """Mint an integration token and print it once."""
    from core import accounts, tokens

    try:
        with session_scope() as session:
            org = accounts.find_org(session, ref=org_ref)
            data = IntegrationTokenCreate(
                name=name, expires_in_days=expires_in_days, site_ids=list(site_ids) or None
            )
            created = tokens.create_token(session, org_id=org.id, data=data, created_by=None)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"token {created.id} ({created.prefix}…) for {org.name}; it is shown only now:")
    click.echo(created.token)


@main.group()
def ingest() -> None:
    """Load readings without going through HTTP."""


@ingest.command(name="csv")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "org_ref", required=True, help="Organisation (id or exact name).")
@click.option("--site", "site_id", default=None, help="site_id for rows that have none.")
@click.option("--revise", is_flag=True, help="Replace stored values that differ (keeps history).")
def ingest_csv_file(path: Path, org_ref: str, site_id: str | None, revise: bool) -> None:
    """Ingest a CSV (site_id,meter_id,timestamp_utc,value,unit) with a progress bar.

    Prints the result as JSON, the same shape as the API's; exits 1 if any row failed.
    """
    import json

    from core import accounts, ingestion
    from core.db import get_engine

    with session_scope() as session:
        org = accounts.find_org(session, ref=org_ref)
        principal = accounts.Principal(org_id=org.id, role=Role.admin, kind="user")
    with path.open("rb") as fh:
        rows = max(sum(1 for _ in fh) - 1, 0)
    mode = ingestion.IngestMode.revise if revise else ingestion.IngestMode.insert
    try:
        with (
            path.open(encoding="utf-8-sig", newline="") as stream,
            click.progressbar(
                length=rows, label=f"Ingesting {path.name}", file=sys.stderr, show_pos=True
            ) as bar,
        ):
            result = ingestion.ingest_csv(
                get_engine(),
                principal=principal,
                stream=stream,
                mode=mode,
                default_site=site_id,
                progress=bar.update,
            )
    except DomainError as exc:
        _fail(exc)
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} is not UTF-8 text") from None
    click.echo(json.dumps(result.to_response(mode), indent=2))
    if result.failed:
        raise SystemExit(1)


@main.command()
@click.option("--reset", is_flag=True, help="Delete the demo organisation and build it again.")
@click.option("--days", type=int, default=90, show_default=True, help="Days of history.")
def demo(reset: bool, days: int) -> None:
    """Create the demo factory (two sites, 90 days of hourly data) and print its login."""
    from core import demo as demo_data
    from core.db import get_engine

    migrate()
    with click.progressbar(
        length=demo_data.demo_record_count(days), label="Loading demo data", file=sys.stderr
    ) as bar:
        out = demo_data.load_demo(
            get_engine(), settings=get_settings(), reset=reset, days=days, progress=bar.update
        )
    login_file = get_settings().data_dir / "demo_login.txt"
    if out["created"]:
        # Kept next to the embedded database, so `make run` can show it again next time.
        login_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(login_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{out['email']} {out['password']}\n")
        click.echo(f"Demo ready: {out['records']:,} readings.")
    saved = login_file.read_text(encoding="utf-8").split() if login_file.exists() else []
    password = saved[1] if len(saved) == 2 else "(unknown: cei demo --reset sets a new one)"
    click.echo(f"Sign in to the demo as {out['email']} with password {password}")
    if out["created"]:
        from core.alerts import scan_org

        scanned = scan_org(get_engine(), org_id=out["org_id"], lookback=timedelta(days=35))
        demo_data.triage_demo(get_engine(), org_id=out["org_id"])
        click.echo(f"Alert scan: {scanned.raised} alerts raised ({scanned.seconds:.1f} s).")


def _org_id(org_ref: str | None) -> int:
    """The organisation named by --org, or the only one there is."""
    from sqlmodel import select

    from core import accounts
    from core.models import Organization

    with session_scope() as session:
        if org_ref:
            try:
                return accounts.find_org(session, ref=org_ref).id
            except DomainError as exc:
                _fail(exc)
        orgs = session.exec(select(Organization).order_by(Organization.id)).all()
    if len(orgs) == 1:
        return orgs[0].id
    names = ", ".join(f"{o.id} ({o.name})" for o in orgs) or "none yet"
    raise click.ClickException(f"choose an organisation with --org: {names}")


@main.group()
def alerts() -> None:
    """Alert rules (run `cei alerts scan` from cron, e.g. hourly)."""


@alerts.command(name="scan")
@click.option("--org", "org_ref", default=None, help="Organisation (id or name); default all.")
@click.option("--lookback-hours", type=click.IntRange(1, 35 * 24), default=168, show_default=True)
def scan_alerts(org_ref: str | None, lookback_hours: int) -> None:
    """Run every rule over the recent hours of every meter and raise/extend/close alerts.

    Idempotent: running it again over the same data raises nothing new. Prints one JSON line
    per organisation with the counts.
    """
    import json

    from sqlmodel import select

    from core.alerts import scan_org
    from core.db import get_engine
    from core.models import Organization

    migrate()
    if org_ref:
        org_ids = [_org_id(org_ref)]
    else:
        with session_scope() as session:
            org_ids = list(session.exec(select(Organization.id).order_by(Organization.id)))
    failed = False
    for org_id in org_ids:
        result = scan_org(get_engine(), org_id=org_id, lookback=timedelta(hours=lookback_hours))
        failed |= bool(result.failed)
        click.echo(json.dumps({"org_id": org_id, **result.to_dict()}))
    if failed:
        raise SystemExit(1)


@main.group()
def report() -> None:
    """Write the weekly review or the pilot close-out report to a file."""


FORMATS = click.Choice(["html", "md", "json"])


def _write_report(data: dict, fmt: str, out: Path | None) -> None:
    import json

    from core import reports

    if fmt == "html":
        text = reports.render_html(data)
    elif fmt == "md":
        text = reports.render_markdown(data)
    else:
        text = json.dumps(data, indent=2)
    if out is None:
        click.echo(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {out} ({len(text.encode()):,} bytes).", err=True)


@report.command(name="weekly")
@click.option("--org", "org_ref", default=None, help="Organisation (id or name).")
@click.option("--site", "site_id", default=None, help="One site (default: every site).")
@click.option("--week", default=None, help="ISO week, e.g. 2026-W48 (default: last week).")
@click.option("--format", "fmt", type=FORMATS, default="html", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def report_weekly(
    org_ref: str | None, site_id: str | None, week: str | None, fmt: str, out: Path | None
) -> None:
    """The weekly review (HTML opens offline and prints to PDF; stdout without --out)."""
    from core import reports

    org_id = _org_id(org_ref)
    try:
        with session_scope() as session:
            data = reports.weekly_report(session, org_id=org_id, week=week, site_id=site_id)
    except DomainError as exc:
        _fail(exc)
    _write_report(data, fmt, out)


@report.command(name="pilot")
@click.option("--org", "org_ref", default=None, help="Organisation (id or name).")
@click.option("--site", "site_id", default=None, help="One site (default: every site).")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="UTC date.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="UTC date, excl.")
@click.option("--cost", type=click.FloatRange(min=0), default=None, help="For the payback.")
@click.option("--format", "fmt", type=FORMATS, default="html", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def report_pilot(
    org_ref: str | None,
    site_id: str | None,
    start,
    end,
    cost: float | None,
    fmt: str,
    out: Path | None,
) -> None:
    """The pilot close-out report and its scorecard (default: first reading to today)."""
    from core import reports

    org_id = _org_id(org_ref)
    began = time.perf_counter()
    try:
        with session_scope() as session:
            data = reports.pilot_report(
                session,
                org_id=org_id,
                start=start.date() if start else None,
                end=end.date() if end else None,
                site_id=site_id,
                cost=cost,
            )
    except DomainError as exc:
        _fail(exc)
    _write_report(data, fmt, out)
    for m in data["scorecard"]["metrics"]:
        mark = "PASS" if m["passed"] else "FAIL"
        click.echo(f"{mark}  {m['label']}: {m['display']} (target {m['target']})", err=True)
    click.echo(f"Built in {time.perf_counter() - began:.1f} s.", err=True)
