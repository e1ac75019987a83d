"""The session-store family (seed 000: aster's ``SessionStore``, a fork of goose's).

Requirement IDs ``SS-n`` refer to ``session_store.md`` beside this module, which is the
contract. A session is a coding agent's working session: where it runs, what it is called,
token counters, extension state, provider and recipe settings, and its conversation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from .messages import Message

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "SEARCH_DEFAULT_LIMIT",
    "ChatHistoryMatch",
    "ExtensionData",
    "ModelConfig",
    "Recipe",
    "Session",
    "SessionInsights",
    "SessionStore",
    "SessionType",
    "TokenStatsUpdate",
]

#: SS-17: the ``format`` field of an exported session document.
EXPORT_FORMAT = "agentstores.session"
#: SS-17: the version of the export format this spec defines.
EXPORT_VERSION = 1
#: SS-21: how many matches a search returns when the caller names no limit.
SEARCH_DEFAULT_LIMIT = 10

#: Extension state by name (e.g. ``"todo.v0"``) to a JSON value (G-4).
ExtensionData = dict[str, Any]
#: A provider's model configuration: an opaque JSON object, round-tripped exactly (SS-2).
ModelConfig = dict[str, Any]
#: A recipe: an opaque JSON object, round-tripped exactly (SS-2).
Recipe = dict[str, Any]


class SessionType(StrEnum):
    """What kind of session this is (SS-1)."""

    USER = "user"
    SCHEDULED = "scheduled"
    SUB_AGENT = "sub_agent"
    HIDDEN = "hidden"
    TERMINAL = "terminal"


@dataclass(frozen=True)
class Session:
    """One session (SS-1, SS-2). Times are ms since the epoch (G-6).

    ``conversation`` is None unless the session was read with ``include_messages=True``;
    ``message_count`` is always the number of stored messages.
    """

    id: str
    working_dir: str
    name: str
    created_at: int
    updated_at: int
    session_type: SessionType = SessionType.USER
    user_set_name: bool = False
    extension_data: Mapping[str, Any] = field(default_factory=dict)
    total_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    accumulated_total_tokens: int | None = None
    accumulated_input_tokens: int | None = None
    accumulated_output_tokens: int | None = None
    schedule_id: str | None = None
    recipe: Mapping[str, Any] | None = None
    user_recipe_values: Mapping[str, str] | None = None
    provider_name: str | None = None
    model_config: Mapping[str, Any] | None = None
    message_count: int = 0
    conversation: tuple[Message, ...] | None = None


@dataclass(frozen=True)
class SessionInsights:
    """Totals over every session of the store (SS-16)."""

    total_sessions: int
    total_tokens: int


@dataclass(frozen=True)
class TokenStatsUpdate:
    """A partial update of a session's token counters; a None field leaves it unchanged (SS-12)."""

    schedule_id: str | None = None
    total_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    accumulated_total_tokens: int | None = None
    accumulated_input_tokens: int | None = None
    accumulated_output_tokens: int | None = None


@dataclass(frozen=True)
class ChatHistoryMatch:
    """One message found by :meth:`SessionStore.search_chat_history` (SS-20 .. SS-22)."""

    session_id: str
    session_name: str
    message_role: str
    message_content: str
    timestamp: int | None
    relevance_score: float


@runtime_checkable
class SessionStore(Protocol):
    """The 18 operations of the seed, plus ``close`` (G-16)."""

    async def create_session(
        self, working_dir: str, name: str, session_type: SessionType = SessionType.USER
    ) -> Session:
        """Create an empty session with a new id (SS-3, SS-4)."""
        ...

    async def get_session(self, session_id: str, include_messages: bool = False) -> Session:
        """The session, with its conversation if asked (SS-5). NotFound if missing."""
        ...

    async def add_message(self, session_id: str, message: Message) -> None:
        """Append one message (SS-8)."""
        ...

    async def replace_conversation(self, session_id: str, conversation: Sequence[Message]) -> None:
        """Replace the whole conversation atomically (SS-9)."""
        ...

    async def list_sessions(self) -> list[Session]:
        """Sessions of type ``user`` and ``scheduled``, most recently updated first (SS-6)."""
        ...

    async def list_sessions_by_types(self, types: Sequence[SessionType]) -> list[Session]:
        """Sessions of the given types, most recently updated first (SS-6)."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and its messages (SS-7). NotFound if missing."""
        ...

    async def get_insights(self) -> SessionInsights:
        """Session count and token total (SS-16)."""
        ...

    async def export_session(self, session_id: str) -> str:
        """The session and its conversation as a versioned JSON document (SS-17)."""
        ...

    async def import_session(self, document: str) -> Session:
        """Create a new session from an exported document (SS-18)."""
        ...

    async def copy_session(self, session_id: str, new_name: str) -> Session:
        """Create a new session copying what SS-19 lists."""
        ...

    async def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        """Delete the messages created at or after ``timestamp`` (SS-10)."""
        ...

    async def update_session_name(self, session_id: str, name: str, user_set: bool) -> None:
        """Rename the session and record who named it (SS-11)."""
        ...

    async def update_extension_data(self, session_id: str, extension_data: ExtensionData) -> None:
        """Replace the extension data (SS-11)."""
        ...

    async def update_token_stats(self, session_id: str, stats: TokenStatsUpdate) -> None:
        """Set the counters that ``stats`` gives; leave the others (SS-12)."""
        ...

    async def update_provider_config(
        self, session_id: str, provider_name: str | None, model_config: ModelConfig | None
    ) -> None:
        """Set provider name and/or model config; None leaves a field unchanged (SS-13)."""
        ...

    async def update_recipe(
        self,
        session_id: str,
        recipe: Recipe | None,
        user_recipe_values: Mapping[str, str] | None,
    ) -> None:
        """Set recipe and/or its user values; None leaves a field unchanged (SS-13)."""
        ...

    async def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        """Messages matching ``query``, newest first (SS-20 .. SS-22)."""
        ...

    async def close(self) -> None:
        """Release the store's resources; idempotent (G-16)."""
        ...
