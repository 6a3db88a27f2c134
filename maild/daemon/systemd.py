"""Telling systemd how `maild run` is doing: the sd_notify protocol of `Type=notify` units.

systemd hands the service a datagram socket in `$NOTIFY_SOCKET`; `READY=1` sent there says the
service is up (units ordered after it start then, and `systemctl start` returns), `STOPPING=1`
that it is stopping, `STATUS=...` is the line `systemctl status` shows (sd_notify(3)). Without
the variable (run by hand, under another supervisor) nothing is sent. Written here rather than
taken from a package: it is one datagram, and python-systemd needs libsystemd and a compiler.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("maild.daemon")


def notify(*fields: str) -> bool:
    """Send `fields` (`"READY=1"`, `"STATUS=..."`) to the service manager, if there is one.
    True when sent; a manager that cannot be reached is logged, never raised: the daemon goes
    on working whether or not anybody listens."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket (systemd uses these in containers)
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError as exc:
        log.warning("cannot tell the service manager %s: %s", ", ".join(fields), exc)
        return False
    return True
