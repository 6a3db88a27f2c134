"""The subject tag: found anywhere, case-insensitively, and never by a look-alike."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.subject import find_numbers, strip_prefixes, tagged_subject

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
        # look-alikes that must not match
        (f"[Tickets#{N}]", "Ticket", []),
        (f"[XTicket#{N}]", "Ticket", []),
        (f"[Ticket-{N}]", "Ticket", []),
        (f"Ticket#{N}", "Ticket", []),
        (f"[Ticket#{N}x]", "Ticket", []),
        (f"[Ticket#{N}", "Ticket", []),
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
