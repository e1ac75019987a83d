"""agentscope's own ``JSONSession`` and ``RedisSession`` (1.0.x) as agentstores backends.

This adapter is deliberately thin: it lets the conformance kit call agentscope's session
classes through the ``StateSessionStore`` protocol (``agentstores.spec.state_session``) and
translates calling conventions only. It never checks, repairs or hides what agentscope does;
every failure in the reports beside this file is agentscope's behaviour (see README.md).

What the adapter does, and nothing more:

* **Ids and arguments pass through unchanged.** The kit's ``user_id`` default is
  ``"default_user"`` (ST-1); the adapter always passes the user id explicitly, so agentscope's
  own defaults (``""`` for ``JSONSession``, ``"default_user"`` for ``RedisSession``) never
  apply. No id, module, state or flag is checked by the adapter.
* **Exceptions are translated where the translation is exact**, each case identified by where
  agentscope raised it, not by guessing:

  - agentscope's "session does not exist" ``ValueError``, raised by its own
    ``load_session_state`` when ``allow_not_exist`` is false -> ``NotFound`` (ST-5);
  - an error of the ``json`` encoder inside agentscope's save (a state that is not
    serialisable, e.g. a set or a circular list) -> ``InvalidArgument`` (ST-6);
  - an ``AttributeError`` because a value passed as a module has no ``state_dict`` /
    ``load_state_dict`` (agentscope calls the method without checking) -> ``InvalidArgument``;
  - ``OSError`` from the file system and ``redis.RedisError`` -> ``StorageUnavailable``, the
    kit's convention for engine errors (G-11).

  Anything else propagates as agentscope raised it. Exceptions raised by a module's own
  ``state_dict`` / ``load_state_dict`` propagate unchanged, as ST-2 and ST-4 require: the
  adapter hands agentscope a relay per module that marks them, so they are never translated.
* **Deleting and listing**, which agentscope lacks, are done the thinnest honest way, on
  agentscope's own storage layout and through its own key/path functions:

  - ``JSONSession``: delete removes the file ``_get_save_path(session, user)`` names; listing
    reverses that naming (``{save_dir}/{user}_{session}.json``) over the files on disk.
  - ``RedisSession``: delete is ``DEL`` of ``_get_session_key(session, user)``; listing is a
    ``SCAN`` with ``MATCH`` on ``{prefix}user_id:{user}:session:*:state`` and reverses the
    pattern. As the kit never scans a Redis server it did not start, listing raises
    ``NotSupported`` when ``$AGENTSTORES_REDIS_URL`` names a server.

  Both namings are not injective (that is one of the findings), so no listing built on them can
  tell every user's sessions apart; the adapter does not try. ``after`` and ``limit``, which
  are the adapter's own parameters, are checked as ST-9 says.
* **Configuration**: ``JSONSession(save_dir=ctx.root / ctx.namespace)``;
  ``RedisSession(host, port, db, key_prefix=ctx.namespace + ":", key_ttl=...)`` on the kit's
  Redis server, with the context option ``ttl_seconds`` passed unchanged as ``key_ttl``.
  ``JSONSession`` has no TTL, so its opener raises ``NotSupported`` if asked for one (ST-18).

Capabilities claimed: ``durable`` for both (files; a Redis server that outlives the handles);
``ttl`` for Redis only, since ``RedisSession`` implements ``key_ttl``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import CodeType, TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.exceptions
from agentscope.session import JSONSession, RedisSession

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.reference.redis import server
from agentstores.spec.errors import InvalidArgument, NotFound, NotSupported, StorageUnavailable
from agentstores.spec.state_session import DEFAULT_USER_ID
from agentstores.spec.values import check_id

__all__ = ["JSON_BACKEND", "REDIS_BACKEND", "AgentscopeStore", "open_json", "open_redis"]

#: The agentscope release under test, named in the reports.
AGENTSCOPE_VERSION = importlib.metadata.version("agentscope")

#: The kit's context option carrying a time to live in seconds (state_session suite, ST-18).
TTL_OPTION = "ttl_seconds"

#: A character no id contains (G-1), used to find where agentscope puts the session id in a
#: path or key it builds.
_MARK = "\x00"


# --- relaying modules ------------------------------------------------------------------------


class _ModuleRaised(Exception):
    """Carries an exception raised by a module's own code through agentscope, untranslated."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


class _NotAModule(AttributeError):
    """agentscope called ``state_dict`` / ``load_state_dict`` on a value that has none."""


class _Relay:
    """Stands in for one module towards agentscope; forwards the two calls agentscope makes.

    The method is looked up when agentscope calls it (so a value without it fails exactly
    when agentscope would fail), and an exception from the module's own code is wrapped so
    that the adapter lets it through unchanged instead of translating it.
    """

    __slots__ = ("_module",)

    def __init__(self, module: object) -> None:
        self._module = module

    def _method(self, name: str) -> Callable[..., Any]:
        method = getattr(self._module, name, None)
        if not callable(method):
            raise _NotAModule(f"{type(self._module).__name__} object has no attribute {name!r}")
        return method  # type: ignore[no-any-return]

    def state_dict(self) -> Any:
        method = self._method("state_dict")
        try:
            return method()
        except Exception as exc:
            raise _ModuleRaised(exc) from exc

    def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> None:
        method = self._method("load_state_dict")
        try:
            method(state_dict, *args, **kwargs)
        except Exception as exc:
            raise _ModuleRaised(exc) from exc


# --- translating exceptions ------------------------------------------------------------------

_JSON_ENCODER_FILE = os.path.normcase(os.path.abspath(json.encoder.__file__))


def _raising_code(exc: BaseException) -> CodeType | None:
    """The code object of the function whose frame raised ``exc`` (innermost frame)."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code


def _translate(exc: Exception, session: object) -> BaseException | None:
    """The kit error for an exception agentscope raised, or None to let it through as is."""
    if isinstance(exc, _ModuleRaised):
        return exc.original
    if isinstance(exc, _NotAModule):
        return InvalidArgument(f"not a state module: {exc}")
    code = _raising_code(exc)
    # agentscope's own "no such session" error: a ValueError raised by its load method.
    load_code = type(session).load_session_state.__code__  # type: ignore[attr-defined]
    if type(exc) is ValueError and code is load_code:
        return NotFound(str(exc))
    # The json encoder refusing a state, while agentscope serialises a save.
    filename = os.path.normcase(os.path.abspath(code.co_filename)) if code else ""
    if isinstance(exc, TypeError | ValueError) and filename == _JSON_ENCODER_FILE:
        return InvalidArgument(f"state not serialisable by agentscope: {exc}")
    if isinstance(exc, OSError | redis.exceptions.RedisError):
        return StorageUnavailable(f"{type(exc).__name__}: {exc}")
    return None


async def _call(session: object, call: Awaitable[None]) -> None:
    """Await one agentscope call and translate what it raises (see the module docstring)."""
    try:
        await call
    except Exception as exc:
        error = _translate(exc, session)
        if error is None:
            raise
        if not isinstance(exc, _ModuleRaised):
            error.__cause__ = exc
    else:
        return
    # Raised outside the handler, so a module's own exception carries no adapter context.
    raise error


def _check_list_bounds(after: object, limit: object) -> None:
    """ST-9 rules for the adapter's own listing parameters."""
    if after is not None:
        check_id(after, what="after")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise InvalidArgument(f"limit must be an int or None, not {type(limit).__name__}")
    if isinstance(limit, int) and limit < 0:
        raise InvalidArgument("limit must not be negative")


def _page(sessions: set[str], after: str | None, limit: int | None) -> list[str]:
    ordered = sorted(s for s in sessions if after is None or s > after)
    return ordered if limit is None else ordered[:limit]


# --- the store -------------------------------------------------------------------------------


class AgentscopeStore:
    """An agentscope session object behind the ``StateSessionStore`` protocol.

    Save and load go to agentscope unchanged (modules relayed, exceptions translated);
    delete and list are the engine-specific thin operations of the subclasses.
    """

    def __init__(self, session: JSONSession | RedisSession) -> None:
        self.session = session

    async def save_session_state(
        self, session_id: str, user_id: str = DEFAULT_USER_ID, **state_modules_mapping: Any
    ) -> None:
        """agentscope's ``save_session_state`` with the user id always given."""
        # agentscope types its modules as its own StateModule class; a relay only quacks like one.
        relays: dict[str, Any] = {n: _Relay(m) for n, m in state_modules_mapping.items()}
        await _call(
            self.session,
            self.session.save_session_state(session_id, user_id=user_id, **relays),
        )

    async def load_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        allow_not_exist: bool = True,
        **state_modules_mapping: Any,
    ) -> None:
        """agentscope's ``load_session_state`` with the user id always given."""
        # agentscope types its modules as its own StateModule class; a relay only quacks like one.
        relays: dict[str, Any] = {n: _Relay(m) for n, m in state_modules_mapping.items()}
        await _call(
            self.session,
            self.session.load_session_state(
                session_id,
                user_id=user_id,
                allow_not_exist=allow_not_exist,
                **relays,
            ),
        )

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        """Remove what agentscope stored for the pair; True if there was something."""
        raise NotSupported("agentscope has no delete")

    async def list_sessions(
        self, user_id: str = DEFAULT_USER_ID, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """The sessions agentscope's naming gives ``user_id``, in code-point order."""
        raise NotSupported("agentscope has no listing")

    async def close(self) -> None:
        """Nothing to release (JSONSession has no close)."""

    async def __aenter__(self) -> AgentscopeStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class JSONStore(AgentscopeStore):
    """``JSONSession``: one file per (user, session) named by agentscope."""

    session: JSONSession

    def _path(self, session_id: str, user_id: str) -> str:
        path: str = self.session._get_save_path(session_id, user_id=user_id)
        return path

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        """Remove the file agentscope's ``_get_save_path`` names for the pair."""
        try:
            os.remove(self._path(session_id, user_id))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return True

    async def list_sessions(
        self, user_id: str = DEFAULT_USER_ID, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """Every file ``head + S + tail`` on disk, where agentscope names the pair's file
        ``head + session + tail``, gives session ``S``."""
        _check_list_bounds(after, limit)
        head, _, tail = self._path(_MARK, user_id).partition(_MARK)
        found: set[str] = set()
        try:
            for path in _files_under(os.path.dirname(head) or ".", head):
                if path.startswith(head) and path.endswith(tail) and len(path) > len(head + tail):
                    found.add(path[len(head) : len(path) - len(tail)])
        except OSError as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return _page(found, after, limit)


def _files_under(directory: str, head: str) -> list[str]:
    """File paths under ``directory`` (built by joining names, as agentscope builds them) that
    can start with ``head``; only directories on the way to ``head`` or below it are entered."""
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [
            d
            for d in dirnames
            if (os.path.join(dirpath, d) + os.sep).startswith(head)
            or head.startswith(os.path.join(dirpath, d) + os.sep)
        ]
        files.extend(os.path.join(dirpath, name) for name in filenames)
    return files


class RedisStore(AgentscopeStore):
    """``RedisSession``: one string key per (user, session) named by agentscope."""

    session: RedisSession

    def _key(self, session_id: str, user_id: str) -> str:
        key: str = self.session._get_session_key(session_id, user_id=user_id)
        return key

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        """``DEL`` of the key agentscope's ``_get_session_key`` names for the pair."""
        try:
            removed = await self.session.get_client().delete(self._key(session_id, user_id))
        except redis.exceptions.RedisError as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return bool(removed)

    async def list_sessions(
        self, user_id: str = DEFAULT_USER_ID, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """``SCAN`` for keys ``head + * + tail`` where agentscope's key of the pair is
        ``head + session + tail``; each match gives the session in place of ``*``."""
        _check_list_bounds(after, limit)
        if os.environ.get(server.URL_VARIABLE, "").strip():
            raise NotSupported(
                "listing SCANs the database; the kit never scans a server it did not start "
                f"(unset {server.URL_VARIABLE} to use a disposable one)"
            )
        head, _, tail = self._key(_MARK, user_id).partition(_MARK)
        found: set[str] = set()
        try:
            client = self.session.get_client()
            async for key in client.scan_iter(match=_glob_escape(head) + "*" + _glob_escape(tail)):
                found.add(key[len(head) : len(key) - len(tail)])
        except redis.exceptions.RedisError as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return _page(found, after, limit)

    async def close(self) -> None:
        """agentscope's ``RedisSession.close()``."""
        await _call(self.session, self.session.close())


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\^-" else c for c in text)


# --- openers and backends --------------------------------------------------------------------


@asynccontextmanager
async def open_json(ctx: StoreContext) -> AsyncIterator[JSONStore]:
    """``JSONSession(save_dir=ctx.root / ctx.namespace)``; NotSupported for a TTL (ST-18)."""
    if ctx.options.get(TTL_OPTION) is not None:
        raise NotSupported("agentscope's JSONSession has no time to live")
    store = JSONStore(JSONSession(save_dir=str(Path(ctx.root) / ctx.namespace)))
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def open_redis(ctx: StoreContext) -> AsyncIterator[RedisStore]:
    """``RedisSession`` on the kit's Redis server, key prefix ``ctx.namespace + ":"``, and
    ``key_ttl`` = the context option ``ttl_seconds`` as given (None without it)."""
    url = urlsplit(server.current_url())
    db = url.path.lstrip("/")
    session = RedisSession(
        host=url.hostname or "localhost",
        port=url.port or 6379,
        db=int(db) if db else 0,
        password=unquote(url.password) if url.password else None,
        key_ttl=ctx.options.get(TTL_OPTION),
        key_prefix=ctx.namespace + ":",
    )
    store = RedisStore(session)
    try:
        yield store
    finally:
        await store.close()


JSON_BACKEND = Backend(
    name="agentscope-json",
    openers={Family.STATE_SESSION: open_json},
    capabilities=frozenset({Capability.DURABLE}),
    description=f"agentscope {AGENTSCOPE_VERSION} JSONSession (examples/agentscope/adapter.py)",
)

REDIS_BACKEND = Backend(
    name="agentscope-redis",
    openers={Family.STATE_SESSION: open_redis},
    capabilities=frozenset({Capability.DURABLE, Capability.TTL}),
    lifespan=server.kit_lifespan,
    description=f"agentscope {AGENTSCOPE_VERSION} RedisSession (examples/agentscope/adapter.py)",
)
