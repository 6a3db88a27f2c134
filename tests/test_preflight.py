"""`maild check-config` refuses configs that read well but cannot work (exit 2, file:key)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from maild.cli import main
from maild.compose import BUILTIN_TEMPLATES

GOOD = """
[database]
url = "sqlite:///var/maild.db"
[mail]
support_address = "support@example.com"
templates_dir = "{templates}"
[outbound]
maildir = "var/outbox"
"""


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["--config", str(config), "check-config"])
    captured = capsys.readouterr()
    return code, captured.err.splitlines()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "maild.toml"
    path.write_text(GOOD.format(templates=""))
    return path


def test_a_config_that_can_work_is_ok(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(config, capsys) == (0, [])
    assert sorted(p.name for p in config.parent.iterdir()) == ["maild.toml"]  # nothing made


@pytest.mark.parametrize(("extra", "key", "words"), [
    ('[[imap]]\nname = "main"\npassword_env = "MAILD_TEST_NEVER_SET"\n', "imap[0].password_env",
     "MAILD_TEST_NEVER_SET is not set"),
    ('[[imap]]\nname = "main"\npassword_file = "nowhere/imap.pw"\n', "imap[0].password_file",
     "cannot read"),
    ('[[imap]]\nname = "main"\n', "imap[0].password_env", "no password given"),
    ('[smtp]\ntls_cert = "no.crt"\ntls_key = "no.key"\n', "smtp.tls_cert", "cannot read"),
])
def test_what_the_environment_lacks_is_named(
    config: Path, capsys: pytest.CaptureFixture[str], extra: str, key: str, words: str,
) -> None:
    config.write_text(config.read_text() + extra)
    code, lines = check(config, capsys)
    assert code == 2
    assert any(line.startswith(f"{config}:{key}: ") and words in line for line in lines), lines


def test_the_hand_off_socket_needs_a_folder_that_is_there(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    good = config.read_text()
    config.write_text(good.replace("[mail]\n", f'[mail]\nhandoff_socket = "{tmp_path}/h"\n'))
    assert check(config, capsys) == (0, [])
    config.write_text(good.replace("[mail]\n", '[mail]\nhandoff_socket = "nowhere/h"\n'))
    code, lines = check(config, capsys)
    assert code == 2
    assert lines == [f"{config}:mail.handoff_socket: {tmp_path}/nowhere is not a folder"], lines


def test_a_relay_password_variable_must_be_set(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    config.write_text(config.read_text().replace(
        '[outbound]\n', '[outbound]\ntransport = "smtp"\nsmtp_username = "maild"\n'
        'smtp_password_env = "MAILD_TEST_RELAY_PW"\n'))
    code, lines = check(config, capsys)
    assert code == 2 and lines == [
        f"{config}:outbound.smtp_password_env: environment variable MAILD_TEST_RELAY_PW is not set"]
    monkeypatch.setenv("MAILD_TEST_RELAY_PW", "secret")
    assert check(config, capsys) == (0, [])


def test_folders_maild_cannot_create_are_named(
    config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (config.parent / "a-file").write_text("not a folder")
    config.write_text(config.read_text().replace('"var/outbox"', '"a-file/outbox"')
                      .replace("sqlite:///var/maild.db", "sqlite:///a-file/db/maild.db"))
    code, lines = check(config, capsys)
    assert code == 2
    assert any(line.startswith(f"{config}:outbound.maildir: ") and "is not a folder" in line
               for line in lines), lines
    assert any(line.startswith(f"{config}:database.url: ") for line in lines), lines


def test_a_template_set_missing_a_kind_is_named(
    config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    templates = config.parent / "templates"
    shutil.copytree(BUILTIN_TEMPLATES, templates)
    (templates / "en" / "escalation.txt").unlink()
    (templates / "en" / "ack.txt").write_text("Subject: {{ number }\n\nbroken\n")
    config.write_text(GOOD.format(templates="templates"))
    code, lines = check(config, capsys)
    assert code == 2
    assert f"{config}:mail.templates_dir: no template en/escalation.txt in {templates}" in lines
    assert any(line.startswith(f"{config}:mail.templates_dir: en/ack.txt line 1:")
               for line in lines), lines


def test_russian_templates_are_checked_when_maild_may_answer_in_russian(
    config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    templates = config.parent / "templates"
    shutil.copytree(BUILTIN_TEMPLATES / "en", templates / "en")
    config.write_text(GOOD.format(templates="templates").replace(
        'support_address', 'language = "auto"\nsupport_address'))
    code, lines = check(config, capsys)
    assert code == 2 and f"{config}:mail.templates_dir: no template ru/ack.txt in {templates}" \
        in lines


def test_a_missing_support_address_is_named(config: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config.write_text(config.read_text().replace('support_address = "support@example.com"', ""))
    code, lines = check(config, capsys)
    assert code == 2
    assert any(line.startswith(f"{config}:mail.support_address: missing") for line in lines)
