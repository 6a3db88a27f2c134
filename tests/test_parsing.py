"""parse_message on small synthetic messages: one fact of real-world mail per test.

Every message here is written inline for this file (the corpus under MAILD_CORPUS is exercised
by test_corpus.py). `raw()` joins header and body lines with CRLF, as mail travels.
"""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.errors import UnparseableMessage
from maild.parsing import MessageTooComplex, ParsedMail, parse_message


def raw(*lines: str, eol: str = "\r\n", charset: str = "utf-8") -> bytes:
    return (eol.join(lines) + eol).encode(charset)


def simple(*headers: str, body: str = "Hello, my printer does not print.") -> bytes:
    base = ["From: Ivan Petrov <Ivan@Example.org>", "To: support@example.com",
            "Message-ID: <m1@example.org>"]
    names = {h.split(":", 1)[0].lower() for h in headers}
    kept = [h for h in base if h.split(":", 1)[0].lower() not in names]
    return raw(*kept, *headers, "", body)


def b64word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


# --- headers ------------------------------------------------------------------------------------


def test_a_plain_message() -> None:
    mail = parse_message(simple("Subject: Printer", "Cc: Boss <boss@example.org>, x@y.example"))
    assert mail.sender == "ivan@example.org"
    assert mail.sender_name == "Ivan Petrov"
    assert mail.subject == "Printer"
    assert mail.message_id == "m1@example.org"
    assert mail.to == ("support@example.com",)
    assert mail.cc == ("boss@example.org", "x@y.example")
    assert mail.text == "Hello, my printer does not print."
    assert not mail.automatic


def test_rfc2047_subject_in_utf8() -> None:
    subject = "Принтер не печатает — срочно"
    mail = parse_message(simple(f"Subject: Re: {b64word(subject, 'utf-8')}"))
    assert mail.subject == f"Re: {subject}"


def test_rfc2047_subject_in_koi8r_split_over_folded_words() -> None:
    data = "Счёт за октябрь".encode("koi8-r")
    first, second = base64.b64encode(data[:7]).decode(), base64.b64encode(data[7:]).decode()
    mail = parse_message(simple(f"Subject: =?KOI8-R?B?{first}?=\r\n =?koi8-r?B?{second}?="))
    assert mail.subject == "Счёт за октябрь"


def test_rfc2047_quoted_printable_word_and_display_name() -> None:
    mail = parse_message(simple(
        "From: =?iso-8859-1?Q?J=FCrgen_M=FCller?= <juergen@example.de>",
        "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus =?utf-8?q?K=C3=B6ln?="))
    assert mail.sender_name == "Jürgen Müller"
    assert mail.subject == "Grüße aus Köln"


def test_a_multibyte_character_split_between_two_encoded_words() -> None:
    data = "日本語のメール".encode()
    words = [f"=?UTF-8?B?{base64.b64encode(data[i:i + 4]).decode()}?=" for i in range(0, 21, 4)]
    mail = parse_message(simple("Subject: " + " ".join(words)))
    assert mail.subject == "日本語のメール"


def test_broken_base64_padding_in_an_encoded_word() -> None:
    mail = parse_message(simple("Subject: =?utf-8?B?SGVsbG8gd29ybGQ?="))
    assert mail.subject == "Hello world"


def test_unknown_charset_in_subject_and_body() -> None:
    message = raw("From: a@example.org", "Subject: =?x-no-such-charset?Q?caf=C3=A9?= ok",
                  "Content-Type: text/plain; charset=x-no-such-charset",
                  "Content-Transfer-Encoding: 8bit", "", "Grüße")
    mail = parse_message(message)
    assert mail.subject == "café ok"
    assert mail.text == "Grüße"
    assert "UnknownCharset(x-no-such-charset)" in mail.defects


def test_a_wrong_charset_label_falls_back_without_losing_the_text() -> None:
    message = raw("From: a@example.org", "Subject: x", "Content-Type: text/plain; charset=us-ascii",
                  "Content-Transfer-Encoding: 8bit", "", "naïve café")
    assert parse_message(message).text == "naïve café"


def test_8bit_headers_in_utf8_and_in_latin1() -> None:
    utf8 = b"From: J\xc3\xbcrgen <j@example.de>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nx\r\n"
    mail = parse_message(utf8)
    assert (mail.sender_name, mail.subject) == ("Jürgen", "Grüße")
    latin1 = (b"From: j@example.de\r\nSubject: Fr\xf6sche\r\n"
              b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nFr\xf6sche\r\n")
    mail = parse_message(latin1)
    assert (mail.subject, mail.text) == ("Frösche", "Frösche")


def test_8bit_bytes_inside_an_encoded_word() -> None:
    message = b"From: a@example.org\r\nSubject: =?iso-8859-1?Q?Die_Fr\xf6sche?=\r\n\r\nx\r\n"
    assert parse_message(message).subject == "Die Frösche"


@pytest.mark.parametrize("evil", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
                                  "\u2029", "\r", "\x00"])
def test_subject_and_name_come_out_on_one_line(evil: str) -> None:
    encoded = b64word(f"Hello{evil}Bcc: victim@example.net", "utf-8")
    mail = parse_message(simple(f"Subject: {encoded}",
                                f"From: {b64word(f'Ivan{evil}Petrov', 'utf-8')} <i@example.org>"))
    for value in (mail.subject, mail.sender_name):
        assert len(value.splitlines()) == 1
        assert "\x00" not in value
    assert mail.subject.startswith("Hello") and mail.subject.endswith("Bcc: victim@example.net")


def test_raw_control_characters_in_a_subject_line() -> None:
    message = b"From: a@example.org\r\nSubject: one\x0btwo\x1cthree\xe2\x80\xa8four\r\n\r\nx\r\n"
    assert parse_message(message).subject == "one two three four"


def test_obsolete_space_before_the_colon() -> None:
    message = raw("From  : John Doe <jdoe@example.org>", "Subject     : Saying Hello",
                  "Message-ID  : <1234@local.machine.example>", "", "Hello.")
    mail = parse_message(message)
    assert (mail.sender, mail.subject, mail.message_id) == \
        ("jdoe@example.org", "Saying Hello", "1234@local.machine.example")


def test_a_stray_line_in_the_header_block_does_not_hide_the_sender() -> None:
    message = raw("Received: from mx.example.org by mx.example.com", "garbage Delivered-To: x",
                  "From: Real Sender <real@example.org>", "Subject: Found", "", "Body.")
    mail = parse_message(message)
    assert (mail.sender, mail.subject, mail.text) == ("real@example.org", "Found", "Body.")


# --- line endings -------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", ["\r", "\n", "\r\n"])
def test_line_endings(eol: str) -> None:
    message = raw("From: Old Mac <mac@example.org>", "Subject: Classic", "", "line one",
                  "line two", eol=eol)
    mail = parse_message(message)
    assert (mail.sender, mail.subject) == ("mac@example.org", "Classic")
    assert mail.text == "line one\nline two"


def test_a_doubled_cr_in_the_header_block() -> None:
    message = b"Subject: Doubled\r\r\nFrom: gw@example.org\r\r\n\r\nBody\r\n"
    mail = parse_message(message)
    assert (mail.sender, mail.subject, mail.text) == ("gw@example.org", "Doubled", "Body")


# --- senders ------------------------------------------------------------------------------------


def test_no_from_but_a_return_path() -> None:
    mail = parse_message(raw("Return-Path: <Bounce@Example.net>", "Subject: x", "", "y"))
    assert mail.sender == "bounce@example.net"


@pytest.mark.parametrize("header", ["Sender: s@example.org", "Reply-To: Reply <r@example.org>"])
def test_no_from_but_sender_or_reply_to(header: str) -> None:
    mail = parse_message(raw(header, "Subject: x", "", "y"))
    assert mail.sender in ("s@example.org", "r@example.org")


def test_from_wins_over_the_others() -> None:
    mail = parse_message(raw("Reply-To: r@example.org", "Sender: s@example.org",
                             "From: f@example.org", "Return-Path: <rp@example.org>", "", "y"))
    assert mail.sender == "f@example.org"


def test_no_sender_at_all_is_unparseable() -> None:
    with pytest.raises(UnparseableMessage):
        parse_message(raw("To: support@example.com", "Subject: who?", "", "nobody"))


def test_a_message_without_any_header_is_unparseable() -> None:
    with pytest.raises(UnparseableMessage):
        parse_message(b"Just some text, not a mail at all.\r\n")


def test_the_envelope_sender_is_used_when_the_headers_name_nobody() -> None:
    mail = parse_message(raw("Subject: x", "", "y"), envelope_from="<Env@Example.org>")
    assert mail.sender == "env@example.org"


def test_the_mbox_from_line_is_a_sender_source() -> None:
    message = raw("From someone@example.org  Sat Jan  3 01:05:34 1996", "Subject: saved", "",
                  "from an mbox")
    mail = parse_message(message)
    assert mail.sender == "someone@example.org"
    assert mail.text == "from an mbox"


def test_a_null_sender_bounce_gets_a_mailer_daemon_address() -> None:
    message = raw("Return-Path: <>", "From: MAILER-DAEMON <>", "Subject: Delivery failed",
                  "Message-Id: <e0720@mx.example.jp>", "", "Your mail could not be delivered.")
    mail = parse_message(message)
    assert mail.sender == "mailer-daemon@mx.example.jp"
    assert mail.sender_name == "MAILER-DAEMON"
    assert mail.automatic


def test_an_unqualified_mailer_daemon_is_a_null_sender_too() -> None:
    message = raw("From: Mail Delivery Subsystem <MAILER-DAEMON>", "Subject: Returned mail", "",
                  "Undeliverable.")
    mail = parse_message(message)
    assert mail.sender == "mailer-daemon@invalid"
    assert mail.automatic


@pytest.mark.parametrize("envelope", ["", "<>", "MAILER-DAEMON"])
def test_a_null_envelope_without_headers_is_a_bounce(envelope: str) -> None:
    message = raw("Subject: failure", "Message-ID: <x1@mx.example.org>", "", "x")
    mail = parse_message(message, envelope_from=envelope)
    assert mail.sender == "mailer-daemon@mx.example.org"
    assert mail.automatic


def test_an_unqualified_sender_is_kept_unreachable() -> None:
    mail = parse_message(raw("From: root", "Subject: cron", "", "output"))
    assert mail.sender == "root@invalid"
    assert not mail.automatic


def test_two_bare_addresses_in_from() -> None:
    mail = parse_message(raw("From: tim@example.org concierge@example.org", "", "x"))
    assert mail.sender == "tim@example.org"


# --- threading headers --------------------------------------------------------------------------


def test_in_reply_to_and_references() -> None:
    mail = parse_message(simple(
        "In-Reply-To: <parent@example.com> (Ivan's message of yesterday)",
        "References: <root@example.com>\r\n <middle@example.com>\r\n\t<parent@example.com>"))
    assert mail.in_reply_to == ("parent@example.com",)
    assert mail.references == ("root@example.com", "middle@example.com", "parent@example.com")
    assert mail.thread_ids == ("parent@example.com", "middle@example.com", "root@example.com")


def test_thread_ids_put_in_reply_to_first_then_the_newest_reference() -> None:
    mail = parse_message(simple("In-Reply-To: <c@x>", "References: <a@x> <b@x>"))
    assert mail.thread_ids == ("c@x", "b@x", "a@x")


def test_message_ids_without_brackets_or_with_obsolete_spaces() -> None:
    mail = parse_message(simple("Message-ID: <1234   @   local(comment)  .example>",
                                "In-Reply-To: bare@example.com"))
    assert mail.message_id == "1234@local.example"
    assert mail.in_reply_to == ("bare@example.com",)


def test_no_message_id() -> None:
    message = raw("From: a@example.org", "Message-ID:", "In-Reply-To: ", "", "x")
    mail = parse_message(message)
    assert (mail.message_id, mail.in_reply_to, mail.references) == (None, (), ())


# --- bodies -------------------------------------------------------------------------------------


def test_html_only_mail_is_converted_to_text() -> None:
    html = ("<html><head><title>Ignored title</title><style>p { color: red }</style></head>"
            "<body><p>Dear support,</p><script>alert('x')</script><p>my <b>printer</b> is "
            "broken&nbsp;&amp; smokes.</p><ul><li>model A</li><li>model B</li></ul>"
            "<a href='https://example.org/photo'>photo</a></body></html>")
    message = raw("From: a@example.org", "Subject: html", "MIME-Version: 1.0",
                  "Content-Type: text/html; charset=utf-8", "", html)
    mail = parse_message(message)
    assert mail.html.strip() == html
    assert "Dear support," in mail.text
    assert "my printer is broken & smokes." in mail.text
    assert "- model A\n- model B" in mail.text
    assert "photo <https://example.org/photo>" in mail.text
    for gone in ("alert", "color: red", "Ignored title", "<"):
        assert gone not in mail.text.replace("<https://", "")


def test_an_unclosed_head_does_not_swallow_the_body() -> None:
    message = raw("From: a@example.org", "Content-Type: text/html", "",
                  "<html><head><title>t<body>Visible text</body></html>")
    assert parse_message(message).text == "Visible text"


def test_alternative_parts_prefer_the_plain_text() -> None:
    message = raw("From: a@example.org", "MIME-Version: 1.0",
                  'Content-Type: multipart/alternative; boundary="b"', "",
                  "--b", "Content-Type: text/plain; charset=utf-8", "", "Plain version",
                  "--b", "Content-Type: text/html; charset=utf-8", "", "<p>HTML version</p>",
                  "--b--")
    mail = parse_message(message)
    assert mail.text == "Plain version"
    assert "HTML version" in mail.html


def test_attachments_are_listed_with_name_type_and_size() -> None:
    pdf = bytes(range(256)) * 5
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 92
    name_2231 = "UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.png"
    message = raw(
        "From: a@example.org", "Subject: files", "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer"', "",
        "--outer", "Content-Type: text/plain; charset=utf-8", "", "See attached.",
        "--outer", 'Content-Type: application/pdf; name="report.pdf"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="report.pdf"',
        "", base64.encodebytes(pdf).decode().strip(),
        "--outer", "Content-Type: image/png", "Content-Transfer-Encoding: base64",
        f"Content-Disposition: inline; filename*={name_2231}", "",
        base64.encodebytes(png).decode().strip(),
        "--outer", f"Content-Type: text/csv; name=\"{b64word('Счёт.csv', 'utf-8')}\"",
        "Content-Disposition: attachment", "", "a,b", "1,2",
        "--outer--")
    mail = parse_message(message)
    assert mail.text == "See attached."
    assert [(a.filename, a.content_type, a.size) for a in mail.attachments] == [
        ("report.pdf", "application/pdf", len(pdf)),
        ("отчёт.png", "image/png", len(png)),
        ("Счёт.csv", "text/csv", len(b"a,b\r\n1,2")),
    ]


def test_a_filename_in_broken_iso_2022_jp_does_not_stop_parsing() -> None:
    message = raw(
        "From: a@example.org", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"',
        "", "--b", "Content-Type: text/plain", "", "body", "--b",
        "Content-Type: text/plain; name*=iso-2022-jp''%1B%24BJs9p%3Dq%2D%21%1B%28B%2E.txt",
        "Content-Disposition: attachment; filename*=iso-2022-jp''%1B%24BJs9p%3Dq%2D%21%1B%28B.txt",
        "", "report", "--b--")
    mail = parse_message(message)
    assert mail.text == "body"
    assert len(mail.attachments) == 1
    assert mail.attachments[0].filename.endswith(".txt")


def test_uuencoded_files_in_plain_text_become_attachments() -> None:
    data = b"GIF89a" + bytes(range(60))
    encoded = binascii.b2a_uu(data[:45]).decode() + binascii.b2a_uu(data[45:]).decode()
    body = f"Here is the logo.\n\nbegin 644 logo.gif\n{encoded}`\nend\n\nRegards"
    mail = parse_message(raw("From: a@example.org", "Subject: uu", "", *body.split("\n")))
    assert "begin 644" not in mail.text
    assert "Here is the logo." in mail.text and "Regards" in mail.text
    assert [(a.filename, a.content_type, a.size) for a in mail.attachments] == [
        ("logo.gif", "image/gif", len(data))]


def test_tnef_is_an_attachment_and_the_text_stays() -> None:
    message = raw(
        "From: outlook@example.org", "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b"', "",
        "--b", "Content-Type: text/plain; charset=us-ascii", "", "See the winmail.",
        "--b", 'Content-Type: application/ms-tnef; name="winmail.dat"',
        "Content-Transfer-Encoding: base64", "",
        base64.b64encode(b"\x78\x9f\x3e\x22" + b"\x00" * 20).decode(), "--b--")
    mail = parse_message(message)
    assert mail.text == "See the winmail."
    assert [(a.filename, a.content_type, a.size) for a in mail.attachments] == [
        ("winmail.dat", "application/ms-tnef", 24)]


def test_a_forwarded_message_rfc822_part() -> None:
    message = raw(
        "From: fwd@example.org", "Subject: Fwd: original", "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b"', "",
        "--b", "Content-Type: text/plain", "", "Please look at this.",
        "--b", "Content-Type: message/rfc822", "",
        "From: someone@example.net", "Subject: original", "", "The original text.",
        "--b--")
    mail = parse_message(message)
    assert mail.sender == "fwd@example.org"
    assert mail.text == "Please look at this.\n\nThe original text."


def test_a_folded_boundary_and_a_boundary_with_equals_signs() -> None:
    folded = raw("From: a@example.org", 'Content-Type: multipart/mixed; boundary="simple',
                 ' boundary"', "", "--simple boundary", "Content-Type: text/plain", "",
                 "first", "--simple boundary--")
    assert parse_message(folded).text == "first"
    unquoted = raw("From: a@example.org",
                   "Content-Type: multipart/alternative; boundary=----=_NextPart_000_0093",
                   "", "------=_NextPart_000_0093", "Content-Type: text/plain", "", "second",
                   "------=_NextPart_000_0093--")
    assert parse_message(unquoted).text == "second"


def test_a_content_type_without_semicolon_before_the_boundary() -> None:
    message = raw("From: a@example.org", 'Content-Type: multipart/mixed boundary="x"', "",
                  "--x", "Content-Type: text/plain", "", "inside", "--x--")
    assert parse_message(message).text == "inside"


def test_a_delivery_status_report_is_rendered_as_text() -> None:
    mail = parse_message(_dsn())
    assert "The mail could not be delivered." in mail.text
    assert "Final-Recipient: rfc822; gone@example.net" in mail.text
    assert "Status: 5.1.1" in mail.text
    assert "Diagnostic-Code: smtp; 550 5.1.1 user unknown" in mail.text


def test_nul_bytes_never_reach_the_text() -> None:
    message = b"From: a@example.org\r\nSubject: nul\x00here\r\n\r\nbody\x00with nul\r\n"
    mail = parse_message(message)
    assert "\x00" not in mail.text + mail.subject
    assert mail.text == "bodywith nul"


def test_nesting_deeper_than_the_limit_is_refused_by_name_and_taken_under_a_raised_one() -> None:
    """Deeper than `mail.max_mime_depth` (50): refused, naming the key, rather than parsed with
    its deepest text silently left out; under a raised limit the text is there."""
    depth = 200
    lines = ["From: a@example.org", "MIME-Version: 1.0"]
    for i in range(depth):
        lines += [f'Content-Type: multipart/mixed; boundary="b{i}"', "", f"--b{i}"]
    lines += ["Content-Type: text/plain", "", "deep"]
    for i in reversed(range(depth)):
        lines.append(f"--b{i}--")
    with pytest.raises(MessageTooComplex, match=r"more than 50 deep \(mail.max_mime_depth\)"):
        parse_message(raw(*lines))
    mail = parse_message(raw(*lines), max_depth=depth + 1)
    assert (mail.sender, mail.text) == ("a@example.org", "deep")


# --- automatic mail -----------------------------------------------------------------------------


def _dsn() -> bytes:
    return raw(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>", "To: a@example.org",
        "Subject: Undelivered Mail Returned to Sender", "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"', "",
        "--r", "Content-Type: text/plain", "", "The mail could not be delivered.",
        "--r", "Content-Type: message/delivery-status", "",
        "Reporting-MTA: dns; mx.example.com", "", "Final-Recipient: rfc822; gone@example.net",
        "Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 user unknown",
        "", "--r", "Content-Type: text/rfc822-headers", "",
        "From: a@example.org", "Message-ID: <orig@example.org>", "--r--")


@pytest.mark.parametrize(("headers", "automatic"), [
    (["Auto-Submitted: auto-replied"], True),
    (["Auto-Submitted: auto-generated"], True),
    (["Auto-Submitted: no"], False),
    (["Auto-Submitted: No (a person wrote this)"], False),
    (["Precedence: bulk"], True),
    (["Precedence: junk"], True),
    (["Precedence: list"], True),
    (["Precedence: first-class"], False),
    (["List-Id: Printers <printers.lists.example.org>"], True),
    (["List-Unsubscribe: <mailto:leave@lists.example.org>"], True),
    (["From: MAILER-DAEMON@mx.example.org"], True),
    (["From: postmaster@example.org"], True),
    (["Return-Path: <>"], True),
    (["X-Autoreply: yes"], True),
    (["X-Autorespond: Out of office"], True),
    (["X-Auto-Response-Suppress: OOF"], True),
    (["X-Auto-Response-Suppress: DR, RN"], False),
    ([], False),
])
def test_automatic_detection(headers: list[str], automatic: bool) -> None:
    mail = parse_message(simple("Subject: hello", *headers))
    assert mail.automatic is automatic, mail.automatic_reason


def test_a_delivery_status_report_is_automatic() -> None:
    mail = parse_message(_dsn())
    assert mail.automatic
    assert "report" in mail.automatic_reason


def test_a_report_inside_a_plain_multipart_is_automatic() -> None:
    message = raw("From: a@example.org", "MIME-Version: 1.0",
                  'Content-Type: multipart/mixed; boundary="m"', "",
                  "--m", "Content-Type: text/plain", "", "x",
                  "--m", "Content-Type: message/disposition-notification", "",
                  "Final-Recipient: rfc822; a@example.org", "Disposition: manual-action/MDN-sent-"
                  "manually; displayed", "--m--")
    assert parse_message(message).automatic


def test_a_null_envelope_sender_is_automatic() -> None:
    assert parse_message(simple("Subject: x"), envelope_from="<>").automatic
    assert parse_message(simple("Subject: x"), envelope_from="MAILER-DAEMON").automatic
    assert not parse_message(simple("Subject: x"), envelope_from="ivan@example.org").automatic


def test_parsed_mail_is_the_documented_shape() -> None:
    mail = parse_message(simple("Subject: shape"))
    assert isinstance(mail, ParsedMail)
    assert isinstance(mail.to, tuple) and isinstance(mail.attachments, tuple)
    assert isinstance(mail.defects, tuple)


# --- never a crash ------------------------------------------------------------------------------

_SEED = _dsn() + simple("Subject: =?utf-8?B?w6TDtsO8?= =?koi8-r?Q?=F0=D2?=",
                        "References: <a@x> <b@x>", body="begin 644 f.txt\n#86)C\n`\nend\n")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash(data: bytes) -> None:
    _parses_or_has_no_sender(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.binary(min_size=0, max_size=8)),
                max_size=12))
def test_damaged_real_looking_mail_never_crashes(edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(_SEED)
    for position, chunk in edits:
        data[position:position + len(chunk)] = chunk
    _parses_or_has_no_sender(bytes(data))


def _parses_or_has_no_sender(data: bytes) -> None:
    try:
        mail = parse_message(data)
    except UnparseableMessage:
        return
    assert "@" in mail.sender
    for value in (mail.subject, mail.sender_name, mail.text, mail.html):
        assert "\x00" not in value
        value.encode("utf-8")
    assert len(mail.subject.splitlines()) <= 1


def test_message_ids_hold_no_control_characters() -> None:
    """A NUL inside a Message-ID, In-Reply-To or References is no part of the id: PostgreSQL
    refuses it in text, and the look-up by it failed the mail (found by tests/test_hostile.py
    on PostgreSQL)."""
    raw = (b"From: ivan@example.org\r\nTo: support@example.com\r\nSubject: x\r\n"
           b"Message-ID: <m\x00id@example.org>\r\nIn-Reply-To: <r\x00e@example.org>\r\n"
           b"References: <f\x01oo@example.org> <ok@example.org>\r\n\r\nHello\r\n")
    mail = parse_message(raw)
    assert mail.message_id == "mid@example.org"
    assert set(mail.thread_ids) == {"re@example.org", "foo@example.org", "ok@example.org"}


def test_a_header_read_as_text_holds_no_control_characters() -> None:
    """An automatic mail's reason quotes its Auto-Submitted header and is stored: a NUL in it
    failed the mail on PostgreSQL (found by tests/test_hostile.py there)."""
    raw = (b"From: ivan@example.org\r\nTo: support@example.com\r\nSubject: x\x00y\r\n"
           b"Auto-Submitted: auto-\x00replied\x1b[31m\r\n\r\nHello\r\n")
    mail = parse_message(raw)
    assert mail.automatic and mail.automatic_reason.isprintable(), mail.automatic_reason
    assert "\x00" not in mail.subject


# --- the feed parser's boundary lines (maild.parsing._FeedparserRe) -----------------------------


def split_both_ways(data: bytes) -> tuple[object, object]:
    """The MIME tree of `data` as maild's parser makes it, once with its boundary matcher
    (`email.feedparser.re` as maild sets it) and once with the stdlib's compiled pattern: each
    part's headers, preamble, epilogue, payload and defects, or the error it raised."""
    import email.feedparser
    import re

    from maild import parsing

    def tree() -> object:
        try:
            message = parsing._parse(data, (1000, 50))
        except Exception as exc:  # MessageTooComplex: compared like a tree
            return type(exc).__name__, str(exc)
        return [(part.items(), part.preamble, part.epilogue,
                 None if part.is_multipart() else part.get_payload(),
                 [type(defect).__name__ for defect in part.defects]) for part in message.walk()]

    ours = email.feedparser.re
    assert isinstance(ours, parsing._FeedparserRe)  # what maild runs with
    try:
        email.feedparser.re = re  # type: ignore[attr-defined]
        theirs = tree()
    finally:
        email.feedparser.re = ours  # type: ignore[attr-defined]
    return tree(), theirs


BOUNDARIES = ["simple", "=_maild_0123abcd", "----=_NextPart_000_0012_01D9.5A3B", "a(b)c[d]*+?",
              "x" * 70, "with space", "dot.dot", "^$\\|{}", "'quoted'", "ends-"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("eol", ["\r\n", "\n", "\r"])
def test_boundary_lines_split_a_multipart_as_the_stdlib_pattern_does(boundary: str,
                                                                     eol: str) -> None:
    """Every shape a boundary line takes — trailing blanks, a line that only starts with the
    boundary, a longer boundary that starts with it, the close with and without a line end,
    no close at all, a nested multipart, text after the close — parses into the same tree with
    maild's boundary matcher as with the pattern the stdlib compiles for every multipart."""
    inner = f"{boundary}-inner"
    split = []
    for body in [
        [f"--{boundary}", "Content-Type: text/plain", "", "one", f"--{boundary} \t",
         "", "two", f"--{boundary}x", f"--{boundary[:-1]}~", f"--{boundary}--", "epilogue"],
        ["preamble", f"--{boundary}", "", f"--{boundary}-- trailing", f"--{boundary}--"],
        [f"--{boundary}", f'Content-Type: multipart/alternative; boundary="{inner}"', "",
         f"--{inner}", "", "deep", f"--{inner}--", f"--{boundary}", "", "after",
         f"--{boundary}--"],
        [f"--{boundary}", "", "never closed", f"-- {boundary}", f"--{boundary}-"],
        [f"--{boundary}", "", "closed without a line end", f"--{boundary}--NOEOL"],
    ]:
        data = raw("From: a@example.org", "MIME-Version: 1.0",
                   f'Content-Type: multipart/mixed; boundary="{boundary}"', "", *body, eol=eol)
        if body[-1].endswith("NOEOL"):
            data = data.removesuffix(f"NOEOL{eol}".encode())
        ours, theirs = split_both_ways(data)
        assert ours == theirs, (boundary, body)
        split.append(len(ours) if isinstance(ours, list) else 0)
    assert max(split) >= 4  # multiparts were split here, the nested one too
