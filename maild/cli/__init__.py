"""The `maild` command line (SPEC §3): argument parsing, exit codes and printing.

Exit status: 0 success, 1 failure, 2 bad usage or bad input; `maild ingest` exits 75
(EX_TEMPFAIL) whenever the message could not be stored, so the MTA keeps it and retries.
Every command that prints data takes --json and then prints one JSON document on stdout, with
ISO 8601 instants (SPEC §3); the plain output is for people, with times in `sla.timezone` to the
minute and durations like `2h 15m` (SPEC §6).

One module per group of commands, each with its arguments, its handlers and what they print;
the queries live in the read models (`maild.views`, `maild.status`, `maild.sla`) and the
changes in the domain (`maild.tickets`, the stages), where the daemon shares them:

- `tickets`  `ticket list|show|new|assign|queue|priority|reply|note|close-request|close`;
- `mail`     `ingest`, `inbound list|show|retry`, `outbox list|show|retry`;
- `admin`    `init`, `run`, `check-config`, `tick`, `status`, `sla report`;
- `common`   the parser, `--at`, `--body`, JSON, columns, times for people.

Start-up is part of the interface: an operator's command and every mail through an MTA pipe
start a new process. So this package imports no ORM, templates or servers at the top: the
commands that only read use a DB-API reader (`App.reader`), and each handler imports the rest
of maild it needs when it runs — `--help` and `--version` build nothing.
`tests/test_cli.py` checks which packages each kind of command leaves unimported.
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import sys
from collections.abc import Sequence

from maild import __version__
from maild.cli.common import AddArguments, Parser
from maild.errors import ConfigError, MaildError, NotFound, UsageError

# Every command, in the order `maild --help` lists them: its help, and the group module that
# adds its arguments and runs it — imported only for the command being run.
_COMMANDS = {
    "init": ("create or upgrade the database; load queues and staff", "admin"),
    "run": ("run the daemon in the foreground", "admin"),
    "check-config": ("validate the config file", "admin"),
    "ingest": ("store and thread one message (MTA pipe)", "mail"),
    "tick": ("run every time-driven duty once", "admin"),
    "ticket": ("tickets", "tickets"),
    "sla": ("the SLA", "admin"),
    "status": ("the queues at a glance; what needs attention", "admin"),
    "inbound": ("stored inbound messages", "mail"),
    "outbox": ("outgoing mail", "mail"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given the arguments, with the arguments of only the command
    they name (the others are listed, with their help, for `maild --help`)."""
    parser = Parser(prog="maild", description="An email-first helpdesk daemon.")
    parser.add_argument("--config", help="config file (default: $MAILD_CONFIG, else "
                        "config/maild.toml)")
    parser.add_argument("--version", action="version", version=f"maild {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    wanted = None if argv is None else _command_in(argv)
    for name, (what, group) in _COMMANDS.items():
        command = commands.add_parser(name, help=what)
        if argv is None or name == wanted:
            adders: dict[str, AddArguments] = importlib.import_module(
                f"maild.cli.{group}").COMMANDS
            adders[name](command, what)
    # Every command but `init` and `check-config` needs `maild init` first (SPEC §3).
    parser.set_defaults(database=True, standalone=None)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command the arguments name: the first that is neither an option of `maild` itself
    nor the value of `--config` (which argparse lets be shortened, as `--conf`)."""
    args = iter(argv)
    for arg in args:
        if arg == "--":
            return next(args, None)
        if arg.startswith("--") and "=" not in arg and len(arg) > 2 \
                and "--config".startswith(arg):
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so that a reader gone away is noticed below
    except BrokenPipeError:
        # The reader of our output went away (`maild ticket list --json | head -1`): it had
        # all it wanted; that is no failure. Later writes (the interpreter's last flush) must
        # not fail either.
        _stdout_to_devnull()
        return 0
    return code


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        stream=sys.stderr, format="maild %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP verb
    if args.standalone is not None:  # `ingest`: its own exit codes, for the MTA
        return int(args.standalone(args))
    from maild import config
    from maild.app import App

    try:
        app = App(config.load(config.config_path(args.config)))
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    try:
        if args.database:
            problem = app.schema_problem()
            if problem is not None:
                print(f"maild: {problem}", file=sys.stderr)
                return 1
        return int(args.handler(app, args))
    except (UsageError, NotFound) as exc:
        print(f"maild: {exc}", file=sys.stderr)
        return 2
    except (MaildError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"maild: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()


def _stdout_to_devnull() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file (tests capture it): nothing will flush into a closed pipe
