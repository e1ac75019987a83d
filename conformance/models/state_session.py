"""The executable model of the state-session family (``spec/state_session.md``).

:class:`StateSessionModel` is the contract over plain dicts: what a store holds after each
call, when sessions expire, what a listing returns. It works on the results of
``state_dict()`` rather than on module objects, so the suite compares a store's behaviour with
it after collecting states itself. :class:`RecordingModule` is the state module the suite
hands to stores; the strategies at the end generate module names and states.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from agentstores.conformance.strategies import adversarial_ids, json_objects, plain_ids
from agentstores.spec.errors import InvalidArgument
from agentstores.spec.state_session import DEFAULT_USER_ID, PARAMETER_NAMES
from agentstores.spec.values import JSONObject, check_id, check_json_object

__all__ = [
    "RecordingModule",
    "StateSessionModel",
    "StoredSession",
    "check_list_arguments",
    "module_names",
    "module_states",
]


_EMPTY: Any = object()


class RecordingModule:
    """A state module for tests (ST-2, ST-4).

    ``state_dict()`` returns :attr:`state` itself (not a copy), so a test can change it after a
    save and check the store kept a snapshot (G-7). Every ``load_state_dict`` call is recorded
    in :attr:`loads`, so a test sees whether the store called it and with what.
    """

    def __init__(self, state: Any = _EMPTY) -> None:
        self.state: Any = {} if state is _EMPTY else state
        self.loads: list[Any] = []
        self.state_dict_calls = 0

    def state_dict(self) -> Any:
        """The current state, as the store must snapshot it."""
        self.state_dict_calls += 1
        return self.state

    def load_state_dict(self, state_dict: dict[str, Any], /) -> None:
        """Record the load and take the state over."""
        self.loads.append(state_dict)
        self.state = state_dict


@dataclass
class StoredSession:
    """One session of the model: the module states of its last save and its deadline."""

    states: dict[str, JSONObject]
    deadline: int | None = None


def check_list_arguments(user_id: object, after: object, limit: object) -> None:
    """The argument rules of ``list_sessions`` (ST-9, G-8); InvalidArgument if broken."""
    check_id(user_id, what="user_id")
    if after is not None:
        check_id(after, what="after")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise InvalidArgument("limit must be an int or None")
    if isinstance(limit, int) and limit < 0:
        raise InvalidArgument("limit must not be negative")


class StateSessionModel:
    """A plain in-memory statement of ST-1 .. ST-17.

    Times are passed in (``now``, ms) and TTLs per call (``ttl_ms``, the configuration of the
    store handle making the call), because in the spec the deadline belongs to the session
    while the TTL belongs to the handle.
    """

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str], StoredSession] = {}

    def _live(self, user_id: str, session_id: str, now: int) -> StoredSession | None:
        """The session if it exists and has not expired (ST-15); expired ones are erased."""
        key = (user_id, session_id)
        found = self.sessions.get(key)
        if found is not None and found.deadline is not None and found.deadline <= now:
            del self.sessions[key]
            return None
        return found

    def save(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        states: Mapping[str, Any] | None = None,
        *,
        now: int = 0,
        ttl_ms: int | None = None,
    ) -> None:
        """Replace the session's whole state (ST-3) after checking everything (ST-6)."""
        check_id(session_id, what="session_id")
        check_id(user_id, what="user_id")
        checked: dict[str, JSONObject] = {}
        for name, state in (states or {}).items():
            check_id(name, what="module name")
            checked[name] = copy.deepcopy(check_json_object(state, what=f"state of {name!r}"))
        existing = self._live(user_id, session_id, now)
        if ttl_ms is not None:
            deadline: int | None = now + ttl_ms  # ST-16: a save slides the deadline
        else:
            deadline = existing.deadline if existing is not None else None  # ST-17
        self.sessions[(user_id, session_id)] = StoredSession(checked, deadline)

    def load(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        names: Sequence[str] = (),
        *,
        now: int = 0,
        ttl_ms: int | None = None,
    ) -> dict[str, JSONObject] | None:
        """The stored states of the named modules that the session has (ST-4), in call order;
        None if the session does not exist (ST-5)."""
        check_id(session_id, what="session_id")
        check_id(user_id, what="user_id")
        for name in names:
            check_id(name, what="module name")
        found = self._live(user_id, session_id, now)
        if found is None:
            return None
        if ttl_ms is not None:
            found.deadline = now + ttl_ms  # ST-16: a load that finds the session slides it
        return {name: copy.deepcopy(found.states[name]) for name in names if name in found.states}

    def delete(self, session_id: str, user_id: str = DEFAULT_USER_ID, *, now: int = 0) -> bool:
        """Remove the session; whether it existed (ST-8)."""
        check_id(session_id, what="session_id")
        check_id(user_id, what="user_id")
        if self._live(user_id, session_id, now) is None:
            return False
        del self.sessions[(user_id, session_id)]
        return True

    def list_sessions(
        self,
        user_id: str = DEFAULT_USER_ID,
        *,
        after: str | None = None,
        limit: int | None = None,
        now: int = 0,
    ) -> list[str]:
        """The user's live session ids, ascending by code points, after ``after`` (ST-9)."""
        check_list_arguments(user_id, after, limit)
        ids = sorted(
            session
            for (user, session) in list(self.sessions)
            if user == user_id and self._live(user, session, now) is not None
        )
        if after is not None:
            ids = [session for session in ids if session > after]
        return ids if limit is None else ids[:limit]

    def users(self) -> set[str]:
        """Every user with a stored session (expired ones included until erased)."""
        return {user for (user, _session) in self.sessions}


# --- strategies ---------------------------------------------------------------------------


def module_names() -> st.SearchStrategy[str]:
    """Module names (ids, G-1): a few common ones that repeat across saves (so partial saves
    happen, ST-3) and occasional hostile ones."""
    common = st.sampled_from(["agent", "memory", "toolkit", "plan"])
    names = st.one_of(common, common, plain_ids(max_size=3), adversarial_ids())
    return names.filter(lambda name: name not in PARAMETER_NAMES)


def module_states(*, max_modules: int = 3) -> st.SearchStrategy[dict[str, JSONObject]]:
    """A save's module states: names (:func:`module_names`) to JSON objects (G-4)."""
    return st.dictionaries(module_names(), json_objects(max_size=3), max_size=max_modules)
