"""Hostile and broken mail (SPEC §9): every message ends as a ticket or a `failed` row with its
reason, never a crash; the limits hold; file names never escape; customer text never injects a
header or HTML into the mail maild writes.

The generated messages come from tests/hostile.py. Here they run a few hundred at a time:
through parsing, through `maild ingest` one at a time, and a short campaign through threading
(tests/hostile_threading.py: stored as the pipe stores, threaded in batches by the worker's
code, follow-ups mixed in). `MAILD_HOSTILE_EXAMPLES`, `MAILD_HOSTILE_THREADING_EXAMPLES` and
`MAILD_HOSTILE_CAMPAIGN_CASES` make them longer; bench/hostile_campaign.py runs the long forms
(100,000 cases, parsing alone and `--threading`).
"""

from __future__ import annotations

import base64
import os
import random
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from maild import config
from maild.compose import OutgoingFile
from maild.errors import ConfigError
from maild.headers import MAX_FILENAME_BYTES, safe_filename
from maild.parsing import MessageTooComplex, parse_message
from maild.web.pages import _download_disposition
from tests.conftest import Helpdesk, default_database_url, plain_text, recipient
from tests.hostile import (
    FILENAMES,
    cases,
    check_filename,
    check_outgoing,
    check_parsed,
    check_settled,
    drawn,
    messages,
)
from tests.hostile_threading import ThreadingCampaign

PARSE_EXAMPLES = int(os.environ.get("MAILD_HOSTILE_EXAMPLES", "300"))
THREADING_EXAMPLES = int(os.environ.get("MAILD_HOSTILE_THREADING_EXAMPLES", "150"))
CAMPAIGN_CASES = int(os.environ.get("MAILD_HOSTILE_CAMPAIGN_CASES", "300"))
CORPUS = os.environ.get("MAILD_CORPUS")


# --- parsing: the property --------------------------------------------------------------------

@settings(max_examples=PARSE_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages())
def test_a_hostile_message_parses_or_is_refused_by_name(raw: bytes) -> None:
    try:
        mail = parse_message(raw)
    except MessageTooComplex as exc:
        assert "mail.max_mime_" in str(exc)
        event("refused: over a MIME limit")
        return
    except Exception as exc:  # the one refusal parsing has besides: no sender anywhere
        assert type(exc).__name__ == "UnparseableMessage" and "no sender" in str(exc), exc
        event("refused: no sender")
        return
    check_parsed(mail)
    event(f"parsed, {'with' if mail.attachments else 'no'} attachments")


# --- threading: the property, on the real path ------------------------------------------------

@settings(max_examples=THREADING_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(raw=messages())
def test_a_hostile_message_is_a_ticket_or_failed_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: bytes
) -> None:
    helpdesk = _helpdesk(tmp_path, capsys)
    sent_before = set(_sent(helpdesk))
    result = helpdesk.ingest(raw)
    if not raw.strip():
        assert result.code == 2 and "empty message" in result.err
        return
    assert result.code == 0, result.err
    assert "finishing it failed" not in result.err, result.err
    [row] = helpdesk.run("inbound", "list", "--limit", "1", "--json").json()
    assert row["state"] in ("done", "failed"), row
    event(f"{row['state']}: {str(row['reason'])[:40]}")
    check_settled(row["state"], row["reason"], row["ticket_id"])
    for path in set(_sent(helpdesk)) - sent_before:
        check_outgoing(path.read_bytes())


def test_a_short_campaign_through_threading_settles_every_message_and_writes_clean_mail(
    tmp_path: Path
) -> None:
    """60 drawn messages and their mutants, in batches through the worker's code, a third of
    them follow-ups to acknowledgements maild sent, staff answering and closing tickets: every
    row `done` on a ticket or `failed` with its reason, every mail delivered clean, no crash."""
    pool = drawn(60, seed=13)
    campaign = ThreadingCampaign(tmp_path / "campaign", seed=13,
                                 url=default_database_url(tmp_path))
    report = campaign.run(cases(random.Random(13), pool, CAMPAIGN_CASES))
    print("\n".join(report.lines()))
    assert report.violations == []
    counts = report.counts
    assert counts["cases"] == CAMPAIGN_CASES and counts["crashes"] == 0
    assert counts["inbound done"] > 0 and counts["inbound failed"] > 0
    assert counts["follow-ups: threaded onto their ticket"] > 0
    assert counts["mail delivered: ack"] > 0 and counts["mail delivered: notice_new"] > 0
    assert counts["staff: answered"] > 0 and counts["staff: closed"] > 0
    assert counts["event reopened"] > 0  # follow-ups to closed tickets


_installations: dict[Path, Helpdesk] = {}


def _helpdesk(root: Path, capsys: pytest.CaptureFixture[str]) -> Helpdesk:
    """One installation for all examples of a test (a new one each would be most of the
    time); staff notices on, so that they are checked too."""
    if root not in _installations:
        _installations.clear()
        _installations[root] = Helpdesk(root, capsys, notify="true")
    helpdesk = _installations[root]
    helpdesk.capsys = capsys
    return helpdesk


def _sent(helpdesk: Helpdesk) -> list[Path]:
    new = helpdesk.root / "var" / "outbox" / "new"
    return list(new.iterdir()) if new.exists() else []


# --- customer text in maild's mail ------------------------------------------------------------

def test_customer_html_and_header_breaks_stay_text_in_the_staff_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An HTML mail whose subject, name, text and file name carry tags and line breaks. The
    staff notice is plain text (its template is rendered without escaping because nothing in
    it is HTML), so the customer's tags are text; the acknowledgement's HTML part, built from
    its text by `compose`, shows them escaped. No header gains a line."""
    helpdesk = Helpdesk(tmp_path, capsys, notify="true")
    raw = (b"From: =?utf-8?q?Eve=0D=0AX-Injected=3A_yes?= <eve@example.org>\r\n"
           b"To: support@example.com\r\n"
           b"Subject: <img src=x onerror=alert(1)>=?utf-8?q?=0D=0AX-Injected=3A_1?=\r\n"
           b"Message-ID: <html@example.org>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
           b"Content-Type: text/html; charset=utf-8\r\n\r\n"
           b"<p>Look</p><script>alert(1)</script>&lt;b&gt;literal&lt;/b&gt;\r\n"
           b"--m\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment; filename*=utf-8''%3Cimg%20src%3Dx%3E%0D%0AX-Injected"
           b"%3A%20yes.txt\r\n\r\nx\r\n--m--\r\n")
    assert helpdesk.ingest(raw).code == 0
    sent = {p: p.read_bytes() for p in _sent(helpdesk)}
    assert len(sent) == 3  # the acknowledgement and a notice to each of the two staff members
    for raw_sent in sent.values():
        check_outgoing(raw_sent)
    parsed = [BytesParser(policy=policy.default).parsebytes(s) for s in sent.values()]
    notices = [m for m in parsed if recipient(m) == "alice@example.com"]
    [ack] = [m for m in parsed if recipient(m) == "eve@example.org"]
    for notice in notices:
        assert isinstance(notice, EmailMessage)
        assert "text/html" not in [p.get_content_type() for p in notice.walk()]
        assert "<b>literal</b>" in plain_text(notice)  # what the customer's page showed
        assert "<script>" not in plain_text(notice)  # html_to_text dropped the script
    assert isinstance(ack, EmailMessage)
    html_part = ack.get_body(preferencelist=("html",))
    assert html_part is not None
    html = str(html_part.get_content())
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the subject, as text
    assert "<img" not in html


def test_a_customer_html_page_svg_or_message_reaches_staff_as_a_file_not_shown_as_mail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Attachments a client would render inside the staff notice — an HTML page, an SVG, a
    forwarded message (which RFC 2046 forbids in base64 besides) — go as
    application/octet-stream under their names; the others keep their type (found by
    bench/hostile_campaign.py --threading: a text/html attachment with an `<img onerror>`)."""
    helpdesk = Helpdesk(tmp_path, capsys, notify="true")
    files = [("text/html", "page.html", b"<img src=x onerror=alert(1)>"),
             ("image/svg+xml", "logo.svg", b"<svg onload=alert(1)/>"),
             ("image/png", "shot.png", b"\x89PNG\r\n")]
    raw = (b"From: Eve <eve@example.org>\r\nTo: support@example.com\r\nSubject: files\r\n"
           b"Message-ID: <files@example.org>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
           b"Content-Type: text/plain\r\n\r\nSee the files.\r\n"
           + b"".join(b"--m\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\n"
                      b'Content-Disposition: attachment; filename="%s"\r\n\r\n%s\r\n'
                      % (ctype.encode(), name.encode(), base64.b64encode(data))
                      for ctype, name, data in files) + b"--m--\r\n")
    assert helpdesk.ingest(raw).code == 0
    sent = [p.read_bytes() for p in _sent(helpdesk)]
    notices = [BytesParser(policy=policy.default).parsebytes(s) for s in sent]
    notices = [m for m in notices if recipient(m) == "alice@example.com"]
    assert len(notices) == 1 and len(sent) == 3
    for raw_sent in sent:
        check_outgoing(raw_sent)
    assert isinstance(notices[0], EmailMessage)
    got = {str(a.get_filename()): (a.get_content_type(), a.get_payload(decode=True))
           for a in notices[0].iter_attachments()}
    assert got == {"page.html": ("application/octet-stream", files[0][2]),
                   "logo.svg": ("application/octet-stream", files[1][2]),
                   "shot.png": ("image/png", files[2][2])}, got
    # A message/rfc822 part the parser could not open is kept as a file of that type.
    forwarded = BytesParser(policy=policy.default).parsebytes(
        OutgoingFile("fwd.eml", "message/rfc822", b"From: x@y\r\n\r\nhi").part)
    assert forwarded.get_content_type() == "application/octet-stream"
    assert forwarded.get_filename() == "fwd.eml"


# --- bounded resources ------------------------------------------------------------------------

def mime_bomb(parts: int) -> bytes:
    head = (b"From: Mallory <mallory@example.org>\r\nTo: support@example.com\r\n"
            b"Subject: many parts\r\nMessage-ID: <bomb%d@example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" % parts)
    part = (b"--b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=f%d.bin\r\n\r\nx\r\n")
    return head + b"".join(part % i for i in range(parts)) + b"--b--\r\n"


def nested(depth: int, kind: str = "multipart") -> bytes:
    """Multiparts (or message/rfc822 parts) inside each other, `depth` deep, text at the end."""
    out = [b"From: Mallory <mallory@example.org>\r\nTo: support@example.com\r\n"
           b"Subject: deep\r\nMessage-ID: <deep%d%s@example.org>\r\nMIME-Version: 1.0\r\n"
           % (depth, kind.encode())]
    for i in range(depth):
        out.append(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                   if kind == "multipart" else
                   b"Content-Type: message/rfc822\r\n\r\nFrom: m%d@example.org\r\n" % i)
    out.append(b"Content-Type: text/plain\r\n\r\nthe deepest text\r\n")
    if kind == "multipart":
        out.extend(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return b"".join(out)


def _settled(helpdesk: Helpdesk, raw: bytes) -> dict[str, object]:
    assert helpdesk.ingest(raw).code == 0
    [row] = helpdesk.run("inbound", "list", "--limit", "1", "--json").json()
    return dict(row)


@pytest.mark.parametrize("raw, reason", [
    (mime_bomb(5_000), "more than 1000 MIME parts (mail.max_mime_parts)"),
    (mime_bomb(50_000), "more than 1000 MIME parts (mail.max_mime_parts)"),
    (nested(1_000), "nested more than 50 deep (mail.max_mime_depth)"),
    (nested(1_000, "message/rfc822"), "nested more than 50 deep (mail.max_mime_depth)"),
], ids=["bomb-5000", "bomb-50000", "nested-1000", "rfc822-1000"])
def test_a_mime_bomb_or_a_nesting_a_thousand_deep_is_failed_naming_the_limit(
    helpdesk: Helpdesk, raw: bytes, reason: str
) -> None:
    row = _settled(helpdesk, raw)
    assert row["state"] == "failed" and row["attempts"] == 1, row
    assert reason in str(row["reason"]), row
    assert helpdesk.tickets() == []
    assert _sent(helpdesk) == []  # no acknowledgement to whoever sent it


def test_within_raised_limits_the_same_messages_become_tickets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The limits are the config's: raised, and the failed message retried, it is taken."""
    helpdesk = Helpdesk(tmp_path, capsys)
    row = _settled(helpdesk, nested(300))
    assert row["state"] == "failed"
    text = helpdesk.config.read_text().replace(
        "[mail]\n", "[mail]\nmax_mime_depth = 400\nmax_mime_parts = 6000\n")
    helpdesk.config.write_text(text)
    assert helpdesk.run("inbound", "retry", str(row["id"])).code == 0
    [ticket] = helpdesk.tickets()
    assert "the deepest text" in helpdesk.ticket(ticket["number"])["messages"][0]["body"]
    bomb = _settled(helpdesk, mime_bomb(5_000))
    assert bomb["state"] == "done", bomb
    [number] = [t["number"] for t in helpdesk.tickets() if t["subject"] == "many parts"]
    assert len(helpdesk.ticket(number)["messages"][0]["attachments"]) == 5_000


def test_a_message_over_the_size_limit_is_refused_by_ingest(helpdesk: Helpdesk) -> None:
    """50 MB, over `mail.max_message_bytes` (25 MiB by default): exit 2, nothing stored."""
    raw = mime_bomb(1)[:-9] + b"A" * 50_000_000 + b"\r\n--b--\r\n"
    result = helpdesk.ingest(raw)
    assert result.code == 2 and "exceeds the limit of 26214400" in result.err
    assert helpdesk.run("inbound", "list", "--json").json() == []


def test_a_50_mb_message_under_a_raised_limit_is_a_ticket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    helpdesk = Helpdesk(tmp_path, capsys)
    text = helpdesk.config.read_text().replace("[mail]\n",
                                               "[mail]\nmax_message_bytes = 60000000\n")
    helpdesk.config.write_text(text)
    row = _settled(helpdesk, fifty_mb())
    assert row["state"] == "done", row
    [attachment] = helpdesk.ticket(helpdesk.tickets()[0]["number"])["messages"][0]["attachments"]
    assert attachment["size"] == 36_000_000


def fifty_mb() -> bytes:
    """About 50 MB: a text and a 36 MB attachment in base64."""
    data = bytes(range(256)) * (36_000_000 // 256) + b"\x00" * (36_000_000 % 256)
    encoded = base64.encodebytes(data)
    return (b"From: Ivan <ivan@example.org>\r\nTo: support@example.com\r\nSubject: big\r\n"
            b"Message-ID: <big@example.org>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b"Content-Type: text/plain\r\n\r\nThe dump is attached.\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="core.dump"\r\n\r\n'
            + encoded.replace(b"\n", b"\r\n") + b"--b--\r\n")


def test_8_bit_bytes_between_thousands_of_encoded_words_cost_one_walk_of_the_parts(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run of 8-bit bytes not in UTF-8 is read in the charset the message declares for
    its text; that was looked up again for each run, a walk over all the parts each: 5,000
    runs and 500 parts took 44 s of CPU (found by bench/hostile_campaign.py --threading). Now
    once a message."""
    import maild.parsing

    asked: list[int] = []
    real = maild.parsing._declared_charset
    monkeypatch.setattr(maild.parsing, "_declared_charset",
                        lambda part: asked.append(1) or real(part))
    subject = b"=?utf-8?q?a?= \xe9t\xe9 " * 5_000
    parts = b"--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nx\r\n" * 500
    mail = parse_message(b"From: ivan@example.org\r\nTo: support@example.com\r\nSubject: "
                         + subject + b"\r\nMIME-Version: 1.0\r\n"
                         b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts
                         + b"--b--\r\n")
    assert mail.subject.startswith("a été a été")
    assert len(asked) < 5 * 500, len(asked)  # a few walks, not one per run of bytes


def test_thousands_of_references_thread_by_the_root_and_the_latest(helpdesk: Helpdesk) -> None:
    """A References header of 70,000 ids (more parameters than PostgreSQL's protocol carries in
    one statement, 65,535): the root and the latest are kept, and the reply lands on its
    ticket."""
    assert helpdesk.ingest(b"From: ivan@example.org\r\nTo: support@example.com\r\n"
                           b"Subject: first\r\nMessage-ID: <root@example.org>\r\n\r\nhi\r\n"
                           ).code == 0
    refs = b" ".join(b"<r%d@example.org>" % i for i in range(70_000))
    row = _settled(helpdesk, b"From: ivan@example.org\r\nTo: support@example.com\r\n"
                   b"Subject: unrelated words\r\nMessage-ID: <many@example.org>\r\n"
                   b"References: <root@example.org> " + refs + b"\r\n\r\nmore\r\n")
    assert row["state"] == "done", row
    [ticket] = helpdesk.tickets()
    assert len(helpdesk.ticket(ticket["number"])["messages"]) >= 2


@pytest.mark.skipif(not CORPUS, reason="needs MAILD_CORPUS")
def test_the_corpus_forwarding_loop_of_3042_parts_is_over_the_part_limit() -> None:
    raw = Path(CORPUS or ".", "mailgun-flanker/tests/fixtures/messages/enclosed-endless.eml")
    with pytest.raises(MessageTooComplex, match=r"more than 1000 MIME parts"):
        parse_message(raw.read_bytes())
    assert parse_message(raw.read_bytes(), max_parts=5000).sender


# --- file names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("../../etc/passwd", "passwd"), ("/etc/shadow", "shadow"),
    ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"), ("C:\\boot.ini", "boot.ini"),
    ("a\x00b.txt", "ab.txt"), ("", "file"), ("..", "file"), (" . ", "file"),
    ("CON", "_CON"), ("nul.txt", "_nul.txt"), ("com1.tar.gz", "_com1.tar.gz"),
    ("отчёт за ноябрь.pdf", "отчёт за ноябрь.pdf"), ("evil\r\nX-Injected: yes.txt",
                                                     "evil X-Injected yes.txt"),
    ('a " b.txt', "a b.txt"), ("\u202egnp.exe", "gnp.exe"), (".bashrc", "bashrc"),
])
def test_a_file_name_names_one_file_in_its_folder(name: str, expected: str) -> None:
    assert safe_filename(name) == expected
    check_filename(safe_filename(name))


@given(st.one_of(st.sampled_from(FILENAMES), st.text(), st.binary().map(
    lambda b: b.decode("utf-8", "surrogateescape"))))
@settings(max_examples=500, deadline=None, database=None)
def test_any_file_name_is_made_safe_and_stays_safe(name: str) -> None:
    check_filename(safe_filename(name))


def test_an_overlong_name_keeps_its_extension_within_the_limit() -> None:
    for name, ending in (("я" * 300 + ".pdf", "я.pdf"), ("a" * 1000 + ".tar.gz", "a.gz"),
                         ("x" * 5000, "xxx")):
        safe = safe_filename(name)
        assert len(safe.encode()) <= MAX_FILENAME_BYTES
        assert safe.endswith(ending)


@pytest.mark.parametrize("name", FILENAMES)
def test_a_hostile_file_name_of_an_attachment_is_stored_safe(name: str) -> None:
    """RFC 2231 (split too) and RFC 2047 forms of the name, as they come in mail."""
    forms = [f"filename*=utf-8''{quote(name, safe='')}",
             f"filename*0*=utf-8''{quote(name[:3], safe='')}; "
             f"filename*1*={quote(name[3:], safe='')}",
             'filename="=?utf-8?b?' + base64.b64encode(name.encode()).decode()
             + '?="']
    for form in forms:
        raw = ("From: ivan@example.org\r\nTo: support@example.com\r\nSubject: f\r\n"
               'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
               "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
               f"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
               f"{form}\r\n\r\ndata\r\n--b--\r\n").encode()
        [attachment] = parse_message(raw).attachments
        check_filename(attachment.filename)


@pytest.mark.parametrize("name", FILENAMES)
def test_the_download_header_names_the_file_and_nothing_else(name: str) -> None:
    header = _download_disposition(name)
    assert not re.search(r"[\x00-\x1f\x7f]", header), header
    assert header.startswith('attachment; filename="') and header.count('"') == 2
    assert re.fullmatch(r'attachment; filename="[ -~]*"; filename\*=UTF-8\'\'[A-Za-z0-9%._~-]+',
                        header), header


# --- the limits in the config -----------------------------------------------------------------

@pytest.mark.parametrize("line, problem", [
    ("max_mime_depth = 501", "must be a whole number from 1 to 500"),
    ("max_mime_depth = 0", "must be a whole number from 1 to 500"),
    ('max_mime_depth = "deep"', "must be a whole number from 1 to 500"),
    ("max_mime_parts = 0", "must be a whole number of at least 1"),
])
def test_a_mime_limit_out_of_range_is_a_config_error_naming_the_key(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "maild.toml"
    path.write_text(f'[mail]\nsupport_address = "support@example.com"\n{line}\n')
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    key = line.split(" ", 1)[0]
    assert f"{path}:mail.{key}: {problem}" in raised.value.problems, raised.value.problems
