"""The memory-storage family (seed 003, aggo's ``MemoryStorage``).

Requirement IDs ``MS-n`` refer to ``memory_storage.md`` beside this module, which is the
contract; this module is its typed form. A store keeps three kinds of records:

* user memories (:class:`UserMemory`): facts about a user, with retrieval by recency, by age,
  by text search, and by similarity under an :class:`Embedder` (the ``semantic`` capability);
* session summaries (:class:`SessionSummary`), one per (session, user);
* conversation messages (:class:`ConversationMessage`) per (session, user), wrapping the shared
  :class:`~agentstores.spec.messages.Message`, with retention clean-up.

The seed's LLM-driven parts (memory analyser, summary generator, trigger manager, task queue)
are consumers of the store, not part of it, and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from .messages import Message

__all__ = [
    "ConversationMessage",
    "Embedder",
    "MemoryRetrieval",
    "MemoryStorage",
    "SessionSummary",
    "UserMemory",
    "cosine_similarity",
]


class MemoryRetrieval(StrEnum):
    """How :meth:`MemoryStorage.get_user_memories` chooses and orders memories (MS-5 .. MS-7)."""

    LAST_N = "last_n"
    """Most recently updated first (MS-5)."""
    FIRST_N = "first_n"
    """Oldest created first (MS-5)."""
    SEMANTIC = "semantic"
    """Most similar to a query under the store's embedder first (MS-7); a capability."""


@dataclass(frozen=True)
class UserMemory:
    """A fact the agent keeps about a user (MS-1).

    Attributes:
        id: the memory's identifier (G-1), chosen by the caller and unique in the store (MS-3).
        user_id: the owner (G-1).
        memory: the remembered text.
        input: the user input that gave rise to the memory ("" if none).
        created_at: stamped by the store when the memory is saved (MS-2); ignored on input.
        updated_at: stamped by the store on save and update (MS-2); ignored on input.
    """

    id: str
    user_id: str
    memory: str
    input: str = ""
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class SessionSummary:
    """The summary of one user's session; at most one per (session_id, user_id) (MS-14).

    Attributes:
        session_id: the session (G-1).
        user_id: the user (G-1).
        summary: the summary text.
        created_at: stamped by the store when first saved (MS-2); ignored on input.
        updated_at: stamped by the store on every save and update (MS-2); ignored on input.
    """

    session_id: str
    user_id: str
    summary: str
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class ConversationMessage:
    """A message stored in the conversation of (session_id, user_id) (MS-17).

    The seed's ``Role``, ``Content`` and ``Parts`` are the shared :class:`Message`'s ``role``
    and ``content`` parts; the message (its own ``id``, ``created_at`` and ``metadata``
    included) round-trips exactly (G-14).

    Attributes:
        id: assigned by the store, a valid id unique among the store's messages (MS-17).
        session_id: the session (G-1).
        user_id: the user (G-1).
        message: the message as saved.
        created_at: the store's clock when the message was saved (MS-2); retention reads it.
    """

    id: str
    session_id: str
    user_id: str
    message: Message
    created_at: int


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors for semantic retrieval (MS-7).

    A store is given an embedder when it is made (the kit passes it as
    ``StoreContext.options["embedder"]``); a store without one does not offer ``semantic``.
    """

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector of finite floats per text, in order, all of one dimension."""
        ...


def cosine_similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """The similarity that semantic retrieval ranks by (MS-7), computed exactly this way.

    ``fsum(a_i * b_i) / (sqrt(fsum(a_i**2)) * sqrt(fsum(b_i**2)))``; 0.0 when either vector is
    all zeros. Raises ValueError if the dimensions differ.
    """
    if len(a) != len(b):
        raise ValueError(f"vectors of dimensions {len(a)} and {len(b)} cannot be compared")
    norm_a = math.sqrt(math.fsum(x * x for x in a))
    norm_b = math.sqrt(math.fsum(y * y for y in b))
    if norm_a == 0.0 or norm_b == 0.0:
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / (norm_a * norm_b)


@runtime_checkable
class MemoryStorage(Protocol):
    """User memories, session summaries and conversation messages (MS-1 .. MS-30).

    The seed's ``SetTablePrefix`` is the store's namespace, fixed when the store is made (a
    table prefix, a key prefix or a sub-directory; MS-29). Every method validates all its
    arguments before touching storage; bad input raises InvalidArgument and writes nothing
    (G-3, MS-1). On a closed store every method but ``close`` raises StorageUnavailable (MS-27).
    """

    # --- user memories -------------------------------------------------------------------

    async def save_user_memory(self, memory: UserMemory) -> UserMemory:
        """Store a new memory (MS-3).

        Args:
            memory: the memory; its ``created_at``/``updated_at`` are ignored.

        Returns:
            The stored memory, with ``created_at = updated_at = now`` (MS-2).

        Raises:
            AlreadyExists: a memory with this id is stored (for any user); nothing changes.
            InvalidArgument: a field is outside its domain (MS-1, G-3).
        """
        ...

    async def get_user_memories(
        self,
        user_id: str,
        limit: int = 0,
        retrieval: MemoryRetrieval = MemoryRetrieval.LAST_N,
        query: str | None = None,
    ) -> list[UserMemory]:
        """The user's memories in the order of ``retrieval``, at most ``limit`` (MS-4 .. MS-7).

        Args:
            user_id: whose memories.
            limit: at most this many; 0 means all (MS-6).
            retrieval: ``last_n``, ``first_n`` or ``semantic`` (MS-5, MS-7).
            query: the text to rank by; required for ``semantic`` and refused otherwise (MS-6).

        Raises:
            NotSupported: ``semantic`` on a store without an embedder (MS-7).
            InvalidArgument: negative limit, unknown retrieval, misplaced or missing query.
            StorageUnavailable: the embedder failed or gave malformed vectors (MS-8).
        """
        ...

    async def update_user_memory(self, memory: UserMemory) -> UserMemory:
        """Replace the text and input of the user's stored memory ``memory.id`` (MS-9).

        Returns:
            The stored memory: ``created_at`` kept, ``updated_at = now``.

        Raises:
            NotFound: no memory with this id belongs to ``memory.user_id``; nothing changes.
        """
        ...

    async def delete_user_memory(self, memory_id: str) -> None:
        """Delete the memory with this id, whoever owns it; a missing id is a no-op (MS-10)."""
        ...

    async def delete_user_memories_by_ids(self, user_id: str, memory_ids: Sequence[str]) -> None:
        """Delete those of ``memory_ids`` that belong to ``user_id``, atomically (MS-11).

        Ids of other users' memories and unknown ids are ignored.
        """
        ...

    async def clear_user_memories(self, user_id: str) -> None:
        """Delete every memory of ``user_id`` and no other (MS-12)."""
        ...

    async def search_user_memories(
        self, user_id: str, query: str, limit: int = 0
    ) -> list[UserMemory]:
        """The user's memories whose text or input contains ``query`` caselessly (MS-13).

        Ordered as ``last_n``; at most ``limit`` (0 means all; negative: InvalidArgument).
        """
        ...

    # --- session summaries ---------------------------------------------------------------

    async def save_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """Create or replace the summary of (session_id, user_id) (MS-14).

        Returns:
            The stored summary: a new one has ``created_at = updated_at = now``; a replaced
            one keeps its ``created_at`` and gets ``updated_at = now``.
        """
        ...

    async def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        """The summary of (session_id, user_id), or None if there is none (MS-15)."""
        ...

    async def update_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """Replace an existing summary as :meth:`save_session_summary` does (MS-16).

        Raises:
            NotFound: (session_id, user_id) has no summary; nothing is created.
        """
        ...

    async def delete_session_summary(self, session_id: str, user_id: str) -> None:
        """Delete the summary of (session_id, user_id); a missing one is a no-op (MS-15)."""
        ...

    # --- conversation messages -----------------------------------------------------------

    async def save_message(
        self, session_id: str, user_id: str, message: Message
    ) -> ConversationMessage:
        """Append ``message`` to the conversation of (session_id, user_id) (MS-17, MS-18).

        Returns:
            The stored record, with a store-assigned ``id`` and ``created_at = now``.

        Raises:
            InvalidArgument: a bad id or a malformed message (G-14); nothing is written.
        """
        ...

    async def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        """The newest ``limit`` messages of the conversation, oldest first (MS-19).

        ``limit`` 0 means all; negative raises InvalidArgument. Order is save order (MS-18).
        """
        ...

    async def delete_messages(self, session_id: str, user_id: str) -> None:
        """Delete the conversation of (session_id, user_id); missing is a no-op (MS-20)."""
        ...

    async def get_message_count(self, user_id: str, session_id: str) -> int:
        """How many messages the conversation of (session_id, user_id) holds (MS-21).

        Note the seed's argument order: user first, then session.
        """
        ...

    # --- retention -----------------------------------------------------------------------

    async def cleanup_old_messages(self, user_id: str, before: int) -> None:
        """Delete the user's messages, in every session, with ``created_at < before`` (MS-22)."""
        ...

    async def cleanup_messages_by_limit(
        self, user_id: str, session_id: str, keep_limit: int
    ) -> None:
        """Keep only the newest ``keep_limit`` messages of one conversation (MS-23).

        Raises:
            InvalidArgument: ``keep_limit <= 0``; nothing is deleted.
        """
        ...

    # --- lifecycle -----------------------------------------------------------------------

    async def health(self) -> None:
        """Return if the storage is reachable and usable; else raise StorageUnavailable (MS-26)."""
        ...

    async def migrate(self) -> None:
        """Create or upgrade the schema; idempotent and keeps every record (MS-28)."""
        ...

    async def close(self) -> None:
        """Release the store's resources; idempotent (G-16, MS-27)."""
        ...
