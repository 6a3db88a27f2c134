"""The config file: defaults, the example file, and errors that name file and key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from maild import config
from maild.cli import main
from maild.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "maild.example.toml"


def test_the_example_config_is_valid_and_documents_the_spec_defaults() -> None:
    settings = config.load(EXAMPLE)
    assert settings.mail.subject_tag == "Ticket"
    assert [q.name for q in settings.queues] == [
        "General questions", "Compatibility problems", "Development questions"]
    assert settings.smtp is not None and settings.smtp.listen == "127.0.0.1:2525"
    assert settings.outbound.transport == "maildir"
    assert settings.sla.priorities["highest"].escalate_after == timedelta(minutes=30)
    assert settings.close.request_after == timedelta(days=3)


def test_every_settings_key_appears_in_the_example_config() -> None:
    text = EXAMPLE.read_text()
    sections = {"database": config.DatabaseSettings, "mail": config.MailSettings,
                "smtp": config.SmtpSettings, "outbound": config.OutboundSettings,
                "tickets": config.TicketSettings, "sla": config.SlaSettings,
                "close": config.CloseSettings, "notify": config.NotifySettings,
                "queues": config.QueueSettings, "web": config.WebSettings}
    for section, obj in sections.items():
        for name in obj.__dataclass_fields__:
            if name not in ("priorities",):
                assert f"{name} =" in text or f"{name}=" in text, f"[{section}] {name}"
    for name in config.ImapSettings.__dataclass_fields__:
        assert f"# {name} =" in text, f"[[imap]] {name}"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[mail]\nsupport_address = "nobody"\n', "mail.support_address"),
        ('[mail]\nlanguage = "de"\n', "mail.language"),
        ('[mail]\nsubject_tag = "a]b"\n', "mail.subject_tag"),
        ('[mail]\nsuport_address = "x@y.z"\n', "mail.suport_address"),
        ('[outbound]\ntransport = "carrier-pigeon"\n', "outbound.transport"),
        ('[outbound]\nretry_initial = "soon"\n', "outbound.retry_initial"),
        ('[tickets]\ndefault_queue = "Nowhere"\n', "tickets.default_queue"),
        ('[tickets]\ndefault_priority = "urgent"\n', "tickets.default_priority"),
        ('[sla]\ntimezone = "Mars/Olympus"\n', "sla.timezone"),
        ('[sla]\nholidays = ["31.12.2026"]\n', "sla.holidays"),
        ('[sla]\nbusiness_hours = "always"\n', "sla.business_hours"),
        ('[sla.priorities.highest]\nescalate_after = 30\n',
         "sla.priorities.highest.escalate_after"),
        ('[[imap]]\nname = "a"\nsecurity = "ssl"\n', "imap[0].security"),
        ('[[staff]]\nname = "No Mail"\n', "staff[0].email"),
        ('[database]\nurl = "mysql://x"\n', "database.url"),
        ('[close]\nclose_after = "7 days"\n', "close.close_after"),
        ('[web]\nbase_url = "support.example.com"\nsecret_file = "k"\n', "web.base_url"),
        ('[web]\nbase_url = "https://support.example.com"\n', "web.secret_file"),
        ("[nonsense]\n", "nonsense"),
    ],
)
def test_a_config_error_names_the_file_and_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    assert any(p.startswith(f"{path}:{key}:") for p in raised.value.problems), \
        raised.value.problems


def test_check_config_reports_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[mail]\nlanguage = "de"\n[outbound]\ntransport = "x"\n')
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:mail.language:" in err and f"{path}:outbound.transport:" in err


def test_check_config_accepts_a_good_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(EXAMPLE), "check-config"]) == 0
    assert "OK" in capsys.readouterr().out


def test_a_missing_file_and_broken_toml_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "absent.toml")
    (tmp_path / "broken.toml").write_text("[mail\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(tmp_path / "broken.toml")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("4h", 14400),
                                               ("3d", 259200), ("1h30m", 5400), ("1w", 604800)])
def test_durations(text: str, seconds: int) -> None:
    assert config.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "5 minutes", "-5m", "5x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_duration(text)


def test_priorities_by_name_or_number() -> None:
    assert config.priority_value("highest") == 5
    assert config.priority_value("1") == 1
    assert config.priority_name(3) == "normal"
    with pytest.raises(ValueError):
        config.priority_value("6")


def test_relative_file_names_resolve_against_the_config_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc" / "maild"
    folder.mkdir(parents=True)
    (folder / "cert.pem").write_text("x")
    (folder / "key.pem").write_text("x")
    path = folder / "maild.toml"
    path.write_text(
        '[database]\nurl = "sqlite:///../var/maild.db"\n'
        '[mail]\nsupport_address = "support@example.com"\ntemplates_dir = ""\n'
        '[smtp]\ntls_cert = "cert.pem"\ntls_key = "/abs/key.pem"\n'
        '[outbound]\nmaildir = "outbox"\nsmtp_password_file = "secrets/relay"\n'
        '[[imap]]\nname = "main"\npassword_file = "imap.pw"\ntls_ca_file = "ca.pem"\n')
    settings = config.load(path)
    assert settings.database.url == f"sqlite:///{tmp_path}/etc/var/maild.db"
    assert settings.smtp is not None
    assert settings.smtp.tls_cert == str(folder / "cert.pem")
    assert settings.smtp.tls_key == "/abs/key.pem"  # absolute stays as written
    assert settings.outbound.maildir == str(folder / "outbox")
    assert settings.outbound.smtp_password_file == str(folder / "secrets" / "relay")
    assert settings.imap[0].password_file == str(folder / "imap.pw")
    assert settings.imap[0].tls_ca_file == str(folder / "ca.pem")
    assert settings.mail.templates_dir == ""  # "" means the built-in templates


def test_defaults_and_other_databases_resolve_too(tmp_path: Path) -> None:
    path = tmp_path / "maild.toml"
    path.write_text('[mail]\nsupport_address = "support@example.com"\n')
    settings = config.load(path)
    assert settings.database.url == f"sqlite:///{tmp_path}/var/maild.db"
    assert settings.outbound.maildir == str(tmp_path / "var" / "outbox")
    assert settings.mail.secret_file == str(tmp_path / "var" / "maild.db.key")
    for url in ("sqlite:////srv/maild.db", "sqlite:///:memory:",
                "postgresql+psycopg://maild@db.example.com/maild"):
        path.write_text(f'[database]\nurl = "{url}"\n'
                        '[mail]\nsupport_address = "support@example.com"\n'
                        'secret_file = "keys/maild.key"\n')
        loaded = config.load(path)
        assert loaded.database.url == url
        assert loaded.mail.secret_file == str(tmp_path / "keys" / "maild.key")


@pytest.mark.parametrize("url", ["sqlite:///:memory:",
                                 "postgresql+psycopg://maild@db.example.com/maild"])
def test_without_a_database_file_the_message_id_key_must_be_named(
    tmp_path: Path, url: str
) -> None:
    """On PostgreSQL several instances share the database: they must sign with one key, so
    there is no default to guess (each instance's own would refuse the others' Message-IDs)."""
    path = tmp_path / "maild.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[mail]\nsupport_address = "s@example.com"\n')
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    [problem] = raised.value.problems
    assert problem.startswith(f"{path}:mail.secret_file: needed with this database")


def test_the_support_address_is_required(tmp_path: Path) -> None:
    path = tmp_path / "maild.toml"
    path.write_text('[mail]\nlanguage = "en"\n')
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    [problem] = raised.value.problems
    assert problem.startswith(f"{path}:mail.support_address: missing")


@pytest.mark.parametrize(("url", "shown"), [
    ("sqlite:////var/lib/maild/maild.db", "sqlite:////var/lib/maild/maild.db"),
    ("postgresql://maild:s3cr%40t@db.example:5432/maild",
     "postgresql://maild:***@db.example:5432/maild"),
    ("postgresql+psycopg://maild@db/maild", "postgresql+psycopg://maild@db/maild"),
    ("postgresql://u:p@[::1]:5432/x?sslmode=require", "postgresql://u:***@[::1]:5432/x?sslmode=require"),
])
def test_the_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert config.DatabaseSettings(url=url).shown_url == shown
