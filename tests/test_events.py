"""`maild.events`: the one way an event row is made, for the ORM's writers and DB-API's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from maild.events import EVENT_COLUMNS, event_values
from maild.models import Event
from maild.states import EventType


def test_the_columns_written_over_db_api_are_the_model_s() -> None:
    table = Event.__table__  # type: ignore[attr-defined]
    assert set(EVENT_COLUMNS) == {c.name for c in table.columns if not c.primary_key}


def test_an_event_has_a_known_type_and_a_bounded_detail() -> None:
    at = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    values = event_values(7, at, EventType.DELIVERY_FAILED, "system", "x" * 5000)
    assert tuple(values) == EVENT_COLUMNS
    assert values["type"] == "delivery_failed" and len(values["detail"]) == 2000
    with pytest.raises(ValueError):
        event_values(7, at, "no_such_type", "system", "")  # type: ignore[arg-type]
