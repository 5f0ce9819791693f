"""The ingestion guide's bash and python examples, run in order against a live server, so the
documentation cannot drift from the product. Each `# expect: TEXT` line in an example must
appear in what it prints. (PowerShell examples are not run: no PowerShell here.)"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.liveapi import Api

DOCS = Path(__file__).resolve().parents[1] / "docs"
GUIDE = DOCS / "directtimeseriesingestion.md"
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)

pytestmark = pytest.mark.slow


def examples() -> list[tuple[str, str]]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def test_the_guide_has_runnable_examples_for_each_part():
    text = "\n".join(code for _, code in examples())
    for route in ("/timeseries/batch", "mode=revise", "/timeseries/upload", "ingest_health"):
        assert route in text
    assert len(examples()) >= 10


def test_every_example_in_the_ingestion_guide_works(tmp_path, settings):
    api = Api(tmp_path).start()
    try:
        org = api.factory(("main-incomer", "compressor-bank"))
        work = tmp_path / "work"
        work.mkdir()
        (work / "docs").symlink_to(DOCS)  # the guide runs the relay as docs/factory_client.py
        env = {
            **os.environ,
            "CEI_BASE_URL": api.base,
            "CEI_INT_TOKEN": org["token"],
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for number, (language, code) in enumerate(examples(), start=1):
            cmd = (
                ["bash", "-euo", "pipefail", "-c", code]
                if language == "bash"
                else [sys.executable, "-c", code]
            )
            run = subprocess.run(
                cmd, cwd=work, env=env, capture_output=True, text=True, timeout=120
            )
            printed = run.stdout + run.stderr
            where = f"example {number} ({language}):\n{code}\n--- printed:\n{printed}"
            assert run.returncode == 0, where
            for expected in re.findall(r"# expect: (.+)", code):
                assert expected.strip() in printed, f"{expected!r} missing from {where}"
    finally:
        api.stop()
