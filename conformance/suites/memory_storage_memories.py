"""User-memory tests of the memory-storage suite (MS-2 .. MS-13), as a mixin of
:class:`~agentstores.conformance.suites.memory_storage.MemoryStorageSuite`.
"""

from __future__ import annotations

import pytest

from agentstores.spec.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    NotSupported,
    StorageUnavailable,
)
from agentstores.spec.memory_storage import MemoryRetrieval, UserMemory

from ..backend import Capability
from ..embedding import BrokenEmbedder, HashingEmbedder
from ..markers import needs, requirement
from ..models.memory_storage import MemoryStorageModel
from .memory_storage_support import (
    H,
    Store,
    assert_same,
    new_memory,
    stamped,
)

__all__ = ["MemoryTests"]


class MemoryTests:
    """Saving, reading in each order, updating, deleting and searching memories."""

    # --- user memories -------------------------------------------------------------------

    @requirement("MS-2", "MS-3", "G-6")
    def test_save_user_memory_stamps_times_from_the_clock(self, harness: H) -> None:
        """MS-2, MS-3, G-6: a saved memory gets created_at = updated_at = the store's clock,
        whatever times the caller put in; the read returns what the save returned."""
        harness.clock.set(1_000)

        async def body(store: Store) -> None:
            given = UserMemory("m1", "u", "likes tea", "I like tea", created_at=5, updated_at=7)
            saved = await store.save_user_memory(given)
            assert_same(saved, stamped(given, 1_000, 1_000), "save_user_memory's result")
            assert_same(await store.get_user_memories("u"), [saved], "the user's memories")

        harness.with_store(body)

    @requirement("MS-3", "G-10")
    def test_save_of_a_taken_memory_id_raises_already_exists(self, harness: H) -> None:
        """MS-3, G-10: memory ids are unique across users; saving a taken id raises
        AlreadyExists and leaves the stored memory as it was."""

        async def body(store: Store) -> None:
            first = await store.save_user_memory(new_memory("m1", "u", "first"))
            harness.clock.advance(5)
            for user in ("u", "v"):
                with pytest.raises(AlreadyExists):
                    await store.save_user_memory(new_memory("m1", user, "second"))
            assert_same(await store.get_user_memories("u"), [first], "u's memories")
            assert_same(await store.get_user_memories("v"), [], "v's memories")

        harness.with_store(body)

    @requirement("MS-4", "MS-24")
    def test_reads_return_only_the_users_memories(self, harness: H) -> None:
        """MS-4, MS-24: get and search return the named user's memories only; a user without
        memories gets []."""

        async def body(store: Store) -> None:
            mine = await store.save_user_memory(new_memory("m1", "u", "tea"))
            await store.save_user_memory(new_memory("m2", "v", "tea"))
            await store.save_user_memory(new_memory("m3", "u:v", "tea"))
            assert_same(await store.get_user_memories("u"), [mine], "u's memories")
            assert_same(await store.search_user_memories("u", "tea"), [mine], "u's search")
            assert_same(await store.get_user_memories("nobody"), [], "nobody's memories")
            first = await store.get_user_memories("nobody", 0, MemoryRetrieval.FIRST_N)
            assert_same(first, [], "nobody's first_n")

        harness.with_store(body)

    @requirement("MS-5", "G-9")
    def test_last_n_and_first_n_orders_with_tie_breaks(self, harness: H) -> None:
        """MS-5, G-9: last_n is updated_at descending then id ascending; first_n is created_at
        ascending then id ascending; last_n is the default."""

        async def body(store: Store) -> None:
            harness.clock.set(10)
            b = await store.save_user_memory(new_memory("b", "u", "B"))
            a = await store.save_user_memory(new_memory("a", "u", "A"))
            c = await store.save_user_memory(new_memory("c", "u", "C"))
            harness.clock.set(20)
            d = await store.save_user_memory(new_memory("d", "u", "D"))
            harness.clock.set(30)
            b = await store.update_user_memory(new_memory("b", "u", "B2"))
            last_n = [b, d, a, c]
            assert_same(await store.get_user_memories("u"), last_n, "default order (last_n)")
            got = await store.get_user_memories("u", 0, MemoryRetrieval.LAST_N)
            assert_same(got, last_n, "last_n")
            got = await store.get_user_memories("u", 0, MemoryRetrieval.FIRST_N)
            assert_same(got, [a, b, c, d], "first_n")

        harness.with_store(body)

    @requirement("MS-6", "G-8")
    def test_limits(self, harness: H) -> None:
        """MS-6, G-8: limit n gives the first n of the order, 0 and large limits give all,
        negative (and non-int) limits raise InvalidArgument."""

        async def body(store: Store) -> None:
            saved = []
            for index, memory_id in enumerate(["x", "y", "z"]):
                harness.clock.set(100 + index)
                saved.append(await store.save_user_memory(new_memory(memory_id, "u", memory_id)))
            newest_first = list(reversed(saved))
            for retrieval, order in (
                (MemoryRetrieval.LAST_N, newest_first),
                (MemoryRetrieval.FIRST_N, saved),
            ):
                for limit, expected in ((1, order[:1]), (2, order[:2]), (0, order), (9, order)):
                    got = await store.get_user_memories("u", limit, retrieval)
                    assert_same(got, expected, f"{retrieval.value} with limit {limit}")
                for bad in (-1, -100, True, 1.0):
                    with pytest.raises(InvalidArgument):
                        await store.get_user_memories("u", bad, retrieval)  # type: ignore[arg-type]

        harness.with_store(body)

    @requirement("MS-6")
    def test_retrieval_and_query_arguments(self, harness: H) -> None:
        """MS-6: an unknown retrieval raises InvalidArgument; the plain string value is
        accepted; a query with last_n or first_n raises InvalidArgument, not ignored."""

        async def body(store: Store) -> None:
            saved = await store.save_user_memory(new_memory("m", "u", "tea"))
            for bad in ("bogus", "LAST_N", None, 3):
                with pytest.raises(InvalidArgument):
                    await store.get_user_memories("u", 0, bad)  # type: ignore[arg-type]
            got = await store.get_user_memories("u", 0, "first_n")  # type: ignore[arg-type]
            assert_same(got, [saved], "retrieval given as 'first_n'")
            for retrieval in (MemoryRetrieval.LAST_N, MemoryRetrieval.FIRST_N):
                with pytest.raises(InvalidArgument):
                    await store.get_user_memories("u", 0, retrieval, "tea")

        harness.with_store(body)

    @requirement("MS-7", "G-10")
    def test_semantic_without_an_embedder_is_not_supported(self, harness: H) -> None:
        """MS-7, G-10: a store opened without an embedder raises NotSupported for semantic
        retrieval (for a user with memories and one without), never another order."""

        async def body(store: Store) -> None:
            await store.save_user_memory(new_memory("m1", "u", "green tea"))
            await store.save_user_memory(new_memory("m2", "u", "black coffee"))
            for user in ("u", "nobody"):
                with pytest.raises(NotSupported):
                    await store.get_user_memories(user, 0, MemoryRetrieval.SEMANTIC, "tea")
            with pytest.raises(InvalidArgument):  # the arguments are checked first
                await store.get_user_memories("u", -1, MemoryRetrieval.SEMANTIC, "tea")

        harness.with_store(body)

    @needs(Capability.SEMANTIC_SEARCH)
    @requirement("MS-7")
    def test_semantic_ranks_by_cosine_similarity(self, harness: H) -> None:
        """MS-7: with an embedder, semantic retrieval orders the user's memories by the cosine
        similarity of their text (not their input) to the query; limit applies after."""
        embedder = HashingEmbedder()
        context = harness.new_context(clock=harness.clock, options={"embedder": embedder})
        model = MemoryStorageModel(vectors=embedder.embed_sync)
        texts = [
            ("m1", "green tea and cake", ""),
            ("m2", "lives in Berlin", "green tea"),
            ("m3", "green tea", ""),
            ("m4", "likes python", ""),
            ("m5", "tea", ""),
        ]

        async def body(store: Store) -> None:
            for memory_id, text, given_input in texts:
                harness.clock.advance(1)
                memory = new_memory(memory_id, "u", text, given_input)
                await store.save_user_memory(memory)
                model.save_user_memory(memory, harness.clock())
            await store.save_user_memory(new_memory("other", "v", "green tea"))
            for limit in (0, 2):
                got = await store.get_user_memories(
                    "u", limit, MemoryRetrieval.SEMANTIC, "Green tea"
                )
                expected = model.get_user_memories(
                    "u", limit, MemoryRetrieval.SEMANTIC, "Green tea"
                )
                assert_same(got, expected, f"semantic retrieval with limit {limit}")
                assert got[0].id == "m3", "the memory whose text equals the query ranks first"
            got = await store.get_user_memories("nobody", 0, MemoryRetrieval.SEMANTIC, "tea")
            assert_same(got, [], "semantic retrieval for a user without memories")

        harness.with_store(body, context)

    @needs(Capability.SEMANTIC_SEARCH)
    @requirement("MS-7", "G-9")
    def test_semantic_ties_follow_last_n(self, harness: H) -> None:
        """MS-7, G-9: memories equally similar to the query are ordered as last_n (updated_at
        descending, then id); a missing query raises InvalidArgument."""
        context = harness.new_context(clock=harness.clock, options={"embedder": HashingEmbedder()})

        async def body(store: Store) -> None:
            harness.clock.set(10)
            b = await store.save_user_memory(new_memory("b", "u", "tea"))
            a = await store.save_user_memory(new_memory("a", "u", "TEA"))
            harness.clock.set(20)
            c = await store.save_user_memory(new_memory("c", "u", "Tea"))
            got = await store.get_user_memories("u", 0, MemoryRetrieval.SEMANTIC, "tea")
            assert_same(got, [c, a, b], "equally similar memories")
            with pytest.raises(InvalidArgument):
                await store.get_user_memories("u", 0, MemoryRetrieval.SEMANTIC)

        harness.with_store(body, context)

    @needs(Capability.SEMANTIC_SEARCH)
    @requirement("MS-8", "G-10")
    @pytest.mark.parametrize("mode", BrokenEmbedder.MODES)
    def test_embedder_failures_are_storage_unavailable(self, harness: H, mode: str) -> None:
        """MS-8, G-10: an embedder that raises or returns malformed vectors makes semantic
        retrieval raise StorageUnavailable; the memories stay as they were."""
        context = harness.new_context(
            clock=harness.clock, options={"embedder": BrokenEmbedder(mode)}
        )

        async def body(store: Store) -> None:
            saved = [
                await store.save_user_memory(new_memory("m1", "u", "green tea")),
                await store.save_user_memory(new_memory("m2", "u", "black tea")),
            ]
            with pytest.raises(StorageUnavailable):
                await store.get_user_memories("u", 0, MemoryRetrieval.SEMANTIC, "tea")
            got = await store.get_user_memories("u", 0, MemoryRetrieval.FIRST_N)
            assert_same(got, saved, "memories after the failed semantic retrieval")

        harness.with_store(body, context)

    @requirement("MS-9", "MS-2")
    def test_update_user_memory(self, harness: H) -> None:
        """MS-9, MS-2: update replaces text and input, keeps created_at, stamps updated_at."""

        async def body(store: Store) -> None:
            harness.clock.set(100)
            await store.save_user_memory(new_memory("m1", "u", "likes tea", "tea please"))
            harness.clock.set(200)
            given = UserMemory("m1", "u", "likes coffee", "", created_at=1, updated_at=2)
            updated = await store.update_user_memory(given)
            assert_same(updated, stamped(given, 100, 200), "update_user_memory's result")
            assert_same(await store.get_user_memories("u"), [updated], "the updated memory")

        harness.with_store(body)

    @requirement("MS-9", "MS-24", "G-10")
    def test_update_of_a_missing_or_foreign_memory_raises_not_found(self, harness: H) -> None:
        """MS-9, MS-24, G-10: updating an id that does not exist, or that belongs to another
        user, raises NotFound and changes and creates nothing."""

        async def body(store: Store) -> None:
            saved = await store.save_user_memory(new_memory("m1", "u", "likes tea"))
            harness.clock.advance(3)
            with pytest.raises(NotFound):
                await store.update_user_memory(new_memory("m2", "u", "new"))
            with pytest.raises(NotFound):
                await store.update_user_memory(new_memory("m1", "v", "hijacked"))
            assert_same(await store.get_user_memories("u"), [saved], "u's memories")
            assert_same(await store.get_user_memories("v"), [], "v's memories")

        harness.with_store(body)

    @requirement("MS-10")
    def test_delete_user_memory(self, harness: H) -> None:
        """MS-10: delete by id removes that memory whoever owns it; a missing id is a no-op."""

        async def body(store: Store) -> None:
            await store.save_user_memory(new_memory("m1", "u", "one"))
            kept = await store.save_user_memory(new_memory("m2", "u", "two"))
            await store.save_user_memory(new_memory("m3", "v", "three"))
            await store.delete_user_memory("m1")
            await store.delete_user_memory("m3")
            await store.delete_user_memory("m1")
            await store.delete_user_memory("never")
            assert_same(await store.get_user_memories("u"), [kept], "u's memories")
            assert_same(await store.get_user_memories("v"), [], "v's memories")
            again = await store.save_user_memory(new_memory("m1", "v", "reused id"))
            assert_same(await store.get_user_memories("v"), [again], "a freed id is reusable")

        harness.with_store(body)

    @requirement("MS-11", "MS-24")
    def test_delete_user_memories_by_ids(self, harness: H) -> None:
        """MS-11, MS-24: deletes the listed ids of that user only; others' and unknown ids are
        ignored; duplicates and an empty list are fine."""

        async def body(store: Store) -> None:
            for memory_id in ("a", "b", "c"):
                await store.save_user_memory(new_memory(memory_id, "u", memory_id))
            foreign = await store.save_user_memory(new_memory("d", "v", "d"))
            await store.delete_user_memories_by_ids("u", ["a", "d", "zz", "a"])
            await store.delete_user_memories_by_ids("u", [])
            got = await store.get_user_memories("u", 0, MemoryRetrieval.FIRST_N)
            assert [m.id for m in got] == ["b", "c"], f"u keeps b and c, got {got!r}"
            assert_same(await store.get_user_memories("v"), [foreign], "v's memories")
            await store.delete_user_memories_by_ids("u", ("b", "c"))
            assert_same(await store.get_user_memories("u"), [], "u's memories after all")

        harness.with_store(body)

    @requirement("MS-12", "MS-24")
    def test_clear_user_memories(self, harness: H) -> None:
        """MS-12, MS-24: clear deletes every memory of the user and no other."""

        async def body(store: Store) -> None:
            for memory_id in ("a", "b"):
                await store.save_user_memory(new_memory(memory_id, "u", memory_id))
            others = [
                await store.save_user_memory(new_memory("c", "u:", "c")),
                await store.save_user_memory(new_memory("d", "v", "d")),
            ]
            await store.clear_user_memories("u")
            await store.clear_user_memories("u")
            await store.clear_user_memories("nobody")
            assert_same(await store.get_user_memories("u"), [], "u's memories")
            assert_same(await store.get_user_memories("u:"), others[:1], "u:'s memories")
            assert_same(await store.get_user_memories("v"), others[1:], "v's memories")

        harness.with_store(body)

    @requirement("MS-13")
    def test_search_matches_case_folded_substrings_of_text_and_input(self, harness: H) -> None:
        """MS-13: a memory matches if its text or input contains the query after both are
        case-folded (str.casefold); the empty query matches all; other users never match."""

        async def body(store: Store) -> None:
            harness.clock.set(1)
            tea = await store.save_user_memory(new_memory("m1", "u", "Likes green TEA"))
            harness.clock.set(2)
            drink_tea = new_memory("m2", "u", "python", "I drink tea daily")
            drink = await store.save_user_memory(drink_tea)
            harness.clock.set(3)
            street = await store.save_user_memory(new_memory("m3", "u", "Lives on a Straße"))
            harness.clock.set(4)
            await store.save_user_memory(new_memory("m4", "v", "tea tea tea"))
            cases = {
                "tea": [drink, tea],
                "TEA": [drink, tea],
                "tEa DaIlY": [drink],
                "STRASSE": [street],
                "straße": [street],
                "green tea": [tea],
                "teas": [],
                "": [street, drink, tea],
            }
            for query, expected in cases.items():
                got = await store.search_user_memories("u", query)
                assert_same(got, expected, f"search for {query!r}")

        harness.with_store(body)

    @requirement("MS-13", "MS-6", "G-8")
    def test_search_order_and_limit(self, harness: H) -> None:
        """MS-13, MS-6, G-8: search results are in last_n order (ties by id), cut to the
        limit; 0 means all; a negative limit raises InvalidArgument."""

        async def body(store: Store) -> None:
            harness.clock.set(5)
            b = await store.save_user_memory(new_memory("b", "u", "tea"))
            a = await store.save_user_memory(new_memory("a", "u", "tea"))
            harness.clock.set(6)
            c = await store.save_user_memory(new_memory("c", "u", "tea"))
            assert_same(await store.search_user_memories("u", "tea"), [c, a, b], "search order")
            assert_same(await store.search_user_memories("u", "tea", 2), [c, a], "limit 2")
            assert_same(await store.search_user_memories("u", "tea", 0), [c, a, b], "limit 0")
            with pytest.raises(InvalidArgument):
                await store.search_user_memories("u", "tea", -1)

        harness.with_store(body)
