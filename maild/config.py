"""Settings: the TOML config file of SPEC §4, read once into frozen dataclasses.

`load(path)` returns a `Settings` or raises `ConfigError` listing every problem as
"file:key: message", so an operator fixes the whole file in one pass. Nothing else in maild
reads the file or the environment for configuration; the settings object is passed explicitly.
Unknown keys are errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maild.errors import ConfigError

PRIORITIES = ("lowest", "low", "normal", "high", "highest")
LANGUAGES = ("en", "ru", "auto")  # auto: Russian for a customer who writes in Cyrillic
DEFAULT_CONFIG = "config/maild.toml"

_DURATION = re.compile(r"(\d+)\s*(ms|[smhdw])")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HOURS_EXAMPLE = "write e.g. 'Mon-Fri 09:00-13:00,14:00-18:00; Sat 10:00-14:00' or '24x7'"
_TIME_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def parse_duration(text: str) -> timedelta:
    """`500ms`, `90s`, `30m`, `4h`, `3d`, `1w`, or combinations such as `1h30m`."""
    compact = text.replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        raise ValueError(f"not a duration: {text!r} (write e.g. 90s, 30m, 4h, 3d)")
    seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION.findall(compact))
    return timedelta(seconds=seconds)


WeeklyHours = tuple[tuple[tuple[int, int], ...], ...]
"""Business hours per weekday, Monday first: sorted, disjoint (start, end) minutes of the day."""


def parse_business_hours(text: str) -> WeeklyHours:
    """`sla.business_hours` as minutes per weekday; ValueError says what is wrong and where.

    "24x7", or day groups separated by ";", each "DAYS RANGES": DAYS is a day ("Mon"), a range
    ("Mon-Fri", may wrap: "Fri-Mon") or a comma list of those ("Mon,Wed,Fri"); RANGES is one or
    more "HH:MM-HH:MM" separated by ",", start before end, "24:00" allowed as an end. A range
    never crosses midnight: an overnight shift is two ranges, "Mon 22:00-24:00; Tue 00:00-06:00".
    Ranges of one day that overlap or touch are merged.
    """
    if not text.strip():
        raise ValueError(f"is empty; {_HOURS_EXAMPLE}")
    if text.strip().lower() == "24x7":
        return tuple(((0, 24 * 60),) for _ in WEEKDAYS)
    week: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    for group in text.split(";"):
        days, ranges = _parse_day_group(group.strip(), text)
        for day in days:
            week[day].extend(ranges)
    return tuple(_merged(day) for day in week)


def _parse_day_group(group: str, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    if not group:
        raise ValueError(f"empty day group in {text!r} (a stray ';'?); {_HOURS_EXAMPLE}")
    if group.lower() == "24x7":
        raise ValueError(f"'24x7' cannot be combined with other day groups in {text!r}")
    match = re.fullmatch(r"(\D*?)\s*(\d.*)?", group)
    days_text, ranges_text = (match.group(1), match.group(2)) if match else ("", None)
    if not days_text:
        raise ValueError(f"{group!r} does not start with days such as Mon or Mon-Fri; "
                         f"{_HOURS_EXAMPLE}")
    days = [day for item in days_text.split(",") for day in _parse_days(item.strip(), group)]
    if ranges_text is None:
        raise ValueError(f"{group!r} has no hours; write e.g. '{days_text} 09:00-18:00'")
    return days, [_parse_range(item.strip(), group) for item in ranges_text.split(",")]


def _parse_days(item: str, group: str) -> list[int]:
    """"Mon" or "Mon-Fri" (wrapping past Sunday: "Fri-Mon") as weekday numbers, Monday 0."""
    first, dash, last = (part.strip() for part in item.partition("-"))
    start = _weekday(first, group)
    if not dash:
        return [start]
    end = _weekday(last, group)
    if end == start:
        raise ValueError(f"day range {item!r} in {group!r} starts and ends on the same day; "
                         f"write '{first}'")
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def _weekday(name: str, group: str) -> int:
    for number, day in enumerate(WEEKDAYS):
        if name.lower() == day.lower():
            return number
    raise ValueError(f"unknown day {name!r} in {group!r}; days are {', '.join(WEEKDAYS)}")


def _parse_range(item: str, group: str) -> tuple[int, int]:
    match = _TIME_RANGE.fullmatch(item)
    if not match:
        raise ValueError(f"{item!r} in {group!r} is not a time range; write HH:MM-HH:MM, "
                         "e.g. 09:00-18:00")
    hour1, min1, hour2, min2 = (int(g) for g in match.groups())
    for hour, minute in ((hour1, min1), (hour2, min2)):
        if minute > 59 or hour > 24 or (hour == 24 and minute):
            raise ValueError(f"{hour:02}:{minute:02} in {group!r} is not a time of day "
                             "(00:00 to 24:00)")
    start, end = hour1 * 60 + min1, hour2 * 60 + min2
    if start >= end:
        raise ValueError(
            f"range {item!r} in {group!r} does not end after it starts; a range cannot cross "
            "midnight, so write an overnight shift as two ranges on two days, e.g. "
            "'Mon 22:00-24:00; Tue 00:00-06:00'")
    return start, end


def _merged(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    result: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], end))
        else:
            result.append((start, end))
    return tuple(result)


def priority_value(name: str | int) -> int:
    """1..5 for a priority given by name or number; ValueError otherwise."""
    text = str(name).strip().lower()
    if text.isdigit() and 1 <= int(text) <= 5:
        return int(text)
    if text in PRIORITIES:
        return PRIORITIES.index(text) + 1
    raise ValueError(f"unknown priority {name!r}; use one of {', '.join(PRIORITIES)} or 1-5")


def priority_name(value: int) -> str:
    return PRIORITIES[value - 1]


# --- converters: a TOML value into a setting, or ValueError saying what is wrong ---------


def _looks_like_url(value: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*://", value) is not None


def _string(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("must be a string")
    return raw


def _duration(raw: Any) -> timedelta:
    if not isinstance(raw, str):
        raise ValueError("must be a duration string such as '30m' or '3d'")
    return parse_duration(raw)


def _email(raw: Any) -> str:
    if not isinstance(raw, str) or not _EMAIL.match(raw.strip()):
        raise ValueError(f"not an email address: {raw!r}")
    return raw.strip()


def _email_list(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("must be a non-empty list of email addresses")
    return tuple(_email(item) for item in raw)


def _addresses(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ValueError("must be a list of email addresses")
    return tuple(_email(item).lower() for item in raw)


def _subject_tag(raw: Any) -> str:
    tag = _string(raw)
    if not tag.strip() or any(c in tag for c in "[]#\r\n") or len(tag) > 40:
        raise ValueError("must be 1-40 characters without [, ], # or line breaks")
    return tag.strip()


def _listen(raw: Any) -> str:
    listen = _string(raw)
    if not re.match(r"^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$", listen):
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:2525")
    return listen


def _base_url(raw: Any) -> str:
    url = _string(raw).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
        raise ValueError("must be the http(s) address customers reach maild's web pages at, "
                         "e.g. https://support.example.com")
    return url


def _timezone(raw: Any) -> str:
    name = _string(raw)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


def _business_hours(raw: Any) -> str:
    text = _string(raw)
    parse_business_hours(text)  # ValueError says what is wrong
    return text


def _dates(raw: Any) -> tuple[date, ...]:
    if not isinstance(raw, list):
        raise ValueError("must be a list of dates such as \"2026-12-31\"")
    try:
        return tuple(d if isinstance(d, date) else date.fromisoformat(str(d)) for d in raw)
    except ValueError:
        raise ValueError("must be a list of dates such as \"2026-12-31\"") from None


MIME_DEPTH_CEILING = 500
"""The highest `mail.max_mime_depth`: the stdlib parser recurses once per level of nesting and
runs out of Python's stack at about 990."""


def _whole_number(raw: Any, minimum: int, maximum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not minimum <= raw <= maximum:
        raise ValueError(f"must be a whole number from {minimum} to {maximum}")
    return raw


def _line(raw: Any) -> str:
    """A display name or queue name: on one line, whitespace collapsed."""
    return " ".join(_string(raw).split())


def _stripped(raw: Any) -> str:
    return _string(raw).strip()


def _priority(raw: Any) -> str:
    return priority_name(priority_value(raw))


# --- the settings: each key declared once ---------------------------------------------------
#
# A section of the file is a frozen dataclass; each of its fields is one key of that section,
# declared once with `key(...)`: its default, how its value is read, and whether it names a
# file (then a relative value is resolved against the config file's folder, SPEC §3). The set
# of known keys, the defaults the example file documents and the reading itself all come from
# these declarations (`_Reader.section`). What involves two keys at once is checked after
# reading, by the reader's method for that section.


def key(default: Any = MISSING, *, factory: Callable[[], Any] | None = None,
        convert: Callable[[Any], Any] | None = None, choices: tuple[str, ...] = (),
        path: bool = False, required: bool = False, minimum: int | None = None) -> Any:
    """One config key: `convert` turns the TOML value into the setting (raising ValueError with
    the reason); `choices` limits a string; `path` resolves a relative file name against the
    config file's folder; `required` makes a missing key an error; `minimum` bounds a number."""
    metadata = {"convert": convert, "choices": choices, "path": path, "required": required,
                "minimum": minimum}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = key("sqlite:///var/maild.db", path=True)
    busy_timeout: timedelta = key(timedelta(seconds=5), convert=_duration)

    @cached_property
    def shown_url(self) -> str:
        """The URL as logs and `systemctl status` show it: without a password it may hold
        (`postgresql://maild:secret@db/maild`)."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass(frozen=True)
class MailSettings:
    support_address: str = key("", convert=_email, required=True)
    support_name: str = key("Support", convert=_line)
    accept: tuple[str, ...] = key((), convert=_email_list)  # () = support only
    subject_tag: str = key("Ticket", convert=_subject_tag)
    language: str = key("en", choices=LANGUAGES)
    templates_dir: str = key("", path=True)
    max_message_bytes: int = key(26_214_400, minimum=1)
    max_attachment_bytes: int = key(10_485_760)  # attachments one mail of maild's carries
    max_mime_parts: int = key(1000, minimum=1)  # more: the message is kept as failed (SPEC §9)
    max_mime_depth: int = key(50, convert=lambda raw: _whole_number(raw, 1, MIME_DEPTH_CEILING))
    auto_reply_limit_per_hour: int = key(5)
    processing_timeout: timedelta = key(timedelta(minutes=2), convert=_duration)
    staff_auth: str = key("from", choices=("from", "authentication-results", "token"))
    authserv_id: str = key("", convert=_stripped)
    handoff_socket: str = key("", path=True)  # "" = <database>.handoff on SQLite, none else
    secret_file: str = key("", path=True)  # signs Message-IDs; "" = <database>.key on SQLite

    # Read for every mail maild handles: worked out once (settings never change in a process).
    @cached_property
    def domain(self) -> str:
        return self.support_address.rpartition("@")[2]

    @cached_property
    def own_addresses(self) -> frozenset[str]:
        """maild's own addresses (SPEC §5): never a customer, never sent mail by maild."""
        return frozenset(a.lower() for a in (self.support_address, *self.accept))


class _Listening:
    """A section with a `listen = "HOST:PORT"` key."""

    listen: str

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class SmtpSettings(_Listening):
    listen: str = key("127.0.0.1:2525", convert=_listen)
    protocol: str = key("smtp", choices=("smtp", "lmtp"))
    max_message_bytes: int = key(26_214_400, minimum=1)
    tls_cert: str = key("", path=True)
    tls_key: str = key("", path=True)
    require_tls: bool = key(False)


@dataclass(frozen=True)
class WebSettings(_Listening):
    listen: str = key("127.0.0.1:8025", convert=_listen)
    base_url: str = key("", convert=_base_url, required=True)  # links in mail start with it
    secret_file: str = key("", path=True, required=True)  # signs forms and status links


@dataclass(frozen=True)
class ImapSettings:
    name: str
    host: str = key("127.0.0.1")
    port: int = key(993)
    security: str = key("tls", choices=("tls", "starttls", "none"))
    username: str = key("")
    password_env: str = key("")
    password_file: str = key("", path=True)
    tls_ca_file: str = key("", path=True)
    folder: str = key("INBOX")
    processed_folder: str = key("Processed")
    idle: bool = key(True)
    poll_seconds: int = key(60, minimum=1)
    batch_size: int = key(50, minimum=1)


@dataclass(frozen=True)
class OutboundSettings:
    transport: str = key("maildir", choices=("maildir", "smtp"))
    maildir: str = key("var/outbox", path=True)
    smtp_host: str = key("127.0.0.1")
    smtp_port: int = key(25)
    smtp_security: str = key("none", choices=("none", "starttls", "tls"))
    smtp_tls_ca_file: str = key("", path=True)
    smtp_username: str = key("")
    smtp_password_env: str = key("")
    smtp_password_file: str = key("", path=True)
    smtp_timeout: timedelta = key(timedelta(seconds=30), convert=_duration)
    batch_size: int = key(100, minimum=1)
    retry_initial: timedelta = key(timedelta(minutes=1), convert=_duration)
    retry_max: timedelta = key(timedelta(hours=1), convert=_duration)
    lifetime: timedelta = key(timedelta(days=5), convert=_duration)


@dataclass(frozen=True)
class QueueSettings:
    name: str = key("", convert=_line, required=True)
    staff: tuple[str, ...] = key((), convert=_addresses)  # new-ticket notices; () = all staff


@dataclass(frozen=True)
class StaffSettings:
    email: str = key("", convert=_email, required=True)
    name: str = key("", convert=_line)


@dataclass(frozen=True)
class TicketSettings:
    default_queue: str = key("")  # "" = the first of [[queues]]
    default_priority: str = key("normal", convert=_priority)
    reopen_closed: bool = key(True)
    cc_participants: bool = key(True)  # To/Cc of the customer's mail join the ticket


@dataclass(frozen=True)
class NotifySettings:
    new_ticket: bool = key(True)   # staff notice of every new ticket (SPEC §6)
    follow_up: bool = key(True)    # staff notice of every customer message on a ticket
    bounce: bool = key(True)       # the owner's notice of a bounce of mail on a ticket (§9)


@dataclass(frozen=True)
class PrioritySla:
    escalate_after: timedelta = key(convert=_duration)
    resolve_within: timedelta = key(convert=_duration)


DEFAULT_SLA = {
    "highest": PrioritySla(timedelta(minutes=30), timedelta(hours=4)),
    "high": PrioritySla(timedelta(hours=1), timedelta(hours=8)),
    "normal": PrioritySla(timedelta(hours=4), timedelta(days=2)),
    "low": PrioritySla(timedelta(hours=8), timedelta(days=5)),
    "lowest": PrioritySla(timedelta(days=1), timedelta(days=10)),
}


@dataclass(frozen=True)
class SlaSettings:
    timezone: str = key("Europe/Moscow", convert=_timezone)
    business_hours: str = key("Mon-Fri 09:00-18:00", convert=_business_hours)
    holidays: tuple[date, ...] = key((), convert=_dates)
    priorities: Mapping[str, PrioritySla] = key(factory=lambda: dict(DEFAULT_SLA))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class CloseSettings:
    request_after: timedelta = key(timedelta(days=3), convert=_duration)
    close_after: timedelta = key(timedelta(days=7), convert=_duration)


@dataclass(frozen=True)
class Settings:
    path: str                      # the config file, as given
    database: DatabaseSettings
    mail: MailSettings
    smtp: SmtpSettings | None      # None: no listener ([smtp] absent)
    web: WebSettings | None        # None: no web channel ([web] absent)
    imap: tuple[ImapSettings, ...]
    outbound: OutboundSettings
    queues: tuple[QueueSettings, ...]
    tickets: TicketSettings
    staff: tuple[StaffSettings, ...]
    notify: NotifySettings
    sla: SlaSettings
    close: CloseSettings

    def is_staff(self, address: str) -> bool:
        return address.lower() in self._staff_addresses

    @cached_property
    def _staff_addresses(self) -> frozenset[str]:
        return frozenset(s.email.lower() for s in self.staff)

    @cached_property
    def mail_key_made_on_need(self) -> bool:
        """Is the key of `mail.secret_file` maild's to make when a command first needs it and
        finds it missing (an install from before signed Message-IDs, a lost key)? Only the
        default file beside a SQLite database: one host, and the key goes with the database.
        A file the config names — on PostgreSQL there is no other — may be shared by every
        instance, and a key one of them made alone would sign what the others cannot check:
        `maild init` writes it, and a missing one is an error naming it."""
        from maild.dbapi import sqlite_path  # maild.dbapi reads DatabaseSettings from here

        database = sqlite_path(self.database.url)
        return database is not None and self.mail.secret_file == f"{database}.key"

    def is_own(self, address: str) -> bool:
        return address.lower() in self.mail.own_addresses

    def queue_staff(self, queue: str) -> tuple[StaffSettings, ...]:
        """Who is told of a new ticket in `queue`: its `staff`, or every staff member."""
        listed = next((q.staff for q in self.queues if q.name.lower() == queue.lower()), ())
        return tuple(s for s in self.staff if s.email.lower() in listed) or self.staff


_SECTIONS = ("database", "mail", "smtp", "web", "imap", "outbound", "queues", "tickets",
             "staff", "notify", "sla", "close")
DEFAULT_QUEUES = ("General questions", "Compatibility problems", "Development questions")


def config_path(explicit: str | None) -> Path:
    """The file to read: --config, else $MAILD_CONFIG, else config/maild.toml."""
    return Path(explicit or os.environ.get("MAILD_CONFIG") or DEFAULT_CONFIG)


def load(path: Path | str) -> Settings:
    """Read and validate the config file; ConfigError lists every problem. Relative file names
    in it are resolved against the folder that holds it (SPEC §3)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return from_mapping(raw, str(path), base=path.absolute().parent)


def from_mapping(raw: Mapping[str, Any], source: str = "<config>",
                 base: Path | None = None) -> Settings:
    """Validate an already-parsed TOML document; relative paths resolve against `base`
    (default: the current directory)."""
    reader = _Reader(source, base or Path.cwd())
    settings = reader.settings(raw)
    if reader.problems:
        raise ConfigError(reader.problems)
    return settings


T = TypeVar("T")


class _Reader:
    """Walks the TOML document, converting values and collecting every problem."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}:{key}: {message}")

    def settings(self, raw: Mapping[str, Any]) -> Settings:
        for unknown in sorted(set(raw) - set(_SECTIONS)):
            self.problem(unknown, "unknown section")
        mail = self.section(raw.get("mail", {}), "mail", MailSettings)
        if not mail.accept:
            mail = replace(mail, accept=(mail.support_address,) if mail.support_address else ())
        queues = self.queues(raw)
        settings = Settings(
            path=self.source,
            database=self.database(raw.get("database", {})),
            mail=mail,
            smtp=self.smtp(raw["smtp"]) if "smtp" in raw else None,
            web=self.section(raw["web"], "web", WebSettings) if "web" in raw else None,
            imap=self.imap(raw.get("imap", [])),
            outbound=self.section(raw.get("outbound", {}), "outbound", OutboundSettings),
            queues=queues,
            tickets=self.tickets(raw.get("tickets", {}), queues),
            staff=self.staff(raw.get("staff", [])),
            notify=self.section(raw.get("notify", {}), "notify", NotifySettings),
            sla=self.sla(raw.get("sla", {})),
            close=self.section(raw.get("close", {}), "close", CloseSettings),
        )
        self.check_mail(settings.mail)
        settings = replace(settings, mail=self.mail_key(settings))
        self.check_queue_staff(settings)
        return settings

    # --- one table into one dataclass ------------------------------------------------------

    def section(self, table: Any, key: str, cls: type[T], *, defaults: T | None = None,
                skip: tuple[str, ...] = (), **given: Any) -> T:
        """The table at `key` read into `cls`: every field of `cls` is a key, with the
        field's default (or that of `defaults`); the caller reads the keys in `skip` itself,
        or passes their values in `given`."""
        declared = fields(cls)  # type: ignore[arg-type]
        if not isinstance(table, Mapping):
            self.problem(key, "must be a table")
            table = {}
        for unknown in sorted(set(table) - {f.name for f in declared}):
            self.problem(f"{key}.{unknown}", "unknown key")
        values = dict(given)
        for f in declared:
            if f.name in skip or f.name in given:
                continue
            if defaults is not None:
                default = getattr(defaults, f.name)
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = None if f.default is MISSING else f.default
            values[f.name] = self.value(table, f"{key}.{f.name}", default, f.metadata)
        return cls(**values)

    def value(self, table: Mapping[str, Any], key: str, default: Any,
              meta: Mapping[str, Any]) -> Any:
        name = key.rpartition(".")[2]
        if name not in table:
            if meta.get("required"):
                self.problem(key, "missing; " + _REQUIRED.get(name, "this key is required"))
            value = default
        else:
            try:
                value = self.converted(table[name], default, meta)
            except (ValueError, TypeError) as exc:
                self.problem(key, str(exc))
                value = default
        if meta.get("path") and value:
            value = self.resolved(value)
        return value

    @staticmethod
    def converted(raw: Any, default: Any, meta: Mapping[str, Any]) -> Any:
        convert = meta.get("convert")
        if convert is not None:
            return convert(raw)
        if isinstance(default, bool):
            if not isinstance(raw, bool):
                raise ValueError("must be true or false")
            return raw
        if isinstance(default, int):
            minimum = meta.get("minimum") or 0
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
                raise ValueError("must be a whole number" + (
                    f" of at least {minimum}" if minimum else " (0 or more)"))
            return raw
        value = _string(raw)
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    def resolved(self, value: str) -> str:
        """A file name, or a SQLite URL, with a relative path made absolute against the folder
        of the config file, so every command means the same file wherever it runs."""
        sqlite = _SQLITE_URL.match(value)
        if sqlite is None:
            return value if _looks_like_url(value) else \
                os.path.normpath(self.base / Path(value).expanduser())
        prefix, database, query = sqlite.groups()
        if database in ("", ":memory:") or database.startswith("/"):
            return value
        return f"{prefix}{os.path.normpath(self.base / database)}{query or ''}"

    # --- sections with more than one key at stake -----------------------------------------

    def database(self, table: Any) -> DatabaseSettings:
        database = self.section(table, "database", DatabaseSettings)
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", database.url):
            self.problem("database.url", f"unsupported database URL {database.url!r}; use "
                         "sqlite:///FILE or postgresql+psycopg://USER@HOST/DB")
        return database

    def check_mail(self, mail: MailSettings) -> None:
        if mail.staff_auth == "authentication-results" and not mail.authserv_id:
            self.problem("mail.authserv_id", "staff_auth = \"authentication-results\" needs the "
                         "authserv-id your MTA writes in Authentication-Results")

    def mail_key(self, settings: Settings) -> MailSettings:
        """`mail.secret_file`, or by default beside a SQLite database file. On PostgreSQL it
        must be named: every instance on the database must sign with the same key."""
        from maild.dbapi import sqlite_path  # maild.dbapi reads DatabaseSettings from here

        if settings.mail.secret_file:
            return settings.mail
        database = sqlite_path(settings.database.url)
        if database is None:
            self.problem("mail.secret_file", "needed with this database (no database file to "
                         "keep the key beside): a file every instance of maild on the database "
                         "shares, e.g. secret_file = \"/var/lib/maild/maild.key\" "
                         "(`maild init` creates it)")
            return settings.mail
        return replace(settings.mail, secret_file=f"{database}.key")

    def check_queue_staff(self, settings: Settings) -> None:
        for i, queue in enumerate(settings.queues):
            for address in queue.staff:
                if not settings.is_staff(address):
                    self.problem(f"queues[{i}].staff", f"{address} is not one of [[staff]]")

    def smtp(self, table: Any) -> SmtpSettings:
        smtp = self.section(table, "smtp", SmtpSettings)
        if bool(smtp.tls_cert) != bool(smtp.tls_key):
            self.problem("smtp.tls_cert", "tls_cert and tls_key go together")
        if smtp.require_tls and not smtp.tls_cert:
            self.problem("smtp.require_tls", "needs tls_cert and tls_key")
        return smtp

    def imap(self, entries: Any) -> tuple[ImapSettings, ...]:
        if not isinstance(entries, list):
            self.problem("imap", "must be an array of tables: [[imap]]")
            return ()
        result = []
        for i, entry in enumerate(entries):
            name = entry.get("name", f"imap{i}") if isinstance(entry, Mapping) else f"imap{i}"
            if not isinstance(name, str) or not name.strip():
                self.problem(f"imap[{i}].name", "must be a non-empty string")
                name = f"imap{i}"
            result.append(self.section(entry, f"imap[{i}]", ImapSettings, name=name.strip()))
        if len({m.name for m in result}) != len(result):
            self.problem("imap", "every [[imap]] mailbox needs a distinct name")
        return tuple(result)

    def queues(self, raw: Mapping[str, Any]) -> tuple[QueueSettings, ...]:
        entries = raw.get("queues")
        if entries is None:
            return tuple(QueueSettings(name) for name in DEFAULT_QUEUES)
        if not isinstance(entries, list) or not entries:
            self.problem("queues", "must be a non-empty array of tables: [[queues]]")
            return (QueueSettings(DEFAULT_QUEUES[0]),)
        result = [self.section(entry, f"queues[{i}]", QueueSettings)
                  for i, entry in enumerate(entries)]
        if len({q.name.lower() for q in result}) != len(result):
            self.problem("queues", "queue names must be distinct")
        return tuple(result)

    def staff(self, entries: Any) -> tuple[StaffSettings, ...]:
        if not isinstance(entries, list):
            self.problem("staff", "must be an array of tables: [[staff]]")
            return ()
        result = [self.section(entry, f"staff[{i}]", StaffSettings)
                  for i, entry in enumerate(entries)]
        if len({s.email.lower() for s in result}) != len(result):
            self.problem("staff", "staff emails must be distinct")
        return tuple(result)

    def tickets(self, table: Any, queues: tuple[QueueSettings, ...]) -> TicketSettings:
        tickets = self.section(table, "tickets", TicketSettings)
        if not tickets.default_queue:
            return replace(tickets, default_queue=queues[0].name if queues else "")
        if tickets.default_queue not in {q.name for q in queues}:
            self.problem("tickets.default_queue",
                         f"{tickets.default_queue!r} is not one of [[queues]]")
        return tickets

    def sla(self, table: Any) -> SlaSettings:
        sla = self.section(table, "sla", SlaSettings, skip=("priorities",))
        table = table if isinstance(table, Mapping) else {}
        priorities = dict(DEFAULT_SLA)
        given = table.get("priorities", {})
        if not isinstance(given, Mapping):
            self.problem("sla.priorities", "must be a table of [sla.priorities.NAME] tables")
            given = {}
        for unknown in sorted(set(given) - set(PRIORITIES)):
            self.problem(f"sla.priorities.{unknown}",
                         f"unknown priority; priorities are {', '.join(PRIORITIES)}")
        for name in PRIORITIES:
            if name in given:
                priorities[name] = self.section(given[name], f"sla.priorities.{name}",
                                                PrioritySla, defaults=DEFAULT_SLA[name])
        return replace(sla, priorities=priorities)


_REQUIRED = {
    "support_address": "the address maild sends from and receives at, e.g. "
                       "support_address = \"support@example.com\"",
    "email": "every staff member needs an email",
    "base_url": "the address customers reach the web pages at, e.g. "
                "base_url = \"https://support.example.com\"",
    "secret_file": "a file holding the key that signs forms and status links, e.g. "
                   "secret_file = \"web.key\" (`maild init` creates it)",
    "name": "every queue needs a name",
}
_SQLITE_URL = re.compile(r"^(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?$")


