"""Helpers of the session-service suite: record builders, exact comparison, snapshots.

Scenario data described here is what the suite's tests create; backends never touch it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from agentstores.spec.messages import Message
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    GetRequest,
    ListRequest,
    Session,
    SessionService,
)

__all__ = [
    "APP",
    "USER",
    "assert_same",
    "canon",
    "create",
    "event",
    "scoped_keys",
    "snapshot",
    "state_values",
]

#: The app and user of most scenarios.
APP = "app"
USER = "user"


def event(
    text: str | None = "hello",
    *,
    role: str = "user",
    author: str = "user",
    delta: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Event:
    """An event by ``author`` whose content is one text message (None: no content), with
    ``delta`` as its state delta and any other :class:`Event` field given by keyword."""
    content = None if text is None else Message.text(role, text)
    return Event(
        author=author,
        content=content,
        actions=EventActions(state_delta=dict(delta or {})),
        **fields,
    )


async def create(
    store: SessionService,
    session_id: str | None = None,
    *,
    app: str = APP,
    user: str = USER,
    state: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Session:
    """Create a session of (``app``, ``user``) with an optional id, state and other fields."""
    request = CreateRequest(
        app_name=app, user_id=user, session_id=session_id, state=dict(state or {}), **fields
    )
    return await store.create(request)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)} | {
            "__record__": type(value).__name__
        }
    if isinstance(value, Mapping):
        return {"__map__": sorted(([k, _plain(v)] for k, v in value.items()), key=str)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return {"__float__": repr(value)}  # 1.0 vs 1, -0.0 vs 0.0 stay apart (G-4)
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    return {"__other__": repr(value)}


def canon(value: Any) -> str:
    """An exact, comparable text of records and JSON values: ``True``, ``1`` and ``1.0`` differ,
    ``-0.0`` and ``0.0`` differ, dict order does not matter."""
    return json.dumps(_plain(value), ensure_ascii=False, sort_keys=True)


def assert_same(actual: Any, expected: Any, what: str = "result") -> None:
    """Assert ``actual`` equals ``expected`` exactly (see :func:`canon`)."""
    assert actual == expected, f"{what} differs from the spec's model"
    assert canon(actual) == canon(expected), f"{what} differs in JSON value types (G-4)"


async def snapshot(store: SessionService, pairs: Iterable[tuple[str, str]]) -> str:
    """Everything visible of the given (app, user) pairs: each session with its merged state
    and all its events, as a :func:`canon` text (to check that nothing was written)."""
    seen: list[Any] = []
    for app, user in pairs:
        for listed in await store.list(ListRequest(app, user)):
            full = await store.get(GetRequest(app, user, listed.id))
            seen.append(full)
    return canon(seen)


def scoped_keys(base: Sequence[str] = ("k", "n")) -> list[str]:
    """State keys of every scope for the given base names (SV-8, SV-9)."""
    prefixes = ("", "session:", "app:", "user:", "temp:", "App:")
    return [prefix + name for prefix in prefixes for name in base]


def state_values() -> st.SearchStrategy[Any]:
    """Small JSON values whose types are easy to confuse (G-4): 1, 1.0, True, None, -0.0."""
    return st.sampled_from([0, 1, 1.0, True, False, None, -0.0, "x", "", [1], {"a": 1}, 2**70])
