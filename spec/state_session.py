"""The state-session family (seed 004, agentscope's ``SessionBase``).

Requirement IDs ``ST-n`` refer to ``state_session.md`` beside this module, which is the
contract; this module is its typed form. A session's state is the ``state_dict()`` of each of
its named *state modules* (an agent, a memory, a toolkit...), saved together under a
``(user_id, session_id)`` pair and restored into modules with ``load_state_dict()``.

Beyond the seed, a store can delete a session's state and list a user's sessions, and a store
configured with a time to live expires sessions that nobody saved or loaded for that long.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .errors import InvalidArgument
from .values import MAX_U64, check_non_negative_int

__all__ = [
    "DEFAULT_USER_ID",
    "PARAMETER_NAMES",
    "StateModule",
    "StateSessionStore",
    "check_ttl_seconds",
]

#: ST-1: the user id of every call that names none. The seed's ``""`` is not an id (G-1).
DEFAULT_USER_ID = "default_user"

#: Names that cannot name a module: Python binds them to the methods' own parameters.
PARAMETER_NAMES = frozenset({"self", "session_id", "user_id", "allow_not_exist"})


@runtime_checkable
class StateModule(Protocol):
    """Anything whose state can be saved and restored: agentscope's ``StateModule`` fits.

    ``state_dict()`` returns the module's state as a JSON object (G-4); ``load_state_dict``
    replaces the module's state with a given one. Extra parameters with defaults (agentscope's
    ``strict=True``) are allowed: a store passes the state positionally and nothing else.
    """

    def state_dict(self) -> dict[str, Any]:
        """The module's current state, a JSON object (ST-2)."""
        ...

    def load_state_dict(self, state_dict: dict[str, Any], /) -> None:
        """Replace the module's state with ``state_dict`` (ST-4)."""
        ...


def check_ttl_seconds(value: object) -> int | None:
    """Return a valid time to live (ST-18): ``None`` (no TTL) or a positive int of seconds.

    Raises InvalidArgument for anything else (0, negatives, floats, bools, strings).
    """
    if value is None:
        return None
    ttl = check_non_negative_int(value, what="ttl_seconds", maximum=MAX_U64 // 1000)
    if ttl == 0:
        raise InvalidArgument("ttl_seconds must be positive (use None for no expiry)")
    return ttl


@runtime_checkable
class StateSessionStore(Protocol):
    """Saved module states per (user, session) (ST-1 .. ST-18).

    Module names are the keyword arguments of :meth:`save_session_state` and
    :meth:`load_session_state`; they are ids (G-1), so ``**{"a/b": module}`` works, while the
    parameter names themselves (:data:`PARAMETER_NAMES`) cannot name a module.
    """

    async def save_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        **state_modules_mapping: StateModule,
    ) -> None:
        """Store the named modules' states as the session's whole state (ST-2, ST-3).

        Every ``state_dict()`` is called and checked before anything is written; a module not
        named is no longer part of the session afterwards. A store with a TTL restarts the
        session's clock (ST-16); one without leaves an existing deadline as it is (ST-17).

        Raises:
            InvalidArgument: an id or module name outside G-1, a value that is not a state
                module, or a state outside the JSON object domain (ST-6); nothing is written.
            StorageUnavailable: the engine failed; the previous state is intact (G-11).
        """
        ...

    async def load_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        allow_not_exist: bool = True,
        **state_modules_mapping: StateModule,
    ) -> None:
        """Restore each named module that the stored state has (ST-4, ST-7).

        Modules the stored state lacks are left untouched. A store with a TTL restarts the
        session's clock when it finds the session (ST-16).

        Raises:
            NotFound: the session does not exist and ``allow_not_exist`` is false (ST-5); no
                module was touched.
            InvalidArgument: an argument outside its domain (ST-6); no module was touched.
        """
        ...

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        """Delete the session's state; True if there was one, False otherwise (ST-8)."""
        ...

    async def list_sessions(
        self,
        user_id: str = DEFAULT_USER_ID,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """The user's session ids in code-point order, after ``after``, at most ``limit``.

        See ST-9 and ST-10: ``after`` is an exclusive lower bound (keyset paging), ``limit``
        ``None`` means all and 0 means none; a negative limit raises InvalidArgument (G-8).
        """
        ...

    async def close(self) -> None:
        """Release the store's resources; idempotent (G-16)."""
        ...
