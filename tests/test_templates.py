"""Every mail template, in every language, renders into mail people can read: no raw ISO
instants, no template syntax left over, no plain-text line over 78 characters, the `-- `
signature separator — rendered by the real `Templates` and built by the real `build_message`.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from maild import config
from maild.compose import LANGUAGES, TEMPLATE_RECHECK_SECONDS, Envelope, Templates, build_message
from maild.mailkinds import ALL, TEMPLATES
from maild.models import Ticket

ISO_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
SETTINGS = config.from_mapping({"mail": {"support_address": "support@example.com"}})
NOW = datetime(2026, 12, 1, 17, 54, tzinfo=UTC)


def context(breached: bool) -> dict[str, object]:
    """Everything any template may ask for, with values of realistic length."""
    ticket = Ticket(number="2026120100042", subject="Printer does not print after the update",
                    customer="ivan.petrov@customer.example", queue_id=1)
    return {
        "ticket": ticket, "number": ticket.number, "tag": "[Ticket#2026120100042]",
        "subject": "[Ticket#2026120100042] Printer does not print after the update",
        "support_address": "support@example.com", "support_name": "Служба поддержки",
        "customer_name": "Ivan Petrov",
        "original_subject": "Re: Printer does not print after the update",
        "writer": "boss@customer.example",
        "staff_name": "Alice", "owner_name": "Alice", "owner": "alice@example.com",
        "assigned_by": "bob@example.com", "queue": "Compatibility problems",
        "priority": "high", "sender": "ivan.petrov@customer.example",
        "body": "Hello Ivan,\nplease install driver 5.2.", "text": "It still prints nothing.",
        "excerpt": "Since the update the printer prints nothing.",
        "close_after": "7 days", "why": "unattended for 1h of business time since "
                                         "2026-12-01 20:54 MSK",
        "breached": breached, "unattended_since": "2026-12-01 20:54 MSK",
        "escalate_after": "1h", "unattended_for": "1h 5m", "resolve_within": "8h",
        "missed_at": "2026-12-02 12:00 MSK",
        "errors": ["line 1: unknown command '#asign' (known: #assign EMAIL, #take)"],
        "attachments": [{"filename": "Снимок экрана.png", "size": 48_213, "attached": True},
                        {"filename": "logs.zip", "size": 31_000_000, "attached": False}],
        "files": [{"filename": "драйвер.zip", "size": 31_000_000}],
        "failures": [{"recipient": "ivan@example.org", "status": "5.1.1",
                      "diagnostic": "550 5.1.1 <ivan@example.org>: user unknown"}],
        "limit": 10_485_760,
        "status_url": "https://support.example.com/t/MjAyNjEyMDEwMDA0Mg.S0m3s1gnatur3",
    }


def test_every_kind_of_mail_has_its_template() -> None:
    assert {kind.template_name for kind in ALL} == set(TEMPLATES)
    for language in LANGUAGES:
        folder = Path(__file__).resolve().parent.parent / "templates" / language
        assert {p.stem for p in folder.glob("*.txt") if not p.stem.startswith("_")} \
            == set(TEMPLATES), language


@pytest.mark.parametrize("breached", [False, True])
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_a_template_renders_into_readable_mail(template: str, language: str,
                                               breached: bool) -> None:
    rendered = Templates(SETTINGS).render(template, language, context(breached))
    raw = build_message(SETTINGS, rendered, Envelope(
        message_id="m@example.com", to_address="alice@example.com"), NOW)
    message = BytesParser(policy=policy.default).parsebytes(raw)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    text = str(part.get_content()).replace("\r\n", "\n")
    for part in (rendered.subject, text):
        assert not ISO_INSTANT.search(part), part
        assert not LEFTOVER.search(part), part
    long_lines = [line for line in text.splitlines() if len(line) > 78]
    assert long_lines == []
    assert "\n-- \n" in text, "signature separator"
    assert "\n--\n" not in text
    assert rendered.subject.strip() and "  " not in rendered.subject


@pytest.mark.parametrize("template", ["notice_new", "assigned", "escalation"])
@pytest.mark.parametrize("priority", config.PRIORITIES)
def test_a_russian_staff_mail_names_the_priority_in_russian_and_by_its_command(
        template: str, priority: str) -> None:
    """"Приоритет: normal" read as an untranslated word; the name `#priority` takes stays
    beside the Russian one, since staff type it."""
    rendered = Templates(SETTINGS).render(template, "ru", {**context(False), "priority": priority})
    [line] = [line for line in rendered.body.splitlines() if "Приоритет:" in line]
    named = line.split(":", 1)[1].strip()
    assert re.fullmatch(rf"[а-я]+ \({priority}\)", named), line


def test_a_mended_template_or_include_is_seen_within_a_second_by_a_running_process(
    tmp_path: Path
) -> None:
    """The daemon's worker keeps its compiled templates; an operator who edits one (or a
    piece it includes) must not have to restart it: the next mail after a second sees it."""
    folder = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parent.parent / "templates", folder)
    templates = Templates(config.from_mapping({"mail": {
        "support_address": "support@example.com", "templates_dir": str(folder)}}))
    values = context(breached=False)
    assert "Priority: high" in templates.render("notice_new", "en", values).body

    notice, priority = folder / "en" / "notice_new.txt", folder / "en" / "_priority.txt"
    notice.write_text(notice.read_text().replace("a new ticket", "A NEW TICKET"))
    priority.write_text("{{ priority | upper }}")
    later = time.time() + 5  # a new mtime however coarse the file system's clock
    for path in (notice, priority):
        os.utime(path, (later, later))

    time.sleep(TEMPLATE_RECHECK_SECONDS + 0.1)
    body = templates.render("notice_new", "en", values).body
    assert "A NEW TICKET" in body and "Priority: HIGH" in body


def test_a_typo_in_an_operators_template_is_an_error_that_names_its_line(tmp_path: Path) -> None:
    """A variable no mail gives (`{{ custmer_name }}`) fails the mail that needs it, with a
    traceback that points at the template's own line, as Jinja2's `render()` gives it; and a
    template may use Jinja2's globals (`range`, `namespace`)."""
    import traceback

    import jinja2

    folder = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parent.parent / "templates", folder)
    ack = folder / "en" / "ack.txt"
    ack.write_text(ack.read_text().replace("{{ customer_name }}", "{{ custmer_name }}"))
    close = folder / "en" / "close_request.txt"
    close.write_text(close.read_text() + "{% for i in range(2) %}{{ i }}{% endfor %}"
                     "{% set ns = namespace(n=3) %}{{ ns.n }}\n")
    templates = Templates(config.from_mapping({"mail": {
        "support_address": "support@example.com", "templates_dir": str(folder)}}))
    with pytest.raises(jinja2.UndefinedError, match="custmer_name") as failed:
        templates.render("ack", "en", context(breached=False))
    frames = traceback.extract_tb(failed.value.__traceback__)
    assert any(frame.filename == str(ack) and frame.lineno == 3 for frame in frames), frames
    assert templates.render("close_request", "en", context(breached=False)).body.endswith("013\n")
