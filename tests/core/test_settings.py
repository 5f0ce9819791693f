"""Settings: environment names, the development signing secret, production requirements."""

import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from core.settings import JWT_SECRET_FILE, ConfigError, Settings


def test_production_refuses_to_start_without_a_signing_secret(monkeypatch):
    monkeypatch.delenv("CEI_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="CEI_JWT_SECRET is required"):
        Settings(_env_file=None, env="production")


def test_production_refuses_the_test_only_routes():
    with pytest.raises(ValidationError, match="must be off"):
        Settings(
            _env_file=None, env="production", jwt_secret="x" * 40, enable_test_auth_routes=True
        )


def test_workers_starting_together_share_one_generated_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("CEI_JWT_SECRET", raising=False)
    barrier = threading.Barrier(8)

    def read_secret(_):
        barrier.wait()
        return Settings(_env_file=None, data_dir=tmp_path).signing_secret

    with ThreadPoolExecutor(8) as pool:
        secrets_seen = set(pool.map(read_secret, range(8)))
    assert len(secrets_seen) == 1
    assert [p.name for p in tmp_path.iterdir()] == [JWT_SECRET_FILE]


def test_truncated_secret_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CEI_JWT_SECRET", raising=False)
    (tmp_path / JWT_SECRET_FILE).write_text("short")
    with pytest.raises(ConfigError, match="delete the file"):
        _ = Settings(_env_file=None, data_dir=tmp_path).signing_secret


def test_short_signing_secret_is_refused():
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(_env_file=None, jwt_secret="too-short")


def test_development_secret_is_generated_once_and_kept_private(tmp_path, monkeypatch):
    monkeypatch.delenv("CEI_JWT_SECRET", raising=False)
    first = Settings(_env_file=None, data_dir=tmp_path).signing_secret
    second = Settings(_env_file=None, data_dir=tmp_path).signing_secret
    assert first == second
    assert len(first.encode()) >= 32
    mode = (tmp_path / JWT_SECRET_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_database_url_defaults_to_sqlite_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = Settings(_env_file=None, data_dir=tmp_path)
    assert s.effective_database_url == f"sqlite:///{tmp_path.as_posix()}/cei.db"
    assert not s.is_postgres


@pytest.mark.parametrize("given", ["postgres://u@h/db", "postgresql://u@h/db"])
def test_postgres_urls_are_pointed_at_psycopg(monkeypatch, given):
    monkeypatch.setenv("DATABASE_URL", given)
    assert Settings(_env_file=None).database_url == "postgresql+psycopg://u@h/db"


def test_env_file_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("CEI_ACCESS_TOKEN_MINUTES", raising=False)
    env = tmp_path / ".env"
    env.write_text("CEI_ACCESS_TOKEN_MINUTES=7\n")
    assert Settings(_env_file=env).access_token_minutes == 7
