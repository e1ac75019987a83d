"""The SQLite session service's short paths agree with its plain reads.

An append (and ``update_state``) takes the shared state for the session it returns from the
RETURNING clause of the version bump unless its own delta changes the app's or the user's
state, and checks the event id inside the INSERT's guard; ``get`` with ``num_recent_events``
reads the newest events by their own statement. Each must give what a full ``get`` gives
afterwards (SV-3, SV-10, SV-13, SV-16), whatever mix of shared-state writes, given, derived and
repeated ids and timestamps the operations make, and a damaged shared state must be reported
by every path (G-11).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstores.conformance.clock import ManualClock
from agentstores.conformance.markers import requirement
from agentstores.reference.sqlite.session_service import SQLiteSessionService
from agentstores.spec.errors import AlreadyExists, StorageUnavailable
from agentstores.spec.messages import Message
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    GetRequest,
    Session,
)

APP, USER = "app", "user"
_runs = itertools.count()

_KEYS = ["k", "app:k", "user:k", "temp:k", "app:j", "user:j"]
_delta = st.dictionaries(st.sampled_from(_KEYS), st.integers(0, 3), max_size=3)
_operation = st.one_of(
    st.tuples(
        st.just("append"),
        st.sampled_from([None, "given-1", "given-2", "given-3"]),  # the id, None: derived
        st.sampled_from([None, 5, 7]),  # the timestamp, None: the store's time
        _delta,
    ),
    st.tuples(st.just("state"), _delta),
    st.tuples(st.just("other"), _delta),  # another session of the pair writes shared state
    st.tuples(st.just("tick")),
)


def _without_temp(session: Session) -> Session:
    """The session as a later read gives it: no temp: keys (SV-9)."""
    state = {k: v for k, v in session.state.items() if not k.startswith("temp:")}
    return dataclasses.replace(session, state=state, events=())


async def _check(store: SQLiteSessionService, session: Session) -> None:
    full = await store.get(GetRequest(APP, USER, session.id))
    assert full is not None
    # The state, version and times the write returned are those stored (SV-10, SV-13).
    assert _without_temp(session) == dataclasses.replace(full, events=())
    for newest in (0, 1, 2, 5, 50):
        recent = await store.get(GetRequest(APP, USER, session.id, num_recent_events=newest))
        assert recent is not None
        # SV-3, SV-16: the newest n in order, the rest of the session as the full read.
        expected = full.events[-newest:] if newest else ()
        assert recent == dataclasses.replace(full, events=expected)


@requirement("SV-3", "SV-10", "SV-13", "SV-16")
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=st.lists(_operation, max_size=12))
def test_short_paths_agree_with_a_full_read(tmp_path: Path, operations: list[Any]) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        path = tmp_path / f"{next(_runs)}.sqlite3"
        async with SQLiteSessionService(path, clock=clock) as store:
            session = await store.create(CreateRequest(APP, USER, state={"app:k": 1}))
            other = await store.create(CreateRequest(APP, USER))
            await _check(store, session)
            for op in operations:
                if op[0] == "append":
                    _, event_id, timestamp, delta = op
                    event = Event(
                        author="user",
                        id=event_id,
                        timestamp=timestamp,
                        content=Message.text("user", f"text {len(session.events)}"),
                        actions=EventActions(state_delta=delta),
                    )
                    try:
                        session = await store.append_event(session, event)
                    except AlreadyExists:
                        assert event_id is not None
                        continue
                    assert session.events[-1].id is not None
                elif op[0] == "state":
                    session = await store.update_state(session, op[1])
                elif op[0] == "other":
                    other = await store.update_state(other, op[1])
                    # The session held is stale now (its shared state): read it again.
                    fresh = await store.get(GetRequest(APP, USER, session.id, num_recent_events=0))
                    assert fresh is not None
                    session = fresh
                else:
                    clock.advance(1)
                await _check(store, session)

    asyncio.run(scenario())


@requirement("SV-10")
@pytest.mark.parametrize("scope", ["sv_app_state", "sv_user_state"])
def test_damaged_shared_state_is_reported_by_every_path(tmp_path: Path, scope: str) -> None:
    """G-11: a shared state that is not JSON any more is StorageUnavailable, from the bump's
    RETURNING as from the plain reads."""

    async def scenario() -> None:
        async with SQLiteSessionService(tmp_path / "x.sqlite3") as store:
            session = await store.create(CreateRequest(APP, USER, state={"app:k": 1, "user:k": 2}))
            table = store.database.table(scope)
            await store.database.write(
                lambda conn: conn.execute(f"UPDATE {table} SET state = '{{'")
            )
            event = Event(author="user", content=Message.text("user", "hi"))
            with pytest.raises(StorageUnavailable):
                await store.append_event(session, event)
            with pytest.raises(StorageUnavailable):
                await store.update_state(session, {"k": 1})
            for newest in (None, 0, 20):
                with pytest.raises(StorageUnavailable):
                    await store.get(GetRequest(APP, USER, session.id, num_recent_events=newest))

    asyncio.run(scenario())
