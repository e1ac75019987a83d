"""The executable model of the session-service family (``spec/session_service.md``).

A plain, synchronous, in-memory statement of the contract: the suite's state machine runs the
same operations against a backend and against this model and compares every result. It takes
valid input only (bad input is the requirement tests' business) and is told the things a store
chooses by itself: the time (``now``) and fresh ids.

It deliberately shares no code with the reference backends; it uses only the spec's own
executable rules (scoping, branch filter, text matching, snippets).
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agentstores.spec.errors import AlreadyExists, Conflict, NotFound
from agentstores.spec.messages import text_of
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventFilter,
    GetRequest,
    ListRequest,
    SearchOptions,
    SearchResult,
    Session,
    UpdateRequest,
    branch_matches,
    is_temp_key,
    match_text,
    snippet,
    split_state_delta,
)

__all__ = ["SessionServiceModel"]

Key = tuple[str, str, str]


@dataclass
class _Stored:
    """One session as the model keeps it."""

    agent_id: str | None
    metadata: dict[str, Any]
    created_at: int
    last_update_time: int
    state: dict[str, Any] = field(default_factory=dict)
    #: (timestamp, append sequence, event): sorting the tuples' first two gives SV-16's order.
    events: list[tuple[int, int, Event]] = field(default_factory=list)
    version: int = 0
    appended: int = 0

    def ordered(self) -> list[Event]:
        return [e for _, _, e in sorted(self.events, key=lambda t: (t[0], t[1]))]


def _in_range(timestamp: int, start: int | None, end: int | None) -> bool:
    return (start is None or start <= timestamp) and (end is None or timestamp < end)


def _page(items: list[Any], limit: int | None, offset: int) -> list[Any]:
    rest = items[offset:]
    return rest if limit is None else rest[:limit]


class SessionServiceModel:
    """Sessions, events and scoped state in dicts; every method returns fresh objects (G-7)."""

    def __init__(self) -> None:
        self.sessions: dict[Key, _Stored] = {}
        self.app_state: dict[str, dict[str, Any]] = {}
        self.user_state: dict[tuple[str, str], dict[str, Any]] = {}

    # --- helpers -------------------------------------------------------------------------

    def _merged(self, key: Key, temp: Mapping[str, Any] | None = None) -> dict[str, Any]:
        app, user, _ = key
        state: dict[str, Any] = {}
        state.update(self.app_state.get(app, {}))
        state.update(self.user_state.get((app, user), {}))
        state.update(self.sessions[key].state)
        state.update(temp or {})
        return copy.deepcopy(state)

    def _apply(self, key: Key, delta: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a delta by scope (SV-8); return its temp keys (SV-9)."""
        app, user, _ = key
        parts = split_state_delta(copy.deepcopy(dict(delta)))
        if parts.app:
            self.app_state.setdefault(app, {}).update(parts.app)
        if parts.user:
            self.user_state.setdefault((app, user), {}).update(parts.user)
        self.sessions[key].state.update(parts.session)
        return parts.temp

    def _view(
        self, key: Key, events: tuple[Event, ...], temp: Mapping[str, Any] | None = None
    ) -> Session:
        stored = self.sessions[key]
        return Session(
            id=key[2],
            app_name=key[0],
            user_id=key[1],
            agent_id=stored.agent_id,
            state=self._merged(key, temp),
            events=copy.deepcopy(events),
            last_update_time=stored.last_update_time,
            created_at=stored.created_at,
            metadata=copy.deepcopy(stored.metadata),
            version=stored.version,
        )

    def _require(self, key: Key) -> _Stored:
        stored = self.sessions.get(key)
        if stored is None:
            raise NotFound(f"no session {key!r}")
        return stored

    def _check_version(self, stored: _Stored, session: Session) -> None:
        if stored.version != session.version:
            raise Conflict("stale session", expected=session.version, actual=stored.version)

    def timestamps(self, app_name: str, user_id: str, session_id: str | None = None) -> list[int]:
        """The distinct event times of one session, or of every session of the pair, sorted
        (tests pick time bounds from them)."""
        return sorted(
            {
                timestamp
                for (app, user, sid), stored in self.sessions.items()
                if (app, user) == (app_name, user_id) and session_id in (None, sid)
                for timestamp, _, _ in stored.events
            }
        )

    # --- operations ----------------------------------------------------------------------

    def create(self, request: CreateRequest, *, now: int, session_id: str) -> Session:
        """SV-1, SV-2; ``session_id`` is the request's or the one the store chose."""
        key = (request.app_name, request.user_id, session_id)
        if key in self.sessions:
            raise AlreadyExists(f"session {key!r} exists")
        self.sessions[key] = _Stored(
            agent_id=request.agent_id,
            metadata=copy.deepcopy(dict(request.metadata)),
            created_at=now,
            last_update_time=now,
        )
        temp = self._apply(key, request.state)
        return self._view(key, (), temp)

    def get(self, request: GetRequest) -> Session | None:
        """SV-3."""
        key = (request.app_name, request.user_id, request.session_id)
        if key not in self.sessions:
            return None
        events = self.sessions[key].ordered()
        if request.num_recent_events is not None:
            n = request.num_recent_events
            events = events[max(0, len(events) - n) :] if n else []
        return self._view(key, tuple(events))

    def update(self, request: UpdateRequest, *, now: int) -> None:
        """SV-4."""
        stored = self._require((request.app_name, request.user_id, request.session_id))
        stored.metadata = copy.deepcopy(dict(request.metadata))
        stored.last_update_time = now

    def delete(self, app_name: str, user_id: str, session_id: str) -> None:
        """SV-5."""
        key = (app_name, user_id, session_id)
        self._require(key)
        del self.sessions[key]

    def list(self, request: ListRequest) -> list[Session]:
        """SV-6."""
        keys = [k for k in self.sessions if k[0] == request.app_name and k[1] == request.user_id]
        keys.sort(key=lambda k: k[2])
        keys.sort(key=lambda k: self.sessions[k].last_update_time, reverse=True)
        return [self._view(k, ()) for k in _page(keys, request.limit, request.offset)]

    def append_event(self, session: Session, event: Event, *, now: int, event_id: str) -> Session:
        """SV-12 .. SV-15; ``event_id`` is the event's or the one the store chose."""
        key = (session.app_name, session.user_id, session.id)
        stored = self._require(key)
        self._check_version(stored, session)
        if any(e.id == event_id for _, _, e in stored.events):
            raise AlreadyExists(f"event {event_id!r} exists")
        delta = dict(event.actions.state_delta)
        kept = {k: v for k, v in delta.items() if not is_temp_key(k)}
        saved = replace(
            copy.deepcopy(event),
            id=event_id,
            timestamp=now if event.timestamp is None else event.timestamp,
            actions=replace(copy.deepcopy(event.actions), state_delta=copy.deepcopy(kept)),
        )
        assert saved.timestamp is not None
        stored.events.append((saved.timestamp, stored.appended, saved))
        stored.appended += 1
        temp = self._apply(key, delta)
        stored.version += 1
        stored.last_update_time = now
        return self._view(key, (*session.events, saved), temp)

    def update_state(self, session: Session, delta: Mapping[str, Any], *, now: int) -> Session:
        """SV-11, SV-15."""
        key = (session.app_name, session.user_id, session.id)
        stored = self._require(key)
        self._check_version(stored, session)
        temp = self._apply(key, delta)
        stored.version += 1
        stored.last_update_time = now
        return self._view(key, tuple(session.events), temp)

    def get_events(
        self, app_name: str, user_id: str, session_id: str, event_filter: EventFilter | None
    ) -> builtins.list[Event]:
        """SV-16 .. SV-18."""
        stored = self._require((app_name, user_id, session_id))
        f = event_filter or EventFilter()
        selected = []
        for e in stored.ordered():
            assert e.timestamp is not None
            if f.author is not None and e.author != f.author:
                continue
            if f.agent_id is not None and e.agent_id != f.agent_id:
                continue
            if f.branch is not None and not branch_matches(f.branch, e.branch):
                continue
            if not _in_range(e.timestamp, f.start_time, f.end_time):
                continue
            selected.append(e)
        return copy.deepcopy(_page(selected, f.limit, f.offset))

    def search(self, options: SearchOptions) -> builtins.list[SearchResult]:
        """SV-19 .. SV-24."""
        results: list[SearchResult] = []
        for (app, user, session_id), stored in self.sessions.items():
            if (app, user) != (options.app_name, options.user_id):
                continue
            if options.session_id is not None and session_id != options.session_id:
                continue
            if options.agent_ids is not None and stored.agent_id not in options.agent_ids:
                continue
            for index, event in enumerate(stored.ordered()):
                message = event.content
                if message is None or event.timestamp is None or event.id is None:
                    continue
                if options.only_user and message.role != "user":
                    continue
                if options.only_assistant and message.role != "assistant":
                    continue
                if not _in_range(event.timestamp, options.start_time, options.end_time):
                    continue
                text = text_of(message)
                found = match_text(options.match_mode, options.query, text)
                if found is None:
                    continue
                results.append(
                    SearchResult(
                        session_id=session_id,
                        agent_id=stored.agent_id,
                        event_id=event.id,
                        message_index=index,
                        message=copy.deepcopy(message),
                        snippet=snippet(text, found.position),
                        relevance=found.relevance,
                        timestamp=event.timestamp,
                    )
                )
        results.sort(key=lambda r: (-r.relevance, -r.timestamp, r.session_id, -r.message_index))
        return _page(results, options.limit, options.offset)
