"""The session-service state machine: random operation sequences against a backend and the
model (:mod:`agentstores.conformance.models.session_service`), every result compared.

Design, so that a short run (the ``ci`` profile allows about 30 steps) reaches deep states:

* every run starts with three sessions, two of the pair ("a", "b:c") and one of ("a:b", "c"),
  the pair a naive ``app:user`` join confuses with it (SV-26), and a few events on them;
* tenants are drawn from those few names, and state keys from every scope (SV-8, SV-9);
* the write rules (create, append one to three events, update state, update metadata, delete)
  move the clock a little first, so that times tie and differ;
* one round of reads compares every read at once on one session and its pair: ``get`` (all
  events and the newest few), ``get_events`` with a filter whose time bounds sit on stored
  timestamps, ``list`` and ``search``; it is a rule of its own and also ends every append
  (hypothesis leaves some rules out of each run, so reads that depend on appends go with them);
* a rule switches to a second store object on the run's context (opened on first use) or, for
  a backend claiming ``durable``, closes and reopens the current one, so that truth kept in
  process memory is caught;
* every mismatch is raised from one place, so that hypothesis shrinks one bug, not several.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    precondition,
    rule,
)

from agentstores.spec.errors import StoreError
from agentstores.spec.messages import Message, text_of
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    EventFilter,
    GetRequest,
    ListRequest,
    MatchMode,
    SearchOptions,
    Session,
    SessionService,
    UpdateRequest,
)

from ..backend import Capability
from ..clock import ManualClock
from ..harness import Harness
from ..models.session_service import SessionServiceModel
from ._session_service_support import canon, state_values

__all__ = ["SessionServiceMachine", "machine_for"]

T = TypeVar("T")
Key = tuple[str, str, str]

#: Tenant names whose naive joins collide: ("a:b", "c") and ("a", "b:c"). Few of them, so that
#: the sessions of a run meet (more adversarial names are in the isolation tests).
APPS = ("a", "a:b")
USERS = ("c", "b:c")
#: The sessions every run starts with (see SessionServiceMachine.seed_sessions).
SEEDS = (("a", "b:c", "s1"), ("a", "b:c", "s2"), ("a:b", "c", "s1"))
#: Creating stops at this many live sessions, so that the steps of a run meet on few sessions.
MAX_SESSIONS = 5
WORDS = ("alpha", "Beta", "gamma", "delta", "ALPHA")
KEYS = ("k", "n", "session:k", "app:k", "app:n", "user:k", "temp:k", "App:k")

#: What an appended event is made of: text, role, author, agent, branch, time skew from the
#: clock (None: the store stamps it), event id (None: the store chooses), state delta.
EventSpec = tuple[
    str | None, str, str, str | None, str | None, int | None, str | None, dict[str, Any]
]


def _deltas() -> st.SearchStrategy[dict[str, Any]]:
    """State deltas over keys of every scope, with values whose types are easy to confuse."""
    return st.dictionaries(st.sampled_from(KEYS), state_values(), max_size=3)


def _texts() -> st.SearchStrategy[str | None]:
    """Message texts from a few words (so that searches hit), now and then no content."""
    words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
    return st.one_of(words, words, words, st.none())


def _event_specs() -> st.SearchStrategy[EventSpec]:
    return st.tuples(
        _texts(),
        st.sampled_from(["user", "assistant", "tool"]),
        st.sampled_from(["user", "bot"]),
        st.sampled_from([None, "ag1"]),
        st.sampled_from([None, "a", "a.b", "a.bc"]),
        st.one_of(st.none(), st.integers(-3, 3)),
        st.sampled_from([None, None, None, "e1", "e2", "e3"]),
        _deltas(),
    )


def _picks() -> st.SearchStrategy[int | None]:
    """A time bound: None, or which stored timestamp to use (and whether one past it)."""
    return st.one_of(st.none(), st.integers(0, 15))


def _pages() -> st.SearchStrategy[tuple[int | None, int]]:
    """A (limit, offset) pair: mostly everything, sometimes a small page or none."""
    return st.tuples(st.sampled_from([None, None, None, 0, 1, 2]), st.sampled_from([0, 0, 0, 1, 2]))


def _ticks() -> st.SearchStrategy[int]:
    """How far a write moves the clock first: often not at all, so that times tie."""
    return st.sampled_from([0, 0, 1, 2])


@dataclass(frozen=True)
class Reads:
    """The parameters of one round of reads (see :meth:`SessionServiceMachine._observe`):
    ``get`` of the newest ``recent`` events, a ``get_events`` filter, a ``list`` page and a
    search. Time bounds are picks among stored timestamps (see ``_range``); the query is made
    of words of stored texts (see ``_query``)."""

    recent: int
    author: str | None
    agent_id: str | None
    branch: str | None
    event_bounds: tuple[int | None, int | None]
    event_page: tuple[int | None, int]
    list_page: tuple[int | None, int]
    query: tuple[int, int, str, bool]
    mode: MatchMode
    whole_pair: bool
    agent_ids: tuple[str, ...] | None
    role: str | None
    search_bounds: tuple[int | None, int | None]
    search_page: tuple[int | None, int]


def _reads() -> st.SearchStrategy[Reads]:
    """Read parameters, most of them loose so that reads usually return something."""
    return st.builds(
        Reads,
        recent=st.sampled_from([0, 1, 2, 5]),
        author=st.sampled_from([None, None, None, "user", "bot"]),
        agent_id=st.sampled_from([None, None, None, "ag1"]),
        branch=st.sampled_from([None, None, None, "a", "a.b"]),
        event_bounds=st.tuples(_picks(), _picks()),
        event_page=_pages(),
        list_page=_pages(),
        query=st.tuples(
            st.integers(0, 30),
            st.integers(1, 3),
            st.sampled_from(["same", "lower", "upper", "swapcase"]),
            st.booleans(),
        ),
        mode=st.sampled_from(MatchMode),
        whole_pair=st.sampled_from([True, True, False]),
        agent_ids=st.sampled_from([None, None, None, ("ag1",)]),
        role=st.sampled_from([None, None, None, "user", "assistant"]),
        search_bounds=st.tuples(_picks(), _picks()),
        search_page=_pages(),
    )


def _difference(got: object, expected: Callable[[], object]) -> str | None:
    """How the store's outcome ``got`` differs from the model's (None if it does not)."""
    try:
        want = expected()
    except StoreError as exc:
        if isinstance(got, type(exc)):
            return None
        return f"the model raised {exc!r}, the store gave {got!r}"
    if isinstance(got, StoreError):
        return f"the store raised {got!r}, the model gave {want!r}"
    if got == want and canon(got) == canon(want):
        return None
    fields = getattr(want, "__dataclass_fields__", None)
    if fields is not None and type(got) is type(want):
        for name in fields:
            mine, theirs = getattr(got, name), getattr(want, name)
            if canon(mine) != canon(theirs):
                return f"field {name!r}: store {mine!r}, model {theirs!r}"
    return f"store {got!r}, model {want!r}"


class SessionServiceMachine(RuleBasedStateMachine):
    """Runs the service and the model side by side; subclassed per test by :func:`machine_for`."""

    harness: ClassVar[Harness[Any]]
    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.context = self.harness.new_context(clock=self.clock)
        self.model = SessionServiceModel()
        self.managers: list[AbstractAsyncContextManager[Any]] = []
        self.stores: list[SessionService] = []
        self._open()  # the second store object is opened when a run first switches to it
        self.active = 0

    def _open(self) -> None:
        manager = self.harness.open(self.context)
        self.stores.append(self.harness.run(manager.__aenter__()))
        self.managers.append(manager)

    @property
    def store(self) -> SessionService:
        return self.stores[self.active]

    def teardown(self) -> None:
        while self.managers:
            self.harness.run(self.managers.pop().__aexit__(None, None, None))

    # --- comparison ----------------------------------------------------------------------

    def _outcome(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T | StoreError:
        try:
            return self.harness.run(call())
        except StoreError as exc:
            return exc

    def _compare(self, what: str, got: object, expected: Callable[[], object]) -> object:
        """Compare the store's outcome with the model's; return it if it is a success.

        Every mismatch is raised from this one line, so that hypothesis sees one bug and
        shrinks it once, not one per kind of difference.
        """
        problem = _difference(got, expected)
        if problem is not None:
            raise AssertionError(f"{what} differs from the spec's model: {problem}")
        return None if isinstance(got, StoreError) else got

    def _handle(self, key: Key, stale: bool) -> Session:
        """The session a write is made from: the current one, or one version behind."""
        current = self.model.get(GetRequest(*key))
        if current is None:
            return Session(id=key[2], app_name=key[0], user_id=key[1], version=0)
        if stale and current.version > 0:
            return replace(current, version=current.version - 1)
        return current

    def _create(self, request: CreateRequest) -> object:
        """Create on both sides; the model takes the id the store chose, if it chose one."""
        now = self.clock()
        got = self._outcome(lambda: self.store.create(request))
        chosen = got.id if isinstance(got, Session) else (request.session_id or "unused")
        return self._compare(
            "create", got, lambda: self.model.create(request, now=now, session_id=chosen)
        )

    def _append(self, key: Key, spec: EventSpec, stale: bool) -> None:
        text, role, author, agent_id, branch, skew, event_id, delta = spec
        handle = self._handle(key, stale)
        event = Event(
            author=author,
            id=event_id,
            timestamp=None if skew is None else max(0, self.clock() + skew),
            agent_id=agent_id,
            branch=branch,
            content=None if text is None else Message.text(role, text),
            actions=EventActions(state_delta=delta),
        )
        now = self.clock()
        got = self._outcome(lambda: self.store.append_event(handle, event))
        chosen = event_id or (
            got.events[-1].id if isinstance(got, Session) and got.events else uuid.uuid4().hex
        )
        assert chosen is not None
        self._compare(
            "append_event",
            got,
            lambda: self.model.append_event(handle, event, now=now, event_id=chosen),
        )

    @staticmethod
    def _range(
        stamps: Sequence[int], bounds: tuple[int | None, int | None]
    ) -> tuple[int | None, int | None]:
        """A time range whose bounds sit on stored timestamps or one past them, so that the
        inclusive and exclusive ends are exercised (SV-18, SV-19)."""
        if not stamps:
            return None, None
        low, high = (
            None if pick is None else stamps[(pick // 2) % len(stamps)] + pick % 2
            for pick in bounds
        )
        if low is not None and high is not None and low > high:
            low, high = high, low
        return low, high

    def _query(self, app: str, user: str, pick: tuple[int, int, str, bool]) -> str:
        """A query of ``count`` consecutive words of the pair's stored texts from word
        ``start``, recased, maybe with a word no text has (so that matches are likely and
        case and fuzzy shares matter)."""
        start, count, recase, foreign = pick
        words: builtins.list[str] = []
        for listed in self.model.list(ListRequest(app, user)):
            session = self.model.get(GetRequest(app, user, listed.id))
            assert session is not None
            for event in session.events:
                if event.content is not None:
                    words += text_of(event.content).split()
        chosen = [words[(start + i) % len(words)] for i in range(count)] if words else []
        if foreign or not chosen:
            chosen.append("zeta")
        query = " ".join(chosen)
        return query if recase == "same" else str(getattr(query, recase)())

    def _compare_get(self, request: GetRequest, what: str = "get") -> None:
        got = self._outcome(lambda: self.store.get(request))
        self._compare(what, got, lambda: self.model.get(request))

    def _check_read_back(self, key: Key) -> None:
        """After a write, the session reads back as the model has it (order, state, version)."""
        self._compare_get(GetRequest(*key), "get after write")

    # --- store objects ---------------------------------------------------------------------

    @rule(reopen=st.booleans())
    def change_store(self, reopen: bool) -> None:
        """Go on with the other store object, or (``durable`` only) close and reopen this one."""
        if reopen and self.harness.backend.claims(Capability.DURABLE):
            self.harness.run(self.managers.pop(self.active).__aexit__(None, None, None))
            self.stores.pop(self.active)
            self._open()
            self.active = len(self.stores) - 1
        else:
            if len(self.stores) == 1:
                self._open()
            self.active = 1 - self.active

    # --- writes ----------------------------------------------------------------------------

    @initialize(
        target=keys,
        states=st.lists(_deltas(), min_size=3, max_size=3),
        specs=st.lists(_event_specs(), min_size=2, max_size=6),
    )
    def seed_sessions(
        self, states: builtins.list[dict[str, Any]], specs: builtins.list[EventSpec]
    ) -> Any:
        """Start with :data:`SEEDS`, one clock tick apart, and a few events spread over them,
        so that every run has data to read whatever rules hypothesis picks for it."""
        for (app, user, session_id), state in zip(SEEDS, states, strict=True):
            self._create(CreateRequest(app, user, state=state, session_id=session_id))
            self.clock.advance(1)
        for index, spec in enumerate(specs):
            self._append(SEEDS[index % len(SEEDS)], spec, stale=False)
        return multiple(*SEEDS)

    @precondition(lambda self: len(self.model.sessions) < MAX_SESSIONS)
    @rule(
        target=keys,
        tick=_ticks(),
        app=st.sampled_from(APPS),
        user=st.sampled_from(USERS),
        session_id=st.sampled_from([None, "s1", "s2", "s3"]),
        agent_id=st.sampled_from([None, "ag1", "ag2"]),
        state=_deltas(),
        metadata=st.sampled_from([{}, {"m": 1}]),
    )
    def create(
        self,
        tick: int,
        app: str,
        user: str,
        session_id: str | None,
        agent_id: str | None,
        state: dict[str, Any],
        metadata: dict[str, Any],
    ) -> Any:
        self.clock.advance(tick)
        result = self._create(CreateRequest(app, user, agent_id, metadata, state, session_id))
        if isinstance(result, Session):
            return (app, user, result.id)
        return multiple()

    @rule(
        key=keys,
        tick=_ticks(),
        specs=st.lists(_event_specs(), min_size=1, max_size=3),
        stale=st.sampled_from([False, False, False, True]),
        reads=_reads(),
    )
    def append_events(
        self, key: Key, tick: int, specs: builtins.list[EventSpec], stale: bool, reads: Reads
    ) -> None:
        """Append one to three events, each from a fresh read (the first maybe a stale one),
        then read everything back (hypothesis may leave the observe rule out of a run)."""
        self.clock.advance(tick)
        for spec in specs:
            self._append(key, spec, stale)
            stale = False
        self._observe(key, reads)

    @rule(key=keys, tick=_ticks(), delta=_deltas(), stale=st.sampled_from([False, False, True]))
    def update_state(self, key: Key, tick: int, delta: dict[str, Any], stale: bool) -> None:
        self.clock.advance(tick)
        handle = self._handle(key, stale)
        now = self.clock()
        got = self._outcome(lambda: self.store.update_state(handle, delta))
        self._compare("update_state", got, lambda: self.model.update_state(handle, delta, now=now))
        self._check_read_back(key)

    @rule(key=keys, tick=_ticks(), metadata=st.sampled_from([{}, {"m": 2}, {"m": 2.0}]))
    def update(self, key: Key, tick: int, metadata: dict[str, Any]) -> None:
        self.clock.advance(tick)
        request = UpdateRequest(*key, metadata=metadata)
        now = self.clock()
        got = self._outcome(lambda: self.store.update(request))
        self._compare("update", got, lambda: self.model.update(request, now=now))

    @rule(key=keys)
    def delete(self, key: Key) -> None:
        got = self._outcome(lambda: self.store.delete(*key))
        self._compare("delete", got, lambda: self.model.delete(*key))

    # --- reads -------------------------------------------------------------------------------

    @rule(key=keys, reads=_reads())
    def observe(self, key: Key, reads: Reads) -> None:
        self._observe(key, reads)

    def _observe(self, key: Key, reads: Reads) -> None:
        """Compare every read on one session and its pair (SV-3, SV-6, SV-17 .. SV-24)."""
        app, user, session_id = key
        for request in (GetRequest(*key), GetRequest(*key, num_recent_events=reads.recent)):
            self._compare_get(request)

        start, end = self._range(self.model.timestamps(*key), reads.event_bounds)
        event_filter = EventFilter(
            reads.agent_id, reads.branch, reads.author, start, end, *reads.event_page
        )
        got_events = self._outcome(lambda: self.store.get_events(*key, event_filter))
        self._compare("get_events", got_events, lambda: self.model.get_events(*key, event_filter))

        listing = ListRequest(app, user, *reads.list_page)
        got_list = self._outcome(lambda: self.store.list(listing))
        self._compare("list", got_list, lambda: self.model.list(listing))

        start, end = self._range(self.model.timestamps(app, user), reads.search_bounds)
        limit, offset = reads.search_page
        options = SearchOptions(
            query=self._query(app, user, reads.query),
            app_name=app,
            user_id=user,
            session_id=None if reads.whole_pair else session_id,
            agent_ids=reads.agent_ids,
            start_time=start,
            end_time=end,
            limit=20 if limit is None else limit,
            offset=offset,
            match_mode=reads.mode,
            only_user=reads.role == "user",
            only_assistant=reads.role == "assistant",
        )
        got_search = self._outcome(lambda: self.store.search(options))
        self._compare("search", got_search, lambda: self.model.search(options))


def machine_for(harness: Harness[Any]) -> type[SessionServiceMachine]:
    """A machine class bound to ``harness`` (hypothesis builds one instance per run)."""
    return type("SessionServiceMachineRun", (SessionServiceMachine,), {"harness": harness})
