"""The ingestion guide's bash and python examples, run in order against a live server, so the
documentation cannot drift from the product. Each `# expect: TEXT` line in an example must
appear in what it prints. (PowerShell examples are not run: no PowerShell here.) The error codes
the guide lists, and the configuration tables with their defaults, are checked against the
code."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from core.ingestion import TimeseriesIngestErrorCode
from core.settings import Settings
from tests.liveapi import Api

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
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


def _section(text: str, heading: str) -> str:
    """The text under a Markdown heading, up to the next heading of the same or a higher level."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a `# comment` in a block is no heading
    level = heading.split(" ")[0]
    start = text.index(heading + "\n")
    end = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(text, start + len(heading))
    return text[start : end.start() if end else len(text)]


def test_the_guide_lists_every_record_error_code():
    listed = _section(GUIDE.read_text(encoding="utf-8"), "## Error codes")
    missing = [c.value for c in TimeseriesIngestErrorCode if f"| `{c.value}` |" not in listed]
    assert not missing, f"add to the guide's error code table: {missing}"


def test_the_guides_whole_request_codes_are_ones_the_api_sends():
    """Each `code` in the whole-request table is a literal in api/ or core/ (or the generic
    "error" for a status without a code of its own)."""
    table = _section(GUIDE.read_text(encoding="utf-8"), "## Whole-request errors")
    rows = [r.split(" | ") for r in table.splitlines() if re.match(r"\| `\d{3}` \|", r)]
    codes = {c for row in rows for c in re.findall(r"`(\w+)`", row[1])}
    assert {"malformed_json", "invalid_body", "payload_too_large", "rate_limited"} <= codes
    source = "\n".join(
        f.read_text(encoding="utf-8") for d in ("api", "core") for f in (ROOT / d).rglob("*.py")
    )
    unknown = sorted(c for c in codes if f'"{c}"' not in source)
    assert not unknown, f"the guide names codes the API never sends: {unknown}"
    statuses = {int(row[0].strip("| `")) for row in rows}
    assert {400, 401, 403, 404, 411, 413, 429, 500, 503} <= statuses


def _env_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else f"CEI_{field.upper()}"


FIELDS = {_env_name(name): name for name in Settings.model_fields}


def _parse(name: str, text: str):
    """A setting's value as Settings reads it from the environment."""
    adapter = TypeAdapter(Settings.model_fields[FIELDS[name]].annotation)
    try:
        return adapter.validate_json(text)  # numbers, true/false, JSON lists
    except ValidationError:
        return adapter.validate_python(text)


def _default(name: str):
    return Settings.model_fields[FIELDS[name]].get_default(call_default_factory=True)


def _table_defaults(text: str, heading: str) -> dict[str, str | None]:
    """{variable: default as written} from a `| variable | default | ... |` table; None where the
    default is described in words rather than given as values."""
    out: dict[str, str | None] = {}
    for row in _section(text, heading).splitlines():
        if not row.startswith("| `"):
            continue
        cells = row.strip("|").split(" | ")
        names = re.findall(r"`([A-Z][A-Z_]+)`", cells[0])
        given = re.fullmatch(r"`([^`]*)`((?: / `[^`]*`)*)", cells[1].strip())
        values = re.findall(r"`([^`]*)`", cells[1]) if given else [None] * len(names)
        assert len(values) == len(names), f"one default per variable: {row}"
        out.update(zip(names, values, strict=True))
    return out


@pytest.mark.parametrize(
    ("document", "heading"),
    [(ROOT / "README.md", "## Configuration"), (DOCS / "operations.md", "## Configuration")],
)
def test_configuration_tables_name_real_settings_with_their_defaults(document, heading):
    table = _table_defaults(document.read_text(encoding="utf-8"), heading)
    unknown = sorted(set(table) - set(FIELDS))
    assert not unknown, f"{document.name} documents settings CEI does not have: {unknown}"
    for name, written in table.items():
        if written is not None:
            assert _parse(name, written) == _default(name), f"{document.name}: {name} default"
    if document.name == "README.md":  # the full table
        missing = sorted(set(FIELDS) - set(table))
        assert not missing, f"README's configuration table lacks {missing}"
    else:  # what a deployment with several workers needs
        for name in ("CEI_REDIS_URL", "CEI_RATE_LIMIT_ANONYMOUS_PER_MINUTE",
                     "CEI_LOGIN_MAX_FAILURES_PER_EMAIL", "CEI_ALERT_SCAN_ON_INGEST"):  # fmt: skip
            assert name in table, f"operations.md's configuration table lacks {name}"


def test_env_example_lists_every_setting_and_loads_as_the_defaults(tmp_path):
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = re.findall(r"^(?:# )?([A-Z][A-Z_]+)=(.*)$", text, re.M)
    assert sorted(name for name, _ in listed) == sorted(FIELDS)
    # Loaded as a .env file by a process with no CEI variables of its own, it is the defaults.
    (tmp_path / ".env").write_text(text, encoding="utf-8")
    probe = (
        "import json; from core.settings import Settings; "
        "print(Settings().model_dump_json()); print(Settings(_env_file=None).model_dump_json())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEI_") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    loaded, defaults = (json.loads(line) for line in run.stdout.splitlines())
    assert loaded == defaults
