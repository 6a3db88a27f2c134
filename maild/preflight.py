"""`maild check-config` beyond the file: can this installation work as it is configured?

`maild.config` checks what the file says. A file can read well and still not work: a password
variable that is not set in this environment, a Maildir or database folder maild cannot write,
a certificate it cannot read, a template set with a kind missing. `problems` finds each of
these without changing anything (a probe file is created and removed at once), and names it
like a config error: "file:key: problem".
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from maild.compose import LANGUAGES, Templates
from maild.config import Settings
from maild.dbapi import sqlite_path


def problems(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every problem found, as "file:key: problem" lines; [] when the installation can work."""
    environ = os.environ if environ is None else environ
    return [f"{settings.path}:{key}: {problem}" for key, problem in _all(settings, environ)]


def _all(settings: Settings, environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    for i, mailbox in enumerate(settings.imap):
        yield from _secret(f"imap[{i}].password", mailbox.password_env, mailbox.password_file,
                           environ, needed=True)
        yield from _readable(f"imap[{i}].tls_ca_file", mailbox.tls_ca_file)
    outbound = settings.outbound
    if outbound.transport == "smtp":
        yield from _secret("outbound.smtp_password", outbound.smtp_password_env,
                           outbound.smtp_password_file, environ,
                           needed=bool(outbound.smtp_username))
        yield from _readable("outbound.smtp_tls_ca_file", outbound.smtp_tls_ca_file)
    else:
        yield from _writable("outbound.maildir", Path(outbound.maildir))
    if settings.smtp is not None:
        yield from _readable("smtp.tls_cert", settings.smtp.tls_cert)
        yield from _readable("smtp.tls_key", settings.smtp.tls_key)
    database = sqlite_path(settings.database.url)
    if database is not None:
        yield from _writable("database.url", database.parent)
        if database.exists():
            try:
                os.close(os.open(database, os.O_RDWR))
            except OSError as exc:
                yield "database.url", f"cannot write {database}: {exc.strerror}"
    if settings.mail.handoff_socket:  # `maild run` binds it; nothing creates its folder
        folder = Path(settings.mail.handoff_socket).parent
        if folder.is_dir():
            yield from _writable("mail.handoff_socket", folder)
        else:
            yield "mail.handoff_socket", f"{folder} is not a folder"
    yield from _key_file("mail.secret_file", settings.mail.secret_file)
    if settings.web is not None:
        yield from _key_file("web.secret_file", settings.web.secret_file)
    languages = LANGUAGES if settings.mail.language == "auto" else (settings.mail.language,)
    for problem in Templates(settings).problems(languages):
        yield "mail.templates_dir", problem


def _key_file(key: str, name: str) -> Iterator[tuple[str, str]]:
    """A key file (`maild.keys`) maild can read, or — missing — one `maild init` can create.
    Anyone who can read it can forge what it signs: it must not be readable by others."""
    path = Path(name)
    if not path.exists():  # `maild init` writes a new key there
        yield from _writable(key, path.parent)
        return
    yield from _readable(key, name)
    if path.stat().st_mode & 0o077:
        yield key, f"{name} is readable or writable by others than its owner (chmod 600 it)"


def _secret(key: str, env_name: str, file_name: str, environ: Mapping[str, str],
            *, needed: bool) -> Iterator[tuple[str, str]]:
    if env_name:
        if env_name not in environ:
            yield f"{key}_env", f"environment variable {env_name} is not set"
    elif file_name:
        yield from _readable(f"{key}_file", file_name)
    elif needed:
        yield f"{key}_env", "no password given (set password_env or password_file)"


def _readable(key: str, name: str) -> Iterator[tuple[str, str]]:
    if not name:
        return
    try:
        with open(name, "rb"):
            pass
    except OSError as exc:
        yield key, f"cannot read {name}: {exc.strerror}"


def _writable(key: str, folder: Path) -> Iterator[tuple[str, str]]:
    """`folder` can be written in, or — when it does not exist yet — created (maild creates
    its Maildir and `init` its database folder). Probed for real: permission bits do not tell
    about read-only mounts, ACLs or root."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        yield key, f"{existing} is not a folder, so {folder} cannot be created"
        return
    try:
        if existing == folder:
            with tempfile.TemporaryFile(dir=folder, prefix=".maild-check-"):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".maild-check-"))
    except OSError as exc:
        what = f"write in {folder}" if existing == folder else f"create {folder}"
        yield key, f"cannot {what}: {exc.strerror}"
