"""The API in its own uvicorn process on loopback, for tests that need a real server."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.db import migrate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """Stoppable and restartable on the same port, over its own SQLite file."""

    def __init__(
        self, workdir: Path, db_url: str | None = None, *, workers: int = 1, **env: str
    ) -> None:
        """Over its own SQLite file, or `db_url` (already migrated) when given; `workers`
        uvicorn worker processes share the port, as in production."""
        self.workers = workers
        self.db = workdir / "api.db"
        if db_url is None:
            db_url = f"sqlite:///{self.db.as_posix()}"
            migrate(db_url)
        self.db_url = db_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "CEI_DATA_DIR": str(workdir),
            "CEI_ENV": "development",
            "CEI_JWT_SECRET": secrets.token_urlsafe(48),
            "CEI_BCRYPT_ROUNDS": "4",
            "CEI_ALERT_SCAN_ON_INGEST": "false",
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self.workdir = workdir
        self.started = False

    def start(self, attempts: int = 3) -> "Api":
        """Start uvicorn; a first start that finds its port taken moves to another one."""
        log = self.workdir / "uvicorn.log"
        for _ in range(attempts):
            with log.open("ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
                     "--host", "127.0.0.1", "--port", str(self.port),
                     "--workers", str(self.workers)],
                    env=self.env, stdout=out, stderr=out,
                )  # fmt: skip
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if httpx.get(f"{self.base}/api/v1/health", timeout=1).status_code == 200:
                        self.started = True
                        return self
                except httpx.TransportError:
                    time.sleep(0.2)
            self.proc.kill()
            self.proc.wait(timeout=10)
            if self.started:
                break  # a restart keeps its port: the relay under test knows only that one
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}"
        raise RuntimeError(f"the API did not start:\n{log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=20)

    def factory(self, meters: tuple[str, ...], site_id: str = "site-22") -> dict:
        """An organisation with one site and its meters, signed in; and a relay token."""
        c = httpx.Client(base_url=self.base, timeout=30)
        who = {"email": "ops@plant.example", "password": "relay-test-pass"}
        r = c.post("/api/v1/auth/signup", json={**who, "organization_name": "Relay Works"})
        assert r.status_code == 201, r.text
        access = c.post("/api/v1/auth/login", json=who).json()["access_token"]
        headers = {"Authorization": f"Bearer {access}"}
        site = {"site_id": site_id, "name": "Plant", "timezone": "Europe/Rome"}
        assert c.post("/api/v1/sites", json=site, headers=headers).is_success
        for meter in meters:
            body = {"meter_id": meter, "name": meter}
            assert c.post(f"/api/v1/sites/{site_id}/meters", json=body, headers=headers).is_success
        token = c.post("/api/v1/integration-tokens", json={"name": "relay"}, headers=headers)
        return {"headers": headers, "token": token.json()["token"], "client": c}
