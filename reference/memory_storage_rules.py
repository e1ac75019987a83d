"""Memory-storage rules shared by the three reference engines (JSON file, SQLite, Redis).

The spec (``spec/memory_storage.md``) states the rules; this module is the one executable copy
of them that the reference stores share, so that the engines differ only in how they store
and find records:

* validation before anything is written (MS-1, G-3, G-14): :func:`check_memory`,
  :func:`check_summary`, :func:`check_text`, :func:`check_limit`, :func:`check_retrieval`,
  :func:`check_memory_ids`, :func:`check_keep_limit`, :func:`check_before`,
  :func:`check_message_args`;
* the orders (MS-5, MS-13) as sort keys, limits (MS-6), search matching (MS-13);
* semantic ranking with an embedder (MS-7, MS-8): :func:`rank_semantic`;
* the JSON form of records, exact for the shared message model (G-15).

Every function raises only :mod:`agentstores.spec.errors` types.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from agentstores.spec.errors import InvalidArgument, StorageUnavailable
from agentstores.spec.memory_storage import (
    ConversationMessage,
    Embedder,
    MemoryRetrieval,
    SessionSummary,
    UserMemory,
    cosine_similarity,
)
from agentstores.spec.messages import Message, check_message, message_from_json, message_to_json
from agentstores.spec.values import JSONObject, check_id, check_timestamp

__all__ = [
    "check_before",
    "check_keep_limit",
    "check_limit",
    "check_memory",
    "check_memory_ids",
    "check_message_args",
    "check_pair",
    "check_retrieval",
    "check_summary",
    "check_text",
    "conversation_message_from_json",
    "conversation_message_to_json",
    "first_n_key",
    "last_n_key",
    "matches",
    "memory_from_json",
    "memory_to_json",
    "new_message_id",
    "order_memories",
    "rank_semantic",
    "summary_from_json",
    "summary_to_json",
    "take",
]


# --- validation ---------------------------------------------------------------------------


def check_text(value: object, *, what: str) -> str:
    """Return ``value`` if it is a storable text (MS-1): a str without lone surrogates."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} contains a lone surrogate") from None
    return value


def _check_int(value: object, *, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, not {type(value).__name__}")
    return value


def check_limit(limit: object) -> int:
    """Return ``limit`` if it is an int >= 0 (MS-6, MS-19, G-8); 0 means no limit."""
    value = _check_int(limit, what="limit")
    if value < 0:
        raise InvalidArgument("limit must not be negative")
    return value


def check_keep_limit(keep_limit: object) -> int:
    """Return ``keep_limit`` if it is a positive int (MS-23)."""
    value = _check_int(keep_limit, what="keep_limit")
    if value <= 0:
        raise InvalidArgument("keep_limit must be positive")
    return value


def check_before(before: object) -> int:
    """Return ``before`` if it is a time in ms (MS-22, G-6)."""
    return check_timestamp(before, what="before")


def check_pair(session_id: object, user_id: object) -> tuple[str, str]:
    """Validate a (session, user) pair of ids (G-1)."""
    return check_id(session_id, what="session id"), check_id(user_id, what="user id")


def check_memory(memory: object) -> UserMemory:
    """Return ``memory`` if its ids and texts are valid (MS-1); its times are not looked at."""
    if not isinstance(memory, UserMemory):
        raise InvalidArgument(f"expected a UserMemory, not {type(memory).__name__}")
    check_id(memory.id, what="memory id")
    check_id(memory.user_id, what="user id")
    check_text(memory.memory, what="memory")
    check_text(memory.input, what="input")
    return memory


def check_summary(summary: object) -> SessionSummary:
    """Return ``summary`` if its ids and text are valid (MS-1); its times are not looked at."""
    if not isinstance(summary, SessionSummary):
        raise InvalidArgument(f"expected a SessionSummary, not {type(summary).__name__}")
    check_pair(summary.session_id, summary.user_id)
    check_text(summary.summary, what="summary")
    return summary


def check_retrieval(retrieval: object, query: object) -> tuple[MemoryRetrieval, str | None]:
    """Validate the retrieval and query of get_user_memories (MS-6, MS-7)."""
    if not isinstance(retrieval, str) or retrieval not in tuple(MemoryRetrieval):
        raise InvalidArgument(f"unknown retrieval {retrieval!r}")
    chosen = MemoryRetrieval(retrieval)
    if chosen is MemoryRetrieval.SEMANTIC:
        if query is None:
            raise InvalidArgument("semantic retrieval needs a query")
        return chosen, check_text(query, what="query")
    if query is not None:
        raise InvalidArgument(f"a query is only for semantic retrieval, not {chosen.value}")
    return chosen, None


def check_memory_ids(memory_ids: object) -> tuple[str, ...]:
    """Return the ids as a tuple if ``memory_ids`` is a sequence of ids (MS-11)."""
    if isinstance(memory_ids, str | bytes) or not isinstance(memory_ids, Sequence):
        raise InvalidArgument("memory_ids must be a sequence of ids")
    return tuple(check_id(memory_id, what="memory id") for memory_id in memory_ids)


def check_message_args(session_id: object, user_id: object, message: object) -> Message:
    """Validate save_message's arguments (G-1, G-14) and return the message."""
    check_pair(session_id, user_id)
    return check_message(message)


def new_message_id() -> str:
    """A fresh message id (MS-17): 32 hex digits, unique with overwhelming probability."""
    return uuid.uuid4().hex


# --- orders, limits, matching -------------------------------------------------------------


def last_n_key(memory: UserMemory) -> tuple[int, str]:
    """Ascending sort key of ``last_n`` (MS-5): updated_at descending, then id ascending."""
    return (-memory.updated_at, memory.id)


def first_n_key(memory: UserMemory) -> tuple[int, str]:
    """Ascending sort key of ``first_n`` (MS-5): created_at ascending, then id ascending."""
    return (memory.created_at, memory.id)


def take(items: list[UserMemory], limit: int) -> list[UserMemory]:
    """The first ``limit`` items; all of them for limit 0 (MS-6)."""
    return items if limit == 0 else items[:limit]


def order_memories(memories: Iterable[UserMemory], retrieval: MemoryRetrieval) -> list[UserMemory]:
    """``memories`` in the order of ``last_n`` or ``first_n`` (MS-5)."""
    key = first_n_key if retrieval is MemoryRetrieval.FIRST_N else last_n_key
    return sorted(memories, key=key)


def matches(memory: UserMemory, folded_query: str) -> bool:
    """Whether a memory matches a search (MS-13); pass ``query.casefold()``."""
    return folded_query in memory.memory.casefold() or folded_query in memory.input.casefold()


async def rank_semantic(
    embedder: Embedder, query: str, memories: Iterable[UserMemory]
) -> list[UserMemory]:
    """The memories ranked by similarity to ``query`` (MS-7), ties in ``last_n`` order.

    One ``embed`` call carries the query and every memory text. Embedder failures and
    malformed vectors become StorageUnavailable (MS-8).
    """
    ordered = order_memories(memories, MemoryRetrieval.LAST_N)
    if not ordered:
        return []
    texts = [query, *(m.memory for m in ordered)]
    try:
        vectors = await embedder.embed(texts)
    except Exception as exc:  # the embedder is a dependency like the engine (MS-8)
        raise StorageUnavailable(f"the embedder failed: {exc}") from exc
    checked = _check_vectors(vectors, len(texts))
    similarity = [cosine_similarity(checked[0], vector) for vector in checked[1:]]
    positions = sorted(
        range(len(ordered)), key=lambda i: -similarity[i]
    )  # stable: ties keep last_n
    return [ordered[i] for i in positions]


def _check_vectors(vectors: object, count: int) -> list[list[float]]:
    if not isinstance(vectors, Sequence) or len(vectors) != count:
        raise StorageUnavailable(f"the embedder did not return {count} vectors")
    checked: list[list[float]] = []
    for vector in vectors:
        if not isinstance(vector, Sequence) or isinstance(vector, str | bytes):
            raise StorageUnavailable("the embedder returned a vector that is not a sequence")
        values = [
            float(x) for x in vector if isinstance(x, int | float) and not isinstance(x, bool)
        ]
        if len(values) != len(vector) or not all(math.isfinite(x) for x in values):
            raise StorageUnavailable("the embedder returned non-finite or non-numeric entries")
        checked.append(values)
    if len({len(vector) for vector in checked}) > 1:
        raise StorageUnavailable("the embedder returned vectors of different dimensions")
    return checked


# --- JSON forms ---------------------------------------------------------------------------


def _field(obj: Any, name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise StorageUnavailable(f"corrupt {what}: field {name!r}")
    return value


def memory_to_json(memory: UserMemory) -> JSONObject:
    """The JSON object of a stored memory."""
    return {
        "id": memory.id,
        "user_id": memory.user_id,
        "memory": memory.memory,
        "input": memory.input,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
    }


def memory_from_json(obj: object) -> UserMemory:
    """Inverse of :func:`memory_to_json`; StorageUnavailable for a corrupt record."""
    return UserMemory(
        id=_field(obj, "id", str, "memory"),
        user_id=_field(obj, "user_id", str, "memory"),
        memory=_field(obj, "memory", str, "memory"),
        input=_field(obj, "input", str, "memory"),
        created_at=_field(obj, "created_at", int, "memory"),
        updated_at=_field(obj, "updated_at", int, "memory"),
    )


def summary_to_json(summary: SessionSummary) -> JSONObject:
    """The JSON object of a stored summary."""
    return {
        "session_id": summary.session_id,
        "user_id": summary.user_id,
        "summary": summary.summary,
        "created_at": summary.created_at,
        "updated_at": summary.updated_at,
    }


def summary_from_json(obj: object) -> SessionSummary:
    """Inverse of :func:`summary_to_json`; StorageUnavailable for a corrupt record."""
    return SessionSummary(
        session_id=_field(obj, "session_id", str, "summary"),
        user_id=_field(obj, "user_id", str, "summary"),
        summary=_field(obj, "summary", str, "summary"),
        created_at=_field(obj, "created_at", int, "summary"),
        updated_at=_field(obj, "updated_at", int, "summary"),
    )


def conversation_message_to_json(record: ConversationMessage) -> JSONObject:
    """The JSON object of a stored message; the message in its G-15 form."""
    return {
        "id": record.id,
        "session_id": record.session_id,
        "user_id": record.user_id,
        "created_at": record.created_at,
        "message": message_to_json(record.message),
    }


def conversation_message_from_json(obj: object) -> ConversationMessage:
    """Inverse of :func:`conversation_message_to_json`; StorageUnavailable if corrupt."""
    try:
        message = message_from_json(obj.get("message") if isinstance(obj, dict) else None)
    except InvalidArgument as exc:
        raise StorageUnavailable(f"corrupt message: {exc}") from exc
    return ConversationMessage(
        id=_field(obj, "id", str, "message"),
        session_id=_field(obj, "session_id", str, "message"),
        user_id=_field(obj, "user_id", str, "message"),
        message=message,
        created_at=_field(obj, "created_at", int, "message"),
    )
