"""The real app in a real browser: `cei up` on loopback, headless Chromium driven by Playwright.

Uses the system's Chromium (Debian's `chromium` package; `.ci/run` installs it when missing);
Playwright never downloads a browser here. Screenshots go to test-artifacts/ (or
$CEI_TEST_ARTIFACTS): the Dashboard and Site view, and every page (with each Reports section)
for the demo organisation and for an empty one, under pages/, to look at after a change.

With CEI_DOCS_IMG=docs/img the README's two screenshots (Dashboard, Site view; 1400 wide, whole
page) are written there too, from the demo data.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CEI = [sys.executable, "-c", "from core.cli import main; main()"]
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
ARTIFACTS = Path(os.environ.get("CEI_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))
DOCS_IMG = os.environ.get("CEI_DOCS_IMG")
EMPTY_EMAIL, EMPTY_PASSWORD = "empty@cei.local", "empty-org-password-1"
# Sidebar title of every page an admin sees, and the file name of its screenshot.
PAGES = {
    "Dashboard": "dashboard",
    "Site view": "site-view",
    "Data health": "data-health",
    "Alerts": "alerts",
    "Opportunities & savings": "opportunities",
    "Reports": "reports",
    "Upload CSV": "upload",
    "Settings": "settings",
}
# The other sections of pages that show one section at a time (demo organisation).
SECTIONS = {
    "Reports": ("Weekly review", "Pilot report"),
    "Settings": ("Sites and meters", "Organisation", "Mapping table"),
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", name="running")
def running_fixture(tmp_path_factory):
    """The demo factory served by `cei up` from a fresh SQLite file."""
    work = tmp_path_factory.mktemp("browser")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{(work / 'cei.db').as_posix()}",
        "CEI_DATA_DIR": str(work),
        "CEI_ENV": "development",
    }
    subprocess.run(
        [*CEI, "demo", "--days", "49"], env=env, cwd=work, check=True, capture_output=True
    )
    email, password = (work / "demo_login.txt").read_text(encoding="utf-8").split()
    subprocess.run(
        [*CEI, "user", "create", "--email", EMPTY_EMAIL, "--new-org", "Empty Works",
         "--password", EMPTY_PASSWORD],
        env=env, cwd=work, check=True, capture_output=True,
    )  # fmt: skip
    api_port, app_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [*CEI, "up", "--api-port", str(api_port), "--app-port", str(app_port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{app_port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/_stcore/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("cei up did not serve the app within 90 s")
        time.sleep(0.5)
    yield {
        "base": base,
        "email": email,
        "password": password,
        "empty": {"email": EMPTY_EMAIL, "password": EMPTY_PASSWORD},
    }
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _settle(page) -> None:
    """Wait until Streamlit has finished running the page's script."""
    page.wait_for_timeout(500)
    for _ in range(240):
        if not page.locator("[data-testid='stStatusWidget']").count():
            break
        page.wait_for_timeout(250)
    page.wait_for_timeout(1000)


def _launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    )


def _sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(base)
    page.wait_for_selector("input[aria-label='Email']", timeout=60_000)
    page.locator("input[aria-label='Email']").fill(email)
    page.locator("input[aria-label='Password']").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Dashboard").wait_for(timeout=60_000)
    _settle(page)


def _open(page, title: str) -> None:
    page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).wait_for(timeout=60_000)
    _settle(page)


def _assert_clean(page, where: str) -> None:
    """No exception box, no traceback text, no error message of Streamlit's own."""
    assert page.locator("[data-testid='stException']").count() == 0, where
    body = page.locator("body").inner_text()
    for bad in ("Traceback", "Error:", "NaN", "nan kWh", "None kWh"):
        assert bad not in body, f"{where}: {bad!r} on the page"


def _full_shot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the window to fit."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stMainBlockContainer], section.main')]"
        ".map(e => e.scrollHeight), 1080)"
    )
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(800)  # charts re-lay out to the new size
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1080})


def test_login_dashboard_and_site_view_in_chromium(running):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        _sign_in(page, running["base"], running["email"], running["password"])
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.get_by_text("Bologna Plant - Main").count() >= 1
        assert page.locator("[data-testid='stMetric']").count() >= 8
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        _open(page, "Site view")
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.get_by_text("CV(RMSE)").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "site_view.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


@pytest.mark.parametrize("org", ["demo", "empty"])
def test_every_page_for_the_demo_and_an_empty_org(running, org):
    """Each page (and each section of Reports and Settings) renders cleanly; a screenshot of
    each to look at."""
    from playwright.sync_api import sync_playwright

    folder = ARTIFACTS / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    login = running if org == "demo" else running["empty"]
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1080})
        _sign_in(page, running["base"], login["email"], login["password"])
        for title, slug in PAGES.items():
            _open(page, title)
            _assert_clean(page, f"{org}: {title}")
            if org == "empty" and title != "Settings":
                assert page.get_by_text("No sites yet").count() >= 1, title
            if org == "demo" and title in ("Site view", "Opportunities & savings"):
                page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            if DOCS_IMG and org == "demo" and title in ("Dashboard", "Site view"):
                _full_shot(page, Path(DOCS_IMG) / f"{slug}.png")
            _full_shot(page, folder / f"{org}-{slug}.png")
            for section in SECTIONS.get(title, ()) if org == "demo" else ():
                page.get_by_text(section, exact=True).click()
                _settle(page)
                _assert_clean(page, f"{org}: {title}, {section}")
                name = section.lower().replace(" ", "-")
                _full_shot(page, folder / f"{org}-{slug}-{name}.png")
        browser.close()
    assert len(list(folder.glob(f"{org}-*.png"))) >= len(PAGES)
