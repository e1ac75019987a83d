"""The executable model of the session-store family: ``spec/session_store.md`` as plain Python.

:class:`SessionStoreModel` is synchronous and keeps everything in dicts. It is written to be
read next to the spec: each method names the requirements it implements, validates every
argument before it changes anything (so a bad argument raises ``InvalidArgument`` with nothing
written, SS-15), and copies records on the way in and out (G-7). It shares no code with the
reference backends: the suite compares them with this model, so a bug in their shared rules
cannot hide behind the same bug here.

Session ids come from ``id_source`` (by default the references' ``YYYYMMDD_N`` form, SS-4).
The state machine passes the ids its backend assigned, so that orders that break ties by id
(SS-6, SS-22) compare exactly; it checks the ids' freshness itself.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from agentstores.spec.errors import InvalidArgument, NotFound
from agentstores.spec.messages import Message, check_message, message_from_json, message_to_json
from agentstores.spec.session_store import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    SEARCH_DEFAULT_LIMIT,
    ChatHistoryMatch,
    Session,
    SessionInsights,
    SessionType,
    TokenStatsUpdate,
)
from agentstores.spec.values import (
    MAX_U64,
    Clock,
    check_id,
    check_json_object,
    check_json_value,
    check_non_negative_int,
    check_timestamp,
    dump_json,
)

__all__ = ["COUNTERS", "EXPORT_SESSION_KEYS", "SessionStoreModel", "reference_id"]

T = TypeVar("T")

#: SS-1: the six optional token counters.
COUNTERS = (
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "accumulated_total_tokens",
    "accumulated_input_tokens",
    "accumulated_output_tokens",
)

#: SS-17: the keys of an export's ``session`` object, written out as the spec lists them.
EXPORT_SESSION_KEYS = (
    "id",
    "working_dir",
    "name",
    "session_type",
    "user_set_name",
    "created_at",
    "updated_at",
    "extension_data",
    *COUNTERS,
    "schedule_id",
    "recipe",
    "user_recipe_values",
    "provider_name",
    "model_config",
)


def _copy(value: T) -> T:
    return copy.deepcopy(value)


def reference_id(now: int, number: int) -> str:
    """SS-4's reference form: the UTC date of ``now`` as ``YYYYMMDD``, ``_``, ``number``."""
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    try:
        day = (epoch + datetime.timedelta(milliseconds=now)).strftime("%Y%m%d")
    except OverflowError:  # past year 9999: any unique form will do for the model
        day = f"d{now // 86_400_000}"
    return f"{day}_{number}"


# --- argument checks (SS-2, SS-15) -----------------------------------------------------------


def _text(value: object, what: str, *, non_empty: bool = False) -> str:
    """SS-2: a str without NUL or lone surrogates."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str")
    if non_empty and value == "":
        raise InvalidArgument(f"{what} must not be empty")
    if "\x00" in value:
        raise InvalidArgument(f"{what} contains NUL")
    check_json_value(value, what=what)
    return value


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be a bool")
    return value


def _type(value: object) -> SessionType:
    if not isinstance(value, SessionType):
        raise InvalidArgument("session types are SessionType members")
    return value


def _counter(value: object, what: str) -> None:
    if value is not None:
        check_non_negative_int(value, what=what, maximum=MAX_U64)


def _optional_object(value: object, what: str) -> None:
    if value is not None:
        check_json_object(value, what=what)


def _recipe_values(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise InvalidArgument("user_recipe_values must be a mapping")
    for key, item in value.items():
        _text(key, "user_recipe_values key")
        _text(item, "user_recipe_values value")


def _messages(messages: object) -> list[Message]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidArgument("a conversation is a sequence of messages")
    return [check_message(m) for m in messages]


def _message_text(message: Message) -> str:
    """SS-20: the texts of the ``"text"`` parts, joined by newlines."""
    return "\n".join(part["text"] for part in message.content if part["type"] == "text")


@dataclass
class _Stored:
    """One session as the model keeps it: the record (conversation-less) and the messages."""

    session: Session
    messages: list[Message] = field(default_factory=list)


class SessionStoreModel:
    """An in-memory session store that follows ``spec/session_store.md`` to the letter.

    Args:
        clock: the clock of every stamp (G-6).
        id_source: gives the id of each new session (default: ``YYYYMMDD_N``, SS-4).
    """

    def __init__(self, clock: Clock, id_source: Callable[[], str] | None = None) -> None:
        self.clock = clock
        self.id_source = id_source if id_source is not None else self._reference_id
        self._sessions: dict[str, _Stored] = {}
        self._per_day: dict[str, int] = {}

    def _reference_id(self) -> str:
        now = self.clock()
        probe = reference_id(now, 0)
        day = probe[: probe.rindex("_")]
        self._per_day[day] = self._per_day.get(day, 0) + 1
        return reference_id(now, self._per_day[day])

    def _stored(self, session_id: str) -> _Stored:
        if session_id not in self._sessions:
            raise NotFound(f"no session {session_id!r}")
        return self._sessions[session_id]

    def _view(self, stored: _Stored, *, with_messages: bool) -> Session:
        conversation = tuple(_copy(stored.messages)) if with_messages else None
        return replace(
            _copy(stored.session), message_count=len(stored.messages), conversation=conversation
        )

    def _add(self, session: Session, messages: list[Message]) -> Session:
        self._sessions[session.id] = _Stored(session, _copy(messages))
        return self._view(self._sessions[session.id], with_messages=False)

    def _change(self, session_id: str, **fields: Any) -> None:
        """SS-14: set ``fields`` and ``updated_at = now``."""
        stored = self._stored(session_id)
        stored.session = replace(stored.session, **_copy(fields), updated_at=self.clock())

    # --- sessions (SS-3 .. SS-7, SS-16) -------------------------------------------------------

    def create_session(
        self, working_dir: str, name: str, session_type: SessionType = SessionType.USER
    ) -> Session:
        """SS-3, SS-4."""
        _text(working_dir, "working_dir", non_empty=True)
        _text(name, "name")
        _type(session_type)
        now = self.clock()
        session = Session(
            id=self.id_source(),
            working_dir=working_dir,
            name=name,
            created_at=now,
            updated_at=now,
            session_type=session_type,
        )
        return self._add(session, [])

    def get_session(self, session_id: str, include_messages: bool = False) -> Session:
        """SS-5."""
        check_id(session_id, what="session id")
        _bool(include_messages, "include_messages")
        return self._view(self._stored(session_id), with_messages=include_messages)

    def list_sessions(self) -> list[Session]:
        """SS-6: user and scheduled sessions."""
        return self.list_sessions_by_types([SessionType.USER, SessionType.SCHEDULED])

    def list_sessions_by_types(self, types: Sequence[SessionType]) -> list[Session]:
        """SS-6: updated_at descending, then id ascending; no conversations."""
        if isinstance(types, str | bytes) or not isinstance(types, Sequence):
            raise InvalidArgument("types must be a sequence")
        wanted = {_type(t) for t in types}
        chosen = [s for s in self._sessions.values() if s.session.session_type in wanted]
        chosen.sort(key=lambda s: (-s.session.updated_at, s.session.id))
        return [self._view(s, with_messages=False) for s in chosen]

    def delete_session(self, session_id: str) -> None:
        """SS-7."""
        check_id(session_id, what="session id")
        self._stored(session_id)
        del self._sessions[session_id]

    def get_insights(self) -> SessionInsights:
        """SS-16."""
        total = 0
        for stored in self._sessions.values():
            s = stored.session
            if s.accumulated_total_tokens is not None:
                total += s.accumulated_total_tokens
            elif s.total_tokens is not None:
                total += s.total_tokens
        return SessionInsights(total_sessions=len(self._sessions), total_tokens=total)

    # --- conversation (SS-8 .. SS-10) -------------------------------------------------------

    def add_message(self, session_id: str, message: Message) -> None:
        """SS-8."""
        check_id(session_id, what="session id")
        check_message(message)
        stored = self._stored(session_id)
        stored.messages.append(_copy(message))
        self._change(session_id)

    def replace_conversation(self, session_id: str, conversation: Sequence[Message]) -> None:
        """SS-9."""
        check_id(session_id, what="session id")
        messages = _messages(conversation)
        self._stored(session_id).messages = _copy(messages)
        self._change(session_id)

    def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        """SS-10: drop messages with created_at >= timestamp; keep undated ones."""
        check_id(session_id, what="session id")
        check_timestamp(timestamp, what="timestamp")
        stored = self._stored(session_id)
        stored.messages = [
            m for m in stored.messages if m.created_at is None or m.created_at < timestamp
        ]
        self._change(session_id)

    # --- updates (SS-11 .. SS-13) -----------------------------------------------------------

    def update_session_name(self, session_id: str, name: str, user_set: bool) -> None:
        """SS-11."""
        check_id(session_id, what="session id")
        _text(name, "name")
        _bool(user_set, "user_set")
        self._stored(session_id)
        self._change(session_id, name=name, user_set_name=user_set)

    def update_extension_data(self, session_id: str, extension_data: Mapping[str, Any]) -> None:
        """SS-11: replaced whole."""
        check_id(session_id, what="session id")
        check_json_object(extension_data, what="extension_data")
        self._stored(session_id)
        self._change(session_id, extension_data=dict(extension_data))

    def update_token_stats(self, session_id: str, stats: TokenStatsUpdate) -> None:
        """SS-12: only the fields that are not None."""
        check_id(session_id, what="session id")
        if not isinstance(stats, TokenStatsUpdate):
            raise InvalidArgument("stats must be a TokenStatsUpdate")
        if stats.schedule_id is not None:
            check_id(stats.schedule_id, what="schedule_id")
        for name in COUNTERS:
            _counter(getattr(stats, name), name)
        self._stored(session_id)
        given = {
            name: getattr(stats, name)
            for name in ("schedule_id", *COUNTERS)
            if getattr(stats, name) is not None
        }
        self._change(session_id, **given)

    def update_provider_config(
        self,
        session_id: str,
        provider_name: str | None,
        model_config: Mapping[str, Any] | None,
    ) -> None:
        """SS-13."""
        check_id(session_id, what="session id")
        if provider_name is not None:
            _text(provider_name, "provider_name")
        _optional_object(model_config, "model_config")
        self._stored(session_id)
        given: dict[str, Any] = {}
        if provider_name is not None:
            given["provider_name"] = provider_name
        if model_config is not None:
            given["model_config"] = dict(model_config)
        self._change(session_id, **given)

    def update_recipe(
        self,
        session_id: str,
        recipe: Mapping[str, Any] | None,
        user_recipe_values: Mapping[str, str] | None,
    ) -> None:
        """SS-13."""
        check_id(session_id, what="session id")
        _optional_object(recipe, "recipe")
        _recipe_values(user_recipe_values)
        self._stored(session_id)
        given: dict[str, Any] = {}
        if recipe is not None:
            given["recipe"] = dict(recipe)
        if user_recipe_values is not None:
            given["user_recipe_values"] = dict(user_recipe_values)
        self._change(session_id, **given)

    # --- export, import, copy (SS-17 .. SS-19) --------------------------------------------

    def export_session(self, session_id: str) -> str:
        """SS-17."""
        check_id(session_id, what="session id")
        stored = self._stored(session_id)
        s = stored.session
        session: dict[str, Any] = {key: getattr(s, key) for key in EXPORT_SESSION_KEYS}
        session["session_type"] = s.session_type.value
        for key in ("extension_data", "recipe", "user_recipe_values", "model_config"):
            if session[key] is not None:
                session[key] = dict(session[key])
        document = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "session": session,
            "conversation": [message_to_json(m) for m in stored.messages],
        }
        return dump_json(document)

    def import_session(self, document: str) -> Session:
        """SS-18: every field but id and times, the whole conversation; strictly checked."""
        session, messages = self._parse(document)
        now = self.clock()
        created = replace(session, id=self.id_source(), created_at=now, updated_at=now)
        return self._add(created, messages)

    @staticmethod
    def _parse(document: object) -> tuple[Session, list[Message]]:
        if not isinstance(document, str):
            raise InvalidArgument("a document is a str")

        def no_constants(name: str) -> Any:
            raise InvalidArgument(f"{name} is not JSON")

        try:
            data = json.loads(document, parse_constant=no_constants)
        except (ValueError, RecursionError) as error:
            raise InvalidArgument(f"not JSON: {error}") from None
        if not isinstance(data, dict) or set(data) != {
            "format",
            "version",
            "session",
            "conversation",
        }:
            raise InvalidArgument("not an export document")
        version = data["version"]
        if data["format"] != EXPORT_FORMAT or type(version) is not int or version != 1:
            raise InvalidArgument("another format or version")
        fields = data["session"]
        if not isinstance(fields, dict) or set(fields) != set(EXPORT_SESSION_KEYS):
            raise InvalidArgument("the session object must have exactly the SS-17 keys")
        if not isinstance(data["conversation"], list):
            raise InvalidArgument("conversation must be a list")
        messages = [message_from_json(m) for m in data["conversation"]]
        check_id(fields["id"], what="id")
        check_timestamp(fields["created_at"], what="created_at")
        check_timestamp(fields["updated_at"], what="updated_at")
        _text(fields["working_dir"], "working_dir", non_empty=True)
        _text(fields["name"], "name")
        if fields["session_type"] not in [t.value for t in SessionType]:
            raise InvalidArgument("unknown session_type")
        _bool(fields["user_set_name"], "user_set_name")
        check_json_object(fields["extension_data"], what="extension_data")
        for name in COUNTERS:
            _counter(fields[name], name)
        if fields["schedule_id"] is not None:
            check_id(fields["schedule_id"], what="schedule_id")
        _optional_object(fields["recipe"], "recipe")
        _recipe_values(fields["user_recipe_values"])
        if fields["provider_name"] is not None:
            _text(fields["provider_name"], "provider_name")
        _optional_object(fields["model_config"], "model_config")
        values = {key: fields[key] for key in EXPORT_SESSION_KEYS}
        values["session_type"] = SessionType(fields["session_type"])
        return Session(**values), messages

    def copy_session(self, session_id: str, new_name: str) -> Session:
        """SS-19: not the tokens, the provider or the model config."""
        check_id(session_id, what="session id")
        _text(new_name, "new_name")
        source = self._stored(session_id)
        s = source.session
        now = self.clock()
        copied = Session(
            id=self.id_source(),
            working_dir=s.working_dir,
            name=new_name,
            created_at=now,
            updated_at=now,
            session_type=s.session_type,
            user_set_name=True,
            extension_data=_copy(s.extension_data),
            schedule_id=s.schedule_id,
            recipe=_copy(s.recipe),
            user_recipe_values=_copy(s.user_recipe_values),
        )
        return self._add(copied, source.messages)

    # --- search (SS-20 .. SS-22) ------------------------------------------------------------

    def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        """SS-20 .. SS-22."""
        if not isinstance(query, str):
            raise InvalidArgument("query must be a str")
        check_json_value(query, what="query")
        if limit is None:
            limit = SEARCH_DEFAULT_LIMIT
        check_non_negative_int(limit, what="limit", maximum=2**63 - 1)
        if after_date is not None:
            check_timestamp(after_date, what="after_date")
        if before_date is not None:
            check_timestamp(before_date, what="before_date")
        if exclude_session_id is not None:
            check_id(exclude_session_id, what="exclude_session_id")
        words: list[str] = []
        for word in query.split():
            if word.lower() not in words:
                words.append(word.lower())
        if not words:
            return []
        found: list[tuple[tuple[Any, ...], ChatHistoryMatch]] = []
        for session_id, stored in self._sessions.items():
            if session_id == exclude_session_id:
                continue
            for position, message in enumerate(stored.messages):
                when = message.created_at
                dated = after_date is not None or before_date is not None
                if dated and when is None:
                    continue
                if after_date is not None and when is not None and when < after_date:
                    continue
                if before_date is not None and when is not None and when >= before_date:
                    continue
                text = _message_text(message)
                hits = [w for w in words if w in text.lower()]
                if not hits:
                    continue
                order = (when is None, -(when or 0), session_id, position)
                found.append(
                    (
                        order,
                        ChatHistoryMatch(
                            session_id=session_id,
                            session_name=stored.session.name,
                            message_role=message.role,
                            message_content=text,
                            timestamp=when,
                            relevance_score=len(hits) / len(words),
                        ),
                    )
                )
        found.sort(key=lambda pair: pair[0])
        return [match for _, match in found[:limit]]
