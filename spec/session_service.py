"""The session-service family (seed 002, aster's Go ``session.Service``, modelled on Google ADK).

Requirement IDs ``SV-n`` refer to ``session_service.md`` beside this module, which is the
contract; this module is its typed form, plus the executable form of the rules that are easy to
get subtly wrong: state scoping by key prefix (SV-7 .. SV-9), branch filters (SV-18) and the
text matching, relevance and snippets of history search (SV-22, SV-23). Backends may call these
functions; the kit's model does.

A session belongs to one ``(app_name, user_id)`` pair and is named by ``session_id`` within it.
It holds an append-only list of events and a state whose keys are scoped by prefix: ``app:``
keys are shared by every session of the app, ``user:`` keys by every session of the
(app, user) pair, ``temp:`` keys live only for the call that sets them, every other key is the
session's own. Writes made from a :class:`Session` (``append_event``, ``update_state``) are
checked against the session's ``version``: a write made from a stale read is a ``Conflict``.

The LLM-driven parts of the seed (``Summarizer``, ``FindSimilarMessages``) are consumers of the
store, not part of it, and are left out.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

from .errors import InvalidArgument
from .messages import Message
from .values import JSONObject, check_id, check_json_value

__all__ = [
    "APP_PREFIX",
    "FUZZY_THRESHOLD",
    "SEARCH_DEFAULT_LIMIT",
    "SESSION_PREFIX",
    "SNIPPET_LEAD",
    "SNIPPET_LENGTH",
    "STATE_PREFIXES",
    "TEMP_PREFIX",
    "USER_PREFIX",
    "CreateRequest",
    "Event",
    "EventActions",
    "EventFilter",
    "GetRequest",
    "ListRequest",
    "MatchMode",
    "ScopedDelta",
    "SearchOptions",
    "SearchResult",
    "Session",
    "SessionService",
    "StateScope",
    "TextMatch",
    "UpdateRequest",
    "branch_matches",
    "check_state_delta",
    "check_state_key",
    "fold_case",
    "is_app_key",
    "is_session_key",
    "is_temp_key",
    "is_user_key",
    "match_text",
    "query_words",
    "snippet",
    "split_state_delta",
    "state_scope",
]

#: SV-8: keys shared by every session of an app.
APP_PREFIX = "app:"
#: SV-8: keys shared by every session of one (app, user) pair.
USER_PREFIX = "user:"
#: SV-9: keys that live only for the call that sets them.
TEMP_PREFIX = "temp:"
#: SV-8: an explicit prefix for the session's own keys (unprefixed keys are the session's too).
SESSION_PREFIX = "session:"
#: The four prefixes; a key that is exactly one of them is malformed (SV-7).
STATE_PREFIXES = (APP_PREFIX, USER_PREFIX, TEMP_PREFIX, SESSION_PREFIX)

#: SV-24: the page size of a search that names none.
SEARCH_DEFAULT_LIMIT = 20
#: SV-23: a snippet has at most this many code points.
SNIPPET_LENGTH = 150
#: SV-23: how many code points of context a snippet keeps before the match.
SNIPPET_LEAD = 50
#: SV-22: a fuzzy match needs a share of query words strictly above this.
FUZZY_THRESHOLD = 0.3


class StateScope(StrEnum):
    """Where a state key lives, decided by its prefix (SV-8, SV-9)."""

    APP = "app"
    USER = "user"
    TEMP = "temp"
    SESSION = "session"


class MatchMode(StrEnum):
    """How a search query matches an event's text (SV-22)."""

    EXACT = "exact"
    """The query is a case-sensitive substring of the text."""
    CONTAINS = "contains"
    """The query is a substring of the text, both case-folded by :func:`fold_case`."""
    FUZZY = "fuzzy"
    """More than :data:`FUZZY_THRESHOLD` of the query's distinct words occur in the text."""


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRequest:
    """What :meth:`SessionService.create` makes (SV-1, SV-2).

    Attributes:
        app_name: the application (an id, G-1).
        user_id: the user (an id).
        agent_id: the agent the session belongs to, or None.
        metadata: free JSON metadata of the session (G-4).
        state: an initial state delta, scoped like any other (SV-8, SV-9).
        session_id: the id to use, or None for a fresh one chosen by the store.
    """

    app_name: str
    user_id: str
    agent_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    state: Mapping[str, Any] = field(default_factory=dict)
    session_id: str | None = None


@dataclass(frozen=True)
class GetRequest:
    """Which session :meth:`SessionService.get` reads, and how many of its events (SV-3).

    ``num_recent_events``: None for every event, else the newest that many (0 for none).
    """

    app_name: str
    user_id: str
    session_id: str
    num_recent_events: int | None = None


@dataclass(frozen=True)
class UpdateRequest:
    """Replace a session's metadata (SV-4)."""

    app_name: str
    user_id: str
    session_id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ListRequest:
    """A page of one (app, user) pair's sessions, newest update first (SV-6).

    ``limit``: None for all, else at most that many (0 gives none); ``offset`` skips.
    """

    app_name: str
    user_id: str
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class EventActions:
    """What an event asks of the runtime (SV-12); only ``state_delta`` acts on the store.

    Attributes:
        state_delta: state keys to set, scoped by prefix (SV-8); applied with the event (SV-14).
        artifact_delta: artifact file name to its new version (a non-negative int).
        skip_summarization: the event should not be summarised.
        transfer_to_agent: the agent to hand over to, or None.
        escalate: hand the turn back to the parent agent.
        custom_actions: free JSON.
    """

    state_delta: Mapping[str, Any] = field(default_factory=dict)
    artifact_delta: Mapping[str, int] = field(default_factory=dict)
    skip_summarization: bool = False
    transfer_to_agent: str | None = None
    escalate: bool = False
    custom_actions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One interaction in a session (SV-12).

    Attributes:
        author: who produced it (``"user"``, an agent's name...); an id.
        id: unique within the session; None lets the store choose one.
        timestamp: ms since the epoch; None lets the store stamp its clock's time.
        invocation_id: the invocation that produced it, or None.
        agent_id: the agent that produced it, or None.
        branch: the multi-agent branch, dot-separated (``"root.child.grandchild"``), or None.
        content: the message, in the shared model (G-12), or None.
        reasoning: the model's reasoning text, if any.
        actions: see :class:`EventActions`.
        long_running_tool_ids: ids of tool calls still running.
        metadata: free JSON metadata.
    """

    author: str
    id: str | None = None
    timestamp: int | None = None
    invocation_id: str | None = None
    agent_id: str | None = None
    branch: str | None = None
    content: Message | None = None
    reasoning: str = ""
    actions: EventActions = field(default_factory=EventActions)
    long_running_tool_ids: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Session:
    """A session as read from the store (SV-1, SV-3, SV-10).

    Attributes:
        id: the session id, unique within (app_name, user_id).
        app_name: the application.
        user_id: the user.
        agent_id: the agent, or None.
        state: the merged view: the session's own keys, the pair's ``user:`` keys and the app's
            ``app:`` keys, as stored when read (plus the ``temp:`` keys of the call that
            returned it, SV-9).
        events: the events read, in order (SV-16); which ones depends on the call.
        last_update_time: ms since the epoch of the last write to the session (store clock).
        created_at: ms since the epoch of its creation (store clock).
        metadata: the session's metadata.
        version: how many event and state writes the session has had (SV-15); a write made
            from this object is accepted only if the stored version is still this one.
    """

    id: str
    app_name: str
    user_id: str
    agent_id: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    last_update_time: int = 0
    created_at: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0


@dataclass(frozen=True)
class EventFilter:
    """Which events :meth:`SessionService.get_events` returns (SV-17, SV-18).

    Every given field narrows the selection (they are AND-ed): ``author`` and ``agent_id`` by
    equality, ``branch`` by :func:`branch_matches`, ``start_time <= timestamp < end_time``.
    ``offset`` and ``limit`` (None for all) page the ordered selection.
    """

    agent_id: str | None = None
    branch: str | None = None
    author: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class SearchOptions:
    """A history search within one (app, user) pair's sessions (SV-19 .. SV-24).

    Attributes:
        query: what to look for (non-empty).
        app_name: the application searched.
        user_id: the user whose sessions are searched.
        session_id: only this session, or None for every session of the pair.
        agent_ids: only sessions whose agent is one of these, or None for any.
        start_time: only events with ``timestamp >= start_time``, or None.
        end_time: only events with ``timestamp < end_time``, or None.
        limit: the page size (0 gives none).
        offset: how many results to skip.
        match_mode: see :class:`MatchMode`.
        only_user: only messages whose role is ``"user"``.
        only_assistant: only messages whose role is ``"assistant"``.
    """

    query: str
    app_name: str
    user_id: str
    session_id: str | None = None
    agent_ids: tuple[str, ...] | None = None
    start_time: int | None = None
    end_time: int | None = None
    limit: int = SEARCH_DEFAULT_LIMIT
    offset: int = 0
    match_mode: MatchMode = MatchMode.CONTAINS
    only_user: bool = False
    only_assistant: bool = False


@dataclass(frozen=True)
class SearchResult:
    """One matching event (SV-21).

    Attributes:
        session_id: the session of the event.
        agent_id: that session's agent, or None.
        event_id: the event's id.
        message_index: the event's position (from 0) among all its session's events (SV-16).
        message: the event's content.
        snippet: see :func:`snippet` (SV-23).
        relevance: see :func:`match_text` (SV-22).
        timestamp: the event's timestamp.
    """

    session_id: str
    agent_id: str | None
    event_id: str
    message_index: int
    message: Message
    snippet: str
    relevance: float
    timestamp: int


# --- state scoping (SV-7 .. SV-9) -----------------------------------------------------------


def is_app_key(key: str) -> bool:
    """Whether ``key`` is an app-scoped key (``app:...``)."""
    return key.startswith(APP_PREFIX)


def is_user_key(key: str) -> bool:
    """Whether ``key`` is a user-scoped key (``user:...``)."""
    return key.startswith(USER_PREFIX)


def is_temp_key(key: str) -> bool:
    """Whether ``key`` is a temporary key (``temp:...``), never stored."""
    return key.startswith(TEMP_PREFIX)


def is_session_key(key: str) -> bool:
    """Whether ``key`` is the session's own: ``session:...`` or no recognised prefix."""
    return state_scope(key) is StateScope.SESSION


def state_scope(key: str) -> StateScope:
    """The scope of a (valid) state key: by its prefix, case-sensitively, at the start only."""
    if key.startswith(APP_PREFIX):
        return StateScope.APP
    if key.startswith(USER_PREFIX):
        return StateScope.USER
    if key.startswith(TEMP_PREFIX):
        return StateScope.TEMP
    return StateScope.SESSION


def check_state_key(key: object) -> str:
    """Return ``key`` if it is a valid state key (SV-7), else raise InvalidArgument.

    A state key is an id (G-1: a str of 1 to 256 code points, no NUL, no lone surrogate) that
    is not exactly one of the prefixes (a bare ``"app:"`` names nothing).
    """
    check_id(key, what="state key")
    assert isinstance(key, str)
    if key in STATE_PREFIXES:
        raise InvalidArgument(f"state key {key!r} is a bare prefix")
    return key


def check_state_delta(delta: object, *, what: str = "state delta") -> JSONObject:
    """Return ``delta`` if it maps valid state keys to JSON values (SV-7, G-4), else raise."""
    if not isinstance(delta, Mapping):
        raise InvalidArgument(f"{what} must be a mapping, not {type(delta).__name__}")
    for key, value in delta.items():
        check_state_key(key)
        check_json_value(value, what=f"{what}[{key!r}]")
    return dict(delta)


class ScopedDelta(NamedTuple):
    """A state delta split by scope (:func:`split_state_delta`); keys keep their prefixes."""

    app: JSONObject
    user: JSONObject
    session: JSONObject
    temp: JSONObject


def split_state_delta(delta: Mapping[str, Any]) -> ScopedDelta:
    """Split a (checked) delta by scope; keys keep their prefixes (SV-8)."""
    parts: dict[StateScope, JSONObject] = {scope: {} for scope in StateScope}
    for key, value in delta.items():
        parts[state_scope(key)][key] = value
    return ScopedDelta(
        parts[StateScope.APP],
        parts[StateScope.USER],
        parts[StateScope.SESSION],
        parts[StateScope.TEMP],
    )


# --- event filters (SV-18) -------------------------------------------------------------------


def branch_matches(wanted: str, branch: str | None) -> bool:
    """Whether an event on ``branch`` is selected by a branch filter ``wanted`` (SV-18).

    The branch itself and its descendants match: ``"a.b"`` selects ``"a.b"`` and ``"a.b.c"``,
    not ``"a"``, ``"a.bc"`` or an event without a branch.
    """
    return branch is not None and (branch == wanted or branch.startswith(wanted + "."))


# --- search (SV-22, SV-23) -------------------------------------------------------------------


class TextMatch(NamedTuple):
    """How a text matched a query: its relevance and where the match starts (a code point)."""

    relevance: float
    position: int


def fold_case(text: str) -> str:
    """``text`` with each code point lower-cased where that gives exactly one code point.

    This is the case folding of ``contains`` and ``fuzzy`` (SV-22). It keeps every position,
    so a match found in the folded text is at the same index in the original (``"İ"``, whose
    lower case is two code points, is kept as is).
    """
    out = []
    for ch in text:
        low = ch.lower()
        out.append(low if len(low) == 1 else ch)
    return "".join(out)


def query_words(query: str) -> list[str]:
    """The distinct words of a fuzzy query: folded, split on white space, first occurrence first."""
    seen: dict[str, None] = {}
    for word in fold_case(query).split():
        seen.setdefault(word, None)
    return list(seen)


def match_text(mode: MatchMode, query: str, text: str) -> TextMatch | None:
    """Whether ``text`` matches ``query`` under ``mode`` (SV-22); None if it does not.

    * ``exact``: ``query in text``; relevance 1.0; position of the first occurrence.
    * ``contains``: the same on :func:`fold_case` of both.
    * ``fuzzy``: the share of the query's distinct words (:func:`query_words`) that occur in
      the folded text as substrings; a match when the share is above :data:`FUZZY_THRESHOLD`;
      relevance = the share (matched / total, a float); position of the earliest occurrence
      of any matched word.
    """
    if mode is MatchMode.EXACT:
        position = text.find(query)
        return None if position < 0 else TextMatch(1.0, position)
    folded = fold_case(text)
    if mode is MatchMode.CONTAINS:
        position = folded.find(fold_case(query))
        return None if position < 0 else TextMatch(1.0, position)
    words = query_words(query)
    if not words:
        return None
    positions = [p for p in (folded.find(word) for word in words) if p >= 0]
    share = len(positions) / len(words)
    if share <= FUZZY_THRESHOLD:
        return None
    return TextMatch(share, min(positions))


def snippet(text: str, position: int) -> str:
    """The snippet of a result whose match starts at ``position`` (SV-23).

    The whole text if it has at most :data:`SNIPPET_LENGTH` code points; otherwise the
    :data:`SNIPPET_LENGTH` code points starting :data:`SNIPPET_LEAD` before the match, moved
    right to start at 0 or left to end at the text's end where needed.
    """
    if len(text) <= SNIPPET_LENGTH:
        return text
    start = min(max(0, position - SNIPPET_LEAD), len(text) - SNIPPET_LENGTH)
    return text[start : start + SNIPPET_LENGTH]


# --- the service -----------------------------------------------------------------------------


@runtime_checkable
class SessionService(Protocol):
    """Sessions of (app, user) with append-only events and scoped state (SV-1 .. SV-29)."""

    async def create(self, request: CreateRequest) -> Session:
        """Create a session and apply its initial state (SV-1, SV-2).

        Returns the new session (no events, version 0, merged state). Raises AlreadyExists if
        ``session_id`` is taken within the (app, user) pair, InvalidArgument for bad input.
        """
        ...

    async def get(self, request: GetRequest) -> Session | None:
        """The session with its merged state and events, or None (SV-3, SV-10)."""
        ...

    async def update(self, request: UpdateRequest) -> None:
        """Replace the session's metadata (SV-4). Raises NotFound for a missing session."""
        ...

    async def delete(self, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session, its events and its own state (SV-5). NotFound if missing."""
        ...

    async def list(self, request: ListRequest) -> list[Session]:
        """The pair's sessions without events, newest update first, paged (SV-6)."""
        ...

    async def append_event(self, session: Session, event: Event) -> Session:
        """Append ``event`` and apply its state delta, atomically (SV-12 .. SV-15).

        ``session`` is a session read from the store; its ``app_name``, ``user_id``, ``id``
        and ``version`` are used. Returns the session after the write: ``session.events`` plus
        the stored event, the new version and update time, the merged state with this event's
        ``temp:`` keys. Raises Conflict if the stored version differs from ``session.version``
        (nothing written), NotFound for a missing session, AlreadyExists for a duplicate event
        id, InvalidArgument for bad input.
        """
        ...

    async def get_events(
        self, app_name: str, user_id: str, session_id: str, filter: EventFilter | None = None
    ) -> builtins.list[Event]:
        """The session's events selected by ``filter``, in order (SV-16 .. SV-18).

        Raises NotFound for a missing session.
        """
        ...

    async def update_state(self, session: Session, delta: Mapping[str, Any]) -> Session:
        """Apply a state delta without an event, checked like an append (SV-11, SV-15).

        Returns the session after the write (its events are ``session.events``).
        """
        ...

    async def search(self, options: SearchOptions) -> builtins.list[SearchResult]:
        """Matching events of the pair's sessions, most relevant first (SV-19 .. SV-24)."""
        ...

    async def close(self) -> None:
        """Release the store's resources; idempotent (G-16)."""
        ...
