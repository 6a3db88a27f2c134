"""The README's service installation, for real: a wheel built from the tracked files, installed
(not editable) into a fresh virtual environment, used from a folder far from the repository.

This is how a sysadmin meets maild (`pip install '.[postgres,tools]'`): anything maild reads at
run time that is not package data (templates, migrations) fails here and nowhere else.
"""

from __future__ import annotations

import email
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mail

REPOSITORY = Path(__file__).resolve().parent.parent
CONFIG = """
[database]
url = "sqlite:///../state/maild.db"

[mail]
support_address = "support@example.com"

[outbound]
maildir = "../state/outbox"

[[staff]]
email = "alice@example.com"
name = "Alice"
"""


def run(*command: str | Path, cwd: Path, stdin: bytes | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([str(c) for c in command], cwd=cwd, input=stdin,
                          capture_output=True, timeout=timeout)
    assert done.returncode == 0, (command, done.stdout.decode(), done.stderr.decode())
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin` folder of a fresh venv with maild installed from a wheel of the repository."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy of what git tracks, as a clean checkout has it
    tracked = run("git", "ls-files", "-z", cwd=REPOSITORY).stdout.decode().split("\0")
    for name in filter(None, tracked):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPOSITORY / name, target, follow_symlinks=False)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
        root / "dist", source, cwd=root)
    [wheel] = (root / "dist").glob("maild-*.whl")
    run(sys.executable, "-m", "venv", root / "venv", cwd=root)
    run(root / "venv" / "bin" / "pip", "install", "--quiet", f"{wheel}[postgres,tools]",
        cwd=root)
    return root / "venv" / "bin"


def test_the_installed_package_opens_and_answers_a_ticket_from_any_folder(
    installed: Path, tmp_path: Path,
) -> None:
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "maild.toml"
    config.write_text(CONFIG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    maild = (installed / "maild", "--config", config)

    assert b"OK" in run(*maild, "check-config", cwd=elsewhere).stdout
    run(*maild, "init", cwd=elsewhere)
    number = run(*maild, "ingest", "--no-deliver", cwd=elsewhere,
                 stdin=mail(subject="Printer does not print").as_bytes()).stdout.decode().strip()
    assert number.isdigit() and len(number) >= 13
    ticked = json.loads(run(*maild, "tick", "--json", cwd=elsewhere).stdout)
    assert ticked["sent"] == 2  # the acknowledgement, and the notice to the one staff member
    shown = json.loads(run(*maild, "ticket", "show", number, "--json", cwd=elsewhere).stdout)
    assert shown["number"] == number and shown["customer"] == "ivan@example.org"

    sent = [email.message_from_bytes(p.read_bytes())
            for p in (tmp_path / "state" / "outbox" / "new").iterdir()]
    [ack] = [m for m in sent if m["To"] == "Ivan Petrov <ivan@example.org>"]
    [notice] = [m for m in sent if m["To"] == "Alice <alice@example.com>"]
    assert "Printer does not print" in notice.get_payload(decode=True).decode()
    assert f"[Ticket#{number}]" in ack["Subject"]
    assert f"ticket {number}" in ack.get_payload(decode=True).decode()
    assert list(elsewhere.iterdir()) == []  # nothing left where the commands ran


def test_the_extras_of_the_service_installation_are_there(installed: Path, tmp_path: Path) -> None:
    run(installed / "python", "-c", "import psycopg, sqlite_utils", cwd=tmp_path)
    assert (installed / "sqlite-utils").exists()


def test_the_web_pages_are_package_data_too(installed: Path, tmp_path: Path) -> None:
    found = run(installed / "python", "-c", "from maild.web.pages import PAGES; print(PAGES)",
                cwd=tmp_path).stdout.decode().strip()
    pages = Path(found)
    assert "site-packages" in found
    for name in ("base.html", "style.css", "en/form.html", "ru/status.html", "en/error.html"):
        assert (pages / name).is_file(), name
