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
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar
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


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/maild.db"
    busy_timeout: timedelta = timedelta(seconds=5)


@dataclass(frozen=True)
class MailSettings:
    support_address: str = "support@example.com"
    support_name: str = "Support"
    accept: tuple[str, ...] = ("support@example.com",)
    subject_tag: str = "Ticket"
    language: str = "en"
    templates_dir: str = ""
    max_message_bytes: int = 26_214_400
    auto_reply_limit_per_hour: int = 5
    staff_auth: str = "from"       # "from" (SPEC §7) | "authentication-results"
    authserv_id: str = ""          # the trusted MTA's authserv-id in Authentication-Results

    @property
    def domain(self) -> str:
        return self.support_address.rpartition("@")[2]


@dataclass(frozen=True)
class SmtpSettings:
    listen: str = "127.0.0.1:2525"
    protocol: str = "smtp"
    max_message_bytes: int = 26_214_400
    tls_cert: str = ""
    tls_key: str = ""
    require_tls: bool = False

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class ImapSettings:
    name: str
    host: str = "127.0.0.1"
    port: int = 993
    security: str = "tls"
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    tls_ca_file: str = ""
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    idle: bool = True
    poll_seconds: int = 60
    batch_size: int = 50


@dataclass(frozen=True)
class OutboundSettings:
    transport: str = "maildir"
    maildir: str = "var/outbox"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: str = "none"
    smtp_tls_ca_file: str = ""
    smtp_username: str = ""
    smtp_password_env: str = ""
    smtp_password_file: str = ""
    smtp_timeout: timedelta = timedelta(seconds=30)
    batch_size: int = 100
    retry_initial: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)
    lifetime: timedelta = timedelta(days=5)


@dataclass(frozen=True)
class QueueSettings:
    name: str


@dataclass(frozen=True)
class StaffSettings:
    email: str
    name: str = ""


@dataclass(frozen=True)
class TicketSettings:
    default_queue: str = "General questions"
    default_priority: str = "normal"
    reopen_closed: bool = True


@dataclass(frozen=True)
class PrioritySla:
    escalate_after: timedelta
    resolve_within: timedelta


DEFAULT_SLA = {
    "highest": PrioritySla(timedelta(minutes=30), timedelta(hours=4)),
    "high": PrioritySla(timedelta(hours=1), timedelta(hours=8)),
    "normal": PrioritySla(timedelta(hours=4), timedelta(days=2)),
    "low": PrioritySla(timedelta(hours=8), timedelta(days=5)),
    "lowest": PrioritySla(timedelta(days=1), timedelta(days=10)),
}


@dataclass(frozen=True)
class SlaSettings:
    timezone: str = "Europe/Moscow"
    business_hours: str = "Mon-Fri 09:00-18:00"
    holidays: tuple[date, ...] = ()
    priorities: Mapping[str, PrioritySla] = field(default_factory=lambda: dict(DEFAULT_SLA))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class CloseSettings:
    request_after: timedelta = timedelta(days=3)
    close_after: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Settings:
    path: str
    database: DatabaseSettings
    mail: MailSettings
    smtp: SmtpSettings | None
    imap: tuple[ImapSettings, ...]
    outbound: OutboundSettings
    queues: tuple[QueueSettings, ...]
    tickets: TicketSettings
    staff: tuple[StaffSettings, ...]
    sla: SlaSettings
    close: CloseSettings

    def is_staff(self, address: str) -> bool:
        return address.lower() in {s.email.lower() for s in self.staff}


def config_path(explicit: str | None) -> Path:
    """The file to read: --config, else $MAILD_CONFIG, else config/maild.toml."""
    return Path(explicit or os.environ.get("MAILD_CONFIG") or DEFAULT_CONFIG)


def load(path: Path | str) -> Settings:
    """Read and validate the config file; ConfigError lists every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return from_mapping(raw, str(path))


def from_mapping(raw: Mapping[str, Any], source: str = "<config>") -> Settings:
    """Validate an already-parsed TOML document (tests build settings this way)."""
    reader = _Reader(source)
    settings = reader.settings(raw)
    if reader.problems:
        raise ConfigError(reader.problems)
    return settings


T = TypeVar("T")


class _Reader:
    """Walks the TOML document, converting values and collecting every problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}:{key}: {message}")

    def table(self, raw: Mapping[str, Any], key: str, known: set[str]) -> Mapping[str, Any]:
        """The sub-table `raw[last part of key]`, checked for unknown keys."""
        return self.checked(raw.get(key.rpartition(".")[2], {}), key, known)

    def checked(self, value: Any, key: str, known: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.problem(key, "must be a table")
            return {}
        for unknown in sorted(set(value) - known):
            self.problem(f"{key}.{unknown}", "unknown key")
        return value

    def value(
        self,
        table: Mapping[str, Any],
        key: str,
        default: T,
        convert: Callable[[Any], T] | None = None,
    ) -> T:
        name = key.rpartition(".")[2]
        if name not in table:
            return default
        raw = table[name]
        try:
            if convert is not None:
                return convert(raw)
            if isinstance(default, bool) and not isinstance(raw, bool):
                raise ValueError("must be true or false")
            if isinstance(default, int) and not isinstance(default, bool) and (
                    isinstance(raw, bool) or not isinstance(raw, int) or raw < 0):
                raise ValueError("must be a non-negative whole number")
            if isinstance(default, str) and not isinstance(raw, str):
                raise ValueError("must be a string")
            return raw
        except (ValueError, TypeError) as exc:
            self.problem(key, str(exc))
            return default

    def settings(self, raw: Mapping[str, Any]) -> Settings:
        top = {"database", "mail", "smtp", "imap", "outbound", "queues", "tickets", "staff",
               "sla", "close"}
        for unknown in sorted(set(raw) - top):
            self.problem(unknown, "unknown section")
        mail = self.mail(raw)
        queues = self.queues(raw)
        staff = self.staff(raw)
        tickets = self.tickets(raw, queues)
        return Settings(
            path=self.source,
            database=self.database(raw),
            mail=mail,
            smtp=self.smtp(raw) if "smtp" in raw else None,
            imap=self.imap(raw),
            outbound=self.outbound(raw),
            queues=queues,
            tickets=tickets,
            staff=staff,
            sla=self.sla(raw),
            close=self.close(raw),
        )

    def database(self, raw: Mapping[str, Any]) -> DatabaseSettings:
        d = DatabaseSettings()
        t = self.table(raw, "database", {"url", "busy_timeout"})
        url = self.value(t, "database.url", d.url)
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
            self.problem("database.url", f"unsupported database URL {url!r}; use sqlite:/// or "
                         "postgresql+psycopg://")
        return DatabaseSettings(
            url=url, busy_timeout=self.value(t, "database.busy_timeout", d.busy_timeout,
                                             _duration))

    def mail(self, raw: Mapping[str, Any]) -> MailSettings:
        d = MailSettings()
        t = self.table(raw, "mail", {"support_address", "support_name", "accept", "subject_tag",
                                     "language", "templates_dir", "max_message_bytes",
                                     "auto_reply_limit_per_hour", "staff_auth",
                                     "authserv_id"})
        support = self.value(t, "mail.support_address", d.support_address, _email)
        only_support: tuple[str, ...] = (support,)
        accept = self.value(t, "mail.accept", only_support, _email_list)
        tag = self.value(t, "mail.subject_tag", d.subject_tag)
        if not tag.strip() or any(c in tag for c in "[]#\r\n") or len(tag) > 40:
            self.problem("mail.subject_tag", "must be 1-40 characters without [, ], # or "
                         "line breaks")
        language = self.value(t, "mail.language", d.language)
        if language not in LANGUAGES:
            self.problem("mail.language", f"must be one of {', '.join(LANGUAGES)}")
        templates_dir = self.value(t, "mail.templates_dir", d.templates_dir)
        staff_auth = self.value(t, "mail.staff_auth", d.staff_auth)
        authserv_id = self.value(t, "mail.authserv_id", d.authserv_id).strip()
        if staff_auth not in ("from", "authentication-results"):
            self.problem("mail.staff_auth", "must be from or authentication-results")
        elif staff_auth == "authentication-results" and not authserv_id:
            self.problem("mail.authserv_id", "staff_auth = \"authentication-results\" needs the "
                         "authserv-id your MTA writes in Authentication-Results")
        if templates_dir and not Path(templates_dir).is_dir():
            self.problem("mail.templates_dir", f"no such directory: {templates_dir}")
        return MailSettings(
            support_address=support,
            support_name=_single_line(self.value(t, "mail.support_name", d.support_name)),
            accept=accept,
            subject_tag=tag.strip(),
            language=language,
            templates_dir=templates_dir,
            max_message_bytes=self.value(t, "mail.max_message_bytes", d.max_message_bytes),
            auto_reply_limit_per_hour=self.value(t, "mail.auto_reply_limit_per_hour",
                                                 d.auto_reply_limit_per_hour),
            staff_auth=staff_auth,
            authserv_id=authserv_id,
        )

    def smtp(self, raw: Mapping[str, Any]) -> SmtpSettings:
        d = SmtpSettings()
        t = self.table(raw, "smtp", {"listen", "protocol", "max_message_bytes", "tls_cert",
                                     "tls_key", "require_tls"})
        listen = self.value(t, "smtp.listen", d.listen)
        if not re.match(r"^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$", listen):
            self.problem("smtp.listen", "must be HOST:PORT, e.g. 127.0.0.1:2525")
        cert = self.value(t, "smtp.tls_cert", d.tls_cert)
        key = self.value(t, "smtp.tls_key", d.tls_key)
        if bool(cert) != bool(key):
            self.problem("smtp.tls_cert", "tls_cert and tls_key go together")
        for name, path in (("tls_cert", cert), ("tls_key", key)):
            if path and not Path(path).is_file():
                self.problem(f"smtp.{name}", f"no such file: {path}")
        protocol = self.value(t, "smtp.protocol", d.protocol)
        if protocol not in ("smtp", "lmtp"):
            self.problem("smtp.protocol", "must be smtp or lmtp")
        require_tls = self.value(t, "smtp.require_tls", d.require_tls)
        if require_tls and not cert:
            self.problem("smtp.require_tls", "needs tls_cert and tls_key")
        return SmtpSettings(listen=listen, protocol=protocol, max_message_bytes=self.value(
            t, "smtp.max_message_bytes", d.max_message_bytes), tls_cert=cert, tls_key=key,
            require_tls=require_tls)

    def imap(self, raw: Mapping[str, Any]) -> tuple[ImapSettings, ...]:
        entries = raw.get("imap", [])
        if not isinstance(entries, list):
            self.problem("imap", "must be an array of tables: [[imap]]")
            return ()
        known = {"name", "host", "port", "security", "username", "password_env",
                 "password_file", "tls_ca_file", "folder", "processed_folder", "idle",
                 "poll_seconds", "batch_size"}
        result = []
        for i, entry in enumerate(entries):
            key = f"imap[{i}]"
            t = self.checked(entry, key, known)
            name = self.value(t, f"{key}.name", f"imap{i}")
            d = ImapSettings(name=name)
            security = self.value(t, f"{key}.security", d.security)
            if security not in ("tls", "starttls", "none"):
                self.problem(f"{key}.security", "must be tls, starttls or none")
            result.append(ImapSettings(
                name=name,
                host=self.value(t, f"{key}.host", d.host),
                port=self.value(t, f"{key}.port", d.port),
                security=security,
                username=self.value(t, f"{key}.username", d.username),
                password_env=self.value(t, f"{key}.password_env", d.password_env),
                password_file=self.value(t, f"{key}.password_file", d.password_file),
                tls_ca_file=self.value(t, f"{key}.tls_ca_file", d.tls_ca_file),
                folder=self.value(t, f"{key}.folder", d.folder),
                processed_folder=self.value(t, f"{key}.processed_folder", d.processed_folder),
                idle=self.value(t, f"{key}.idle", d.idle),
                poll_seconds=max(1, self.value(t, f"{key}.poll_seconds", d.poll_seconds)),
                batch_size=max(1, self.value(t, f"{key}.batch_size", d.batch_size)),
            ))
        if len({m.name for m in result}) != len(result):
            self.problem("imap", "every [[imap]] mailbox needs a distinct name")
        return tuple(result)

    def outbound(self, raw: Mapping[str, Any]) -> OutboundSettings:
        d = OutboundSettings()
        t = self.table(raw, "outbound", {
            "transport", "maildir", "smtp_host", "smtp_port", "smtp_security",
            "smtp_tls_ca_file", "smtp_username",
            "smtp_password_env", "smtp_password_file", "smtp_timeout", "batch_size",
            "retry_initial", "retry_max", "lifetime"})
        transport = self.value(t, "outbound.transport", d.transport)
        if transport not in ("maildir", "smtp"):
            self.problem("outbound.transport", "must be maildir or smtp")
        security = self.value(t, "outbound.smtp_security", d.smtp_security)
        if security not in ("none", "starttls", "tls"):
            self.problem("outbound.smtp_security", "must be none, starttls or tls")
        batch = self.value(t, "outbound.batch_size", d.batch_size)
        if batch < 1:
            self.problem("outbound.batch_size", "must be at least 1")
        return OutboundSettings(
            transport=transport,
            maildir=self.value(t, "outbound.maildir", d.maildir),
            smtp_host=self.value(t, "outbound.smtp_host", d.smtp_host),
            smtp_port=self.value(t, "outbound.smtp_port", d.smtp_port),
            smtp_security=security,
            smtp_tls_ca_file=self.value(t, "outbound.smtp_tls_ca_file", d.smtp_tls_ca_file),
            smtp_username=self.value(t, "outbound.smtp_username", d.smtp_username),
            smtp_password_env=self.value(t, "outbound.smtp_password_env", d.smtp_password_env),
            smtp_password_file=self.value(t, "outbound.smtp_password_file",
                                          d.smtp_password_file),
            smtp_timeout=self.value(t, "outbound.smtp_timeout", d.smtp_timeout, _duration),
            batch_size=batch,
            retry_initial=self.value(t, "outbound.retry_initial", d.retry_initial, _duration),
            retry_max=self.value(t, "outbound.retry_max", d.retry_max, _duration),
            lifetime=self.value(t, "outbound.lifetime", d.lifetime, _duration),
        )

    def queues(self, raw: Mapping[str, Any]) -> tuple[QueueSettings, ...]:
        entries = raw.get("queues")
        if entries is None:
            return tuple(QueueSettings(n) for n in
                         ("General questions", "Compatibility problems", "Development questions"))
        if not isinstance(entries, list) or not entries:
            self.problem("queues", "must be a non-empty array of tables: [[queues]]")
            return (QueueSettings("General questions"),)
        result = []
        for i, entry in enumerate(entries):
            t = self.checked(entry, f"queues[{i}]", {"name"})
            name = self.value(t, f"queues[{i}].name", "")
            if not name.strip():
                self.problem(f"queues[{i}].name", "every queue needs a name")
            result.append(QueueSettings(name.strip()))
        if len({q.name.lower() for q in result}) != len(result):
            self.problem("queues", "queue names must be distinct")
        return tuple(result)

    def staff(self, raw: Mapping[str, Any]) -> tuple[StaffSettings, ...]:
        entries = raw.get("staff", [])
        if not isinstance(entries, list):
            self.problem("staff", "must be an array of tables: [[staff]]")
            return ()
        result = []
        for i, entry in enumerate(entries):
            t = self.checked(entry, f"staff[{i}]", {"email", "name"})
            email = self.value(t, f"staff[{i}].email", "", _email)
            if not email:
                self.problem(f"staff[{i}].email", "every staff member needs an email")
            result.append(StaffSettings(email=email,
                                        name=_single_line(self.value(t, f"staff[{i}].name", ""))))
        if len({s.email.lower() for s in result}) != len(result):
            self.problem("staff", "staff emails must be distinct")
        return tuple(result)

    def tickets(self, raw: Mapping[str, Any], queues: tuple[QueueSettings, ...]) -> TicketSettings:
        t = self.table(raw, "tickets", {"default_queue", "default_priority", "reopen_closed"})
        default_queue = self.value(t, "tickets.default_queue", queues[0].name if queues else "")
        if default_queue not in {q.name for q in queues}:
            self.problem("tickets.default_queue", f"{default_queue!r} is not one of [[queues]]")
        priority = self.value(t, "tickets.default_priority", "normal")
        try:
            priority = priority_name(priority_value(priority))
        except ValueError as exc:
            self.problem("tickets.default_priority", str(exc))
        return TicketSettings(default_queue=default_queue, default_priority=priority,
                              reopen_closed=self.value(t, "tickets.reopen_closed", True))

    def sla(self, raw: Mapping[str, Any]) -> SlaSettings:
        d = SlaSettings()
        t = self.table(raw, "sla", {"timezone", "business_hours", "holidays", "priorities"})
        timezone = self.value(t, "sla.timezone", d.timezone)
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem("sla.timezone", f"unknown time zone {timezone!r}")
            timezone = d.timezone
        hours = self.value(t, "sla.business_hours", d.business_hours)
        try:
            parse_business_hours(hours)
        except ValueError as exc:
            self.problem("sla.business_hours", str(exc))
            hours = d.business_hours
        no_holidays: tuple[date, ...] = ()
        holidays = self.value(t, "sla.holidays", no_holidays, _dates)
        priorities = dict(DEFAULT_SLA)
        table = self.table(t, "sla.priorities", set(PRIORITIES))
        for name in PRIORITIES:
            if name in table:
                key = f"sla.priorities.{name}"
                p = self.table(table, key, {"escalate_after", "resolve_within"})
                priorities[name] = PrioritySla(
                    self.value(p, f"{key}.escalate_after", DEFAULT_SLA[name].escalate_after,
                               _duration),
                    self.value(p, f"{key}.resolve_within", DEFAULT_SLA[name].resolve_within,
                               _duration))
        return SlaSettings(timezone=timezone, business_hours=hours, holidays=holidays,
                           priorities=priorities)

    def close(self, raw: Mapping[str, Any]) -> CloseSettings:
        d = CloseSettings()
        t = self.table(raw, "close", {"request_after", "close_after"})
        return CloseSettings(
            request_after=self.value(t, "close.request_after", d.request_after, _duration),
            close_after=self.value(t, "close.close_after", d.close_after, _duration))


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


def _dates(raw: Any) -> tuple[date, ...]:
    if not isinstance(raw, list):
        raise ValueError("must be a list of dates such as \"2026-12-31\"")
    try:
        return tuple(d if isinstance(d, date) else date.fromisoformat(str(d)) for d in raw)
    except ValueError:
        raise ValueError("must be a list of dates such as \"2026-12-31\"") from None


def _single_line(text: str) -> str:
    return " ".join(text.split())
