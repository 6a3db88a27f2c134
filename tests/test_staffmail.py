"""Staff mail (SPEC §7): command lines, the new text of a reply, and the customers a forward names.

The quoting shapes below are written after what the common clients produce (Gmail, Apple Mail,
iPhone, Thunderbird, Outlook, in English, German and Russian). With `MAILD_CORPUS` set, the
talon replies of the shared corpus are checked against the reply texts their project states.
"""

from __future__ import annotations

import json
import os
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from maild.threading.staffmail import (
    Command,
    StaffMail,
    forwarded_senders,
    new_text,
    read_staff_mail,
)

ASSIGN = "(#assign EMAIL | #assign me)"
KNOWN = ("(known: #assign EMAIL | #assign me, #take, #queue NAME, #priority NAME, #note, "
         "#reply, #cc EMAIL, #uncc EMAIL, #close-request, #close)")


def lines(*parts: str) -> str:
    return "\n".join(parts) + "\n"


# -- commands ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "commands", "rest"),
    [
        ("#assign anna@example.com\n\nHello", [("assign", "anna@example.com")], "Hello"),
        ("#ASSIGN Anna@Example.com\nHello", [("assign", "Anna@Example.com")], "Hello"),
        ("#assign <anna@example.com>\nHi", [("assign", "anna@example.com")], "Hi"),
        ("#queue Compatibility problems\nHi", [("queue", "Compatibility problems")], "Hi"),
        ("#queue   Billing  \nHi", [("queue", "Billing")], "Hi"),
        ("#Priority high\nHi", [("priority", "high")], "Hi"),
        ("#priority 1\nHi", [("priority", "1")], "Hi"),
        ("#note\nCustomer is on holiday.", [("note", "")], "Customer is on holiday."),
        ("#close-request\nAll done?", [("close-request", "")], "All done?"),
        ("#Close\nThanks!", [("close", "")], "Thanks!"),
        ("  #close\t\nThanks!", [("close", "")], "Thanks!"),
        (
            "\n\n#assign anna@example.com\n#queue Billing\n#priority 2\n#note\nChecked.",
            [("assign", "anna@example.com"), ("queue", "Billing"), ("priority", "2"),
             ("note", "")],
            "Checked.",
        ),
        # commands only, no text after
        ("#close", [("close", "")], ""),
        ("#close\n", [("close", "")], ""),
        ("#note\n#assign anna@example.com\n\n\n", [("note", ""), ("assign", "anna@example.com")],
         ""),
        # a blank line between command lines does not let "#close" through to the customer
        ("#assign anna@example.com\n\n#close\n\nBye", [("assign", "anna@example.com"),
                                                      ("close", "")], "Bye"),
        # "#" and a non-letter is text, and it ends the command block
        ("#1 the printer is fixed", [], "#1 the printer is fixed"),
        ("#close\n#1 the printer\n#2 the scanner", [("close", "")],
         "#1 the printer\n#2 the scanner"),
        ("# Heading\ntext", [], "# Heading\ntext"),
        ("#\nHi", [], "#\nHi"),
        # commands only count at the top
        ("Hello\n#close", [], "Hello\n#close"),
        ("Hello\n\n#assign anna@example.com", [], "Hello\n\n#assign anna@example.com"),
        # internal blank lines of the text are kept
        ("#close\n\nHello,\n\nit is fixed.\n\nAnna", [("close", "")],
         "Hello,\n\nit is fixed.\n\nAnna"),
        # no commands at all
        ("Hello", [], "Hello"),
        ("", [], ""),
    ],
)
def test_command_block(text: str, commands: list[tuple[str, str]], rest: str) -> None:
    mail = read_staff_mail(text)
    assert [(c.name, c.argument) for c in mail.commands] == commands
    assert mail.errors == ()
    assert mail.text == rest


def test_command_keeps_the_line_as_written() -> None:
    mail = read_staff_mail("#Queue  Compatibility problems \r\n\r\nHi\r\n")
    assert mail == StaffMail(
        commands=(Command("queue", "Compatibility problems", "#Queue  Compatibility problems "),),
        errors=(),
        text="Hi",
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("#asign anna@example.com", f"line 1: unknown command '#asign' {KNOWN}"),
        ("#Closed", f"line 1: unknown command '#Closed' {KNOWN}"),
        ("#назначить anna@example.com", f"line 1: unknown command '#назначить' {KNOWN}"),
        ("#assign", f"line 1: #assign needs an email address {ASSIGN}"),
        ("#assign   ", f"line 1: #assign needs an email address {ASSIGN}"),
        ("#assign anna", f"line 1: #assign needs an email address, not 'anna' {ASSIGN}"),
        ("#assign anna@", f"line 1: #assign needs an email address, not 'anna@' {ASSIGN}"),
        ("#assign anna@example.com bob@example.com",
         "line 1: #assign takes exactly one email address, not "
         "'anna@example.com bob@example.com' (#assign EMAIL | #assign me)"),
        ("#queue", "line 1: #queue needs a queue name (#queue NAME)"),
        ("#priority", "line 1: #priority needs a priority (#priority NAME)"),
        ("#priority very high",
         "line 1: #priority takes one priority, not 'very high' (#priority NAME)"),
        ("#note to self", "line 1: #note takes no argument, but got 'to self' (#note)"),
        ("#close now", "line 1: #close takes no argument, but got 'now' (#close)"),
        ("#close-request please",
         "line 1: #close-request takes no argument, but got 'please' (#close-request)"),
        ("\n\n#queue", "line 3: #queue needs a queue name (#queue NAME)"),
    ],
)
def test_bad_command_lines(text: str, error: str) -> None:
    mail = read_staff_mail(text + "\nHello")
    assert mail.commands == ()
    assert mail.errors == (error,)
    assert mail.text == "Hello"


def test_errors_do_not_stop_the_command_block() -> None:
    mail = read_staff_mail(lines(
        "#asign anna@example.com",
        "#queue Billing",
        "#close now",
        "#priority 3",
        "",
        "Hello",
    ))
    assert [(c.name, c.argument) for c in mail.commands] == [("queue", "Billing"),
                                                            ("priority", "3")]
    assert [e.split(":")[0] for e in mail.errors] == ["line 1", "line 3"]
    assert mail.text == "Hello"


def test_commands_above_a_quoted_reply() -> None:
    mail = read_staff_mail(lines(
        "#close",
        "Glad it works now.",
        "",
        "On Mon, Apr 2, 2012 at 6:26 PM, Bob <bob@example.com> wrote:",
        "> #note",
        "> It works.",
    ))
    assert [c.name for c in mail.commands] == ["close"]
    assert mail.text == "Glad it works now."


def test_commands_below_a_bottom_posted_quote() -> None:
    mail = read_staff_mail(lines(
        "On 04/02/2012 06:26 PM, Bob wrote:",
        "> It still fails.",
        "",
        "#priority 1",
        "We are on it.",
    ))
    assert [(c.name, c.argument) for c in mail.commands] == [("priority", "1")]
    assert mail.text == "We are on it."


# -- quoted history ------------------------------------------------------------------------

REPLY = "Hello,\n\nthe fix is in 2.1.\n\nAnna"


@pytest.mark.parametrize(
    ("client", "below"),
    [
        ("gmail", [
            "On Mon, Apr 2, 2012 at 6:26 PM, Bob Smith <bob@example.com> wrote:",
            "",
            "> Hi,",
            "> the printer is broken.",
            ">",
            "> On Sun, Apr 1, 2012 at 1:00 PM, Support <help@example.com> wrote:",
            ">> Older",
        ]),
        ("gmail, attribution wrapped before the address", [
            "On Mon, Apr 2, 2012 at 6:26 PM, Bob Smith <",
            "bob@example.com> wrote:",
            "",
            "> Hi",
        ]),
        ("gmail, attribution wrapped before wrote", [
            "On Mon, Apr 2, 2012 at 6:26 PM, Bob Smith <bob@example.com>",
            "wrote:",
            "",
            "> Hi",
        ]),
        ("gmail, German", [
            "Am Mo., 2. Apr. 2012 um 18:26 Uhr schrieb Bob Smith <bob@example.com>:",
            "",
            "> Hallo",
        ]),
        ("gmail, Russian", [
            "пн, 2 апр. 2012 г. в 18:26, Bob Smith <bob@example.com>:",
            "",
            "> Привет",
        ]),
        ("gmail, Russian, older", [
            "2 апреля 2012 г., 18:26 пользователь Bob Smith <bob@example.com> написал:",
            "",
            "> Привет",
        ]),
        ("android, Russian, wrapped", [
            '02.04.2012 14:20 пользователь "bob@example.com" <',
            "bob@example.com> написал:",
            "",
            "> Hi",
        ]),
        ("apple mail", [
            "On Apr 3, 2012, at 4:19 PM, Bob Smith <bob@example.com> wrote:",
            "",
            "> Hi",
        ]),
        ("apple mail, quoted attribution", [
            "> On 22 Aug 2015, at 19:21, Bob Smith <bob@example.com> wrote:",
            ">",
            "> Hi there!",
        ]),
        ("apple mail, German", [
            "Am 03.04.2012 um 16:19 schrieb Bob Smith <bob@example.com>:",
            "",
            "> Hallo",
        ]),
        ("iphone, Russian", [
            "3 апр. 2012 г., в 16:19, Bob Smith <bob@example.com> написал(а):",
            "",
            "> Привет",
        ]),
        ("thunderbird", [
            "On 04/02/2012 06:26 PM, Bob Smith wrote:",
            "> Hi",
        ]),
        ("thunderbird, German", [
            "Am 02.04.2012 um 18:26 schrieb Bob Smith:",
            "> Hallo",
        ]),
        ("thunderbird, Russian", [
            "02.04.2012 18:26, Bob Smith пишет:",
            "> Привет",
        ]),
        ("thunderbird, no date", [
            "Bob Smith wrote:",
            "> Hi",
        ]),
        ("yahoo, attribution without a quote below", [
            "--- On Wed, 4/4/12, bob@example.com <bob@example.com> wrote:",
            "",
            "From: bob@example.com <bob@example.com>",
            "Subject: Printer",
            "",
            "Hi",
        ]),
        ("outlook", [
            "-----Original Message-----",
            "From: Bob Smith [mailto:bob@example.com]",
            "Sent: Monday, April 2, 2012 5:49 PM",
            "To: Support",
            "Subject: Printer",
            "",
            "Hi",
        ]),
        ("outlook, spaced separator", [
            "----- Original Message -----",
            "From: bob@example.com",
            "Sent: Monday, April 2, 2012 5:44:22 PM",
            "Subject: Printer",
            "",
            "Hi",
        ]),
        ("outlook, German", [
            "-----Ursprüngliche Nachricht-----",
            "Von: Bob Smith <bob@example.com>",
            "Gesendet: Montag, 2. April 2012 17:49",
            "An: Support",
            "Betreff: Drucker",
            "",
            "Hallo",
        ]),
        ("outlook, Russian", [
            "-------- Исходное сообщение --------",
            "От: Bob Smith <bob@example.com>",
            "Дата: 02.04.2012 17:49",
            "",
            "Привет",
        ]),
        ("thunderbird, original message", [
            "-------- Original Message --------",
            "Subject: Printer",
            "Date: Mon, 2 Apr 2012 17:49:00 +0400",
            "From: Bob Smith <bob@example.com>",
            "",
            "Hi",
        ]),
        ("outlook, header block", [
            "From: Bob Smith <bob@example.com>",
            "Sent: Monday, April 2, 2012 5:49 PM",
            "To: Support <help@example.com>",
            "Cc:",
            "Subject: RE: Printer",
            "",
            "Hi",
        ]),
        ("outlook, bold header block", [
            "*From:* Bob Smith <bob@example.com>",
            "*Sent:* Monday, April 2, 2012 5:49 PM",
            "*To:* Support <help@example.com>",
            "*Subject:* RE: Printer",
            "",
            "Hi",
        ]),
        ("outlook, German header block", [
            "Von: Bob Smith <bob@example.com>",
            "Gesendet: Montag, 2. April 2012 17:49",
            "An: Support <help@example.com>",
            "Betreff: AW: Drucker",
            "",
            "Hallo",
        ]),
        ("outlook, Russian header block", [
            "От: Bob Smith <bob@example.com>",
            "Отправлено: 2 апреля 2012 г. 17:49",
            "Кому: Support <help@example.com>",
            "Тема: RE: Принтер",
            "",
            "Привет",
        ]),
        ("outlook web, underscores", [
            "________________________________",
            "From: Bob Smith <bob@example.com>",
            "Sent: Monday, April 2, 2012 5:49 PM",
            "To: Support",
            "Subject: Printer",
            "",
            "Hi",
        ]),
        ("hotmail, quoted headers", [
            "> Subject: Printer",
            "> From: bob@example.com",
            "> Date: Mon, 2 Apr 2012 17:44:22 +0400",
            ">",
            "> Hi",
        ]),
    ],
)
def test_quoted_history_is_removed(client: str, below: list[str]) -> None:
    text = REPLY + "\n\n" + "\n".join(below) + "\n"
    assert new_text(text) == REPLY, client
    assert new_text(text.replace("\n", "\r\n")) == REPLY, client


def test_bottom_posting() -> None:
    text = lines(
        "On 04/02/2012 06:26 PM, Bob Smith wrote:",
        "> Hi,",
        "> the printer is broken.",
        "",
        "Hello Bob,",
        "",
        "the fix is in 2.1.",
    )
    assert new_text(text) == "Hello Bob,\n\nthe fix is in 2.1."


def test_inline_replies_keep_the_unquoted_lines_between_quotes() -> None:
    text = lines(
        "Hi Bob,",
        "",
        "On Mon, Apr 2, 2012 at 6:26 PM, Bob Smith <bob@example.com> wrote:",
        "> Which version has the fix?",
        "",
        "2.1.",
        "",
        "> And when is it out?",
        "> (I need it soon.)",
        "",
        "Tomorrow.",
        ">",
        "> Thanks",
        "",
        "Anna",
    )
    assert new_text(text) == "Hi Bob,\n\n2.1.\n\nTomorrow.\n\nAnna"


@pytest.mark.parametrize(
    "text",
    [
        "I wrote: the printer is broken.",
        "The customer wrote: 'it fails' and then nothing.",
        "Yesterday Bob wrote:\nthe printer fails on page 2.",
        "As the manual for 2.1 says, on page 5 he wrote:\nrestart it.",
        "On Monday the customer wrote:\nit fails again.",
        "Клиент написал: принтер не работает.",
        "Use the --force flag -- or restart.",
        "Costs 10 -- 20 EUR.\n---\nSection two",
        "From: the accounting team\nTo: everyone\nPlease read this.",
        "____________\nSign here",
        "Sent from my iPhone, the log was attached.\nPlease look.",
        "> is not a quote when it is not at the start: a > b",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    if text.startswith(">"):
        text = "a " + text
    assert new_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello\n-- \nAnna Smith\nSupport", "Hello"),
        ("Hello\n--\nAnna Smith", "Hello"),
        ("Hello\n\n-- \nAnna\n\nOn Apr 3, 2012, at 4:55 PM, Bob wrote:\n> Hi", "Hello"),
        ("Hello\n\nSent from my iPhone", "Hello"),
        ("Hello\n\nSent from my iPhone\n\nOn Apr 3, 2012, at 4:19 PM, Bob <bob@example.com> "
         "wrote:\n\n> Hi", "Hello"),
        ("Hello\n\nОтправлено с iPhone", "Hello"),
        ("Hello\n\nОтправлено с моего iPhone\n\n", "Hello"),
        ("Hello\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "Hello"),
        ("Hello\n\nGet Outlook for Android", "Hello"),
        ("Hello\n\nVon meinem iPhone gesendet", "Hello"),
        ("Hello\n\nSent from my Samsung Galaxy smartphone.", "Hello"),
        # only at the end
        ("Sent from my iPhone\nHello", "Sent from my iPhone\nHello"),
    ],
)
def test_signatures_are_removed(text: str, expected: str) -> None:
    assert new_text(text) == expected


def test_trailing_blank_lines_and_whitespace_go_and_inner_blank_lines_stay() -> None:
    assert new_text("\n\n  Hello  \n\n\n  second  \t\n\n \n") == "  Hello  \n\n\n  second"


def test_a_forward_is_not_quoted_history() -> None:
    text = lines(
        "Please open a ticket for this.",
        "-- ",
        "Anna",
        "",
        "---------- Forwarded message ---------",
        "From: Bob Smith <bob@example.com>",
        "Date: Mon, Apr 2, 2012 at 6:26 PM",
        "Subject: Printer",
        "To: <anna@example.com>",
        "",
        "The printer is broken.",
    )
    assert new_text(text) == lines(
        "Please open a ticket for this.",
        "",
        "---------- Forwarded message ---------",
        "From: Bob Smith <bob@example.com>",
        "Date: Mon, Apr 2, 2012 at 6:26 PM",
        "Subject: Printer",
        "To: <anna@example.com>",
        "",
        "The printer is broken.",
    ).rstrip()


# -- forwarded addresses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "text", "expected"),
    [
        ("gmail", lines(
            "FYI",
            "",
            "---------- Forwarded message ---------",
            "From: Bob Smith <Bob@Example.com>",
            "Date: Mon, Apr 2, 2012 at 6:26 PM",
            "Subject: Printer",
            "To: <anna@example.com>",
            "",
            "Hi",
        ), ["bob@example.com"]),
        ("gmail, Russian", lines(
            "---------- Пересланное сообщение ---------",
            "От: Bob Smith <bob@example.com>",
            "Date: пн, 2 апр. 2012 г. в 18:26",
            "Subject: Printer",
            "To: <anna@example.com>",
            "",
            "Привет",
        ), ["bob@example.com"]),
        ("thunderbird", lines(
            "-------- Forwarded Message --------",
            "Subject: \tPrinter",
            "Date: \tMon, 2 Apr 2012 17:49:00 +0400",
            "From: \tBob Smith <bob@example.com>",
            "Reply-To: \tbob.private@example.org",
            "To: \tSupport <help@example.com>",
            "",
            "Hi",
        ), ["bob@example.com", "bob.private@example.org"]),
        ("thunderbird, Russian", lines(
            "-------- Пересылаемое сообщение --------",
            "Тема: \tПринтер",
            "Дата: \t02.04.2012 17:49",
            "От: \tBob Smith <bob@example.com>",
            "Кому: \tSupport <help@example.com>",
            "",
            "Привет",
        ), ["bob@example.com"]),
        ("apple mail", lines(
            "Begin forwarded message:",
            "",
            "From: Bob Smith <bob@example.com>",
            "Subject: Printer",
            "Date: April 3, 2012 at 4:19:00 PM GMT+4",
            "To: help@example.com",
            "Reply-To: Bob <bob@example.com>",
            "",
            "Hi",
        ), ["bob@example.com"]),
        ("apple mail, quoted", lines(
            "Begin forwarded message:",
            "",
            "> From: Bob Smith <bob@example.com>",
            "> Subject: Printer",
            ">",
            "> Hi",
        ), ["bob@example.com"]),
        ("outlook", lines(
            "-----Original Message-----",
            "From: Bob Smith [mailto:bob@example.com]",
            "Sent: Monday, April 2, 2012 5:49 PM",
            "To: Support",
            "Subject: FW: Printer",
            "",
            "Hi",
        ), ["bob@example.com"]),
        ("outlook, mailto in angle brackets", lines(
            "________________________________",
            "From: Bob Smith <bob@example.com<mailto:bob@example.com>>",
            "Sent: Monday, April 2, 2012 5:49 PM",
            "Subject: Printer",
            "",
            "Hi",
        ), ["bob@example.com"]),
        ("outlook, bare address", lines(
            "----- Original Message -----",
            "From: bob@example.com",
            "To: help@example.com",
            "",
            "Hi",
        ), ["bob@example.com"]),
        ("two forwards, repeats once", lines(
            "---------- Forwarded message ---------",
            "From: Carol <carol@example.com>",
            "",
            "See below",
            "",
            "---------- Forwarded message ---------",
            "From: Bob <bob@example.com>",
            "",
            "---------- Forwarded message ---------",
            "From: Carol <CAROL@example.com>",
            "",
        ), ["carol@example.com", "bob@example.com"]),
        ("no forward", lines(
            "From: Bob <bob@example.com>",
            "Hello",
        ), []),
        ("a reply is not a forward", lines(
            "Hello",
            "On Mon, Apr 2, 2012 at 6:26 PM, Bob Smith <bob@example.com> wrote:",
            "> Hi",
        ), []),
        ("a forward with no address", lines(
            "-----Original Message-----",
            "From: Bob Smith",
            "Sent: Monday",
        ), []),
    ],
)
def test_forwarded_addresses(client: str, text: str, expected: list[str]) -> None:
    assert list(forwarded_senders(text)) == expected, client


@pytest.mark.parametrize(("line", "name"), [
    ("From: Bob Smith <bob@example.com>", "Bob Smith"),
    ('From: "Smith, Bob" <bob@example.com>', "Smith, Bob"),
    ("From: Bob Smith [mailto:bob@example.com]", "Bob Smith"),
    ("From: Bob Smith <bob@example.com<mailto:bob@example.com>>", "Bob Smith"),
    ("From: Иван Петров <ivan@example.org>", "Иван Петров"),
    ("From: bob@example.com", ""),
    ("From: bob@example.com <bob@example.com>", ""),
])
def test_forwarded_senders_keep_the_display_name(line: str, name: str) -> None:
    text = lines("FYI", "", "---------- Forwarded message ---------", line, "", "Hi")
    assert list(forwarded_senders(text).values()) == [name]


# -- the corpus ----------------------------------------------------------------------------

CORPUS = os.environ.get("MAILD_CORPUS", "")
# talon keeps signatures; maild removes them.
SIGNATURE_REMOVED = {"iphone.eml": "Hello", "sparrow.eml": "Hello"}


def talon_replies() -> list[Any]:
    if not CORPUS:
        return []
    found: list[Any] = []
    with (Path(CORPUS) / "manifest.jsonl").open(encoding="utf-8") as manifest:
        for row in map(json.loads, filter(str.strip, manifest)):
            reply = (row.get("expected") or {}).get("reply_text")
            if row["source"] == "mailgun/talon" and reply is not None:
                path = Path(CORPUS) / row["file"]
                found.append(pytest.param(path, SIGNATURE_REMOVED.get(path.name, reply),
                                          id=path.name))
    return found


@pytest.mark.skipif(not CORPUS, reason="MAILD_CORPUS is not set")
@pytest.mark.parametrize(("path", "reply"), talon_replies())
def test_talon_replies(path: Path, reply: str) -> None:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    assert new_text(body.get_content()) == reply
