"""The executable model of the memory-storage family (``spec/memory_storage.md``).

A plain, synchronous, in-memory statement of the contract, written independently of the
reference backends. Every operation takes ``now`` (the clock's reading at the call) where the
store stamps a time; :meth:`MemoryStorageModel.save_message` also takes the id the store
assigned, since MS-17 leaves the id's form to the store. The model raises the spec's errors
exactly where a store must.

It also holds the family's strategies (texts from a small vocabulary, so that searches and
semantic queries find something).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from hypothesis import strategies as st

from agentstores.spec.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    NotSupported,
    StorageUnavailable,
)
from agentstores.spec.memory_storage import (
    ConversationMessage,
    MemoryRetrieval,
    SessionSummary,
    UserMemory,
    cosine_similarity,
)
from agentstores.spec.messages import Message, check_message
from agentstores.spec.values import check_id, check_timestamp

__all__ = [
    "VOCABULARY",
    "MemoryStorageModel",
    "Vectors",
    "memory_texts",
    "search_queries",
    "simple_messages",
]

#: A sync embedding function: texts -> vectors (the kit's HashingEmbedder.embed_sync).
Vectors = Callable[[Sequence[str]], list[list[float]]]

#: Words the strategies build texts from: case variants and a case-folding pair (MS-13).
VOCABULARY: tuple[str, ...] = (
    "apple",
    "Apple",
    "tea",
    "TEA",
    "green",
    "straße",
    "STRASSE",
    "python",
    "likes",
    "Berlin",
    "ﬁle",
    "日本",
)


def memory_texts(*, max_words: int = 4) -> st.SearchStrategy[str]:
    """Texts of memories, inputs and summaries (MS-1): mostly one to ``max_words`` words of
    :data:`VOCABULARY`, sometimes empty or any valid text (NUL, emoji; no lone surrogates)."""
    words = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=max_words).map(" ".join)
    anything = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
    return st.one_of(words, words, words, st.just(""), anything)


def search_queries() -> st.SearchStrategy[str]:
    """Search and semantic queries (MS-13, MS-7): words, fragments of words, case variants."""
    fragments = st.sampled_from(["", "app", "PPL", "a", "ea", "strasse", "STRAßE", "e t", "本"])
    return st.one_of(st.sampled_from(VOCABULARY), fragments, memory_texts(max_words=2))


def simple_messages() -> st.SearchStrategy[Message]:
    """Small text messages (G-12) with the message's own id, time and metadata sometimes set."""
    return st.builds(
        lambda role, text, created, mid: Message.text(role, text, created_at=created, id=mid),
        st.sampled_from(["user", "assistant", "system"]),
        memory_texts(max_words=3),
        st.one_of(st.none(), st.integers(min_value=0, max_value=10)),
        st.one_of(st.none(), st.sampled_from(["m1", "m2"])),
    )


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} contains a lone surrogate") from None
    return value


def _check_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int")
    return value


def _check_limit(limit: object) -> int:
    value = _check_int(limit, "limit")
    if value < 0:
        raise InvalidArgument("limit must not be negative")
    return value


def _take(items: list[UserMemory], limit: int) -> list[UserMemory]:
    return items if limit == 0 else items[:limit]


def _last_n(memories: list[UserMemory]) -> list[UserMemory]:
    # MS-5: updated_at descending, then id ascending; two stable sorts state it literally.
    by_id = sorted(memories, key=lambda m: m.id)
    return sorted(by_id, key=lambda m: m.updated_at, reverse=True)


class MemoryStorageModel:
    """The whole state of one store, and every operation of ``MemoryStorage`` on it.

    Args:
        vectors: the embedding function of the store's embedder, or None if the store has
            none (then ``semantic`` raises NotSupported, MS-7).
    """

    def __init__(self, vectors: Vectors | None = None) -> None:
        self.vectors = vectors
        self.memories: dict[str, UserMemory] = {}
        self.summaries: dict[tuple[str, str], SessionSummary] = {}
        self.conversations: dict[tuple[str, str], list[ConversationMessage]] = {}

    # --- user memories -------------------------------------------------------------------

    def _check_memory(self, memory: object) -> UserMemory:
        if not isinstance(memory, UserMemory):
            raise InvalidArgument("expected a UserMemory")
        check_id(memory.id, what="memory id")
        check_id(memory.user_id, what="user id")
        _check_text(memory.memory, "memory")
        _check_text(memory.input, "input")
        return memory

    def save_user_memory(self, memory: UserMemory, now: int) -> UserMemory:
        """MS-3, MS-2."""
        self._check_memory(memory)
        if memory.id in self.memories:
            raise AlreadyExists(f"memory {memory.id!r} exists")
        stored = replace(memory, created_at=now, updated_at=now)
        self.memories[memory.id] = stored
        return stored

    def user_memories(self, user_id: str) -> list[UserMemory]:
        """Every memory of ``user_id`` in no particular order."""
        return [m for m in self.memories.values() if m.user_id == user_id]

    def get_user_memories(
        self,
        user_id: str,
        limit: int = 0,
        retrieval: MemoryRetrieval | str = MemoryRetrieval.LAST_N,
        query: str | None = None,
    ) -> list[UserMemory]:
        """MS-4 .. MS-7 (MS-8 needs a failing embedder, which the model does not have)."""
        check_id(user_id, what="user id")
        limit = _check_limit(limit)
        if retrieval not in tuple(MemoryRetrieval):
            raise InvalidArgument(f"unknown retrieval {retrieval!r}")
        retrieval = MemoryRetrieval(retrieval)
        if retrieval is not MemoryRetrieval.SEMANTIC:
            if query is not None:
                raise InvalidArgument("a query is only for semantic retrieval")
            memories = self.user_memories(user_id)
            if retrieval is MemoryRetrieval.LAST_N:
                return _take(_last_n(memories), limit)
            by_id = sorted(memories, key=lambda m: m.id)
            return _take(sorted(by_id, key=lambda m: m.created_at), limit)
        if query is None:
            raise InvalidArgument("semantic retrieval needs a query")
        _check_text(query, "query")
        if self.vectors is None:
            raise NotSupported("this store has no embedder")
        ranked = _last_n(self.user_memories(user_id))
        if not ranked:
            return []
        vectors = self.vectors([query, *(m.memory for m in ranked)])
        if len(vectors) != len(ranked) + 1 or not all(
            all(math.isfinite(x) for x in v) for v in vectors
        ):
            raise StorageUnavailable("the embedder returned malformed vectors")
        similarity = {
            m.id: cosine_similarity(vectors[0], v) for m, v in zip(ranked, vectors[1:], strict=True)
        }
        # sorted() is stable, so equal similarities keep the last_n order (MS-7).
        return _take(sorted(ranked, key=lambda m: -similarity[m.id]), limit)

    def update_user_memory(self, memory: UserMemory, now: int) -> UserMemory:
        """MS-9."""
        self._check_memory(memory)
        stored = self.memories.get(memory.id)
        if stored is None or stored.user_id != memory.user_id:
            raise NotFound(f"user {memory.user_id!r} has no memory {memory.id!r}")
        updated = replace(stored, memory=memory.memory, input=memory.input, updated_at=now)
        self.memories[memory.id] = updated
        return updated

    def delete_user_memory(self, memory_id: str) -> None:
        """MS-10."""
        check_id(memory_id, what="memory id")
        self.memories.pop(memory_id, None)

    def delete_user_memories_by_ids(self, user_id: str, memory_ids: Sequence[str]) -> None:
        """MS-11."""
        check_id(user_id, what="user id")
        if isinstance(memory_ids, str | bytes) or not isinstance(memory_ids, Sequence):
            raise InvalidArgument("memory_ids must be a sequence of ids")
        for memory_id in memory_ids:
            check_id(memory_id, what="memory id")
        for memory_id in memory_ids:
            stored = self.memories.get(memory_id)
            if stored is not None and stored.user_id == user_id:
                del self.memories[memory_id]

    def clear_user_memories(self, user_id: str) -> None:
        """MS-12."""
        check_id(user_id, what="user id")
        for memory in self.user_memories(user_id):
            del self.memories[memory.id]

    def search_user_memories(self, user_id: str, query: str, limit: int = 0) -> list[UserMemory]:
        """MS-13."""
        check_id(user_id, what="user id")
        _check_text(query, "query")
        limit = _check_limit(limit)
        needle = query.casefold()
        found = [
            m
            for m in self.user_memories(user_id)
            if needle in m.memory.casefold() or needle in m.input.casefold()
        ]
        return _take(_last_n(found), limit)

    # --- session summaries ---------------------------------------------------------------

    def _check_summary(self, summary: object) -> SessionSummary:
        if not isinstance(summary, SessionSummary):
            raise InvalidArgument("expected a SessionSummary")
        check_id(summary.session_id, what="session id")
        check_id(summary.user_id, what="user id")
        _check_text(summary.summary, "summary")
        return summary

    def save_session_summary(self, summary: SessionSummary, now: int) -> SessionSummary:
        """MS-14, MS-2."""
        self._check_summary(summary)
        key = (summary.session_id, summary.user_id)
        old = self.summaries.get(key)
        created = now if old is None else old.created_at
        stored = replace(summary, created_at=created, updated_at=now)
        self.summaries[key] = stored
        return stored

    def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        """MS-15."""
        check_id(session_id, what="session id")
        check_id(user_id, what="user id")
        return self.summaries.get((session_id, user_id))

    def update_session_summary(self, summary: SessionSummary, now: int) -> SessionSummary:
        """MS-16."""
        self._check_summary(summary)
        if (summary.session_id, summary.user_id) not in self.summaries:
            raise NotFound("no such summary")
        return self.save_session_summary(summary, now)

    def delete_session_summary(self, session_id: str, user_id: str) -> None:
        """MS-15."""
        check_id(session_id, what="session id")
        check_id(user_id, what="user id")
        self.summaries.pop((session_id, user_id), None)

    # --- conversation messages -----------------------------------------------------------

    def check_save_message(self, session_id: str, user_id: str, message: Message) -> None:
        """The validation of save_message (G-3, G-14), for the caller to run first."""
        check_id(session_id, what="session id")
        check_id(user_id, what="user id")
        check_message(message)

    def save_message(
        self, session_id: str, user_id: str, message: Message, now: int, assigned_id: str
    ) -> ConversationMessage:
        """MS-17 with the store's ``assigned_id``, which must be a fresh valid id."""
        self.check_save_message(session_id, user_id, message)
        check_id(assigned_id, what="assigned message id")
        if any(m.id == assigned_id for conv in self.conversations.values() for m in conv):
            raise AssertionError(f"the store reused message id {assigned_id!r} (MS-17)")
        record = ConversationMessage(assigned_id, session_id, user_id, message, now)
        self.conversations.setdefault((session_id, user_id), []).append(record)
        return record

    def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        """MS-18, MS-19."""
        check_id(session_id, what="session id")
        check_id(user_id, what="user id")
        limit = _check_limit(limit)
        conversation = self.conversations.get((session_id, user_id), [])
        return list(conversation if limit == 0 else conversation[-limit:])

    def delete_messages(self, session_id: str, user_id: str) -> None:
        """MS-20."""
        check_id(session_id, what="session id")
        check_id(user_id, what="user id")
        self.conversations.pop((session_id, user_id), None)

    def get_message_count(self, user_id: str, session_id: str) -> int:
        """MS-21."""
        check_id(user_id, what="user id")
        check_id(session_id, what="session id")
        return len(self.conversations.get((session_id, user_id), []))

    # --- retention -----------------------------------------------------------------------

    def cleanup_old_messages(self, user_id: str, before: int) -> None:
        """MS-22: strictly older than ``before``."""
        check_id(user_id, what="user id")
        check_timestamp(before, what="before")
        for (session_id, owner), conversation in list(self.conversations.items()):
            if owner != user_id:
                continue
            kept = [m for m in conversation if m.created_at >= before]
            if kept:
                self.conversations[(session_id, owner)] = kept
            else:
                del self.conversations[(session_id, owner)]

    def cleanup_messages_by_limit(self, user_id: str, session_id: str, keep_limit: int) -> None:
        """MS-23."""
        check_id(user_id, what="user id")
        check_id(session_id, what="session id")
        keep = _check_int(keep_limit, "keep_limit")
        if keep <= 0:
            raise InvalidArgument("keep_limit must be positive")
        conversation = self.conversations.get((session_id, user_id))
        if conversation is not None:
            del conversation[:-keep]
