"""AppTest fixtures: the real app/main.py against the test database."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP_MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"


@pytest.fixture(name="at")
def at_fixture(settings, engine) -> AppTest:
    at = AppTest.from_file(str(APP_MAIN), default_timeout=30)
    at.run()
    return at
