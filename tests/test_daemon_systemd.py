"""`maild run` under systemd's `Type=notify` (systemd/maild.service): READY=1 once the worker
is ready, STOPPING=1 on SIGTERM — over a real datagram socket, as systemd listens on one."""

from __future__ import annotations

import signal
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import mail
from tests.servers import MaildProcess, ServiceManager, wait_until
from tests.smtp_sink import SmtpSink, free_port

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"

[mail]
support_address = "support@example.com"
templates_dir = "{templates}"

[smtp]
listen = "127.0.0.1:{port}"

[outbound]
transport = "smtp"
smtp_host = "127.0.0.1"
smtp_port = {sink_port}

[notify]
new_ticket = false
follow_up = false
"""


@pytest.fixture
def manager() -> Iterator[ServiceManager]:
    listening = ServiceManager()
    yield listening
    listening.close()


def start(root: Path, sink: SmtpSink, manager: ServiceManager, templates: str = ""
          ) -> MaildProcess:
    port = free_port()
    daemon = MaildProcess(root, CONFIG.format(root=root, port=port, sink_port=sink.port,
                                              templates=templates))
    daemon.port = port
    daemon.env["NOTIFY_SOCKET"] = manager.address
    daemon.start()
    return daemon


def test_the_daemon_says_ready_once_it_can_thread_and_stopping_on_sigterm(
    tmp_path: Path, sink: SmtpSink, manager: ServiceManager
) -> None:
    daemon = start(tmp_path, sink, manager)
    try:
        ready = manager.next()
        assert ready["READY"] == "1", ready
        assert ready["STATUS"] == f"maild running: database sqlite:///{tmp_path}/maild.db, " \
            "outbound smtp"
        # Ready means serving: the listener answers and the worker threads at once.
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.send_message(mail(message_id="<ready-1@example.org>"))
        assert wait_until(lambda: len(sink.messages) == 1, timeout=30), daemon.log()
        daemon.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert manager.next() == {"STOPPING": "1"}
        assert daemon.process.wait(timeout=60) == 0  # type: ignore[union-attr]
    finally:
        if daemon.running():
            daemon.stop()
    assert "ready: the worker has loaded its imports and templates" in daemon.log()


def test_a_broken_template_set_does_not_keep_the_daemon_from_ready(
    tmp_path: Path, sink: SmtpSink, manager: ServiceManager
) -> None:
    """A missing template fails the mail that needs it, with its reason (re-runnable once
    mended); it must not crash the worker at start, or keep systemd waiting for READY."""
    empty = tmp_path / "no-templates"
    empty.mkdir()
    daemon = start(tmp_path, sink, manager, templates=str(empty))
    try:
        assert manager.next()["READY"] == "1"
        worker = daemon.worker_pid()
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.send_message(mail(message_id="<ready-2@example.org>"))
        assert wait_until(lambda: "TemplateNotFound" in daemon.cli(
            "inbound", "list", "--state", "failed").stdout, timeout=30), daemon.log()
        assert daemon.worker_pid() == worker  # the same worker: it never crashed
        assert "worker exited" not in daemon.log()
    finally:
        daemon.stop()


def test_without_a_service_manager_nothing_is_sent_and_nothing_breaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maild.daemon.systemd import notify

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))  # systemd went away
    assert notify("READY=1") is False  # logged, not raised
