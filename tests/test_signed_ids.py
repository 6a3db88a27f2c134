"""Signed Message-IDs (SPEC §5) and `mail.staff_auth` (SPEC §7), issue #13.

Every Message-ID maild sends is signed for its recipient (`maild.signing`); a reference to one
proves that its sender got that mail. What each `staff_auth` mode makes of a forged
`From: alice` with `#close` on a known ticket: "from" trusts it (by design), the other two
handle it as a customer's mail and leave the ticket open.
"""

from __future__ import annotations

import multiprocessing
import stat
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from maild import config
from maild.cli import main
from maild.keys import read_key
from maild.signing import signed_for, signed_message_id
from tests.conftest import Helpdesk, mail, recipient

ALICE = "Alice <alice@example.com>"


def _desk(tmp_path: Path, capsys: pytest.CaptureFixture[str], staff_auth: str) -> Helpdesk:
    desk = Helpdesk(tmp_path, capsys, notify="true")
    extra = {"from": "", "token": 'staff_auth = "token"\n',
             "authentication-results": 'staff_auth = "authentication-results"\n'
                                       'authserv_id = "mx.example.com"\n'}[staff_auth]
    desk.config.write_text(desk.config.read_text().replace("[mail]\n", f"[mail]\n{extra}"))
    return desk


def _key_file(desk: Helpdesk) -> str:
    return config.load(desk.config).mail.secret_file


def _signing(key: Path) -> config.Settings:
    """Settings that sign with the key in `key`."""
    return config.from_mapping({"mail": {"support_address": "support@example.com",
                                         "secret_file": str(key)}})


def _notice_to(desk: Helpdesk, address: str) -> EmailMessage:
    [notice] = [m for m in desk.outbox() if recipient(m) == address and "[new]" in m["Subject"]]
    return notice


def _close(number: str, in_reply_to: str | None = None,
           references: str | None = None) -> EmailMessage:
    return mail(subject=f"Re: [Ticket#{number}] Printer does not print", sender=ALICE,
                body="#close\n\nDone, the driver is installed.\n", in_reply_to=in_reply_to,
                references=references)


def _events(desk: Helpdesk, number: str) -> list[str]:
    return [e["type"] for e in desk.ticket(number)["events"]]


def _received(desk: Helpdesk, number: str) -> int:
    """How many inbound messages the ticket holds."""
    return sum(m["direction"] == "in" for m in desk.ticket(number)["messages"])


# --- the signature ---------------------------------------------------------------------------


def test_an_id_verifies_for_its_recipient_only_and_not_once_tampered(tmp_path: Path) -> None:
    key = tmp_path / "maild.key"
    key.write_text("k" * 40 + "\n")
    signing = _signing(key)
    made = signed_message_id(signing, "Ivan@Example.org")
    assert made.startswith("maild.") and made.endswith("@example.com")
    assert signed_for(signing, made, "ivan@example.org")  # addresses compare in any case
    assert not signed_for(signing, made, "stranger@example.net")
    local, _, domain = made.partition("@")
    flipped = local[:-1] + ("0" if local[-1] != "0" else "1")
    assert not signed_for(signing, f"{flipped}@{domain}", "ivan@example.org")
    assert not signed_for(signing, "maild.1764620000000.0123456789abcdef@example.com",
                          "ivan@example.org")  # the unsigned ids of before
    other = tmp_path / "other.key"
    other.write_text("o" * 40 + "\n")
    assert not signed_for(_signing(other), made, "ivan@example.org")  # another key


def test_init_writes_the_key_file_private(helpdesk: Helpdesk) -> None:
    key = Path(_key_file(helpdesk))
    assert key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) >= 32


@pytest.mark.sqlite
def test_on_sqlite_the_key_file_defaults_to_beside_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "maild.toml"
    path.write_text('[database]\nurl = "sqlite:///state/maild.db"\n'
                    '[mail]\nsupport_address = "support@example.com"\n'
                    '[outbound]\nmaildir = "state/outbox"\n')
    assert main(["--config", str(path), "init"]) == 0
    key = tmp_path / "state" / "maild.db.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    assert main(["--config", str(path), "init"]) == 0
    assert key.read_bytes() == before  # a second init keeps the key


def _default_key_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """An initialised SQLite install whose Message-ID key is the default file, then lost —
    as an install from before signed Message-IDs is until `maild init` or `maild run`."""
    path = tmp_path / "maild.toml"
    path.write_text('[database]\nurl = "sqlite:///state/maild.db"\n'
                    '[mail]\nsupport_address = "support@example.com"\n'
                    '[outbound]\nmaildir = "state/outbox"\n'
                    '[[staff]]\nemail = "alice@example.com"\nname = "Alice"\n')
    assert main(["--config", str(path), "init"]) == 0
    key = tmp_path / "state" / "maild.db.key"
    key.unlink()
    capsys.readouterr()
    return path, key


@pytest.mark.sqlite
def test_on_sqlite_the_default_key_is_made_when_first_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = _default_key_install(tmp_path, capsys)
    assert main(["--config", str(path), "ticket", "new", "--channel", "phone", "--customer",
                 "ivan@example.org", "--subject", "Printer", "--body", "He called."]) == 0
    number = capsys.readouterr().out.strip()
    key.unlink()  # lost again: now the reply is the first to need it
    assert main(["--config", str(path), "ticket", "reply", number, "--staff",
                 "alice@example.com", "--body", "Try the other tray."]) == 0, \
        capsys.readouterr().err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    settings = config.load(path)
    sent = [p.read_bytes() for p in (tmp_path / "state" / "outbox" / "new").iterdir()]
    ids = [line.split(b"<", 1)[1].split(b">", 1)[0].decode() for raw in sent
           for line in raw.splitlines() if line.lower().startswith(b"message-id:")]
    assert any(signed_for(settings, mid, "ivan@example.org") for mid in ids)
    key.unlink()  # and `maild ingest` without a daemon, which threads and acknowledges
    capsys.readouterr()
    raw = tmp_path / "in.eml"
    raw.write_bytes(mail(sender="olga@example.net").as_bytes())
    assert main(["--config", str(path), "ingest", str(raw)]) == 0
    assert capsys.readouterr().out.strip().isdigit()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert any(b"Delivered-To: olga@example.net" in p.read_bytes()
               for p in (tmp_path / "state" / "outbox" / "new").iterdir())  # acknowledged


def _key_of(file_name: str, ready: Any, keys: Any) -> None:
    ready.wait()
    keys.put(read_key(file_name, create=True))


@pytest.mark.sqlite
def test_two_processes_making_the_key_at_once_end_with_one_key(tmp_path: Path) -> None:
    file_name = str(tmp_path / "state" / "maild.db.key")
    context = multiprocessing.get_context("fork")
    ready, keys = context.Barrier(4), context.Queue()
    makers = [context.Process(target=_key_of, args=(file_name, ready, keys)) for _ in range(4)]
    for maker in makers:
        maker.start()
    found = {keys.get(timeout=30) for _ in makers}
    for maker in makers:
        maker.join(timeout=30)
        assert maker.exitcode == 0
    assert found == {Path(file_name).read_bytes().strip()}
    assert stat.S_IMODE(Path(file_name).stat().st_mode) == 0o600
    assert [p.name for p in Path(file_name).parent.iterdir()] == ["maild.db.key"]  # no drafts


def test_a_named_key_file_is_never_made_on_need(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the default key beside a SQLite database is maild's to make: a file the config
    names — on PostgreSQL there is no other — is shared by every instance, and a new key in
    one of them would sign what the others cannot check. Missing, it is an error naming it."""
    desk = Helpdesk(tmp_path, capsys)
    key = Path(_key_file(desk))
    key.unlink()
    result = desk.ingest(mail())
    assert not key.exists()
    assert str(key) in result.err
    assert desk.outbox() == []


def test_check_config_reports_a_key_file_others_can_read(helpdesk: Helpdesk) -> None:
    key = Path(_key_file(helpdesk))
    key.chmod(0o644)
    result = helpdesk.run("check-config")
    assert result.code != 0
    assert f"mail.secret_file: {key} is readable or writable by others" in result.err + result.out


def test_every_mail_maild_sends_is_signed_for_its_recipient(helpdesk: Helpdesk) -> None:
    helpdesk.ingest(mail())
    [ack] = helpdesk.outbox()
    message_id = ack["Message-ID"].strip("<>")
    settings = config.load(helpdesk.config)
    assert signed_for(settings, message_id, "ivan@example.org")
    assert not signed_for(settings, message_id, "alice@example.com")


# --- participation (SPEC §5) -----------------------------------------------------------------


def test_a_stranger_answering_a_forwarded_acknowledgement_gets_a_ticket_of_their_own(
    helpdesk: Helpdesk,
) -> None:
    """The acknowledgement's Message-ID is signed for the customer: in anyone else's hands it
    proves nothing, not even with the ticket's number in the subject."""
    number = helpdesk.ingest(mail()).out.strip()
    [ack] = helpdesk.outbox()
    stranger = mail(subject=f"Re: [Ticket#{number}] Printer does not print",
                    sender="stranger@example.net", in_reply_to=ack["Message-ID"],
                    references=ack["Message-ID"])
    other = helpdesk.ingest(stranger).out.strip()
    assert other != number
    assert "claimed_ticket" in _events(helpdesk, other)
    customer = mail(subject="Re: your message", in_reply_to=ack["Message-ID"])
    assert helpdesk.ingest(customer).out.strip() == number


# --- staff identity (SPEC §7), a forged From: alice in each mode -----------------------------


def test_staff_auth_from_trusts_the_from_line_so_a_forged_one_acts_as_staff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default promises nothing more than the From line: this is why the other modes
    exist (README "Staff identity")."""
    desk = _desk(tmp_path, capsys, "from")
    number = desk.ingest(mail()).out.strip()
    desk.ingest(_close(number))
    assert desk.ticket(number)["status"] == "closed"


def test_staff_auth_authentication_results_ignores_a_forged_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = _desk(tmp_path, capsys, "authentication-results")
    number = desk.ingest(mail()).out.strip()
    other = desk.ingest(_close(number)).out.strip()  # no Authentication-Results from mx.example.com
    assert desk.ticket(number)["status"] != "closed"
    assert "staff_unverified" in _events(desk, other)


def test_staff_auth_token_ignores_a_forged_from_without_a_signed_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = _desk(tmp_path, capsys, "token")
    number = desk.ingest(mail()).out.strip()
    sent = len(desk.outbox())
    other = desk.ingest(_close(number)).out.strip()
    assert desk.ticket(number)["status"] != "closed"
    assert "staff_unverified" in _events(desk, other)
    assert not [m for m in desk.outbox()[sent:] if recipient(m) == "ivan@example.org"]


def test_staff_auth_token_accepts_an_answer_to_the_notice_maild_sent_that_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = _desk(tmp_path, capsys, "token")
    number = desk.ingest(mail()).out.strip()
    notice = _notice_to(desk, "alice@example.com")
    desk.ingest(_close(number, in_reply_to=notice["Message-ID"],
                       references=notice["References"] + " " + notice["Message-ID"]))
    shown = desk.ticket(number)
    assert shown["status"] == "closed"
    assert "staff_unverified" not in _events(desk, number)
    [answer] = [m for m in desk.outbox() if recipient(m) == "ivan@example.org"
                and "driver is installed" in m.get_content()]
    assert "#close" not in answer.get_content()
    # The customer's copy must not hand them a token of Alice's to forge her with.
    assert answer["References"] is not None
    thread = f"{answer['In-Reply-To']} {answer['References']}"
    assert notice["Message-ID"].strip("<>") not in thread
    assert not any(signed_for(config.load(desk.config), mid.strip("<>"), "alice@example.com")
                   for mid in thread.split())


def test_staff_auth_token_refuses_a_notice_maild_sent_someone_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bob's notice in Alice's name (a forwarded notice, or a forger who got one): the
    signature is Bob's, so it proves nothing for alice@."""
    desk = _desk(tmp_path, capsys, "token")
    number = desk.ingest(mail()).out.strip()
    bobs = _notice_to(desk, "bob@example.com")
    other = desk.ingest(_close(number, in_reply_to=bobs["Message-ID"],
                               references=bobs["Message-ID"])).out.strip()
    assert desk.ticket(number)["status"] != "closed"
    assert "staff_unverified" in _events(desk, other)


def test_staff_auth_token_refuses_a_tampered_mac(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = _desk(tmp_path, capsys, "token")
    number = desk.ingest(mail()).out.strip()
    real = _notice_to(desk, "alice@example.com")["Message-ID"].strip("<>")
    local, _, domain = real.partition("@")
    forged = f"<{local[:-1]}{'0' if local[-1] != '0' else '1'}@{domain}>"
    other = desk.ingest(_close(number, in_reply_to=forged, references=forged)).out.strip()
    assert desk.ticket(number)["status"] != "closed"
    assert "staff_unverified" in _events(desk, other)


# --- a staff address on a ticket (SPEC §5 participants, §7 proof) ----------------------------
#
# Staff take part in every ticket, and a staff member's address is on the correspondence of
# each ticket they were notified of (`_desk` turns the notices on). That standing is the
# staff member's, so without the proof `mail.staff_auth` asks for, a staff From line is a
# non-participant's: the ticket it names is only claimed.


@pytest.mark.parametrize("staff_auth", ["from", "authentication-results", "token"])
def test_a_forged_staff_from_lands_on_another_customers_ticket_only_when_from_is_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], staff_auth: str
) -> None:
    desk = _desk(tmp_path, capsys, staff_auth)
    number = desk.ingest(mail()).out.strip()
    before = len(desk.ticket(number)["messages"])
    landed = desk.ingest(_close(number)).out.strip()
    if staff_auth == "from":  # trusts the From line, by design
        assert landed == number
        assert _received(desk, number) == 2  # the customer's and the forger's
        return
    assert landed != number
    assert len(desk.ticket(number)["messages"]) == before
    assert desk.ticket(number)["status"] != "closed"
    events = _events(desk, landed)
    assert "claimed_ticket" in events and "staff_unverified" in events
    [claim] = [e for e in desk.ticket(landed)["events"] if e["type"] == "claimed_ticket"]
    assert number in claim["detail"]


@pytest.mark.parametrize("staff_auth", ["authentication-results", "token"])
def test_a_forged_staff_from_answering_a_message_of_the_ticket_only_claims_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], staff_auth: str
) -> None:
    """A reference to the customer's own Message-ID (known from a Cc or a list) is honoured
    only from a participant, as a number is — and an unproven staff From is none."""
    desk = _desk(tmp_path, capsys, staff_auth)
    first = mail()
    number = desk.ingest(first).out.strip()
    before = len(desk.ticket(number)["messages"])
    forged = mail(subject="Re: Printer does not print", sender=ALICE, body="Done.\n",
                  in_reply_to=first["Message-ID"], references=first["Message-ID"])
    landed = desk.ingest(forged).out.strip()
    assert landed != number
    assert len(desk.ticket(number)["messages"]) == before
    assert "claimed_ticket" in _events(desk, landed)


def test_an_answer_to_alices_notice_proves_her_in_token_mode_and_lands_on_the_ticket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = _desk(tmp_path, capsys, "token")
    number = desk.ingest(mail()).out.strip()
    before = len(desk.ticket(number)["messages"])
    notice = _notice_to(desk, "alice@example.com")
    answer = mail(subject=f"Re: [Ticket#{number}] Printer does not print", sender=ALICE,
                  body="The driver is on its way.\n", in_reply_to=notice["Message-ID"],
                  references=notice["Message-ID"])
    assert desk.ingest(answer).out.strip() == number
    shown = desk.ticket(number)
    assert _received(desk, number) == 2
    assert len(shown["messages"]) > before
    assert "staff_unverified" not in _events(desk, number)


def test_a_passing_authentication_results_proves_alice_and_lands_on_the_ticket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = _desk(tmp_path, capsys, "authentication-results")
    number = desk.ingest(mail()).out.strip()
    genuine = mail(subject=f"Re: [Ticket#{number}] Printer does not print", sender=ALICE,
                   body="The driver is on its way.\n",
                   headers={"Authentication-Results":
                            "mx.example.com; dkim=pass header.d=example.com header.s=s1"})
    assert desk.ingest(genuine).out.strip() == number
    assert _received(desk, number) == 2
    assert "staff_unverified" not in _events(desk, number)


def test_an_unproven_staff_address_still_reaches_the_ticket_it_is_the_customer_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alice writing without proof is handled as a customer (SPEC §7) — of her own ticket
    too: its customer is a participant, whoever it is."""
    desk = _desk(tmp_path, capsys, "token")
    own = desk.ingest(mail(sender=ALICE, subject="My laptop")).out.strip()
    again = mail(sender=ALICE, subject=f"Re: [Ticket#{own}] My laptop", body="Still broken.\n")
    assert desk.ingest(again).out.strip() == own

