"""Hypothesis strategies for hostile and broken mail (SPEC §9), as the raw bytes an MTA hands on.

`messages()` draws whole RFC 5322 messages: random MIME trees (multipart and message/rfc822
inside each other) with right, missing, mismatched, reused, unclosed and oversized boundaries;
RFC 2047 encoded words broken or in charsets nobody knows (and Python's bytes-to-bytes and
always-failing codecs); 8-bit bytes, NUL and bare CR in headers and bodies; headers huge, folded
a thousand times, repeated or missing (From, Message-ID, Date); a wrong or unknown
Content-Transfer-Encoding, truncated base64 and quoted-printable; RFC 2231 and RFC 2047 file
names with `../`, absolute paths, NUL, Windows device names, Cyrillic and hundreds of
characters; customer text that tries to start a header line (`\\r\\nBcc:`) or carry HTML into
staff mail. Then the whole message may have its line ends changed, NULs sprinkled or its tail
cut off.

`drawn` takes a pool of them at a fixed seed, and `cases` derives any number more by mutating
the pool at random (`mutate`: drawing costs about 40 ms a message, a mutant almost nothing).
What must hold of every message is written here once: `check_parsed` (what parsing stores),
`check_settled` (how its inbound row ends) and `check_outgoing` (every mail maild writes).

Shared by tests/test_hostile.py (the short forms in the normal suite), tests/hostile_threading.py
(the campaign through threading) and bench/hostile_campaign.py (the long forms: 100,000
messages).
"""

from __future__ import annotations

import base64
import quopri
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st

from maild.errors import MaildError
from maild.headers import MAX_FILENAME_BYTES, safe_filename
from maild.parsing import ParsedMail

INJECTED = "X-Injected"  # a header name customer text tries to smuggle into maild's mail
INJECTIONS = [f"\r\n{INJECTED}: yes", f"\n{INJECTED}: yes", f"\r{INJECTED}: yes",
              "\r\nBcc: victim@evil.test", f"\u2028{INJECTED}: yes", f"\x85{INJECTED}: yes",
              f"\x0b{INJECTED}: yes", f"\r\n\r\n<b>{INJECTED}</b>"]
HTML = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "</p><iframe src=//e.test>",
        "<a href='javascript:alert(1)'>click</a>", "<b>bold</b>", "&lt;b&gt;", "<!--", "]]>"]
CHARSETS = ["utf-8", "UTF-8", "koi8-r", "windows-1251", "iso-8859-1", "iso-2022-jp", "gb2312",
            "shift_jis", "utf-16", "utf-16-le", "utf-7", "us-ascii", "x-unknown-9", "unknown-8bit",
            "hex", "base64", "rot13", "zlib", "uu", "idna", "punycode", "unicode_escape",
            "undefined", '"utf-8"', "utf-8'en'", "", " ", "utf-8\x00", "=?utf-8?", "\xff\xfe"]
FILENAMES = ["../../etc/passwd", "..\\..\\windows\\system32\\cmd.exe", "/etc/shadow",
             "C:\\boot.ini", "//server/share/x", "a\x00b.txt", "x\x00", "", " ", ".", "..",
             "...", ".hidden", "CON", "nul.txt", "com1.tar.gz", "LPT9", "aux.", "PRN ",
             "отчёт за ноябрь.pdf", "счёт/../../../passwd", "a" * 300 + ".pdf",
             "я" * 200 + ".docx", "x" * 5000, "evil\r\nX-Injected: yes.txt",
             'quote".txt', "semi;colon.txt", "tab\tname", "\u202egnp.exe", "name\u2028.txt",
             "%2e%2e%2fpasswd", "~/.ssh/authorized_keys", "\x1b[31mred.txt", "*?<>|:.txt"]
CTYPES = ["text/plain", "text/html", "text/enriched", "application/octet-stream", "image/png",
          "application/pdf", "message/delivery-status", "message/disposition-notification",
          "text/rfc822-headers", "message/partial", "message/external-body", "multipart/mixed",
          "foo", "", "text/", "/plain", "application/x-\xff", "TEXT/PLAIN"]
ENCODINGS = ["7bit", "8bit", "binary", "base64", "BASE64", "quoted-printable", "x-uuencode",
             "uuencode", "x-gzip", "bogus", "", "base64 ; x", "7bit\x00"]
SUBTYPES = ["mixed", "alternative", "related", "report", "signed", "digest", "parallel", "x-odd"]
BOUNDARY_MODES = ["ok", "ok", "ok", "missing", "mismatch", "unclosed", "reuse", "empty", "long",
                  "spaces", "quoted-odd", "dash-prefix"]


# --- text and header pieces -------------------------------------------------------------------

def _text(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=max_size)


hostile_text = st.one_of(
    _text(), st.sampled_from(INJECTIONS), st.sampled_from(HTML), st.sampled_from(FILENAMES),
    st.sampled_from(["Привет", "Ёжик", "日本語", "ü", "\x00", "\r", "\t", " ", "=?", "?=", "%"]))


@st.composite
def encoded_word(draw: st.DrawFn) -> bytes:
    """An RFC 2047 word: right, truncated, corrupted, or in a charset that cannot decode it."""
    text = draw(hostile_text)
    charset = draw(st.sampled_from(CHARSETS))
    codec = charset.strip('"').split("'")[0] or "utf-8"
    try:
        data = text.encode(codec)
    except (LookupError, UnicodeError, TypeError, ValueError):
        data = text.encode("utf-8")
    if draw(st.booleans()):
        payload = base64.b64encode(data)
        kind = draw(st.sampled_from([b"B", b"b"]))
    else:
        payload = quopri.encodestring(data, header=True).replace(b"=\n", b"")
        kind = draw(st.sampled_from([b"Q", b"q"]))
    damage = draw(st.sampled_from(["none", "none", "truncate", "junk", "unterminated", "space"]))
    if damage == "truncate" and payload:
        payload = payload[:draw(st.integers(0, len(payload) - 1))]
    elif damage == "junk":
        payload += draw(st.sampled_from([b"!!", b"=", b"==", b"=Z", b"\xff", b"?", b"\x00"]))
    word = b"=?" + charset.encode("utf-8", "surrogateescape") + b"?" + kind + b"?" + payload
    if damage == "unterminated":
        return word
    if damage == "space":
        return word.replace(b"?", b" ?", 1) + b"?="
    return word + b"?="


raw_piece = st.one_of(
    hostile_text.map(lambda t: t.encode("utf-8")),
    hostile_text.map(lambda t: t.encode("utf-8")),
    encoded_word(),
    st.binary(max_size=12),  # 8-bit bytes, NUL, bare CR and LF
    st.sampled_from([b"\xd0\x9f\xd1\x80\xd0\xb8", b"\xcf\xf0\xe8\xe2\xe5\xf2", b"\xff\xfe\x00"]),
)


@st.composite
def header_value(draw: st.DrawFn, huge: bool = True) -> bytes:
    """A header value of hostile pieces, folded in every way, sometimes huge."""
    pieces = draw(st.lists(raw_piece, max_size=6))
    repeat = draw(st.sampled_from([1] * 12 + ([40, 400, 4000] if huge else [])))
    folds = draw(st.lists(st.sampled_from([b" ", b"\r\n ", b"\n\t", b"\r\n" + b" " * 80,
                                           b"\r\n \r\n ", b""]), min_size=1, max_size=3))
    return b"".join(piece + folds[i % len(folds)] for i, piece in enumerate(pieces * repeat))


@st.composite
def address(draw: st.DrawFn) -> bytes:
    local = draw(st.sampled_from(["ivan", "maria", "x.y+z", '"odd local"', "Ёжик", "", "a" * 70]))
    domain = draw(st.sampled_from(["example.org", "пример.рф", "example", "", "[127.0.0.1]",
                                   "EXAMPLE.NET", "e.test."]))
    spec = f"{local}@{domain}".encode() if domain or local else b""
    form = draw(st.sampled_from(["bare", "angle", "named", "named", "null", "junk", "staff",
                                 "several", "own"]))
    if form == "bare":
        return spec
    if form == "angle":
        return b"<" + spec + b">"
    if form == "null":
        return draw(st.sampled_from([b"<>", b"MAILER-DAEMON", b"postmaster", b"<> (bounce)"]))
    if form == "junk":
        return draw(header_value(huge=False))
    if form == "staff":
        return b"Alice <alice@example.com>"
    if form == "own":
        return b"support@example.com"
    name = draw(header_value(huge=False))
    if form == "several":
        return b", ".join([name + b" <" + spec + b">"] * draw(st.integers(2, 300)))
    return name + b" <" + spec + b">"


@st.composite
def message_ids(draw: st.DrawFn) -> bytes:
    one = draw(st.sampled_from([b"<a@example.org>", b"<" + b"x" * 2000 + b"@e>", b"<>", b"<<>>",
                                b"no-brackets@example.org", b"<a b@c>", b"<\xff@\xfe>",
                                b"<maild.1.abc@example.com>", b"<(comment)x@y>"]))
    count = draw(st.sampled_from([1, 1, 1, 2, 30, 3000]))
    if count == 1:
        return one
    return b" ".join(b"<r%d.%s@example.org>" % (i, one.strip(b"<>")[:20]) for i in range(count))


# --- MIME trees -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    ctype: str
    charset: str | None
    encoding: str | None
    body: bytes
    damage: str
    filename: str | None
    name_form: str
    disposition: str | None


@dataclass(frozen=True)
class Multi:
    subtype: str
    children: tuple[Node, ...]
    boundary: str
    mode: str


@dataclass(frozen=True)
class Embedded:
    """A message/rfc822 part: a whole message inside."""
    headers: tuple[tuple[bytes, bytes], ...]
    child: Node


Node = Leaf | Multi | Embedded

body_bytes = st.one_of(
    hostile_text.map(lambda t: t.encode("utf-8")),
    st.lists(hostile_text, max_size=12).map(lambda ts: "\n".join(ts).encode("utf-8")),
    st.binary(max_size=80),
    st.sampled_from([b"begin 644 ../../evil.sh\n#(V%M\n`\nend\n", b"--\n", b"-- \nsig\n",
                     b"\x00" * 20, b"line\rline\r", b"a" * 2000 + b"\n",
                     "<html><body><p>Привет</p><script>x</script></body></html>".encode()]),
)

leaves = st.builds(
    Leaf,
    ctype=st.sampled_from(CTYPES),
    charset=st.one_of(st.none(), st.sampled_from(CHARSETS)),
    encoding=st.one_of(st.none(), st.sampled_from(ENCODINGS)),
    body=body_bytes,
    damage=st.sampled_from(["none", "none", "none", "truncate", "junk"]),
    filename=st.one_of(st.none(), st.sampled_from(FILENAMES), _text(60)),
    name_form=st.sampled_from(["quoted", "rfc2231", "rfc2231-split", "rfc2047", "raw8bit",
                               "ctype-name", "unquoted"]),
    disposition=st.one_of(st.none(), st.sampled_from(["attachment", "inline", "ATTACHMENT",
                                                      "form-data", "", "attachment;;;"])),
)

boundaries = st.text(st.sampled_from("abcXYZ019'()+_,-./:=? \"\\\t\xe9"), max_size=20)


def _trees(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    multis = st.builds(Multi, subtype=st.sampled_from(SUBTYPES),
                       children=st.lists(children, max_size=5).map(tuple),
                       boundary=boundaries, mode=st.sampled_from(BOUNDARY_MODES))
    embedded = st.builds(Embedded, headers=st.lists(st.tuples(
        st.sampled_from([b"From", b"Subject", b"Message-ID", b"Content-Type"]),
        header_value(huge=False)), max_size=3).map(tuple), child=children)
    return st.one_of(multis, multis, embedded)


trees = st.recursive(leaves, _trees, max_leaves=25)


def _param(name: str, value: str, form: str) -> bytes:
    if form == "rfc2231":
        return f"; {name}*=utf-8''{quote(value, safe='')}".encode()
    if form == "rfc2231-split":
        half = len(value) // 2
        return (f"; {name}*0*=utf-8''{quote(value[:half], safe='')}"
                f"; {name}*1*={quote(value[half:], safe='')}").encode()
    if form == "rfc2047":
        return f'; {name}="=?utf-8?B?{base64.b64encode(value.encode()).decode()}?="'.encode()
    if form == "raw8bit":
        return f'; {name}="{value}"'.encode("utf-8", "surrogateescape")
    if form == "unquoted":
        return f"; {name}={value}".encode()
    return f'; {name}="{value}"'.encode("utf-8", "replace")


def _encoded_body(leaf: Leaf) -> bytes:
    encoding = (leaf.encoding or "").lower()
    body = leaf.body
    if encoding.startswith("base64"):
        body = base64.encodebytes(body)
    elif encoding == "quoted-printable":
        body = quopri.encodestring(body)
    if leaf.damage == "truncate" and body:
        body = body[:len(body) * 2 // 3]
    elif leaf.damage == "junk":
        body += b"=\n=ZZ\n!!!=\n\xff"
    return body


def render(node: Node, parent_boundary: str | None = None) -> tuple[list[bytes], bytes]:
    """(content header lines, body) of a node."""
    if isinstance(node, Leaf):
        head = b"Content-Type: " + node.ctype.encode("utf-8", "surrogateescape")
        if node.charset is not None:
            head += b"; charset=" + node.charset.encode("utf-8", "surrogateescape")
        lines = [head]
        if node.filename is not None and node.name_form == "ctype-name":
            lines[0] += _param("name", node.filename, "quoted")
        if node.encoding is not None:
            lines.append(b"Content-Transfer-Encoding: " + node.encoding.encode())
        if node.disposition is not None:
            disposition = b"Content-Disposition: " + node.disposition.encode()
            if node.filename is not None and node.name_form != "ctype-name":
                disposition += _param("filename", node.filename, node.name_form)
            lines.append(disposition)
        return lines, _encoded_body(node)
    if isinstance(node, Embedded):
        inner_head, inner_body = render(node.child)
        head = b"".join(name + b": " + value + b"\n" for name, value in node.headers)
        return [b"Content-Type: message/rfc822"], head + b"\n".join(inner_head) + b"\n\n" + \
            inner_body
    boundary = node.boundary
    if node.mode == "reuse" and parent_boundary is not None:
        boundary = parent_boundary
    elif node.mode == "empty":
        boundary = ""
    elif node.mode == "long":
        boundary = (boundary or "b") * 200
    elif node.mode == "spaces":
        boundary = f"  {boundary}  "
    elif node.mode == "dash-prefix":
        boundary = f"--{boundary}"
    declared = f"x{boundary}" if node.mode == "mismatch" else boundary
    head = f"Content-Type: multipart/{node.subtype}".encode()
    if node.mode != "missing":
        quoted = declared.replace("\\", "\\\\").replace('"', '\\"')
        head += (f'; boundary={declared}' if node.mode == "quoted-odd"
                 else f'; boundary="{quoted}"').encode("utf-8")
    out = [b"This is a multi-part message in MIME format.\n"]
    for child in node.children:
        child_head, child_body = render(child, boundary)
        out.append(f"--{boundary}\n".encode() + b"\n".join(child_head) + b"\n\n" + child_body
                   + b"\n")
    if node.mode != "unclosed":
        out.append(f"--{boundary}--\n".encode())
    return [head], b"".join(out)


# --- whole messages ---------------------------------------------------------------------------

TOP_HEADERS = [b"From", b"To", b"Cc", b"Subject", b"Date", b"Message-ID", b"In-Reply-To",
               b"References", b"Reply-To", b"Sender", b"Return-Path", b"MIME-Version",
               b"Auto-Submitted", b"Precedence", b"List-Id", b"X-Maild-Priority", b"Received",
               b"Subject :", b"X-\xff\xfe", b"From ", b"Content-Type", b"\x00", b""]


@st.composite
def headers(draw: st.DrawFn) -> list[bytes]:
    lines: list[bytes] = []
    if draw(st.integers(0, 9)):  # most have a From; some have none at all
        lines.append(b"From: " + draw(address()))
    if draw(st.integers(0, 4)):
        lines.append(b"Message-ID: " + draw(message_ids()))
    if draw(st.integers(0, 3)):
        lines.append(b"Date: " + draw(st.sampled_from([
            b"Mon, 1 Dec 2025 10:00:00 +0300", b"yesterday", b"", b"Mon, 31 Feb 99999 99:99:99",
            b"\xff\xfe"])))
    if draw(st.integers(0, 3)):
        lines.append(b"Subject: " + draw(st.one_of(
            header_value(), st.just(b"Re: [Ticket#2025120100001] " + draw(header_value())))))
    lines.append(b"To: " + draw(st.sampled_from([b"support@example.com", b"", b"undisclosed"])))
    for name, value in draw(st.lists(st.tuples(st.sampled_from(TOP_HEADERS), st.one_of(
            header_value(), address(), message_ids())), max_size=6)):
        lines.append(name + b": " + value)
    order = draw(st.permutations(range(len(lines))))
    return [lines[i] for i in order]


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """One hostile message as bytes."""
    top = draw(headers())
    tree = draw(trees)
    content_head, body = render(tree)
    if draw(st.booleans()):
        top.append(b"MIME-Version: 1.0")
    if draw(st.integers(0, 9)) == 0:  # a stray line inside the header block
        top.insert(draw(st.integers(0, len(top))), b"this is not a header")
    raw = b"\n".join(top + content_head) + b"\n\n" + body
    ending = draw(st.sampled_from(["crlf", "crlf", "lf", "cr", "mixed"]))
    if ending == "crlf":
        raw = raw.replace(b"\n", b"\r\n")
    elif ending == "cr":
        raw = raw.replace(b"\n", b"\r")
    elif ending == "mixed":
        raw = raw.replace(b"\n\n", b"\r\n\r\n", 1).replace(b"\n", b"\r\r\n", 3)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 5]))):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + b"\x00" + raw[at:]
    if draw(st.integers(0, 9)) == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]  # cut off in transit
    return raw


def drawn(count: int, seed: int) -> list[bytes]:
    """`count` messages drawn from `messages()`, the same ones for the same seed."""
    pool: list[bytes] = []

    @fixed_seed(seed)
    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(messages())
    def collect(raw: bytes) -> None:
        pool.append(raw)

    collect()
    return pool


def cases(rng: random.Random, pool: list[bytes], count: int) -> Iterator[bytes]:
    """The pool, then mutants of it, `count` in all."""
    for n in range(count):
        yield pool[n] if n < len(pool) else mutate(rng, rng.choice(pool), rng.choice(pool))


def mutate(rng: random.Random, raw: bytes, other: bytes) -> bytes:
    """One to three random changes: a byte flipped; NUL, CR, LF, a blank line, `--` or `=?` put
    in; a range cut, doubled (to a few MB at most) or moved to the end; the tail of `other`
    spliced on; line ends changed; the tail cut off; the boundary parameter renamed."""
    for _ in range(rng.randint(1, 3)):
        n = len(raw)
        at, to = sorted((rng.randint(0, n), rng.randint(0, n)))
        kind = rng.randrange(9)
        if kind == 0 and n:
            i = rng.randrange(n)
            raw = raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1:]
        elif kind == 1:
            raw = raw[:at] + rng.choice([b"\x00", b"\r", b"\n", b"\r\n\r\n", b"--", b"=?",
                                         b"\r\n ", b"\xff"]) + raw[at:]
        elif kind == 2:
            raw = raw[:at] + raw[to:]
        elif kind == 3 and (to - at) * 10 < 2_000_000:  # a few MB at most
            raw = raw[:to] + raw[at:to] * rng.choice([2, 10]) + raw[to:]
        elif kind == 4:
            raw = raw[:at] + other[rng.randint(0, len(other)):]
        elif kind == 5:
            raw = raw.replace(b"\r\n", b"\n") if rng.random() < 0.5 else raw.replace(b"\n", b"\r")
        elif kind == 6:
            raw = raw[:rng.randint(0, n)]
        elif kind == 7:  # a range moved to the end
            raw = raw[:at] + raw[to:] + raw[at:to]
        else:
            raw = raw.replace(b"boundary=", rng.choice([b"boundary=x", b"BOUNDARY=", b"b="]), 1)
    return raw


# --- what must hold of every message ----------------------------------------------------------

def check_parsed(mail: ParsedMail) -> None:
    """What maild stores of a message is clean, whatever came in."""
    for text in (mail.text, mail.html, mail.subject, mail.sender_name):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]", text), repr(text)
    assert "\n" not in mail.subject and "\n" not in mail.sender_name
    assert mail.sender and not re.search(r"[\x00-\x1f\x7f]", mail.sender), mail.sender
    for attachment in mail.attachments:
        check_filename(attachment.filename)


def check_filename(name: str) -> None:
    assert name and safe_filename(name) == name, repr(name)
    assert not re.search(r'[/\\\x00-\x1f\x7f"<>:|?*]', name), repr(name)
    assert name not in (".", "..") and not name.startswith((".", " ")), repr(name)
    assert len(name.encode()) <= MAX_FILENAME_BYTES
    assert Path("/srv/files", name).resolve().parent == Path("/srv/files")


def refused_on_purpose(reason: str) -> bool:
    """Whether a failed row's reason is a refusal maild makes on purpose: the worker writes the
    exception's class name first, and maild raises such refusals only from `maild.errors`'
    tree (`UnparseableMessage`, `MessageTooComplex`, `UsageError` ...). Anything else — a
    `UnicodeError`, an `AttributeError` — is a crash the worker caught."""
    refusals: set[str] = set()
    classes: list[type[BaseException]] = [MaildError]
    while classes:
        cls = classes.pop()
        refusals.add(cls.__name__)
        classes += cls.__subclasses__()
    return reason.partition(":")[0] in refusals - {"StorageUnavailable"}


REFUSED_STAFF_MAIL = "staff mail about no ticket"  # the one `done` row without a ticket


def check_settled(state: str, reason: str | None, ticket_id: int | None) -> None:
    """An inbound row after threading: `done` on a ticket (or refused staff mail, the sender
    told), or `failed` with its reason — one of maild's refusals, not an error it caught from
    its own code; never left `new`."""
    assert state in ("done", "failed"), (state, reason)
    if state == "failed":
        assert (reason or "").strip(), "failed without a reason"
        assert refused_on_purpose(reason or ""), \
            f"failed by an exception raised where maild did not mean to refuse: {reason}"
    else:
        assert ticket_id is not None or (reason or "").startswith(REFUSED_STAFF_MAIL), \
            (state, reason)


# Every header a mail maild writes has: compose's header block, the MIME parts' own, and the
# envelope lines the Maildir transport puts first. Any other came from somewhere else.
OUTGOING_HEADERS = {b"return-path", b"delivered-to", b"from", b"to", b"cc", b"subject", b"date",
                    b"message-id", b"in-reply-to", b"references", b"auto-submitted",
                    b"x-auto-response-suppress", b"x-maild-ticket", b"mime-version",
                    b"content-type", b"content-transfer-encoding", b"content-disposition"}
ALLOWED_TAGS = {"html", "head", "meta", "body", "p", "br"}  # what compose's HTML part is made of
# What a mail client may render as part of the mail: maild's own HTML part only, never a file.
SHOWN_INLINE = ("text/html", "application/xhtml+xml", "image/svg+xml", "message/", "multipart/")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)


def check_outgoing(raw: bytes) -> None:
    """A mail maild wrote: only the headers maild writes, each once at most where it must be,
    no line break inside a header, no HTML of the customer's in its HTML part, and no file a
    client would show as part of the mail (a customer's HTML page, SVG or message)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\n\r\n" in raw, "no header block"
    lines = head.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines), head
    names = [line.split(b":", 1)[0].lower() for line in lines if line[:1] not in (b" ", b"\t")]
    assert all(re.fullmatch(rb"[a-z0-9-]+", name) for name in names), names
    assert set(names) <= OUTGOING_HEADERS, set(names) - OUTGOING_HEADERS
    for once in (b"from", b"to", b"subject", b"message-id", b"cc", b"in-reply-to"):
        assert names.count(once) <= 1, (once, head)
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    for name, value in message.items():
        assert "\r" not in str(value) and "\n" not in str(value), (name, value)
    for part in message.walk():
        ctype = part.get_content_type()
        if part.is_multipart():
            assert ctype in ("multipart/mixed", "multipart/alternative"), ctype
        elif part.get_content_disposition() == "attachment":
            assert not ctype.startswith(SHOWN_INLINE), ctype  # a file, never shown as mail
        else:
            assert ctype in ("text/plain", "text/html"), ctype
        if ctype == "text/html":
            parser = _Tags()
            parser.feed(str(part.get_content()))
            assert parser.tags <= ALLOWED_TAGS, parser.tags
