"""`maild.tracked`: the writers' tickets and messages, read and written over DB-API, hold what
the ORM loads of the same rows, and exactly what changed on them is written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm.exc import UnmappedInstanceError
from sqlmodel import col, select

from maild.db import transaction
from maild.dbapi import Pool
from maild.models import Message, Ticket, TicketStatus
from maild.schema import MESSAGE, TICKET
from maild.tracked import tracking
from tests.conftest import Helpdesk, mail

LATER = datetime(2027, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


@pytest.fixture
def ticket_id(helpdesk: Helpdesk, engine: Engine) -> int:
    number = helpdesk.ingest(mail()).out.strip()
    with transaction(engine, readonly=True) as session:
        found = session.exec(select(Ticket).where(Ticket.number == number)).one()
        assert found.id is not None
        return found.id


def columns(engine: Engine, model: type[Ticket] | type[Message], row_id: int) -> dict[str, object]:
    """A row as the ORM loads it, every column."""
    with transaction(engine, readonly=True) as session:
        found = session.get(model, row_id)
        assert found is not None
        return {c.name: getattr(found, c.name) for c in model.__table__.columns}  # type: ignore[attr-defined]


def test_a_tracked_ticket_holds_what_the_orm_loads(engine: Engine, pool: Pool,
                                                   ticket_id: int) -> None:
    loaded = columns(engine, Ticket, ticket_id)
    with transaction(engine, readonly=True) as session, pool.writing() as db, \
            tracking(db) as tracker:
        tracked = tracker.get(TICKET, ticket_id)
        assert tracked is not None
        assert {name: getattr(tracked, name) for name in loaded} == loaded
        assert [type(getattr(tracked, name)) for name in loaded] == \
            [type(value) for value in loaded.values()]
        assert type(tracked).__name__ == "Ticket" and not isinstance(tracked, Ticket)
        with pytest.raises(UnmappedInstanceError):  # outside the unit of work, never in it
            session.add(tracked)
        # One object per row within the block, changes and all.
        tracked.subject = "changed in memory"
        [again] = tracker.load(TICKET, "number", [tracked.number])
        assert again is tracked and again.subject == "changed in memory"


def test_only_what_changed_is_written_when_the_block_ends(engine: Engine, pool: Pool,
                                                          ticket_id: int) -> None:
    before = columns(engine, Ticket, ticket_id)
    with pool.writing() as db, tracking(db) as tracker:
        tracked = tracker.get(TICKET, ticket_id)
        assert tracked is not None
        tracked.status = TicketStatus.WAITING
        tracked.answered_at = LATER
        tracked.breached = True
        tracked.owner = before["owner"]  # set, but to what it was
        # Another writer changes a column this block did not touch: it must survive the save.
        db.execute("UPDATE ticket SET customer_name = :name WHERE id = :id",
                   name="Written meanwhile", id=ticket_id)
    after = columns(engine, Ticket, ticket_id)
    assert after == {**before, "status": "waiting", "answered_at": LATER, "breached": True,
                     "customer_name": "Written meanwhile"}


def test_an_error_in_the_block_writes_nothing(engine: Engine, pool: Pool,
                                              ticket_id: int) -> None:
    before = columns(engine, Ticket, ticket_id)
    with pool.writing() as db:
        with pytest.raises(RuntimeError), db.savepoint(), tracking(db) as tracker:
            tracked = tracker.get(TICKET, ticket_id)
            assert tracked is not None
            tracked.subject = "never written"
            raise RuntimeError("the message failed")
        with tracking(db) as again:  # a new block reads the row as it is
            reread = again.get(TICKET, ticket_id)
            assert reread is not None and reread.subject == before["subject"]
    assert columns(engine, Ticket, ticket_id) == before


def test_an_inserted_row_is_tracked_and_its_changes_are_saved(
    engine: Engine, pool: Pool, ticket_id: int
) -> None:
    with pool.writing() as db, tracking(db) as tracker:
        message = tracker.insert(MESSAGE, {
            "ticket_id": ticket_id, "direction": "in", "kind": "customer",
            "sender": "ivan@example.org", "subject": "More", "created_at": LATER})
        assert not isinstance(message, Message) and message.id is not None
        assert tracker.get(MESSAGE, message.id) is message and tracker.inserted(MESSAGE, message.id)
        assert (message.body, message.html, message.reply_to) == ("", False, "")  # defaults
        message.kind = "staff"
        message_id = message.id
    stored = columns(engine, Message, message_id)
    assert (stored["kind"], stored["subject"], stored["created_at"]) == ("staff", "More", LATER)
    with transaction(engine, readonly=True) as session:
        kinds = list(session.exec(select(Message.kind).where(col(Message.id) == message_id)))
    assert kinds == ["staff"]


def test_what_a_block_remembers_of_a_mark_follows_its_writes_and_ends_with_it(
    pool: Pool, ticket_id: int
) -> None:
    """`undeliverable.marked` is asked once per address in a worker's message: what the block
    wrote since changes the answer, and a block rolled back takes its answers with it."""
    from maild import undeliverable
    from maild.bounces import Failure

    gone = Failure("gone@example.org", True, status="5.1.1", diagnostic="no such user")
    with pool.writing() as db:
        with db.savepoint(), tracking(db) as tracker:
            assert undeliverable.marked(tracker, "Gone@example.org") == ""
            undeliverable.mark(tracker, LATER, gone, ticket_id, None)
            assert "5.1.1" in undeliverable.marked(tracker, "gone@example.org")
        with pytest.raises(RuntimeError), db.savepoint(), tracking(db) as tracker:
            assert undeliverable.clear(tracker, "gone@example.org")
            assert undeliverable.marked(tracker, "gone@example.org") == ""
            raise RuntimeError("the message failed")
        with db.savepoint(), tracking(db) as tracker:  # the clear was rolled back
            assert "5.1.1" in undeliverable.marked(tracker, "gone@example.org")


def test_staff_mail_about_a_ticket_opened_in_the_block_follows_the_block_s_own(
    helpdesk: Helpdesk, engine: Engine, pool: Pool, ticket_id: int
) -> None:
    """A ticket opened in the block has had no staff mail before it (nothing is asked of the
    database), and a second internal mail to the same staff member answers the first."""
    from email import message_from_bytes

    from maild import config, mailkinds
    from maild.compose import Templates
    from maild.outbox import queue_mail

    settings = config.load(helpdesk.config)
    values = {**columns(engine, Ticket, ticket_id), "number": "2027010200001"}
    del values["id"]
    context = {"owner_name": "Alice", "assigned_by": "bob@example.com", "priority": "normal",
               "queue": "General questions", "excerpt": ""}
    with pool.writing() as db, tracking(db) as tracker:
        opened = tracker.insert(TICKET, values)
        sent = [queue_mail(tracker, settings, Templates(settings), LATER, mailkinds.ASSIGNED,
                           ticket=opened, to="alice@example.com", context=context)
                for _ in range(2)]
        first, second = (message_from_bytes(db.value(
            "SELECT raw FROM outbox WHERE id = :id", id=outbox_id)) for outbox_id in sent)
    root = "<maild.ticket.2027010200001@example.com>"
    assert (first["In-Reply-To"], first["References"]) == (root, root)
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"].split() == [root, first["Message-ID"]]
