"""The dedupe key (SPEC §5): the same message is the same key whatever path it took; a different
message is another key, even under a Message-ID seen before."""

from __future__ import annotations

import pytest

from maild.dedupe import identify

MESSAGE = (b"From: Ivan <ivan@example.org>\r\n"
           b"To: support@example.com\r\n"
           b"Subject: Printer\r\n"
           b"Date: Tue, 01 Dec 2026 10:00:00 +0300\r\n"
           b"Message-ID: <one@example.org>\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n"
           b"\tb=abc\r\n"
           b"\r\n"
           b"It does not print.\r\n")


def with_trace(raw: bytes, *fields: bytes) -> bytes:
    return b"".join(field + b"\r\n" for field in fields) + raw


@pytest.mark.parametrize("copy", [
    with_trace(MESSAGE, b"Received: from mx.example.org by mail.example.com; Tue, 1 Dec 2026",
               b"Return-Path: <ivan@example.org>", b"Delivered-To: support@example.com"),
    with_trace(MESSAGE, b"Received: from a", b"Received: from b\r\n\tby c",
               b"X-Original-To: help@example.com", b"X-Spam-Score: 0.1",
               b"Authentication-Results: mx.example.com; dkim=pass header.d=example.org",
               b"ARC-Seal: i=1; cv=none"),
    MESSAGE.replace(b"\r\n", b"\n"),                        # the pipe: LF line endings
    MESSAGE + b"\r\n\r\n",                                  # blank lines added at the end
    b"From ivan@example.org Tue Dec  1 10:00:00 2026\n" + MESSAGE.replace(b"\r\n", b"\n"),
    MESSAGE.replace(b"\tb=abc", b" b=abc"),                 # refolded by a relay
    MESSAGE.replace(b"<one@example.org>", b"<one@example.org> (comment)"),
])
def test_the_same_message_by_another_path_has_the_same_key(copy: bytes) -> None:
    assert identify(copy) == identify(MESSAGE)
    assert identify(copy).message_id == "one@example.org"


@pytest.mark.parametrize("other", [
    MESSAGE.replace(b"Ivan <ivan@example.org>", b"Olga <olga@example.org>"),
    MESSAGE.replace(b"Subject: Printer", b"Subject: Scanner"),
    MESSAGE.replace(b"It does not print.", b"It prints again, thanks."),
    MESSAGE.replace(b"10:00:00", b"10:05:00"),
    MESSAGE + b"P.S. one more thing\r\n",
])
def test_a_different_message_under_the_same_message_id_has_another_key(other: bytes) -> None:
    assert identify(other).message_id == identify(MESSAGE).message_id == "one@example.org"
    assert identify(other).key != identify(MESSAGE).key


def test_without_a_message_id_only_the_same_bytes_are_the_same_message() -> None:
    raw = MESSAGE.replace(b"Message-ID: <one@example.org>\r\n", b"")
    assert identify(raw) == identify(bytes(raw))
    assert identify(raw).message_id == ""
    assert identify(raw).key.startswith("sha256:")
    assert identify(with_trace(raw, b"Received: from a")).key != identify(raw).key


def test_keys_have_a_bounded_length_however_long_the_message_id() -> None:
    raw = MESSAGE.replace(b"one@example.org", b"x" * 800 + b"@example.org")
    assert len(identify(raw).key) == len("mid:") + 64
    assert identify(raw).message_id == "x" * 800 + "@example.org"


def test_headers_alone_or_garbage_still_get_a_key() -> None:
    assert identify(b"Message-ID: <h@example.org>").message_id == "h@example.org"
    assert identify(b"\x00\xff garbage").key.startswith("sha256:")
