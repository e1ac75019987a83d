"""The session-store state machine: random sequences of all 18 operations (and a moving clock),
run on a backend and on the executable model side by side.

Each rule performs one operation on both and requires the same result, exactly, or an error of
the same G-10 kind. Session ids are the store's to choose (SS-4): the operations that create a
session run on the store first, the machine checks that the id is valid and never seen before,
and the model then takes that id, so that orders that break ties by id (SS-6, SS-22) and export
documents compare exactly. After every call the machine scribbles over what it passed and what
it got back, so a store that keeps references instead of copies (G-7) diverges later.
"""

from __future__ import annotations

import copy
from typing import Any, cast

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from agentstores.spec.errors import StoreError
from agentstores.spec.messages import Message
from agentstores.spec.session_store import SessionStore, SessionType, TokenStatsUpdate
from agentstores.spec.values import check_id

from ..clock import ManualClock
from ..harness import Harness
from ..markers import requirement
from ..models.session_store import SessionStoreModel
from ..strategies import json_objects, messages
from .session_store_support import (
    ALL_TYPES,
    assert_exact,
    error_kind,
    model_snapshot,
    parsed,
    recipe_values,
    scribble,
    search_messages,
    search_queries,
    session_names,
    session_types,
    store_snapshot,
    token_updates,
)

__all__ = ["MachineTests", "SessionStoreMachine"]

#: Ids no store issues in the machine (SS-4 ids come from the store): operations on them must
#: raise NotFound, never reach a session.
UNKNOWN_IDS = ("missing", "a/b", "20240101_1")

#: Documents import must refuse (SS-18), besides the exports the machine collects.
BAD_DOCUMENTS = (
    "",
    "{}",
    "not json",
    '{"format": "agentstores.session", "version": 2, "session": {}, "conversation": []}',
)


#: The words of the machine's messages and queries: few, so that searches find something,
#: with case variants, a short word and a non-Latin one.
MACHINE_WORDS = ("alpha", "ALPHA", "Beta", "ab", "É", "語")


def machine_messages() -> st.SearchStrategy[Message]:
    """Messages whose text search queries hit, times from a tiny range (truncate and date
    boundaries, ties), and now and then any message of the shared strategy."""
    # one_of() drops repeated strategy objects, so weights come from distinct ones.
    searchable = [
        search_messages(created=st.none() | st.integers(0, 7), vocabulary=MACHINE_WORDS)
        for _ in range(3)
    ]
    return st.one_of(*searchable, messages())


def machine_types() -> st.SearchStrategy[Any]:
    """Session types, now and then a plain string (SS-2: InvalidArgument)."""
    return st.one_of(*[session_types() for _ in range(5)], st.just("user"))


class SessionStoreMachine(RuleBasedStateMachine):
    """A fresh store (new context) and a fresh model, driven by the same random operations."""

    sessions = Bundle("sessions")
    documents = Bundle("documents")
    # Mostly sessions that exist, so that operations get past NotFound (one_of() drops repeated
    # strategy objects: each Bundle object here draws from the one "sessions" bundle).
    any_session = st.one_of(*[Bundle("sessions") for _ in range(5)], st.sampled_from(UNKNOWN_IDS))

    def __init__(self, harness: Harness[SessionStore]) -> None:
        super().__init__()
        self.harness = harness
        self.clock = ManualClock()
        self.issued: set[str] = set()
        self._next_id = ""
        self.model = SessionStoreModel(self.clock, id_source=lambda: self._next_id)
        self._manager = harness.open(harness.new_context(clock=self.clock))
        self.store: SessionStore = harness.run(self._manager.__aenter__())

    def teardown(self) -> None:
        self.harness.run(self._manager.__aexit__(None, None, None))

    # --- running one operation on both -------------------------------------------------------

    def _store_call(self, method: str, args: tuple[Any, ...]) -> tuple[Any, Exception | None]:
        given = copy.deepcopy(args)  # the store's own arguments, scribbled on afterwards
        try:
            result = self.harness.run(getattr(self.store, method)(*given))
        except Exception as error:
            return None, error
        finally:
            scribble(given)
        return result, None

    def _model_call(self, method: str, args: tuple[Any, ...]) -> tuple[Any, StoreError | None]:
        try:
            return getattr(self.model, method)(*args), None
        except StoreError as error:
            return None, error

    def _compare(
        self,
        method: str,
        actual: Any,
        error: Exception | None,
        expected: Any,
        expected_error: StoreError | None,
    ) -> None:
        if error is not None and expected_error is None:
            raise AssertionError(f"{method} raised {error!r}, but the spec returns {expected!r}")
        if error is None and expected_error is not None:
            raise AssertionError(
                f"{method} returned {actual!r}, but the spec raises "
                f"{type(expected_error).__name__} ({expected_error})"
            )
        if error is not None and expected_error is not None:
            if error_kind(error) is not error_kind(expected_error):
                raise AssertionError(
                    f"{method} raised {error!r}, but the spec raises "
                    f"{type(expected_error).__name__} ({expected_error}) (G-10)"
                ) from error
            note(f"{method} -> {type(error).__name__}: {error}")
            return
        if method == "export_session":
            assert_exact(parsed(actual), parsed(expected), "export_session document")
        else:
            assert_exact(actual, expected, method)
        note(f"{method} -> {actual!r}")

    def call(self, method: str, *args: Any) -> Any:
        """Run ``method(*args)`` on the model and the store; require the same outcome."""
        expected, expected_error = self._model_call(method, args)
        actual, error = self._store_call(method, args)
        self._compare(method, actual, error, expected, expected_error)
        result = copy.deepcopy(actual)
        scribble(actual)
        return result

    def create(self, method: str, *args: Any) -> Any:
        """Run a session-creating ``method`` on the store, then on the model with the id the
        store chose (SS-4: a valid id, never issued before); return the id or nothing."""
        actual, error = self._store_call(method, args)
        if error is None:
            check_id(actual.id, what=f"id from {method}")
            assert actual.id not in self.issued, f"{method} reused the id {actual.id!r} (SS-4)"
            self._next_id = actual.id
        else:
            self._next_id = f"never-issued-{len(self.issued)}"
        expected, expected_error = self._model_call(method, args)
        self._compare(method, actual, error, expected, expected_error)
        if error is not None:
            return multiple()
        self.issued.add(actual.id)
        session_id: str = actual.id
        scribble(actual)
        return session_id

    # --- sessions --------------------------------------------------------------------------

    @initialize(
        target=sessions,
        session_type=session_types(),
        conversation=st.lists(machine_messages(), min_size=1, max_size=4),
    )
    def start(self, session_type: SessionType, conversation: list[Message]) -> Any:
        """Every run starts with a session that has messages, and an empty one."""
        first = self.create("create_session", "/w", "first", session_type)
        self.call("replace_conversation", first, conversation)
        second = self.create("create_session", "/w", "second", SessionType.USER)
        return multiple(first, second)

    @rule(
        target=sessions,
        working_dir=st.sampled_from(["/w", "/w", "/ẃork dir", "C:\\x", ""]),
        name=session_names(),
        session_type=machine_types(),
    )
    def create_session(self, working_dir: str, name: str, session_type: SessionType) -> Any:
        return self.create("create_session", working_dir, name, session_type)

    @rule(session_id=any_session, include_messages=st.booleans())
    def get_session(self, session_id: str, include_messages: bool) -> None:
        self.call("get_session", session_id, include_messages)

    @rule()
    def list_sessions(self) -> None:
        self.call("list_sessions")

    @rule(types=st.lists(machine_types(), max_size=3))
    def list_sessions_by_types(self, types: list[SessionType]) -> None:
        self.call("list_sessions_by_types", types)

    @rule(session_id=st.one_of(consumes(sessions), st.sampled_from(UNKNOWN_IDS)))
    def delete_session(self, session_id: str) -> None:
        self.call("delete_session", session_id)

    @rule()
    def get_insights(self) -> None:
        self.call("get_insights")

    # --- conversation ----------------------------------------------------------------------

    @rule(session_id=any_session, message=machine_messages())
    def add_message(self, session_id: str, message: Message) -> None:
        self.call("add_message", session_id, message)

    @rule(session_id=any_session, conversation=st.lists(machine_messages(), max_size=4))
    def replace_conversation(self, session_id: str, conversation: list[Message]) -> None:
        self.call("replace_conversation", session_id, conversation)

    @rule(session_id=any_session, timestamp=st.integers(-1, 8))
    def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        self.call("truncate_conversation", session_id, timestamp)

    # --- updates ---------------------------------------------------------------------------

    @rule(
        session_id=any_session,
        name=st.one_of(session_names(), st.just("bad\x00name")),
        user_set=st.booleans(),
    )
    def update_session_name(self, session_id: str, name: str, user_set: bool) -> None:
        self.call("update_session_name", session_id, name, user_set)

    @rule(session_id=any_session, data=json_objects(max_size=2))
    def update_extension_data(self, session_id: str, data: dict[str, Any]) -> None:
        self.call("update_extension_data", session_id, data)

    @rule(session_id=any_session, stats=token_updates())
    def update_token_stats(self, session_id: str, stats: TokenStatsUpdate) -> None:
        self.call("update_token_stats", session_id, stats)

    @rule(
        session_id=any_session,
        provider_name=st.none() | st.sampled_from(["", "openai", "prov ✓"]),
        model_config=st.none() | json_objects(max_size=2),
    )
    def update_provider_config(
        self, session_id: str, provider_name: str | None, model_config: dict[str, Any] | None
    ) -> None:
        self.call("update_provider_config", session_id, provider_name, model_config)

    @rule(
        session_id=any_session,
        recipe=st.none() | json_objects(max_size=2),
        values=st.none() | recipe_values(),
    )
    def update_recipe(
        self, session_id: str, recipe: dict[str, Any] | None, values: dict[str, str] | None
    ) -> None:
        self.call("update_recipe", session_id, recipe, values)

    # --- export, import, copy --------------------------------------------------------------

    @rule(target=documents, session_id=any_session)
    def export_session(self, session_id: str) -> Any:
        document = self.call("export_session", session_id)
        return multiple() if document is None else document

    @rule(
        target=sessions,
        document=st.one_of(documents, Bundle("documents"), st.sampled_from(BAD_DOCUMENTS)),
    )
    def import_session(self, document: str) -> Any:
        return self.create("import_session", document)

    @rule(target=sessions, session_id=any_session, new_name=session_names())
    def copy_session(self, session_id: str, new_name: str) -> Any:
        return self.create("copy_session", session_id, new_name)

    # --- search and time -------------------------------------------------------------------

    @rule(
        query=search_queries(vocabulary=MACHINE_WORDS),
        limit=st.none() | st.integers(-1, 6),
        after_date=st.one_of(st.none(), st.just(None), st.integers(0, 8)),
        before_date=st.one_of(st.none(), st.just(None), st.integers(0, 8)),
        exclude=st.none() | any_session,
    )
    def search_chat_history(
        self,
        query: str,
        limit: int | None,
        after_date: int | None,
        before_date: int | None,
        exclude: str | None,
    ) -> None:
        self.call("search_chat_history", query, limit, after_date, before_date, exclude)

    @rule(ms=st.sampled_from([0, 1, 1, 2, 86_400_000]))
    def advance_clock(self, ms: int) -> None:
        """Ties (0), small steps, and now and then a new day (new ids per day, SS-4)."""
        self.clock.advance(ms)

    @rule()
    def compare_everything(self) -> None:
        """Every session with its conversation, and the insights, read through the API."""
        actual = self.harness.run(store_snapshot(self.store))
        assert_exact(actual, model_snapshot(self.model), "snapshot")

    @invariant()
    def listings_agree(self) -> None:
        """SS-6: the listing of every type equals the model's, in order."""
        actual = self.harness.run(self.store.list_sessions_by_types(list(ALL_TYPES)))
        assert_exact(actual, self.model.list_sessions_by_types(list(ALL_TYPES)), "listing")


class MachineTests:
    """The state machine as a test."""

    @requirement(
        "SS-1", "SS-2", "SS-3", "SS-4", "SS-5", "SS-6", "SS-7", "SS-8", "SS-9", "SS-10",
        "SS-11", "SS-12", "SS-13", "SS-14", "SS-15", "SS-16", "SS-17", "SS-18", "SS-19",
        "SS-20", "SS-21", "SS-22", "G-4", "G-6", "G-7", "G-9", "G-10", "G-14",
    )  # fmt: skip
    def test_random_operations_agree_with_the_model(self, harness: Harness[SessionStore]) -> None:
        """SS-1 .. SS-22, G-4, G-6, G-7, G-9, G-10, G-14: random sequences of all 18
        operations, with a clock that moves (ties included), give exactly the model's results
        and errors; the full listing agrees after every step."""
        # Hypothesis takes any factory of machines; its annotation says "a class".
        factory = cast(type[RuleBasedStateMachine], lambda: SessionStoreMachine(harness))
        run_state_machine_as_test(factory, settings=harness.settings)
