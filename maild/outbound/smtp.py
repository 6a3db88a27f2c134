"""`SmtpTransport`: delivery to the configured SMTP relay (`maild.outbound.transports` has the
Protocol and the Maildir). A module of its own because `smtplib` brings `ssl` and OpenSSL,
about 7 MiB in a process that delivers into a Maildir and has no use for them.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl

from maild.errors import PermanentFailure, TemporaryFailure


class SmtpTransport:
    """Delivers to an SMTP relay; one connection serves a whole batch."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "none",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.tls_context = tls_context or ssl.create_default_context()
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None

    def send(self, mail_from: str, rcpt_to: str, raw: bytes, delivery_id: str) -> None:
        conn = self._connection()
        try:
            conn.sendmail(mail_from, [rcpt_to], raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._raise_for(code, text, f"RCPT {rcpt_to}")
        except smtplib.SMTPResponseException as exc:  # sender refused, data error
            if exc.smtp_code == 421:
                self._drop()
            self._raise_for(exc.smtp_code, exc.smtp_error, "SMTP")
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TemporaryFailure(f"{self.host}:{self.port}: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._drop()

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        try:
            conn: smtplib.SMTP
            if self.security == "tls":
                conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=self.tls_context,
                                        local_hostname=self.local_hostname)
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout,
                                    local_hostname=self.local_hostname)
                if self.security == "starttls":
                    conn.starttls(context=self.tls_context)
            if self.username:
                conn.login(self.username, self.password)
        except smtplib.SMTPResponseException as exc:
            raise TemporaryFailure(f"{self.host}:{self.port}: {exc.smtp_code} "
                                   f"{_text(exc.smtp_error)}", connection=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(f"{self.host}:{self.port}: {exc}", connection=True) from exc
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None

    @staticmethod
    def _raise_for(code: int, text: bytes | str, what: str) -> None:
        message = f"{what}: {code} {_text(text)}"
        if 500 <= code < 600:
            raise PermanentFailure(message)
        raise TemporaryFailure(message)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
