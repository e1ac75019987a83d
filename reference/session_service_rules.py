"""Session-service rules shared by the three reference engines (JSON file, SQLite, Redis).

The spec (``spec/session_service.md``) states the rules; this module is the one executable copy
of them that the reference stores share, so that the engines differ only in how they store and
find records:

* validation before anything is written: :func:`check_create`, :func:`check_get`,
  :func:`check_update`, :func:`check_list`, :func:`check_key`, :func:`check_handle`,
  :func:`check_event`, :func:`check_filter`, :func:`check_search` (SV-1, SV-7, SV-12, SV-18,
  SV-25, SV-27, G-3, G-5);
* the stored form of an event (:func:`stored_event`: id, timestamp, ``temp:`` keys trimmed,
  SV-12) and the JSON form of events and messages (:func:`event_to_json`,
  :func:`event_from_json`), exact for big integers and ``-0.0`` with
  :func:`agentstores.spec.values.dump_json`;
* event selection and paging (:func:`filter_events`, SV-17, SV-18) and search hits, their
  order and paging (:func:`search_hit`, :func:`page_results`, SV-19 .. SV-24).

Every function raises only :mod:`agentstores.spec.errors` types.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agentstores.spec.errors import InvalidArgument
from agentstores.spec.messages import (
    Message,
    check_message,
    message_from_json,
    message_to_json,
    text_of,
)
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    EventFilter,
    GetRequest,
    ListRequest,
    MatchMode,
    SearchOptions,
    SearchResult,
    Session,
    UpdateRequest,
    branch_matches,
    check_state_delta,
    is_temp_key,
    match_text,
    query_words,
    snippet,
)
from agentstores.spec.values import (
    JSONObject,
    check_id,
    check_json_object,
    check_limit_offset,
    check_non_negative_int,
    check_timestamp,
    dump_json,
    load_json,
)

from ._records import message_from_stored

__all__ = [
    "check_artifact_delta",
    "check_bool",
    "check_create",
    "check_event",
    "check_filter",
    "check_get",
    "check_handle",
    "check_key",
    "check_list",
    "check_search",
    "check_text",
    "check_update",
    "copy_json",
    "event_from_json",
    "event_matches",
    "event_to_json",
    "expect_type",
    "filter_events",
    "in_range",
    "new_id",
    "optional_id",
    "page",
    "page_results",
    "search_hit",
    "session_selected",
    "stored_event",
    "temp_keys",
]

_MAX_LIMIT = 2**63 - 1


def new_id() -> str:
    """A fresh session or event id: 32 hex digits (in the id domain, practically unique)."""
    return uuid.uuid4().hex


def copy_json(value: Any) -> Any:
    """A deep copy of a checked JSON value that shares nothing with the caller's (G-7)."""
    if type(value) is dict and not value:  # the common empty delta or metadata: no round trip
        return {}
    return load_json(dump_json(value))


def _copy_message(message: Message) -> Message:
    """A copy of a checked message that shares nothing with it (G-7). The JSON round trip
    of checked values gives equal checked values, so the copy is not checked again."""
    return message_from_stored(copy_json(message_to_json(message)))


# --- validation ---------------------------------------------------------------------------


def optional_id(value: object, *, what: str) -> str | None:
    return None if value is None else check_id(value, what=what)


def expect_type(value: object, kind: type, *, what: str) -> None:
    if not isinstance(value, kind):
        raise InvalidArgument(f"{what} must be a {kind.__name__}, not {type(value).__name__}")


def check_bool(value: object, *, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be a bool, not {type(value).__name__}")
    return value


def check_text(value: object, *, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} contains a lone surrogate") from None
    return value


def _mapping_object(value: object, *, what: str) -> JSONObject:
    """A JSON object from a dict or any other Mapping (records default to dicts)."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    return check_json_object(value, what=what)


def check_key(app_name: object, user_id: object, session_id: object) -> tuple[str, str, str]:
    """Validate the triple that names a session (G-1)."""
    return (
        check_id(app_name, what="app_name"),
        check_id(user_id, what="user_id"),
        check_id(session_id, what="session_id"),
    )


def check_create(request: object) -> CreateRequest:
    """A validated copy of a create request (SV-1): every dict is the store's own."""
    expect_type(request, CreateRequest, what="request")
    assert isinstance(request, CreateRequest)
    return CreateRequest(
        app_name=check_id(request.app_name, what="app_name"),
        user_id=check_id(request.user_id, what="user_id"),
        agent_id=optional_id(request.agent_id, what="agent_id"),
        metadata=copy_json(_mapping_object(request.metadata, what="metadata")),
        state=copy_json(check_state_delta(request.state, what="state")),
        session_id=optional_id(request.session_id, what="session_id"),
    )


def check_get(request: object) -> GetRequest:
    """A validated get request (SV-3)."""
    expect_type(request, GetRequest, what="request")
    assert isinstance(request, GetRequest)
    check_key(request.app_name, request.user_id, request.session_id)
    if request.num_recent_events is not None:
        check_non_negative_int(
            request.num_recent_events, what="num_recent_events", maximum=_MAX_LIMIT
        )
    return request


def check_update(request: object) -> UpdateRequest:
    """A validated copy of an update request (SV-4)."""
    expect_type(request, UpdateRequest, what="request")
    assert isinstance(request, UpdateRequest)
    check_key(request.app_name, request.user_id, request.session_id)
    metadata = copy_json(_mapping_object(request.metadata, what="metadata"))
    return UpdateRequest(request.app_name, request.user_id, request.session_id, metadata)


def check_list(request: object) -> ListRequest:
    """A validated list request (SV-6, G-8)."""
    expect_type(request, ListRequest, what="request")
    assert isinstance(request, ListRequest)
    check_id(request.app_name, what="app_name")
    check_id(request.user_id, what="user_id")
    check_non_negative_int(request.offset, what="offset", maximum=_MAX_LIMIT)
    if request.limit is not None:
        check_non_negative_int(request.limit, what="limit", maximum=_MAX_LIMIT)
    return request


def check_handle(session: object) -> Session:
    """Validate the session a write is made from (SV-13, SV-15): its triple and version."""
    expect_type(session, Session, what="session")
    assert isinstance(session, Session)
    check_key(session.app_name, session.user_id, session.id)
    check_non_negative_int(session.version, what="session version")
    if not isinstance(session.events, tuple | list):
        raise InvalidArgument("session events must be a tuple")
    return session


def check_artifact_delta(artifacts: object) -> dict[str, int]:
    """A copy of an event's ``artifact_delta`` if SV-12 accepts it: artifact names in the id
    domain, versions non-negative ints; else InvalidArgument."""
    if not isinstance(artifacts, Mapping):
        raise InvalidArgument("artifact_delta must be a mapping")
    checked: dict[str, int] = {}
    for name, version in artifacts.items():
        check_id(name, what="artifact name")
        checked[name] = check_non_negative_int(version, what=f"artifact {name!r}")
    return checked


def _check_actions(actions: object) -> EventActions:
    expect_type(actions, EventActions, what="event actions")
    assert isinstance(actions, EventActions)
    checked_artifacts = check_artifact_delta(actions.artifact_delta)
    return EventActions(
        state_delta=copy_json(check_state_delta(actions.state_delta)),
        artifact_delta=checked_artifacts,
        skip_summarization=check_bool(actions.skip_summarization, what="skip_summarization"),
        transfer_to_agent=optional_id(actions.transfer_to_agent, what="transfer_to_agent"),
        escalate=check_bool(actions.escalate, what="escalate"),
        custom_actions=copy_json(_mapping_object(actions.custom_actions, what="custom_actions")),
    )


def check_event(event: object) -> Event:
    """A validated, private copy of an event (SV-12)."""
    expect_type(event, Event, what="event")
    assert isinstance(event, Event)
    content = event.content
    if content is not None:
        content = _copy_message(check_message(content))
    tool_ids = event.long_running_tool_ids
    if not isinstance(tool_ids, tuple | list):
        raise InvalidArgument("long_running_tool_ids must be a tuple of ids")
    return Event(
        author=check_id(event.author, what="author"),
        id=optional_id(event.id, what="event id"),
        timestamp=None if event.timestamp is None else check_timestamp(event.timestamp),
        invocation_id=optional_id(event.invocation_id, what="invocation_id"),
        agent_id=optional_id(event.agent_id, what="agent_id"),
        branch=optional_id(event.branch, what="branch"),
        content=content,
        reasoning=check_text(event.reasoning, what="reasoning"),
        actions=_check_actions(event.actions),
        long_running_tool_ids=tuple(check_id(t, what="tool id") for t in tool_ids),
        metadata=copy_json(_mapping_object(event.metadata, what="event metadata")),
    )


def stored_event(event: Event, *, event_id: str, now: int) -> Event:
    """The event as stored (SV-12): id and timestamp filled, ``temp:`` keys trimmed."""
    actions = event.actions
    delta = {k: v for k, v in actions.state_delta.items() if not is_temp_key(k)}
    return Event(
        author=event.author,
        id=event_id,
        timestamp=now if event.timestamp is None else event.timestamp,
        invocation_id=event.invocation_id,
        agent_id=event.agent_id,
        branch=event.branch,
        content=event.content,
        reasoning=event.reasoning,
        actions=EventActions(
            state_delta=delta,
            artifact_delta=dict(actions.artifact_delta),
            skip_summarization=actions.skip_summarization,
            transfer_to_agent=actions.transfer_to_agent,
            escalate=actions.escalate,
            custom_actions=actions.custom_actions,
        ),
        long_running_tool_ids=event.long_running_tool_ids,
        metadata=event.metadata,
    )


def temp_keys(delta: Mapping[str, Any]) -> JSONObject:
    """The ``temp:`` keys of a delta (SV-9): shown in the returned session only."""
    return {k: v for k, v in delta.items() if is_temp_key(k)}


def check_filter(event_filter: object) -> EventFilter:
    """A validated event filter (SV-18); None means the empty filter."""
    if event_filter is None:
        return EventFilter()
    expect_type(event_filter, EventFilter, what="filter")
    assert isinstance(event_filter, EventFilter)
    optional_id(event_filter.agent_id, what="agent_id")
    optional_id(event_filter.branch, what="branch")
    optional_id(event_filter.author, what="author")
    _check_range(event_filter.start_time, event_filter.end_time)
    check_non_negative_int(event_filter.offset, what="offset", maximum=_MAX_LIMIT)
    if event_filter.limit is not None:
        check_non_negative_int(event_filter.limit, what="limit", maximum=_MAX_LIMIT)
    return event_filter


def _check_range(start: object, end: object) -> None:
    low = None if start is None else check_timestamp(start, what="start_time")
    high = None if end is None else check_timestamp(end, what="end_time")
    if low is not None and high is not None and low > high:
        raise InvalidArgument("start_time is after end_time")


def check_search(options: object) -> SearchOptions:
    """Validated search options (SV-25)."""
    expect_type(options, SearchOptions, what="search options")
    assert isinstance(options, SearchOptions)
    query = check_text(options.query, what="query")
    if not query:
        raise InvalidArgument("query must not be empty")
    if not isinstance(options.match_mode, MatchMode):
        raise InvalidArgument(f"match_mode must be a MatchMode, not {options.match_mode!r}")
    if options.match_mode is MatchMode.FUZZY and not query_words(query):
        raise InvalidArgument("a fuzzy query needs at least one word")
    check_id(options.app_name, what="app_name")
    check_id(options.user_id, what="user_id")
    optional_id(options.session_id, what="session_id")
    if options.agent_ids is not None:
        if not isinstance(options.agent_ids, tuple | list):
            raise InvalidArgument("agent_ids must be a tuple of ids or None")
        for agent_id in options.agent_ids:
            check_id(agent_id, what="agent id")
    _check_range(options.start_time, options.end_time)
    check_limit_offset(options.limit, options.offset)
    only_user = check_bool(options.only_user, what="only_user")
    only_assistant = check_bool(options.only_assistant, what="only_assistant")
    if only_user and only_assistant:
        raise InvalidArgument("only_user and only_assistant exclude each other")
    return options


# --- JSON forms ----------------------------------------------------------------------------


def _actions_to_json(actions: EventActions) -> JSONObject:
    return {
        "state_delta": dict(actions.state_delta),
        "artifact_delta": dict(actions.artifact_delta),
        "skip_summarization": actions.skip_summarization,
        "transfer_to_agent": actions.transfer_to_agent,
        "escalate": actions.escalate,
        "custom_actions": dict(actions.custom_actions),
    }


def event_to_json(event: Event) -> JSONObject:
    """The JSON form of a stored event; :func:`event_from_json` inverts it exactly."""
    return {
        "author": event.author,
        "id": event.id,
        "timestamp": event.timestamp,
        "invocation_id": event.invocation_id,
        "agent_id": event.agent_id,
        "branch": event.branch,
        "content": None if event.content is None else message_to_json(event.content),
        "reasoning": event.reasoning,
        "actions": _actions_to_json(event.actions),
        "long_running_tool_ids": list(event.long_running_tool_ids),
        "metadata": dict(event.metadata),
    }


def event_from_json(obj: Any) -> Event:
    """Rebuild an event from :func:`event_to_json` output (fresh objects, G-7)."""
    if not isinstance(obj, dict):
        raise InvalidArgument("a stored event must be a JSON object")
    try:
        actions = obj["actions"]
        content = obj["content"]
        return Event(
            author=obj["author"],
            id=obj["id"],
            timestamp=obj["timestamp"],
            invocation_id=obj["invocation_id"],
            agent_id=obj["agent_id"],
            branch=obj["branch"],
            content=None if content is None else message_from_json(content),
            reasoning=obj["reasoning"],
            actions=EventActions(
                state_delta=actions["state_delta"],
                artifact_delta=actions["artifact_delta"],
                skip_summarization=actions["skip_summarization"],
                transfer_to_agent=actions["transfer_to_agent"],
                escalate=actions["escalate"],
                custom_actions=actions["custom_actions"],
            ),
            long_running_tool_ids=tuple(obj["long_running_tool_ids"]),
            metadata=obj["metadata"],
        )
    except (KeyError, TypeError) as exc:
        raise InvalidArgument(f"malformed stored event: {exc}") from exc


# --- selection, paging, search ---------------------------------------------------------------


def page(items: Sequence[Any], limit: int | None, offset: int) -> list[Any]:
    """``items[offset:offset + limit]`` (``limit`` None: to the end)."""
    return list(items[offset:] if limit is None else items[offset : offset + limit])


def in_range(timestamp: int, start: int | None, end: int | None) -> bool:
    """The half-open time range of SV-18 and SV-19: ``start <= timestamp < end``."""
    return (start is None or timestamp >= start) and (end is None or timestamp < end)


def event_matches(event_filter: EventFilter, event: Event) -> bool:
    """Whether a stored event is selected by the filter's fields (SV-18), paging aside."""
    assert event.timestamp is not None
    return (
        (event_filter.author is None or event.author == event_filter.author)
        and (event_filter.agent_id is None or event.agent_id == event_filter.agent_id)
        and (event_filter.branch is None or branch_matches(event_filter.branch, event.branch))
        and in_range(event.timestamp, event_filter.start_time, event_filter.end_time)
    )


def filter_events(events: Iterable[Event], event_filter: EventFilter) -> list[Event]:
    """The ordered events (SV-16) the filter selects, paged (SV-17)."""
    selected = [e for e in events if event_matches(event_filter, e)]
    return page(selected, event_filter.limit, event_filter.offset)


def search_hit(
    options: SearchOptions,
    *,
    session_id: str,
    agent_id: str | None,
    message_index: int,
    event: Event,
) -> SearchResult | None:
    """The search result for one stored event, or None if it does not match (SV-19 .. SV-23).

    The caller has narrowed the sessions (scope, ``session_id``, ``agent_ids``); this checks
    the event's content, role, time and text.
    """
    message: Message | None = event.content
    if message is None or event.timestamp is None or event.id is None:
        return None
    if options.only_user and message.role != "user":
        return None
    if options.only_assistant and message.role != "assistant":
        return None
    if not in_range(event.timestamp, options.start_time, options.end_time):
        return None
    text = text_of(message)
    found = match_text(options.match_mode, options.query, text)
    if found is None:
        return None
    return SearchResult(
        session_id=session_id,
        agent_id=agent_id,
        event_id=event.id,
        message_index=message_index,
        message=message,
        snippet=snippet(text, found.position),
        relevance=found.relevance,
        timestamp=event.timestamp,
    )


def session_selected(options: SearchOptions, session_id: str, agent_id: str | None) -> bool:
    """Whether a session of the searched pair is in the search's scope (SV-19)."""
    if options.session_id is not None and session_id != options.session_id:
        return False
    return options.agent_ids is None or (agent_id is not None and agent_id in options.agent_ids)


def page_results(results: Iterable[SearchResult], options: SearchOptions) -> list[SearchResult]:
    """Order results (SV-24: relevance desc, time desc, session asc, index desc) and page them."""
    # Sort by the weakest key first; Python's sort is stable, so stronger keys win.
    ordered = sorted(results, key=lambda r: r.message_index, reverse=True)
    ordered.sort(key=lambda r: r.session_id)
    ordered.sort(key=lambda r: (r.relevance, r.timestamp), reverse=True)
    return page(ordered, options.limit, options.offset)
