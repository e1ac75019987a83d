"""State-session rules shared by the three reference engines (JSON file, SQLite, Redis).

The spec (``spec/state_session.md``) states the rules; this module is the one executable copy
of the parts that do not depend on the engine, so the engines differ only in how they keep
sessions and deadlines:

* checking arguments before anything is written or loaded (ST-1, ST-6, ST-9, G-3, G-8);
* taking the snapshot of a save: every ``state_dict()`` called once, checked and serialised
  to JSON text before the engine is touched (ST-2, G-5, G-7);
* handing loaded states to the modules, in the order they were named (ST-4);
* the time-to-live configuration (ST-18) and the kit's context option that carries it.

Every function raises only :mod:`agentstores.spec.errors` types, except that a module's own
exception from ``state_dict()`` or ``load_state_dict()`` propagates unchanged (ST-2, ST-4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentstores.spec.errors import InvalidArgument, NotFound, StorageUnavailable
from agentstores.spec.state_session import check_ttl_seconds
from agentstores.spec.values import JSONObject, check_id, check_json_object, dump_json, load_json

__all__ = [
    "TTL_OPTION",
    "check_list",
    "check_load",
    "check_session",
    "missing",
    "parse_states",
    "restore",
    "snapshot",
    "ttl_milliseconds",
]

#: The kit's context option that configures a store's time to live, in seconds (ST-18).
TTL_OPTION = "ttl_seconds"


def check_session(session_id: object, user_id: object) -> tuple[str, str]:
    """``(session_id, user_id)`` if both are ids (ST-1, G-1), else InvalidArgument."""
    return check_id(session_id, what="session_id"), check_id(user_id, what="user_id")


def _check_modules(modules: Mapping[str, object], method: str) -> None:
    for name, module in modules.items():
        check_id(name, what="module name")
        if not callable(getattr(module, method, None)):
            raise InvalidArgument(
                f"module {name!r} is a {type(module).__name__}, which has no {method}()"
            )


def snapshot(modules: Mapping[str, object]) -> dict[str, str]:
    """The states of a save as JSON text per module name (ST-2, ST-6).

    Names and modules are checked first; then each ``state_dict()`` is called once, checked to
    be a JSON object (G-4) and serialised at once, so later changes by the caller cannot reach
    the store (G-7). Raises InvalidArgument before anything is written.
    """
    _check_modules(modules, "state_dict")
    texts: dict[str, str] = {}
    for name, module in modules.items():
        state = module.state_dict()  # type: ignore[attr-defined]  # checked callable above
        texts[name] = dump_json(check_json_object(state, what=f"state of module {name!r}"))
    return texts


def check_load(
    session_id: object, user_id: object, allow_not_exist: object, modules: Mapping[str, object]
) -> tuple[str, str, list[str]]:
    """``(session_id, user_id, module names)`` of a valid load, else InvalidArgument (ST-6)."""
    session, user = check_session(session_id, user_id)
    if not isinstance(allow_not_exist, bool):
        raise InvalidArgument(
            f"allow_not_exist must be a bool, not {type(allow_not_exist).__name__}"
        )
    _check_modules(modules, "load_state_dict")
    return session, user, list(modules)


def missing(session_id: str, user_id: str) -> NotFound:
    """The error of a load of a missing session with ``allow_not_exist=False`` (ST-5)."""
    return NotFound(f"no state for session {session_id!r} of user {user_id!r}")


def parse_states(texts: Mapping[str, str | bytes]) -> dict[str, JSONObject]:
    """Stored JSON texts parsed into fresh states; StorageUnavailable if one is damaged.

    Parse everything before loading any module, so a damaged record touches no module (G-11).
    """
    states: dict[str, JSONObject] = {}
    for name, text in texts.items():
        try:
            state = load_json(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise StorageUnavailable(f"stored state of module {name!r} is not JSON") from exc
        if not isinstance(state, dict):
            raise StorageUnavailable(f"stored state of module {name!r} is not a JSON object")
        states[name] = state
    return states


def restore(modules: Mapping[str, Any], states: Mapping[str, JSONObject]) -> None:
    """Load each named module that ``states`` has, in the order named (ST-4).

    Each module gets its state object, which it owns (G-7: parse a fresh one per load);
    modules without stored state are not called; a module's own exception propagates and the
    modules after it are not called.
    """
    for name, module in modules.items():
        if name in states:
            module.load_state_dict(states[name])


def check_list(user_id: object, after: object, limit: object) -> tuple[str, str | None, int | None]:
    """The arguments of ``list_sessions`` if valid (ST-9, G-8), else InvalidArgument."""
    user = check_id(user_id, what="user_id")
    if after is not None:
        check_id(after, what="after")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidArgument(f"limit must be an int or None, not {type(limit).__name__}")
        if limit < 0:
            raise InvalidArgument("limit must not be negative")
    return user, after, limit  # type: ignore[return-value]  # narrowed by the checks


def ttl_milliseconds(ttl_seconds: object) -> int | None:
    """A checked ``ttl_seconds`` (ST-18) in milliseconds, or None for no TTL."""
    ttl = check_ttl_seconds(ttl_seconds)
    return None if ttl is None else ttl * 1000
