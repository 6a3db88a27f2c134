"""Ticket numbers in subjects and texts (SPEC §5 rules 1 and 3): every form a person writes,
found anywhere, case-insensitively, and never by a look-alike or a bare number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.subject import find_numbers, find_tags, strip_prefixes, tagged_subject

N = "2026112500042"


@pytest.mark.parametrize(
    ("subject", "tag", "expected"),
    [
        (f"[Ticket#{N}] Printer", "Ticket", [N]),
        (f"Re: [Ticket#{N}] Printer", "Ticket", [N]),
        (f"RE: AW: Fwd: [Ticket#{N}] Printer", "Ticket", [N]),
        (f"Ответ: [Ticket#{N}] Принтер", "Ticket", [N]),
        (f"Printer [ticket#{N}]", "Ticket", [N]),
        (f"[TICKET#{N}]", "Ticket", [N]),
        (f"[ Ticket # {N} ]", "Ticket", [N]),
        (f"[Ticket#{N}] and [Ticket#2026112500043]", "Ticket", [N, "2026112500043"]),
        (f"[Ticket#{N}] again [Ticket#{N}]", "Ticket", [N]),
        # SPEC §5 rule 1 now also takes the tag without brackets, and any form of `find_numbers`
        (f"Ticket#{N}", "Ticket", [N]),
        (f"[Ticket#{N}", "Ticket", [N]),
        (f"[Ticket-{N}]", "Ticket", [N]),
        (f"[Tickets#{N}]", "Ticket", [N]),  # the plural is still the word "ticket"
        # look-alikes that must not match
        (f"[XTicket#{N}]", "Ticket", []),
        (f"[Ticket#{N}x]", "Ticket", []),
        (f"[Ticket#-{N}]", "Ticket", []),
        (f"[Ticket#{N[:4]} {N[4:]}]", "Ticket", []),
        ("[Ticket#０１２３]", "Ticket", []),  # fullwidth digits are not ticket numbers
        # regex metacharacters in the configured tag are literal
        (f"[Help.Desk+#{N}]", "Help.Desk+", [N]),
        (f"[HelpXDesk+#{N}]", "Help.Desk+", []),
        (f"[Help.Deskk#{N}]", "Help.Desk+", []),
        (f"[a(b)*#{N}]", "a(b)*", [N]),
        (f"[ab#{N}]", "a(b)*", []),
        (f"[$^|?#{N}]", "$^|?", [N]),
        (f"[\\d+#{N}]", "\\d+", [N]),
        (f"[1#{N}]", "\\d+", []),
    ],
)
def test_tag_parsing(subject: str, tag: str, expected: list[str]) -> None:
    assert find_numbers(subject, tag) == expected


M = "2026112500043"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the tag word and the words for a ticket, in any case, with or without a separator
        (f"Re: Ticket#{N} printer", [N]),
        (f"Ticket {N}: printer", [N]),
        (f"TICKET: {N}", [N]),
        (f"tIcKeT{N}", [N]),
        (f"about my ticket {N}, please", [N]),
        (f"ticket #{N}", [N]),
        (f"my ticket\n{N} again", [N]),  # a line wrapped between word and number
        # a word for "number" between them
        (f"ticket no. {N}", [N]),
        (f"Ticket No: {N}", [N]),
        (f"ticket number {N}", [N]),
        (f"Ticket-Nr. {N}", [N]),
        (f"Ticketnummer: {N}", [N]),
        (f"ticket n° {N}", [N]),
        # Russian, with case endings
        (f"заявка №{N}", [N]),
        (f"Ответ: заявка № {N}", [N]),
        (f"по заявке № {N}", [N]),
        (f"закройте заявку {N}", [N]),
        (f"ЗАЯВКА №{N}", [N]),
        (f"номер заявки: {N}", [N]),
        (f"заявка номер {N}", [N]),
        (f"обращение №{N}", [N]),
        (f"по обращению {N}", [N]),
        (f"тикет {N}", [N]),
        (f"в тикете #{N}", [N]),
        # `#` and `№` where a word starts
        (f"#{N}", [N]),
        (f"Printer (#{N})", [N]),
        (f"Принтер (№{N})", [N]),
        (f"«№ {N}»", [N]),
        (f">#{N} still open", [N]),                # a quoted line without a space
        (f"Order #{N}", [N]),  # `#N` is a ticket reference whatever stands before the space
        # several numbers, in order of appearance, without repeats
        (f"ticket {M} and #{N}, and ticket {M} again", [M, N]),
        (f"[Ticket#{N}] see also заявка №{M}", [N, M]),
        # look-alikes that must not match
        (f"Call me: +7 {N}", []),                   # a bare number: a phone, an order...
        (f"Order {N}", []),
        (f"Order No. {N}", []),                     # "No." alone is no ticket marker
        (f"номер {N}", []),
        (f"{N}", []),
        (f"#{N}1", ["20261125000421"]),             # 14 digits: never the 13-digit prefix
        (f"ticket 1{N}9999999", []),                # 21 digits: no ticket number at all
        (f"#{N[:-1]}", []),                         # 12 digits
        (f"#{N}x", []),
        (f"ticket {N}abc", []),
        (f"ticket {N}_2", []),
        (f"ticket {N}٣", []),                       # an Arabic-Indic digit glued to it
        ("#２０２６１１２５０００４２", []),          # fullwidth digits
        ("ticket ٢٠٢٦١١٢٥٠٠٠٤٢", []),              # Arabic-Indic digits
        (f"x#{N}", []),
        (f"[Support#{N}]", []),                     # another system's tag
        (f"XTicket#{N}", []),
        (f"ticketing {N}", []),
        (f"ticket not {N}", []),
        (f"ticket. {N}", []),
        (f"ticket / {N}", []),
        (f"Ticket#-{N}", []),
        (f"ticket {N[:4]} {N[4:]}", []),
    ],
)
def test_every_form_of_a_ticket_number(text: str, expected: list[str]) -> None:
    assert find_numbers(text, "Ticket") == expected


def test_the_configured_tag_word_counts_and_ticket_words_still_do() -> None:
    assert find_numbers(f"Help.Desk+ {N}", "Help.Desk+") == [N]
    assert find_numbers(f"help.desk+: №{N}", "Help.Desk+") == [N]
    assert find_numbers(f"HelpXDesk+ {N}", "Help.Desk+") == []
    assert find_numbers(f"Support {N}", "Help.Desk+") == []
    # "ticket" and "заявка" are SPEC words whatever the tag is
    assert find_numbers(f"Ticket {N}", "Help.Desk+") == [N]
    assert find_numbers(f"заявка {N}", "Support") == [N]
    assert find_numbers(f"Support#{N}", "Support") == [N]


@given(st.text(alphabet="0123456789 +-:()./\n", max_size=200))
def test_bare_digits_never_name_a_ticket(text: str) -> None:
    assert find_numbers(text, "Ticket") == []


@given(st.text(max_size=200))
def test_every_found_number_is_thirteen_to_twenty_ascii_digits_of_the_text(text: str) -> None:
    for number in find_numbers(text, "Ticket"):
        assert 13 <= len(number) <= 20 and number.isascii() and number.isdigit()
        assert number in text


@pytest.mark.parametrize(
    ("subject", "stripped"),
    [
        ("Re: Printer", "Printer"),
        ("RE: AW: Fwd: Printer", "Printer"),
        ("Ответ: Принтер", "Принтер"),
        ("Re[2]: Printer", "Printer"),
        ("Printer: Re: broken", "Printer: Re: broken"),
        ("Regarding printers", "Regarding printers"),
    ],
)
def test_reply_prefixes_are_stripped_only_at_the_start(subject: str, stripped: str) -> None:
    assert strip_prefixes(subject) == stripped


def test_the_tag_goes_first_and_replaces_older_tags() -> None:
    assert tagged_subject("Ticket", N, f"Re: [Ticket#{N}] Printer") == f"[Ticket#{N}] Printer"
    assert tagged_subject("Ticket", N, "") == f"[Ticket#{N}]"


@given(st.text(max_size=80), st.text(max_size=80))
def test_a_tagged_subject_is_always_found_again(before: str, after: str) -> None:
    subject = f"{before} {tagged_subject('Ticket', N, after)}"
    assert N in find_numbers(subject, "Ticket")


@pytest.mark.parametrize(("subject", "expected"), [
    (f"Re: [Ticket#{N}] Printer", [N]),
    (f"Re: Ticket#{N} Printer", [N]),
    (f"[ticket # {N}]", [N]),
    (f"Ticket {N}", []),          # the looser forms are a customer's, not staff's
    (f"#{N}", []),
    (f"заявка №{N}", []),
    (f"XTicket#{N}", []),
])
def test_staff_name_a_ticket_by_the_tag_only(subject: str, expected: list[str]) -> None:
    assert find_tags(subject, "Ticket") == expected
