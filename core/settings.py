"""CEI settings: one object, read from the environment and an optional `.env` file."""

import os
import secrets
from functools import cache, cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_JWT_SECRET_BYTES = 32
JWT_SECRET_FILE = "jwt_secret"  # noqa: S105 (a file name)


class ConfigError(RuntimeError):
    """The configuration cannot work (e.g. production without a signing secret)."""


class Settings(BaseSettings):
    """Every knob CEI has. Names are `CEI_`-prefixed in the environment, except `DATABASE_URL`."""

    model_config = SettingsConfigDict(
        env_prefix="CEI_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("DATABASE_URL", "CEI_DATABASE_URL"),
        description="SQLAlchemy URL; empty means a SQLite file in data_dir.",
    )
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "cei"
    jwt_audience: str = "cei-api"
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=14, ge=1, le=365)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    password_min_length: int = Field(default=10, ge=8, le=72)
    enable_test_auth_routes: bool = False
    max_body_bytes: int = Field(default=10_000_000, ge=1024)
    max_batch_records: int = Field(default=10_000, ge=1)
    max_upload_bytes: int = Field(default=500_000_000, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)
    # Alerts: scan the meters an accepted batch touched, this long after the first such batch
    # (later batches within the delay join the same scan). `cei alerts scan` is the cron path.
    alert_scan_on_ingest: bool = True
    alert_scan_delay_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Rate limits (requests a minute) and login throttling; counters live in Redis when
    # redis_url is set (shared by every API worker), else in the process's memory.
    rate_limit_token_per_minute: int = Field(default=6000, ge=1)
    rate_limit_user_per_minute: int = Field(default=1200, ge=1)
    # Callers without credentials (signup, login, refresh, health), per client address.
    rate_limit_anonymous_per_minute: int = Field(default=300, ge=1)
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_seconds: float = Field(default=30.0, gt=0)
    login_lockout_max_seconds: float = Field(default=900.0, gt=0)
    login_max_failures_per_email: int = Field(default=100, ge=1)
    redis_url: str | None = None
    # Reverse proxies whose X-Forwarded-For uvicorn believes (comma-separated addresses or
    # networks, or "*"): rate limits and login back-off key on the client address, so behind a
    # proxy on another host this must name it. Empty: uvicorn's default, 127.0.0.1 and ::1
    # (or its FORWARDED_ALLOW_IPS environment variable).
    forwarded_allow_ips: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    app_port: int = 8501

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres_driver(cls, value: str) -> str:
        # Hosting platforms hand out postgres:// URLs; we speak psycopg 3.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @model_validator(mode="after")
    def _check_secret(self) -> "Settings":
        if self.jwt_secret is not None:
            if len(self.jwt_secret.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES:
                raise ValueError(
                    f"CEI_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes of random data"
                )
        elif self.env == "production":
            raise ValueError("CEI_JWT_SECRET is required when CEI_ENV=production")
        if self.env == "production" and self.enable_test_auth_routes:
            raise ValueError("CEI_ENABLE_TEST_AUTH_ROUTES must be off when CEI_ENV=production")
        return self

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cei.db').as_posix()}"

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith("postgresql")

    @cached_property
    def signing_secret(self) -> str:
        """The JWT signing secret; in development it is generated once and kept in data_dir."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / JWT_SECRET_FILE
        if path.exists():
            secret = path.read_text(encoding="utf-8").strip()
            if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
                raise ConfigError(
                    f"{path} holds a secret shorter than {MIN_JWT_SECRET_BYTES} bytes: "
                    "delete the file to generate a new one, or set CEI_JWT_SECRET"
                )
            return secret
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        # Owner-only, written to a temporary name and renamed into place: several workers
        # starting at once all end up reading the same complete secret.
        tmp = path.with_name(f".{JWT_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secret)
        try:
            os.link(tmp, path)  # fails if another process got there first
        except FileExistsError:
            secret = path.read_text(encoding="utf-8").strip()
        finally:
            tmp.unlink()
        return secret


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
