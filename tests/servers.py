"""Real servers for the daemon tests: Dovecot (IMAP, IMAPS, LMTP) and `maild run` itself.

Dovecot runs from a self-contained config in a short /tmp folder (unix sockets must stay under
108 characters), on free loopback ports, with a passwd-file user `support` / `supportpw` and a
self-signed certificate for 127.0.0.1 — see ../shared/TESTING.md. `maild run` runs as a real
subprocess (`python -m maild`), so signals, exit codes and crashes are the real thing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from tests.smtp_sink import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after "(comm)"
            found.append(int(entry.name))
    return found


def real_clock_environment() -> dict[str, str]:
    """The environment without libfaketime: a suite run under `faketime` (to prove maild does
    not depend on today's date) moves maild's clock, not that of the servers it talks to —
    Dovecot's processes under libfaketime fail their logins (../shared/TESTING.md §5)."""
    return {name: value for name, value in os.environ.items()
            if name != "LD_PRELOAD" and not name.startswith("FAKETIME")}


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


class Dovecot:
    """A private Dovecot instance; `start()`/`stop()`, ports as attributes."""

    def __init__(self, capabilities: str = "") -> None:
        """`capabilities`: an `imap_capability` override, to play a server without MOVE."""
        self.dir = Path(tempfile.mkdtemp(prefix="hd-dc.", dir="/tmp"))
        self.dir.chmod(0o755)  # the auth process runs as `dovecot` and must traverse it
        self.imap_port, self.imaps_port, self.lmtp_port = free_port(), free_port(), free_port()
        self.cert, self.key = make_certificate(self.dir)
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir()
        shutil.chown(self.dir / "mail", "nobody", "nogroup")
        (self.dir / "users").write_text("support:{PLAIN}supportpw::::::\n")
        (self.dir / "dovecot.conf").write_text(f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
instance_name = hd-dovecot-{self.imap_port}
log_path = {self.dir}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
auth_mechanisms = plain login
{f"imap_capability = {capabilities}" if capabilities else ""}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {self.dir}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={self.dir}/mail/%n
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
""")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.dir / "dovecot.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=real_clock_environment())
        for port in (self.imap_port, self.imaps_port, self.lmtp_port):
            wait_port(port)

    def stop(self, *, keep_files: bool = False) -> None:
        """Stop the server; `keep_files=True` keeps mail, config and ports for a `start()`."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if not keep_files:
            shutil.rmtree(self.dir, ignore_errors=True)

    def crash(self) -> None:
        """Kill -9 the master and every process it started, as a server crash would: client
        connections drop without a BYE. Mail, config and ports are kept for a `start()`."""
        assert self.process is not None
        master = self.process.pid
        os.kill(master, signal.SIGSTOP)  # no new children while we collect them
        for child in _children(master):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.process.kill()
        self.process.wait()
        self.process = None

    def client(self, ssl_context: ssl.SSLContext | None = None) -> IMAPClient:
        """A logged-in IMAP client for `support` (plain IMAP, or IMAPS given a context)."""
        if ssl_context is None:
            client = IMAPClient("127.0.0.1", port=self.imap_port, ssl=False, timeout=30)
        else:
            client = IMAPClient("127.0.0.1", port=self.imaps_port, ssl=True,
                                ssl_context=ssl_context, timeout=30)
        client.login("support", "supportpw")
        return client

    def deliver(self, message: bytes, sender: str = "customer@example.org",
                recipient: str = "support@example.com") -> None:
        """Deliver one message over LMTP, as an MTA does (Dovecot adds Return-Path etc.)."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=30) as lmtp:
            lmtp.sendmail(sender, [recipient], message)

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


class ServiceManager:
    """The receiving end of `$NOTIFY_SOCKET`, systemd's side of sd_notify(3): give a
    `maild run` `env={"NOTIFY_SOCKET": manager.address}`, then `wait_ready()`. The socket is
    abstract (`@...`), so no path can be too long or left behind."""

    def __init__(self) -> None:
        self.address = f"@maild-notify-{os.getpid()}-{uuid.uuid4().hex}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.address[1:])

    def next(self, timeout: float = 60.0) -> dict[str, str]:
        """The next notification, as its `NAME=value` lines."""
        self.socket.settimeout(timeout)
        datagram = self.socket.recv(4096).decode()
        return dict(line.split("=", 1) for line in datagram.splitlines())

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.next(max(0.1, deadline - time.monotonic())).get("READY") != "1":
            pass

    def close(self) -> None:
        self.socket.close()


class MaildProcess:
    """`maild run` as a subprocess, with its own config, database and log file."""

    def __init__(self, root: Path, config_text: str, *, own_group: bool = False) -> None:
        """`own_group=True`: `maild run` leads a process group of its own (with its children),
        which `kill_group()` kills as a whole, as a machine or systemd's SIGKILL would."""
        self.root = root
        self.own_group = own_group
        self.config = root / "maild.toml"
        self.config.write_text(config_text)
        self.log_path = root / "maild.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "MAILD_IMAP_PASSWORD": "supportpw"}
        self.port = 0  # the SMTP listener's, when the test gives it one

    def start(self, wait_for: int | None = None) -> None:
        """`maild init`, then `maild run`, as the systemd unit does it."""
        initialised = self.cli("init")
        assert initialised.returncode == 0, initialised.stderr
        log = open(self.log_path, "ab")  # noqa: SIM115  (kept open for the child's lifetime)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "maild", "--config", str(self.config), "run"],
            stdout=log, stderr=log, env=self.env, cwd=self.root,
            start_new_session=self.own_group)
        log.close()
        if wait_for is not None:
            wait_port(wait_for)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.process = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def kill_group(self) -> None:
        """SIGKILL to the intake and its children at once (needs `own_group=True`)."""
        assert self.process is not None and self.own_group
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def worker_pid(self, timeout: float = 30.0) -> int:
        """The pid of the worker process (`python -P -m maild.daemon.worker`)."""
        return self.child_pid("worker", timeout)

    def sender_pid(self, timeout: float = 30.0) -> int:
        """The pid of the sender process (`python -P -m maild.daemon.sender`)."""
        return self.child_pid("sender", timeout)

    def child_pid(self, name: str, timeout: float = 30.0) -> int:
        """The pid of the intake's child `python -P -m maild.daemon.<name>` (the other children
        are the worker or the sender, and at start `maild init`)."""
        assert self.process is not None
        wanted = f"maild.daemon.{name}".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in _children(self.process.pid):
                try:
                    command = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if wanted in command.split(b"\0"):
                    return child
            time.sleep(0.05)
        raise TimeoutError(f"maild run (pid {self.process.pid}) started no {name}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tickets(self) -> list[dict[str, Any]]:
        """`maild ticket list --json` of this installation."""
        done = self.cli("ticket", "list", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "maild", "--config", str(self.config),
                               *args], capture_output=True, text=True, env=self.env,
                              cwd=self.root, timeout=60)


def wait_until(predicate: object, timeout: float = 15.0, interval: float = 0.1) -> bool:
    """Poll `predicate()` until true or the timeout; returns its last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def kill_quietly(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()


POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
lmtp unix - - n - - lmtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class PostfixRelay:
    """A private Postfix on a free loopback port relaying everything to `relayhost_port`
    (TESTING.md §2): a real MTA between maild and the sink."""

    def __init__(self, relayhost_port: int, lmtp_port: int | None = None) -> None:
        """`lmtp_port`: deliver everything by LMTP to that port instead (Postfix in front of
        maild's listener in LMTP mode)."""
        self.dir = Path(tempfile.mkdtemp(prefix="hd-pf.", dir="/tmp"))
        self.dir.chmod(0o755)
        self.port = free_port()
        for sub in ("etc", "spool", "data"):
            (self.dir / sub).mkdir()
        shutil.chown(self.dir / "data", "postfix")
        (self.dir / "etc" / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.dir}/spool
data_directory = {self.dir}/data
maillog_file = {self.dir}/maillog
maillog_file_prefixes = {self.dir}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.test.invalid
mydestination =
local_transport = error:no local delivery
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:{relayhost_port}
smtp_tls_security_level = none
smtp_dns_support_level = disabled
""" + (f"default_transport = lmtp:inet:[127.0.0.1]:{lmtp_port}\n" if lmtp_port else ""))
        (self.dir / "etc" / "master.cf").write_text(_MASTER_CF.format(port=self.port))

    def start(self) -> None:
        done = subprocess.run([POSTFIX, "-c", str(self.dir / "etc"), "start"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"postfix did not start: {done.stdout}{done.stderr}{self.log()}")
        wait_port(self.port)

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.dir / "etc"), "stop"], capture_output=True)
        pid_file = self.dir / "spool" / "pid" / "master.pid"
        deadline = time.monotonic() + 15
        while pid_file.exists() and time.monotonic() < deadline:
            pid = pid_file.read_text().strip()
            if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""
