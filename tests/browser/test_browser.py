"""The real app in a real browser: `cei up` on loopback, headless Chromium driven by Playwright.

Uses the system's Chromium (Debian's `chromium` package; `.ci/run` installs it when missing);
Playwright never downloads a browser here. Screenshots go to test-artifacts/ (or
$CEI_TEST_ARTIFACTS).
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
    yield {"base": base, "email": email, "password": password}
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


def test_login_dashboard_and_site_view_in_chromium(running):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.goto(running["base"])
        page.wait_for_selector("input[aria-label='Email']", timeout=60_000)
        page.locator("input[aria-label='Email']").fill(running["email"])
        page.locator("input[aria-label='Password']").fill(running["password"])
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Dashboard").wait_for(timeout=60_000)
        _settle(page)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.get_by_text("Bologna Plant - Main").count() >= 1
        assert page.locator("[data-testid='stMetric']").count() >= 8
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        page.locator("[data-testid='stSidebarNav']").get_by_text("Site view", exact=True).click()
        page.get_by_role("heading", name="Site view").wait_for(timeout=60_000)
        _settle(page)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.get_by_text("CV(RMSE)").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "site_view.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
