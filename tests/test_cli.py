"""The command line as an operator meets it: any working directory, no database yet, a pipe.

Every test runs the real console entry (`python -m maild`) as a subprocess, from a directory
other than the one holding the config, so relative paths and the files left behind are real.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from maild.dbapi import SCHEMA_REVISION
from tests.conftest import mail

CONFIG = """
[database]
url = "sqlite:///state/maild.db"

[mail]
support_address = "support@example.com"

[outbound]
maildir = "state/outbox"
"""


def maild(config: Path, *args: str, cwd: Path,
          stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maild", "--config", str(config), *args],
                          input=stdin.decode(), capture_output=True, text=True, cwd=cwd,
                          timeout=60)


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    """(the config file in its own folder, another folder to run the commands from)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    config = tmp_path / "etc" / "maild.toml"
    config.write_text(CONFIG)
    return config, tmp_path / "elsewhere"


def test_relative_paths_mean_the_config_files_folder_wherever_the_command_runs(
    site: tuple[Path, Path],
) -> None:
    config, elsewhere = site
    assert maild(config, "init", cwd=elsewhere).returncode == 0
    stored = maild(config, "ingest", cwd=elsewhere, stdin=mail().as_bytes())
    assert stored.returncode == 0, stored.stderr
    number = stored.stdout.strip()
    # A second command from yet another folder finds the same database and outbox.
    shown = maild(config, "ticket", "show", number, "--json", cwd=config.parent.parent)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["number"] == number
    assert (config.parent / "state" / "maild.db").is_file()
    assert len(list((config.parent / "state" / "outbox" / "new").iterdir())) == 1
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("command", [
    ("ticket", "list"), ("ticket", "show", "2026120100001"), ("tick",), ("status",),
    ("inbound", "list"), ("outbox", "list"), ("sla", "report"), ("run",),
    ("ticket", "new", "--channel", "phone", "--subject", "x", "--body", "y"),
])
def test_a_missing_database_is_named_in_one_line_and_nothing_is_created(
    site: tuple[Path, Path], command: tuple[str, ...],
) -> None:
    config, elsewhere = site
    done = maild(config, *command, cwd=elsewhere)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert str(config.parent / "state" / "maild.db") in line and "maild init" in line
    assert sorted(p.name for p in config.parent.iterdir()) == ["maild.toml"]
    assert list(elsewhere.iterdir()) == []


def test_ingest_into_a_missing_database_asks_the_mta_to_retry(site: tuple[Path, Path]) -> None:
    """Exit 75, not 1: an MTA bounces the customer's mail on 1 (Postfix's pipe does)."""
    config, elsewhere = site
    done = maild(config, "ingest", cwd=elsewhere, stdin=mail().as_bytes())
    assert done.returncode == 75
    [line] = done.stderr.splitlines()
    assert "maild.db" in line and "maild init" in line
    assert not (config.parent / "state").exists()


def test_an_empty_database_file_is_reported_as_not_initialised(
    site: tuple[Path, Path],
) -> None:
    config, elsewhere = site
    (config.parent / "state").mkdir()
    (config.parent / "state" / "maild.db").write_bytes(b"")
    done = maild(config, "ticket", "list", cwd=elsewhere)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert "has no maild schema" in line and "maild init" in line
    assert maild(config, "init", cwd=elsewhere).returncode == 0
    assert maild(config, "ticket", "list", cwd=elsewhere).returncode == 0


def test_a_database_of_another_schema_is_named_with_both_revisions(
    site: tuple[Path, Path],
) -> None:
    """The reading commands check the schema without the ORM, as every other command does."""
    config, elsewhere = site
    assert maild(config, "init", cwd=elsewhere).returncode == 0
    with closing(sqlite3.connect(config.parent / "state" / "maild.db")) as db, db:
        db.execute("UPDATE alembic_version SET version_num = '0004'")
    for command in (("ticket", "list"), ("ticket", "show", "2026120100001", "--json"),
                    ("status",), ("ticket", "close", "2026120100001")):
        done = maild(config, *command, cwd=elsewhere)
        assert done.returncode == 1, command
        [line] = done.stderr.splitlines()
        assert f"has schema 0004, this maild needs {SCHEMA_REVISION}; run `maild init`" \
            in line, line
    assert maild(config, "ingest", cwd=elsewhere, stdin=mail().as_bytes()).returncode == 75


def test_a_closed_pipe_is_not_an_error(site: tuple[Path, Path]) -> None:
    """`maild ticket show N --json | head -1`: exit 0, nothing on stderr."""
    config, elsewhere = site
    assert maild(config, "init", cwd=elsewhere).returncode == 0
    big = mail(body="line of a long message\n" * 20_000)  # far more than a pipe buffer
    number = maild(config, "ingest", cwd=elsewhere, stdin=big.as_bytes()).stdout.strip()
    script = (f'"{sys.executable}" -m maild --config "{config}" ticket show {number} --json'
              ' | head -1; echo "status ${PIPESTATUS[0]}" >&2')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=elsewhere,
                          timeout=60)
    assert done.stdout == "{\n"
    assert done.stderr == "status 0\n"


# --- start-up: what each kind of command imports ------------------------------------------------
# Every command is a new process (an operator's shell, an MTA's pipe), so what it imports is
# what it costs before it does anything: SQLAlchemy and SQLModel alone take over half a second
# (bench/cli_bench.py has the numbers). Which packages are loaded is checked here, in a fresh
# interpreter; how long that takes is measured by the benchmark, never asserted.

HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "jinja2", "alembic", "starlette", "uvicorn",
         "aiosmtpd", "imapclient", "itsdangerous", "schedule", "psycopg")
_LOADED = f"""
import json, runpy, sys
report, sys.argv = sys.argv[1], ["maild", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("maild", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
with open(report, "w") as out:
    json.dump({{"code": code, "heavy": heavy}}, out)
"""


def loaded(config: Path, *args: str, cwd: Path, stdin: bytes = b"") -> list[str]:
    """The heavy packages `maild ARGS` leaves in sys.modules, run in a fresh interpreter."""
    report = cwd.parent / "loaded.json"
    done = subprocess.run([sys.executable, "-c", _LOADED, str(report), "--config", str(config),
                           *args], input=stdin, capture_output=True, cwd=cwd, timeout=60)
    found = json.loads(report.read_text())
    report.unlink()
    assert found["code"] == 0, done.stderr.decode()
    return list(found["heavy"])


def test_version_and_help_build_nothing_and_import_nothing_heavy(
    site: tuple[Path, Path],
) -> None:
    config, elsewhere = site
    assert loaded(config, "--version", cwd=elsewhere) == []
    assert loaded(config, "--help", cwd=elsewhere) == []
    assert loaded(config, "ticket", "--help", cwd=elsewhere) == []
    assert sorted(p.name for p in config.parent.iterdir()) == ["maild.toml"]  # no database


def test_reading_commands_import_no_orm_templates_or_servers(site: tuple[Path, Path]) -> None:
    """`ticket show`, `ticket list`, `status` and the other reads run on plain DB-API."""
    config, elsewhere = site
    assert maild(config, "init", cwd=elsewhere).returncode == 0
    number = maild(config, "ingest", cwd=elsewhere, stdin=mail().as_bytes()).stdout.strip()
    for command in (("ticket", "show", number, "--json"), ("ticket", "show", number),
                    ("ticket", "list"), ("ticket", "list", "--json"), ("status",),
                    ("sla", "report"), ("inbound", "list"), ("outbox", "show", "1")):
        assert loaded(config, *command, cwd=elsewhere) == [], command


def test_ingest_imports_no_web_channel_listeners_or_migrations(site: tuple[Path, Path]) -> None:
    """The MTA pipe with no `maild run` to hand its mail to threads it itself, so it renders
    the acknowledgement (Jinja2), but over DB-API — no ORM — and with nothing of the daemon: no
    web channel, SMTP listener, IMAP client, timers or Alembic. (With a daemon it has no
    Jinja2 either: tests/test_ingest_handoff.py.)"""
    config, elsewhere = site
    assert maild(config, "init", cwd=elsewhere).returncode == 0
    heavy = loaded(config, "ingest", cwd=elsewhere, stdin=mail().as_bytes())
    assert "jinja2" in heavy
    assert not set(heavy) & {"sqlalchemy", "sqlmodel", "pydantic", "starlette", "uvicorn",
                             "aiosmtpd", "imapclient", "schedule", "alembic"}, heavy
