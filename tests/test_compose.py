"""`maild.compose` writes a mail's MIME parts itself: a text part byte for byte what compat32's
generator writes for the same text (`_plain_text`; the generator stays the path for lines SMTP
cannot carry), and the multiparts of HTML alternatives and attachments as a mail client reads
what the generator would have written."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild import config
from maild.compose import (
    _SMTP_COMPAT32,
    Envelope,
    OutgoingFile,
    Rendered,
    _plain_text,
    _text_part,
    build_message,
    encoded_words,
)
from maild.parsing import parse_message

TEXTS = [
    "Hello,\nyour ticket is 2026120100042.\n\n-- \nmaild, support@example.com\n",
    "Здравствуйте, Алиса!\n\nНовое обращение ждёт в очереди «Общие вопросы».\n",
    "no newline at the end", "", "\n\n\n", "a\rb\r\nc\nd", "From the start\n>From\n",
    "tab\there\x0bvertical\x0cfeed\u2028separator\x1cfile\n", "trailing spaces   \n",
    "x" * 998 + "\n", "ж" * 499 + "\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_a_plain_text_part_is_what_the_generator_writes(text: str) -> None:
    assert _plain_text(text) == _text_part(text).as_bytes(policy=_SMTP_COMPAT32)


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=300)
       | st.lists(st.sampled_from(["a", "ё", "\r", "\n", "\r\n", " ", "From "]))
       .map("".join))
def test_any_text_is_written_as_the_generator_writes_it(text: str) -> None:
    assert _plain_text(text) == _text_part(text).as_bytes(policy=_SMTP_COMPAT32)


@pytest.mark.parametrize("text", ["x" * 999 + "\n", "ж" * 500 + "\n", "a\n" + "b" * 1200])
def test_what_needs_quoted_printable_is_left_to_the_generator(text: str) -> None:
    assert _plain_text(text) is None


SETTINGS = config.from_mapping({"mail": {"support_address": "support@example.com"}})
FILES = (
    OutgoingFile("журнал ошибок.txt", "text/plain", "ошибка 42\n".encode() * 3000),
    OutgoingFile("shot.png", "image/png", os.urandom(100_000)),
    OutgoingFile("empty.bin", "application/octet-stream", b""),
    OutgoingFile("page.html", "text/html", b"<html>--=_maild_ not a boundary</html>"),
)


@pytest.mark.parametrize("html", [False, True])
@pytest.mark.parametrize("body", [
    "Здравствуйте, Алиса!\n\nНовое обращение.\n\n-- \nmaild\n",
    "a line SMTP cannot carry: " + "x" * 1200 + "\n",
    "--=_maild_0123 looks like a boundary\n",
])
def test_a_mail_with_files_and_html_reads_as_written(html: bool, body: str) -> None:
    """What a mail client sees in a mail with an HTML alternative and files: the text, the
    HTML, each file's name, type and exact bytes — and each mail carrying a file shares its
    part, written once."""
    envelope = Envelope(message_id="maild.1.2@example.com", to_address="alice@example.com",
                        to_name="Alice", html=html, attachments=FILES)
    raw = build_message(SETTINGS, Rendered("[Ticket#1] Принтер", body), envelope,
                        datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # every line ends as SMTP's do
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage) and msg.defects == []
    assert msg.get_content_type() == "multipart/mixed"
    text = msg.get_body(("plain",))
    assert text is not None and text.get_content().replace("\r\n", "\n") == body
    shown = msg.get_body(("html",))
    if html:
        assert shown is not None and body.split()[1] in shown.get_content()
    else:
        assert shown is None
    files = [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True))
             for a in msg.iter_attachments()]
    assert files == [("журнал ошибок.txt", "text/plain", FILES[0].data),
                     ("shot.png", "image/png", FILES[1].data),
                     ("empty.bin", "application/octet-stream", b""),
                     ("page.html", "application/octet-stream", FILES[3].data)]
    assert all(part.defects == [] for part in msg.walk())
    assert FILES[1].part is FILES[1].part  # written once, for every mail that carries it


def test_the_html_alternative_links_web_addresses_and_keeps_indentation() -> None:
    """What a customer writing HTML mail sees of an acknowledgement: the status page is a link
    (without the full stop after it), the quoted subject stays indented, and the customer's own
    text is escaped, never markup."""
    body = ("Hello,\n\nwe opened ticket 1 for it:\n\n    Printer <b>offline</b> & more\n\n"
            "Follow it on https://help.example.com/t/IjIw.MYfj?a=1&b=2.\n")
    envelope = Envelope(message_id="maild.1.2@example.com", to_address="c@example.org",
                        html=True)
    msg = BytesParser(policy=policy.default).parsebytes(build_message(
        SETTINGS, Rendered("[Ticket#1] Printer", body), envelope,
        datetime(2026, 12, 2, 12, 0, tzinfo=UTC)))
    shown = msg.get_body(("html",))
    assert isinstance(shown, EmailMessage)
    page = shown.get_content()
    assert "<p>&nbsp;&nbsp;&nbsp;&nbsp;Printer &lt;b&gt;offline&lt;/b&gt; &amp; more</p>" in page
    assert ('on <a href="https://help.example.com/t/IjIw.MYfj?a=1&amp;b=2">'
            'https://help.example.com/t/IjIw.MYfj?a=1&amp;b=2</a>.</p>') in page


@pytest.mark.parametrize(("declared", "relayed"), [
    ("koi8-r", "koi8-r"), ("UTF-8", "utf-8"), ('"windows-1251"', "windows-1251"),
    ("utf-8\"; x=\"y", ""), ("", "")])
def test_a_text_file_is_relayed_with_the_charset_it_was_written_in(declared: str,
                                                                    relayed: str) -> None:
    """A customer's text file (a Thunderbird mail: a Cyrillic name in RFC 2231 form, the text in
    KOI8-R) reaches staff as a file its reader decodes as written; a charset that is no plain
    MIME token is not copied into maild's header."""
    text = "Журнал: ошибка 42 при экспорте\n"
    codec = relayed or "utf-8"
    charset = f"; charset={declared}" if declared else ""
    raw = ("From: Olga <olga@example.org>\r\nTo: support@example.com\r\nSubject: log\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee the log\r\n"
           f"--b\r\nContent-Type: text/plain{charset}\r\n"
           "Content-Transfer-Encoding: base64\r\n"
           "Content-Disposition: attachment; filename*=utf-8''%D0%BB%D0%BE%D0%B3.txt\r\n\r\n"
           ).encode() + base64.encodebytes(text.encode(codec)) + b"\r\n--b--\r\n"
    attached = parse_message(raw).attachments
    assert [(a.filename, a.charset) for a in attached] == [("лог.txt", relayed)]
    envelope = Envelope(message_id="maild.1.2@example.com", to_address="alice@example.com",
                        attachments=tuple(OutgoingFile(a.filename, a.content_type, a.data,
                                                       a.charset) for a in attached))
    msg = BytesParser(policy=policy.default).parsebytes(build_message(
        SETTINGS, Rendered("[Ticket#1] log", "body\n"), envelope,
        datetime(2026, 12, 2, 12, 0, tzinfo=UTC)))
    [file] = msg.iter_attachments()
    assert isinstance(file, EmailMessage) and file.get_filename() == "лог.txt"
    assert file.get_content_charset() == (relayed or None)
    if relayed:
        assert file.get_content() == text


@given(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=300))
@settings(max_examples=300, deadline=None)
def test_encoded_words_read_back_as_the_text_each_word_within_the_limit(text: str) -> None:
    written = encoded_words(text)
    assert written.isascii() and all(len(word) <= 75 for word in written.split(" "))  # RFC 2047
    assert str(make_header(decode_header(written))) == text


@pytest.mark.parametrize("text", [
    "Принтер не печатает уже третий день, помогите срочно, пожалуйста: бухгалтерия стоит",
    "Grüße 🎉" * 12, "ж", "Müller, Jürgen"])
def test_a_subject_and_a_name_outside_ascii_arrive_as_written(text: str) -> None:
    """What a mail client shows of a Subject and a To name in any script, however long."""
    envelope = Envelope(message_id="maild.1.2@example.com", to_address="c@example.org",
                        to_name=text)
    raw = build_message(SETTINGS, Rendered(f"[Ticket#1] {text}", "body\n"), envelope,
                        datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    head = raw.split(b"\r\n\r\n")[0]
    assert head.isascii() and all(len(line) <= 998 for line in head.split(b"\r\n"))
    subject = head.split(b"Subject: ")[1].split(b"\r\nDate:")[0]
    assert all(len(line) <= 78 for line in subject.split(b"\r\n"))  # folded (RFC 5322 2.1.1)
    assert subject.replace(b"\r\n ", b" ").startswith(b"[Ticket#1] =?utf-8?b?")  # tag readable
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg["Subject"] == f"[Ticket#1] {text}"
    assert msg["To"].addresses[0].display_name == text
    assert msg["To"].addresses[0].addr_spec == "c@example.org"
