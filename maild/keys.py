"""Secret key files: made once by `maild init` (or at first need), read again whenever they
change.

One mechanism for every key maild keeps (`web.secret_file` for the web channel's links and
forms, `mail.secret_file` for the Message-IDs maild sends, `maild.signing`): a long random key
in a file of mode 0600, created safely when several processes make it at the same moment —
instances running `maild init`, or commands that find the key missing when they first need it
(`read_key(..., create=True)`) — and re-read when the file changes, so writing a new key takes
effect at once.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

MIN_KEY_BYTES = 16
_cache: dict[str, tuple[int, bytes]] = {}  # file: (its mtime in ns, its key)


def create_key(file_name: str) -> bool:
    """Write a new random key into `file_name` when it has none; True when it did.

    Several instances on one database share the file, and their `maild init` (or the commands
    that make the key when they first need it) may run at the same moment: the key is written
    to a file of its own and linked into place, which fails when the file is there already, so
    one of them makes the key, the others keep it, and nobody reads a key half written."""
    path = Path(file_name)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, draft = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
        os.link(draft, path)
    except FileExistsError:
        return False  # another instance's init made it a moment ago: that is the key
    finally:
        os.unlink(draft)
    return True


def read_key(file_name: str, *, create: bool = False) -> bytes:
    """The key in `file_name`, read again whenever the file changes: a new key takes effect
    at once. A missing file raises (OSError) — `maild init` makes it — unless `create`: then
    this makes it, as init would (`create_key`)."""
    try:
        mtime = os.stat(file_name).st_mtime_ns  # for every mail signed: no Path built first
    except FileNotFoundError:
        if not create:
            raise
        create_key(file_name)  # or another process did, a moment ago: that is the key
        mtime = os.stat(file_name).st_mtime_ns
    cached = _cache.get(file_name)
    if cached is None or cached[0] != mtime:
        path = Path(file_name)
        key = path.read_bytes().strip()
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"{path}: the key is shorter than {MIN_KEY_BYTES} bytes")
        cached = _cache[file_name] = (mtime, key)
    return cached[1]
