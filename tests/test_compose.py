"""`maild.compose` writes a plain-text mail's MIME part itself (`_plain_text`): byte for byte
what compat32's generator writes for the same text, which stays the path for every other mail
(HTML alternatives, attachments, lines SMTP cannot carry)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.compose import _SMTP_COMPAT32, _plain_text, _text_part

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
