"""The memory-storage state machine and the helpers the memory-storage suite shares.

:class:`MemoryStorageMachine` runs random sequences of every ``MemoryStorage`` operation on a
fresh store and on :class:`~agentstores.conformance.models.memory_storage.MemoryStorageModel`,
with a manual clock that the machine advances (so that stamps tie and retention bites), and
compares every result and every error. Ids come from a small pool that mixes separators, so
that (session, user) pairs and memory ids collide whenever a store keys them carelessly.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, ClassVar, TypeVar

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from agentstores.spec.errors import (
    StoreError,
)
from agentstores.spec.memory_storage import (
    ConversationMessage,
    MemoryRetrieval,
    MemoryStorage,
    SessionSummary,
    UserMemory,
)
from agentstores.spec.messages import Message

from ..clock import ManualClock
from ..embedding import HashingEmbedder
from ..harness import Harness
from ..models.memory_storage import (
    MemoryStorageModel,
    memory_texts,
    search_queries,
    simple_messages,
)
from ..strategies import messages
from .memory_storage_support import assert_same, error_kind, model_snapshot, store_snapshot

__all__ = ["MACHINE_IDS", "MEMORY_IDS", "MemoryStorageMachine", "machine_class"]

T = TypeVar("T")

#: Ids the machine uses for users and sessions alike: few, so that operations keep meeting the
#: same records, and one joins the others with a separator, so that careless keys collide.
#: (Adversarial ids in general are the isolation test's business.)
MACHINE_IDS: tuple[str, ...] = ("a", "b", "a:b")
#: Memory ids: one shared with a user id, so that a store mixing the two kinds shows it.
MEMORY_IDS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "a")

# --- the state machine ---------------------------------------------------------------------

_ids = st.sampled_from(MACHINE_IDS)
_memory_ids = st.sampled_from(MEMORY_IDS)
# Mostly "all" (where order differences show), sometimes cut, sometimes invalid (G-8).
_limits = st.sampled_from([0, 0, 0, 1, 2, 3, -1])


class MemoryStorageMachine(RuleBasedStateMachine):
    """Every operation of MS-3 .. MS-23 against the model; see the module docstring.

    Subclasses made by :func:`machine_class` set :attr:`harness` and :attr:`embedder` (None:
    the store gets no embedder and ``semantic`` must raise NotSupported, MS-7).
    """

    harness: ClassVar[Harness[Any]]
    embedder: ClassVar[HashingEmbedder | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        options = {} if self.embedder is None else {"embedder": self.embedder}
        context = self.harness.new_context(clock=self.clock, options=options)
        self._manager = self.harness.open(context)
        self.store: MemoryStorage = self.harness.run(self._manager.__aenter__())
        vectors = None if self.embedder is None else self.embedder.embed_sync
        self.model = MemoryStorageModel(vectors=vectors)

    def teardown(self) -> None:
        try:
            # Hypothesis calls teardown in a ``finally``: when a step failed, that failure is
            # the one to report, not a second one found by the final check.
            if sys.exc_info()[0] is None:
                self._check_everything()
        finally:
            self.harness.run(self._manager.__aexit__(None, None, None))

    # comparing

    def _compare(
        self, what: str, store_call: Callable[[], Awaitable[T]], model_call: Callable[[], T]
    ) -> None:
        note(what)
        expected: Any = None
        expected_error: StoreError | None = None
        try:
            expected = model_call()
        except StoreError as exc:
            expected_error = exc
        try:
            actual = self.harness.run(store_call())
        except StoreError as exc:
            if expected_error is None:
                raise AssertionError(
                    f"{what} raised {exc!r}; the spec returns {expected!r}"
                ) from exc
            if error_kind(exc) is not error_kind(expected_error):
                raise AssertionError(
                    f"{what} raised {type(exc).__name__}; the spec raises "
                    f"{type(expected_error).__name__} ({expected_error})"
                ) from exc
            return
        if expected_error is not None:
            raise AssertionError(
                f"{what} returned {actual!r}; the spec raises {type(expected_error).__name__} "
                f"({expected_error})"
            )
        assert_same(actual, expected, what)

    def _check_everything(self) -> None:
        users = list(MACHINE_IDS)
        expected = model_snapshot(self.model, users, users)
        actual = self.harness.run(store_snapshot(self.store, users, users))
        for key, value in expected.items():
            assert_same(actual[key], value, f"the store's {key}")

    # after every write: read back what it touched, so that no later step can mask a bug

    def _verify_users(self, *users: str) -> None:
        """Each user's memories; a search in another case and a semantic query (MS-5 .. MS-13)."""
        store, model = self.store, self.model
        for user in dict.fromkeys(users):
            self._compare(
                f"(check) get_user_memories({user!r})",
                partial(store.get_user_memories, user),
                partial(model.get_user_memories, user),
            )
            memories = model.get_user_memories(user)
            words = [w for m in memories for w in (m.memory + " " + m.input).split()]
            if not words:
                continue
            query = words[0].swapcase()
            self._compare(
                f"(check) search_user_memories({user!r}, {query!r})",
                partial(store.search_user_memories, user, query),
                partial(model.search_user_memories, user, query),
            )
            if self.embedder is not None:
                query, semantic = words[-1], MemoryRetrieval.SEMANTIC
                self._compare(
                    f"(check) get_user_memories({user!r}, 0, semantic, {query!r})",
                    partial(store.get_user_memories, user, 0, semantic, query),
                    partial(model.get_user_memories, user, 0, semantic, query),
                )

    def _verify_conversations(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Each conversation, whole, and its count (MS-18 .. MS-23)."""
        store, model = self.store, self.model
        for session, user in dict.fromkeys(pairs):
            self._compare(
                f"(check) get_messages({session!r}, {user!r})",
                partial(store.get_messages, session, user),
                partial(model.get_messages, session, user),
            )
            self._compare(
                f"(check) get_message_count({user!r}, {session!r})",
                partial(store.get_message_count, user, session),
                partial(model.get_message_count, user, session),
            )

    def _verify_summaries(self, session: str) -> None:
        """Every user's summary of ``session`` (keyed by the pair, MS-14)."""
        for user in MACHINE_IDS:
            self._compare(
                f"(check) get_session_summary({session!r}, {user!r})",
                partial(self.store.get_session_summary, session, user),
                partial(self.model.get_session_summary, session, user),
            )

    def _memory_id(self, data: st.DataObject) -> str:
        """A memory id, mostly one the store holds (for some user), so updates and deletes bite."""
        stored = sorted(self.model.memories)
        choices = st.one_of(st.sampled_from(stored), _memory_ids) if stored else _memory_ids
        return data.draw(choices, label="memory_id")

    def _user(self, data: st.DataObject, *, at_least: int = 1) -> str:
        """A user id, mostly one holding ``at_least`` memories, so that orders show."""
        owners = collections.Counter(m.user_id for m in self.model.memories.values())
        rich = sorted(user for user, count in owners.items() if count >= at_least)
        choices = st.one_of(st.sampled_from(rich), _ids) if rich else _ids
        return data.draw(choices, label="user")

    def _pair(self, data: st.DataObject, *, at_least: int = 1) -> tuple[str, str]:
        """A (session, user) pair, mostly one with a conversation of ``at_least`` messages."""
        conversations = self.model.conversations.items()
        pairs = sorted(pair for pair, messages in conversations if len(messages) >= at_least)
        any_pair = st.tuples(_ids, _ids)
        known = st.sampled_from(pairs) if pairs else any_pair
        choices = st.one_of(known, known, known, any_pair)  # mostly known, sometimes any
        return data.draw(choices, label="(session, user)")

    def _query(self, data: st.DataObject, user: str) -> str:
        """A query, mostly words of the user's own memories (in another case now and then), so
        that rankings differ and case rules show (MS-7, MS-13)."""
        texts = [t for m in self.model.user_memories(user) for t in (m.memory, m.input)]
        words = sorted({w for t in texts for w in t.split()})
        own = st.lists(st.sampled_from(words), min_size=1, max_size=2).map(" ".join)
        cased = st.tuples(own, st.sampled_from([str.upper, str.lower, str.swapcase])).map(
            lambda pair: pair[1](pair[0])
        )
        choices = st.one_of(own, cased, search_queries()) if words else search_queries()
        return data.draw(choices, label="query")

    def _retention_bound(self, user: str, data: st.DataObject) -> int:
        """A ``before`` at, just under or just over a stamp the user's messages carry (MS-22)."""
        times = sorted(
            {
                m.created_at
                for (_, owner), conv in self.model.conversations.items()
                for m in conv
                if owner == user
            }
        )
        near_now = st.integers(min_value=-1, max_value=6).map(lambda age: self.clock() - age)
        if times:
            near_stamp = st.tuples(st.sampled_from(times), st.sampled_from([0, 0, 1, -1]))
            near_now = st.one_of(near_stamp.map(sum), near_now)
        return max(0, data.draw(near_now, label="before"))

    # seeding: random runs are short, so each starts with some records to work on

    @initialize(
        users=st.permutations(MACHINE_IDS),
        entries=st.lists(
            st.tuples(memory_texts(), memory_texts()),
            min_size=len(MACHINE_IDS) + 1,
            max_size=len(MEMORY_IDS),
        ),
    )
    def seed_memories(self, users: list[str], entries: list[tuple[str, str]]) -> None:
        """Every user gets memories (round robin; hypothesis favours the first of a sample),
        one of them two or more, under distinct ids."""
        for index, (text, given_input) in enumerate(entries):
            user = users[index % len(users)]
            self.save_user_memory(MEMORY_IDS[index], user, text, given_input)
            self.clock.advance(1)

    @initialize(
        pairs=st.permutations([(s, u) for s in MACHINE_IDS for u in MACHINE_IDS]),
        conversations=st.lists(
            st.lists(simple_messages(), min_size=2, max_size=4), min_size=2, max_size=3
        ),
    )
    def seed_messages(
        self, pairs: list[tuple[str, str]], conversations: list[list[Message]]
    ) -> None:
        """Two or three conversations of two to four messages each."""
        for (session, user), batch in zip(pairs, conversations, strict=False):
            self._save_messages(session, user, batch)

    # time

    @rule(ms=st.sampled_from([1, 3]))
    def clock_goes_back(self, ms: int) -> None:
        """Real clocks jump back (NTP); order stays save order (MS-18), retention reads times."""
        self.clock.set(self.clock() - ms)
        note(f"clock -> {self.clock()}")

    @rule(ms=st.sampled_from([0, 0, 1, 2, 5]))
    def advance_clock(self, ms: int) -> None:
        """Equal stamps are frequent (ties, MS-5), so are distinct ones."""
        self.clock.advance(ms)
        note(f"clock -> {self.clock()}")

    # user memories

    @rule(memory_id=_memory_ids, user=_ids, text=memory_texts(), given_input=memory_texts())
    def save_user_memory(self, memory_id: str, user: str, text: str, given_input: str) -> None:
        memory = UserMemory(memory_id, user, text, given_input, created_at=7, updated_at=7)
        self._compare(
            f"save_user_memory({memory!r})",
            lambda: self.store.save_user_memory(memory),
            lambda: self.model.save_user_memory(memory, self.clock()),
        )
        self._verify_users(user)

    @precondition(lambda self: self.model.memories)
    @rule(data=st.data(), user=_ids, text=memory_texts(), given_input=memory_texts())
    def update_user_memory(
        self, data: st.DataObject, user: str, text: str, given_input: str
    ) -> None:
        memory = UserMemory(self._memory_id(data), user, text, given_input)
        self._compare(
            f"update_user_memory({memory!r})",
            lambda: self.store.update_user_memory(memory),
            lambda: self.model.update_user_memory(memory, self.clock()),
        )
        self._verify_users(*MACHINE_IDS)

    @precondition(lambda self: self.model.memories)
    @rule(data=st.data())
    def delete_user_memory(self, data: st.DataObject) -> None:
        memory_id = self._memory_id(data)
        self._compare(
            f"delete_user_memory({memory_id!r})",
            lambda: self.store.delete_user_memory(memory_id),
            lambda: self.model.delete_user_memory(memory_id),
        )
        self._verify_users(*MACHINE_IDS)

    @rule(data=st.data(), user=_ids, count=st.integers(min_value=0, max_value=3))
    def delete_user_memories_by_ids(self, data: st.DataObject, user: str, count: int) -> None:
        memory_ids = [self._memory_id(data) for _ in range(count)]
        self._compare(
            f"delete_user_memories_by_ids({user!r}, {memory_ids!r})",
            lambda: self.store.delete_user_memories_by_ids(user, memory_ids),
            lambda: self.model.delete_user_memories_by_ids(user, memory_ids),
        )
        self._verify_users(*MACHINE_IDS)

    @rule(user=_ids)
    def clear_user_memories(self, user: str) -> None:
        self._compare(
            f"clear_user_memories({user!r})",
            lambda: self.store.clear_user_memories(user),
            lambda: self.model.clear_user_memories(user),
        )
        self._verify_users(*MACHINE_IDS)

    @rule(
        data=st.data(),
        limit=_limits,
        retrieval=st.sampled_from(list(MemoryRetrieval)),
        query=search_queries(),
    )
    def get_user_memories(
        self, data: st.DataObject, limit: int, retrieval: MemoryRetrieval, query: str
    ) -> None:
        user = self._user(data, at_least=2)
        given = query if retrieval is MemoryRetrieval.SEMANTIC else None
        self._compare(
            f"get_user_memories({user!r}, {limit}, {retrieval.value}, {given!r})",
            lambda: self.store.get_user_memories(user, limit, retrieval, given),
            lambda: self.model.get_user_memories(user, limit, retrieval, given),
        )

    @precondition(lambda self: len(self.model.memories) > 1)
    @rule(data=st.data(), limit=_limits)
    def semantic_retrieval(self, data: st.DataObject, limit: int) -> None:
        """Semantic retrieval on its own rule, so that it runs often (MS-7)."""
        user = self._user(data, at_least=2)
        query = self._query(data, user)
        semantic = MemoryRetrieval.SEMANTIC
        self._compare(
            f"get_user_memories({user!r}, {limit}, semantic, {query!r})",
            lambda: self.store.get_user_memories(user, limit, semantic, query),
            lambda: self.model.get_user_memories(user, limit, semantic, query),
        )

    @rule(data=st.data(), limit=_limits)
    def search_user_memories(self, data: st.DataObject, limit: int) -> None:
        user = self._user(data)
        query = self._query(data, user)
        self._compare(
            f"search_user_memories({user!r}, {query!r}, {limit})",
            lambda: self.store.search_user_memories(user, query, limit),
            lambda: self.model.search_user_memories(user, query, limit),
        )

    # session summaries

    @rule(session=_ids, user=_ids, text=memory_texts())
    def save_session_summary(self, session: str, user: str, text: str) -> None:
        summary = SessionSummary(session, user, text, created_at=3, updated_at=3)
        self._compare(
            f"save_session_summary({summary!r})",
            lambda: self.store.save_session_summary(summary),
            lambda: self.model.save_session_summary(summary, self.clock()),
        )
        self._verify_summaries(session)

    @rule(session=_ids, user=_ids, text=memory_texts())
    def update_session_summary(self, session: str, user: str, text: str) -> None:
        summary = SessionSummary(session, user, text)
        self._compare(
            f"update_session_summary({summary!r})",
            lambda: self.store.update_session_summary(summary),
            lambda: self.model.update_session_summary(summary, self.clock()),
        )
        self._verify_summaries(session)

    @rule(session=_ids, user=_ids)
    def delete_session_summary(self, session: str, user: str) -> None:
        self._compare(
            f"delete_session_summary({session!r}, {user!r})",
            lambda: self.store.delete_session_summary(session, user),
            lambda: self.model.delete_session_summary(session, user),
        )
        self._verify_summaries(session)

    # messages

    @rule(
        data=st.data(),
        batch=st.lists(st.one_of(simple_messages(), messages()), min_size=1, max_size=3),
    )
    def save_messages(self, data: st.DataObject, batch: list[Message]) -> None:
        """Saves one to three messages, so that conversations grow faster than they shrink."""
        session, user = self._pair(data)
        self._save_messages(session, user, batch)

    def _save_messages(self, session: str, user: str, batch: list[Message]) -> None:
        for message in batch:
            note(f"save_message({session!r}, {user!r}, {message!r}) at {self.clock()}")
            record: ConversationMessage = self.harness.run(
                self.store.save_message(session, user, message)
            )
            expected = self.model.save_message(session, user, message, self.clock(), record.id)
            assert_same(record, expected, "save_message's record")
        self._verify_conversations([(session, user)])

    @rule(data=st.data(), limit=_limits)
    def get_messages(self, data: st.DataObject, limit: int) -> None:
        session, user = self._pair(data)
        self._compare(
            f"get_messages({session!r}, {user!r}, {limit})",
            lambda: self.store.get_messages(session, user, limit),
            lambda: self.model.get_messages(session, user, limit),
        )

    @rule(data=st.data())
    def delete_messages(self, data: st.DataObject) -> None:
        session, user = self._pair(data)
        self._compare(
            f"delete_messages({session!r}, {user!r})",
            lambda: self.store.delete_messages(session, user),
            lambda: self.model.delete_messages(session, user),
        )
        self._verify_conversations([(session, user), (user, session)])

    # retention

    @rule(data=st.data(), user=_ids, extra=st.lists(simple_messages(), min_size=2, max_size=3))
    def cleanup_old_messages(self, data: st.DataObject, user: str, extra: list[Message]) -> None:
        """Retention at, under or over a stored stamp; a user without messages gets some first,
        a millisecond apart, so that the bound has something on each side (MS-22)."""
        if not any(owner == user and conv for (_, owner), conv in self.model.conversations.items()):
            session = data.draw(_ids, label="session")
            for message in extra:
                self.clock.advance(1)
                self._save_messages(session, user, [message])
        before = self._retention_bound(user, data)
        self._compare(
            f"cleanup_old_messages({user!r}, {before})",
            lambda: self.store.cleanup_old_messages(user, before),
            lambda: self.model.cleanup_old_messages(user, before),
        )
        self._verify_conversations([(session, user) for session in MACHINE_IDS])

    @rule(
        data=st.data(),
        cut=st.sampled_from([1, 1, 2, 0]),
        extra=st.lists(simple_messages(), min_size=2, max_size=3),
    )
    def cleanup_messages_by_limit(
        self, data: st.DataObject, cut: int, extra: list[Message]
    ) -> None:
        """Keeps ``cut`` fewer than the conversation holds (a short one grows first), and now
        and then a keep_limit of 0 or -1 (MS-23)."""
        session, user = self._pair(data, at_least=2)
        if len(self.model.conversations.get((session, user), [])) < 2:
            self._save_messages(session, user, extra)
        length = len(self.model.conversations[(session, user)])
        keep = data.draw(st.sampled_from([length - cut] * 4 + [0, -1]), label="keep_limit")
        self._compare(
            f"cleanup_messages_by_limit({user!r}, {session!r}, {keep})",
            lambda: self.store.cleanup_messages_by_limit(user, session, keep),
            lambda: self.model.cleanup_messages_by_limit(user, session, keep),
        )
        self._verify_conversations([(session, user)] + [(session, u) for u in MACHINE_IDS])


def machine_class(
    harness: Harness[Any], embedder: HashingEmbedder | None = None
) -> type[MemoryStorageMachine]:
    """A :class:`MemoryStorageMachine` bound to ``harness`` (and to ``embedder``, if any)."""

    class BoundMemoryStorageMachine(MemoryStorageMachine):
        pass

    BoundMemoryStorageMachine.harness = harness
    BoundMemoryStorageMachine.embedder = embedder
    return BoundMemoryStorageMachine
