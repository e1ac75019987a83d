"""Session-store rules shared by the three reference engines (JSON file, SQLite, Redis).

``spec/session_store.md`` states the rules; this module is the one executable copy of them that
the reference stores share, so that the engines differ only in how they store and find records:

* validation before anything is written (SS-2, SS-15, SS-18, SS-21, G-3, G-5, G-14):
  :func:`check_session_id`, :func:`check_new_session`, :func:`check_name`,
  :func:`check_session_types`, :func:`check_conversation`, :func:`check_token_stats`,
  :func:`check_provider_config`, :func:`check_recipe`, :func:`check_search`...;
* session ids (SS-4): :func:`day_of` and :func:`format_session_id`;
* the JSON form of a session (:func:`session_to_json`, :func:`session_from_json`), which is
  also the ``session`` object of the export document (SS-17), and the document itself
  (:func:`export_document`, :func:`parse_export`);
* the records that create, copy, import and the updates produce (SS-3, SS-11 .. SS-13,
  SS-18, SS-19), as pure functions of the stored session;
* search (SS-20 .. SS-22): :func:`search_text`, :func:`index_text`, :func:`relevance`,
  :func:`search_order` and :func:`select_matches`;
* the listing order (SS-6): :func:`list_order`;
* the partial updates (SS-11 .. SS-13): :class:`SessionUpdates`, a mixin that validates each
  and hands the fields it sets to the engine's one write primitive;
* the listings and the search (SS-6, SS-20, SS-21): :class:`SessionQueries`, a mixin that
  validates their arguments, answers the empty ones itself and hands the rest to the engine's
  query.

Every function raises only :mod:`agentstores.spec.errors` types.
"""

from __future__ import annotations

import abc
import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agentstores.spec.errors import InvalidArgument
from agentstores.spec.messages import Message, check_message, message_from_json, message_to_json
from agentstores.spec.session_store import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    SEARCH_DEFAULT_LIMIT,
    ChatHistoryMatch,
    ExtensionData,
    ModelConfig,
    Recipe,
    Session,
    SessionInsights,
    SessionType,
    TokenStatsUpdate,
)
from agentstores.spec.values import (
    MAX_U64,
    JSONObject,
    check_id,
    check_json_object,
    check_json_value,
    check_non_negative_int,
    check_timestamp,
    dump_json,
)

__all__ = [
    "COUNTER_FIELDS",
    "DEFAULT_LIST_TYPES",
    "SESSION_KEYS",
    "Candidate",
    "SearchRequest",
    "SessionQueries",
    "SessionUpdates",
    "check_bool",
    "check_conversation",
    "check_extension_data",
    "check_include_messages",
    "check_name",
    "check_new_session",
    "check_provider_config",
    "check_recipe",
    "check_search",
    "check_session",
    "check_session_id",
    "check_session_types",
    "check_token_stats",
    "copied_session",
    "day_of",
    "export_document",
    "format_session_id",
    "imported_session",
    "index_text",
    "insights",
    "list_order",
    "new_session",
    "parse_export",
    "provider_fields",
    "recipe_fields",
    "relevance",
    "search_order",
    "search_text",
    "select_matches",
    "session_fields",
    "session_from_json",
    "session_to_json",
    "token_fields",
    "touched",
    "with_fields",
]

#: SS-6: the types ``list_sessions()`` returns.
DEFAULT_LIST_TYPES: tuple[SessionType, ...] = (SessionType.USER, SessionType.SCHEDULED)
_DEFAULT_TYPES = frozenset(DEFAULT_LIST_TYPES)

#: SS-1, SS-12: the six optional token counters.
COUNTER_FIELDS: tuple[str, ...] = (
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "accumulated_total_tokens",
    "accumulated_input_tokens",
    "accumulated_output_tokens",
)

#: SS-17: the keys of the ``session`` object of an export (and of the stored JSON form).
SESSION_KEYS: tuple[str, ...] = (
    "id",
    "working_dir",
    "name",
    "session_type",
    "user_set_name",
    "created_at",
    "updated_at",
    "extension_data",
    *COUNTER_FIELDS,
    "schedule_id",
    "recipe",
    "user_recipe_values",
    "provider_name",
    "model_config",
)

#: The keys of :data:`SESSION_KEYS` whose JSON value is the Session field's value as it is.
_STORED_AS_IS: tuple[str, ...] = tuple(key for key in SESSION_KEYS if key != "session_type")

_DOCUMENT_KEYS = frozenset({"format", "version", "session", "conversation"})


# --- validation ---------------------------------------------------------------------------


def _check_text(value: object, *, what: str, allow_empty: bool = True) -> str:
    """SS-2: a str without NUL or lone surrogates (empty only if allowed)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, not {type(value).__name__}")
    if not value and not allow_empty:
        raise InvalidArgument(f"{what} must not be empty")
    if "\x00" in value:
        raise InvalidArgument(f"{what} must not contain NUL")
    check_json_value(value, what=what)  # rejects lone surrogates
    return value


def check_bool(value: object, *, what: str) -> bool:
    """A real ``bool`` (1 and "true" are not)."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be a bool, not {type(value).__name__}")
    return value


def check_include_messages(value: object) -> bool:
    """SS-5: ``include_messages`` is a bool."""
    return check_bool(value, what="include_messages")


def check_session_id(value: object, *, what: str = "session id") -> str:
    """A session id in the id domain (G-1, G-3, SS-15)."""
    return check_id(value, what=what)


def check_name(value: object, *, what: str = "name") -> str:
    """SS-2: a session name (may be empty)."""
    return _check_text(value, what=what)


def _check_session_type(value: object, *, what: str = "session_type") -> SessionType:
    # A plain "user" str equals SessionType.USER, but the spec's type is the enum (SS-2).
    if not isinstance(value, SessionType):
        raise InvalidArgument(f"{what} must be a SessionType, not {type(value).__name__}")
    return value


def check_new_session(
    working_dir: object, name: object, session_type: object
) -> tuple[str, str, SessionType]:
    """SS-3: the arguments of create_session."""
    return (
        _check_text(working_dir, what="working_dir", allow_empty=False),
        check_name(name),
        _check_session_type(session_type),
    )


def check_session_types(types: object) -> frozenset[SessionType]:
    """SS-6: a sequence (not a str) of SessionType members; the set of them."""
    if isinstance(types, str | bytes) or not isinstance(types, Sequence):
        raise InvalidArgument(f"types must be a sequence, not {type(types).__name__}")
    return frozenset(_check_session_type(t, what="session type") for t in types)


def check_conversation(messages: object) -> tuple[Message, ...]:
    """SS-9: a sequence (not a str) of valid messages (G-12 .. G-14)."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidArgument(f"conversation must be a sequence, not {type(messages).__name__}")
    return tuple(check_message(message) for message in messages)


def check_extension_data(value: object) -> JSONObject:
    """SS-2, SS-11: extension data is a JSON object (G-4)."""
    return check_json_object(value, what="extension_data")


def _check_counter(value: object, *, what: str) -> int | None:
    return None if value is None else check_non_negative_int(value, what=what, maximum=MAX_U64)


def _check_optional_id(value: object, *, what: str) -> str | None:
    return None if value is None else check_id(value, what=what)


def _check_optional_object(value: object, *, what: str) -> JSONObject | None:
    return None if value is None else check_json_object(value, what=what)


def _check_recipe_values(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            f"user_recipe_values must be a mapping of str to str, not {type(value).__name__}"
        )
    for key, item in value.items():
        _check_text(key, what="user_recipe_values key")
        _check_text(item, what=f"user_recipe_values[{key!r}]")
    return dict(value)


def check_token_stats(stats: object) -> TokenStatsUpdate:
    """SS-12: a TokenStatsUpdate whose set fields are in their domains."""
    if not isinstance(stats, TokenStatsUpdate):
        raise InvalidArgument(f"expected a TokenStatsUpdate, not {type(stats).__name__}")
    _check_optional_id(stats.schedule_id, what="schedule_id")
    for name in COUNTER_FIELDS:
        _check_counter(getattr(stats, name), what=name)
    return stats


def check_provider_config(provider_name: object, model_config: object) -> None:
    """SS-13: a provider name (text) or None, a model config (JSON object) or None."""
    if provider_name is not None:
        _check_text(provider_name, what="provider_name")
    _check_optional_object(model_config, what="model_config")


def check_recipe(recipe: object, user_recipe_values: object) -> None:
    """SS-13: a recipe (JSON object) or None, user recipe values (str to str) or None."""
    _check_optional_object(recipe, what="recipe")
    _check_recipe_values(user_recipe_values)


def check_session(session: object) -> Session:
    """Every stored field of ``session`` in its SS-2 domain (message_count and conversation
    aside); used on records read back from a document or from storage."""
    if not isinstance(session, Session):
        raise InvalidArgument(f"expected a Session, not {type(session).__name__}")
    check_session_id(session.id)
    check_new_session(session.working_dir, session.name, session.session_type)
    check_timestamp(session.created_at, what="created_at")
    check_timestamp(session.updated_at, what="updated_at")
    check_bool(session.user_set_name, what="user_set_name")
    check_extension_data(session.extension_data)
    for name in COUNTER_FIELDS:
        _check_counter(getattr(session, name), what=name)
    _check_optional_id(session.schedule_id, what="schedule_id")
    check_recipe(session.recipe, session.user_recipe_values)
    check_provider_config(session.provider_name, session.model_config)
    return session


@dataclass(frozen=True)
class SearchRequest:
    """A checked search (SS-20, SS-21): distinct lower-cased words in query order, the limit
    (default applied), the date bounds and the excluded session."""

    words: tuple[str, ...]
    limit: int
    after_date: int | None
    before_date: int | None
    exclude_session_id: str | None

    @property
    def empty(self) -> bool:
        """Whether the search can have no result at all (no words, limit 0, empty window)."""
        window_empty = (
            self.after_date is not None
            and self.before_date is not None
            and self.after_date >= self.before_date
        )
        return not self.words or self.limit == 0 or window_empty

    def selects_time(self, created_at: int | None) -> bool:
        """SS-21: whether a message created at ``created_at`` is inside the date window."""
        if self.after_date is None and self.before_date is None:
            return True
        if created_at is None:
            return False
        if self.after_date is not None and created_at < self.after_date:
            return False
        return self.before_date is None or created_at < self.before_date


def check_search(
    query: object,
    limit: object,
    after_date: object,
    before_date: object,
    exclude_session_id: object,
) -> SearchRequest:
    """Validate the arguments of search_chat_history (SS-20, SS-21, G-8)."""
    if not isinstance(query, str):
        raise InvalidArgument(f"query must be a str, not {type(query).__name__}")
    check_json_value(query, what="query")  # no lone surrogates
    checked_limit = (
        SEARCH_DEFAULT_LIMIT
        if limit is None
        else check_non_negative_int(limit, what="limit", maximum=2**63 - 1)
    )
    after = None if after_date is None else check_timestamp(after_date, what="after_date")
    before = None if before_date is None else check_timestamp(before_date, what="before_date")
    exclude = _check_optional_id(exclude_session_id, what="exclude_session_id")
    words = tuple(dict.fromkeys(word.lower() for word in query.split()))
    return SearchRequest(words, checked_limit, after, before, exclude)


# --- ids (SS-4) ------------------------------------------------------------------------------


def day_of(now: int) -> str:
    """The UTC date of ``now`` (ms since the epoch) as ``YYYYMMDD`` (years past 9999 get more
    digits). Pure arithmetic, so that any clock reading has a date."""
    days = now // 86_400_000
    # Civil-from-days (proleptic Gregorian), exact for every integer day count.
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return f"{year:04d}{month:02d}{day:02d}"


def format_session_id(day: str, number: int) -> str:
    """The reference id form ``YYYYMMDD_N`` (SS-4)."""
    return f"{day}_{number}"


# --- records -------------------------------------------------------------------------------


def _fresh(value: Any) -> Any:
    """A deep copy, so that stored records and the caller's objects never share dicts (G-7)."""
    return copy.deepcopy(value)


def new_session(
    session_id: str, working_dir: str, name: str, session_type: SessionType, now: int
) -> Session:
    """SS-3: the empty session create_session stores (arguments already checked)."""
    return Session(
        id=session_id,
        working_dir=working_dir,
        name=name,
        created_at=now,
        updated_at=now,
        session_type=session_type,
        extension_data={},
    )


def touched(session: Session, now: int) -> Session:
    """SS-14: the session with ``updated_at = now``."""
    return replace(session, updated_at=now)


def with_fields(session: Session, fields: Mapping[str, Any], now: int) -> Session:
    """The session with ``fields`` set (copied) and ``updated_at = now`` (SS-11 .. SS-14)."""
    return replace(session, **{k: _fresh(v) for k, v in fields.items()}, updated_at=now)


def session_fields(name: str, user_set: bool) -> dict[str, Any]:
    """SS-11: the fields update_session_name sets."""
    return {"name": name, "user_set_name": user_set}


def token_fields(stats: TokenStatsUpdate) -> dict[str, Any]:
    """SS-12: the fields an update_token_stats sets: only those given (not None)."""
    names = ("schedule_id", *COUNTER_FIELDS)
    return {name: getattr(stats, name) for name in names if getattr(stats, name) is not None}


def provider_fields(
    provider_name: str | None, model_config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """SS-13: the fields an update_provider_config sets (None leaves a field alone)."""
    fields: dict[str, Any] = {}
    if provider_name is not None:
        fields["provider_name"] = provider_name
    if model_config is not None:
        fields["model_config"] = dict(model_config)
    return fields


def recipe_fields(
    recipe: Mapping[str, Any] | None, user_recipe_values: Mapping[str, str] | None
) -> dict[str, Any]:
    """SS-13: the fields an update_recipe sets (None leaves a field alone)."""
    fields: dict[str, Any] = {}
    if recipe is not None:
        fields["recipe"] = dict(recipe)
    if user_recipe_values is not None:
        fields["user_recipe_values"] = dict(user_recipe_values)
    return fields


def copied_session(source: Session, new_id: str, new_name: str, now: int) -> Session:
    """SS-19: what copy_session creates from ``source`` (its conversation is copied apart)."""
    return Session(
        id=new_id,
        working_dir=source.working_dir,
        name=new_name,
        created_at=now,
        updated_at=now,
        session_type=source.session_type,
        user_set_name=True,
        extension_data=_fresh(dict(source.extension_data)),
        schedule_id=source.schedule_id,
        recipe=_fresh(None if source.recipe is None else dict(source.recipe)),
        user_recipe_values=(
            None if source.user_recipe_values is None else dict(source.user_recipe_values)
        ),
    )


def imported_session(document: Session, new_id: str, now: int) -> Session:
    """SS-18: the document's session under a new id, created and updated now."""
    return replace(document, id=new_id, created_at=now, updated_at=now, conversation=None)


def insights(sessions: Iterable[Session]) -> SessionInsights:
    """SS-16 over every session of the store."""
    count = 0
    tokens = 0
    for session in sessions:
        count += 1
        if session.accumulated_total_tokens is not None:
            tokens += session.accumulated_total_tokens
        elif session.total_tokens is not None:
            tokens += session.total_tokens
    return SessionInsights(total_sessions=count, total_tokens=tokens)


def list_order(session_id: str, updated_at: int) -> tuple[int, str]:
    """Ascending sort key of the listings (SS-6): updated_at descending, then id."""
    return (-updated_at, session_id)


# --- JSON form (SS-17) ---------------------------------------------------------------------


def session_to_json(session: Session) -> JSONObject:
    """The session as the ``session`` object of SS-17 (also the stored form).

    The result shares nested values with ``session``: serialise it (dump_json) right away.
    """
    return {
        "id": session.id,
        "working_dir": session.working_dir,
        "name": session.name,
        "session_type": session.session_type.value,
        "user_set_name": session.user_set_name,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "extension_data": dict(session.extension_data),
        **{name: getattr(session, name) for name in COUNTER_FIELDS},
        "schedule_id": session.schedule_id,
        "recipe": None if session.recipe is None else dict(session.recipe),
        "user_recipe_values": (
            None if session.user_recipe_values is None else dict(session.user_recipe_values)
        ),
        "provider_name": session.provider_name,
        "model_config": None if session.model_config is None else dict(session.model_config),
    }


def session_from_json(
    obj: object,
    *,
    message_count: int = 0,
    conversation: tuple[Message, ...] | None = None,
) -> Session:
    """Inverse of :func:`session_to_json`: every key required, none unknown (SS-18).

    InvalidArgument if malformed. The result shares nested values with ``obj``.
    """
    if not isinstance(obj, dict):
        raise InvalidArgument("a session must be a JSON object")
    missing = [key for key in SESSION_KEYS if key not in obj]
    unknown = sorted(set(obj) - set(SESSION_KEYS))
    if missing or unknown:
        raise InvalidArgument(f"session fields: missing {missing}, unknown {unknown}")
    try:
        session_type = SessionType(obj["session_type"])
    except (ValueError, TypeError):
        raise InvalidArgument(f"unknown session_type {obj['session_type']!r}") from None
    session = Session(
        **{key: obj[key] for key in _STORED_AS_IS},
        session_type=session_type,
        message_count=message_count,
        conversation=conversation,
    )
    return check_session(session)


def export_document(session: Session, conversation: Sequence[Message]) -> str:
    """SS-17: the export document of ``session`` and its conversation, as JSON text."""
    return dump_json(
        {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "session": session_to_json(session),
            "conversation": [message_to_json(message) for message in conversation],
        }
    )


def _reject_constant(name: str) -> Any:
    raise InvalidArgument(f"{name} is not JSON")


def parse_export(document: object) -> tuple[Session, tuple[Message, ...]]:
    """SS-18: the session and conversation of an export document; InvalidArgument if it is
    not a valid version-1 document. The session keeps the document's id and times."""
    if not isinstance(document, str):
        raise InvalidArgument(f"an export document must be a str, not {type(document).__name__}")
    try:
        data = json.loads(document, parse_constant=_reject_constant)
    except InvalidArgument:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limits
        raise InvalidArgument(f"the document is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument("the document must be a JSON object")
    if set(data) != _DOCUMENT_KEYS:
        raise InvalidArgument(f"document keys must be {sorted(_DOCUMENT_KEYS)}")
    if data["format"] != EXPORT_FORMAT:
        raise InvalidArgument(f"not an {EXPORT_FORMAT!r} document")
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != EXPORT_VERSION:
        raise InvalidArgument(f"unsupported export version {version!r}")
    raw_messages = data["conversation"]
    if not isinstance(raw_messages, list):
        raise InvalidArgument("conversation must be a list")
    conversation = tuple(message_from_json(item) for item in raw_messages)
    session = session_from_json(data["session"], message_count=len(conversation))
    return session, conversation


# --- search (SS-20 .. SS-22) ---------------------------------------------------------------


def search_text(message: Message) -> str:
    """SS-20: the message's ``"text"`` parts joined by newlines, in their original case."""
    return "\n".join(part["text"] for part in message.content if part.get("type") == "text")


def index_text(message: Message) -> str:
    """The text an index should hold for ``message``: ``search_text(message).lower()`` with
    NUL as a space.

    Words have no white space, so a NUL-free word occurs in this text exactly where it occurs
    in the lower-cased text; engines whose text functions stop at NUL (SQLite's tokenizers)
    can index it. Words that contain NUL need a scan of the real text.
    """
    return search_text(message).lower().replace("\x00", " ")


def relevance(words: Sequence[str], text: str) -> float | None:
    """SS-22: ``found / total`` over the distinct ``words`` found in ``text.lower()`` (text as
    :func:`search_text` gives it), or None if no word occurs (SS-20: no match)."""
    lowered = text.lower()
    found = sum(1 for word in words if word in lowered)
    return found / len(words) if found else None


def search_order(created_at: int | None, session_id: str, position: int) -> tuple[Any, ...]:
    """Ascending sort key of matches (SS-22): newest first, undated last, session id, position."""
    if created_at is None:
        return (1, 0, session_id, position)
    return (0, -created_at, session_id, position)


@dataclass(frozen=True)
class Candidate:
    """A message a search may return: where it is and what it says."""

    session_id: str
    session_name: str
    position: int
    message: Message


def select_matches(
    request: SearchRequest, candidates: Iterable[Candidate], *, ordered: bool = False
) -> list[ChatHistoryMatch]:
    """The result of a search (SS-20 .. SS-22) among ``candidates``.

    Candidates outside the date window, in the excluded session, or matching no word are
    dropped, so an engine may pass a superset (e.g. what an index proposed). With
    ``ordered=True`` the candidates must already come in :func:`search_order` and the
    iteration stops after ``limit`` matches; otherwise they are sorted here.
    """
    if request.empty:
        return []
    found: list[tuple[tuple[Any, ...], ChatHistoryMatch]] = []
    for candidate in candidates:
        if candidate.session_id == request.exclude_session_id:
            continue
        message = candidate.message
        if not request.selects_time(message.created_at):
            continue
        text = search_text(message)
        score = relevance(request.words, text)
        if score is None:
            continue
        match = ChatHistoryMatch(
            session_id=candidate.session_id,
            session_name=candidate.session_name,
            message_role=message.role,
            message_content=text,
            timestamp=message.created_at,
            relevance_score=score,
        )
        key = search_order(message.created_at, candidate.session_id, candidate.position)
        found.append((key, match))
        if ordered and len(found) >= request.limit:
            break
    if not ordered:
        found.sort(key=lambda item: item[0])
    return [match for _, match in found[: request.limit]]


# --- partial updates (SS-11 .. SS-13) ------------------------------------------------------


class SessionUpdates(abc.ABC):
    """The five partial updates of a session store, for the engines to inherit.

    Each validates its arguments (session id first, then the values) and hands the fields it
    sets to :meth:`_update_fields`, the engine's one write primitive, so that the engines
    differ only in how they write.
    """

    @abc.abstractmethod
    async def _update_fields(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` of the session and ``updated_at = now`` atomically (SS-14); NotFound
        if there is no session ``session_id``. ``fields`` are checked already and may be the
        caller's objects: the engine copies or serialises them before it writes (G-7)."""

    async def update_session_name(self, session_id: str, name: str, user_set: bool) -> None:
        """Set the name and who set it (SS-11)."""
        check_session_id(session_id)
        fields = session_fields(check_name(name), check_bool(user_set, what="user_set"))
        await self._update_fields(session_id, fields)

    async def update_extension_data(self, session_id: str, extension_data: ExtensionData) -> None:
        """Replace the extension data (SS-11)."""
        check_session_id(session_id)
        data = check_extension_data(extension_data)
        await self._update_fields(session_id, {"extension_data": data})

    async def update_token_stats(self, session_id: str, stats: TokenStatsUpdate) -> None:
        """Set the counters that ``stats`` gives, leave the others (SS-12)."""
        check_session_id(session_id)
        await self._update_fields(session_id, token_fields(check_token_stats(stats)))

    async def update_provider_config(
        self, session_id: str, provider_name: str | None, model_config: ModelConfig | None
    ) -> None:
        """Set provider name and/or model config; None leaves a field unchanged (SS-13)."""
        check_session_id(session_id)
        check_provider_config(provider_name, model_config)
        await self._update_fields(session_id, provider_fields(provider_name, model_config))

    async def update_recipe(
        self,
        session_id: str,
        recipe: Recipe | None,
        user_recipe_values: Mapping[str, str] | None,
    ) -> None:
        """Set recipe and/or its user values; None leaves a field unchanged (SS-13)."""
        check_session_id(session_id)
        check_recipe(recipe, user_recipe_values)
        await self._update_fields(session_id, recipe_fields(recipe, user_recipe_values))


# --- listings and search (SS-6, SS-20 .. SS-22) -----------------------------------------------


class SessionQueries(abc.ABC):
    """The listings and the search of a session store, for the engines to inherit.

    Each validates its arguments before the engine reads anything, and answers a query that
    can select nothing (no types; no words, limit 0 or an empty date window) without reading;
    the others go to the engine's one query, :meth:`_list` or :meth:`_search`.
    """

    @abc.abstractmethod
    async def _list(self, types: frozenset[SessionType]) -> list[Session]:
        """The sessions whose type is in ``types`` (not empty), without their conversations,
        in :func:`list_order` (SS-6)."""

    @abc.abstractmethod
    async def _search(self, request: SearchRequest) -> list[ChatHistoryMatch]:
        """The result of ``request`` (checked, not :attr:`~SearchRequest.empty`): what
        :func:`select_matches` gives over the messages of every session (SS-20 .. SS-22)."""

    async def list_sessions(self) -> list[Session]:
        """User and scheduled sessions, most recently updated first (SS-6)."""
        return await self._list(_DEFAULT_TYPES)

    async def list_sessions_by_types(self, types: Sequence[SessionType]) -> list[Session]:
        """Sessions of the given types, most recently updated first, then by id (SS-6)."""
        checked = check_session_types(types)
        if not checked:
            return []
        return await self._list(checked)

    async def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        """Messages matching ``query``, newest first (SS-20 .. SS-22)."""
        request = check_search(query, limit, after_date, before_date, exclude_session_id)
        if request.empty:
            return []
        return await self._search(request)
