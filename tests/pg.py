"""A private PostgreSQL cluster for tests (see ../shared/TESTING.md §3).

`PostgresCluster().start()` runs initdb and pg_ctl in a short /tmp folder, listening on a free
loopback port (and a unix socket in that folder), with fsync off (`durable=True`: PostgreSQL's
defaults, every commit flushed, for benchmarks); `create_database()` hands back
a SQLAlchemy URL for a fresh database; `stop()` stops the server by its own data directory and
removes the folder. As root the server runs as the `postgres` user (initdb refuses root).

A missing PostgreSQL installation is an error, not a skip: `make test` installs it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.smtp_sink import free_port

PG_BIN = Path(os.environ.get("MAILD_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresCluster:
    """One initdb'd cluster owned by a test session or module."""

    def __init__(self, bin_dir: Path = PG_BIN, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        self.durability = "" if durable else \
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        for tool in ("initdb", "pg_ctl"):
            if not (bin_dir / tool).is_file():
                raise RuntimeError(
                    f"PostgreSQL is not installed: {bin_dir / tool} is missing "
                    "(run scripts/install-test-services, or set MAILD_PG_BIN)")
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="hd-pg.", dir="/tmp"))
        self.dir.chmod(0o755)
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.started = False
        self._names = itertools.count(1)

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self.as_root else command

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(self._command(tool, *args), capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}"
                               f"{log[-2000:]}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        for attempt in range(3):  # the free port may be taken between the probe and the bind
            self.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                       f"{self.durability}-c max_connections=100")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                          "start", "-o", options)
            except RuntimeError:
                if attempt == 2:
                    raise
                time.sleep(0.2)
                continue
            self.started = True
            return

    def pause(self) -> None:
        """Shut the server down, keeping its data: a restart as an operator would do one."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "start", "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                  f"{self.durability}-c max_connections=100")

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                               dbname="postgres", autocommit=True, connect_timeout=10)

    def create_database(self) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        name = f"maild_test_{next(self._names)}"
        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self._admin() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                               .format(sql.Identifier(name)))
