"""Session-store suite: isolation, bad input, durability and concurrency (SS-9, SS-15, SS-23,
SS-24; G-2, G-3, G-5, G-16 .. G-19).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentstores.spec.errors import InvalidArgument, NotFound
from agentstores.spec.messages import Message
from agentstores.spec.session_store import SessionStore, SessionType, TokenStatsUpdate

from ..backend import Capability
from ..harness import Harness
from ..markers import needs, requirement
from ..strategies import adversarial_ids, invalid_ids, invalid_json_values
from .session_store_support import (
    ALL_TYPES,
    Snapshot,
    assert_exact,
    opened,
    said,
    store_snapshot,
)

__all__ = ["RobustnessTests"]

Store = SessionStore
H = Harness[SessionStore]

#: SS-23: how many tasks append at once, and how many messages each.
WRITERS = 8
PER_WRITER = 12


def _id_calls(store: Store, session_id: Any) -> list[Callable[[], Awaitable[object]]]:
    """Every operation that takes a session id, called with ``session_id``."""
    return [
        lambda: store.get_session(session_id),
        lambda: store.get_session(session_id, True),
        lambda: store.add_message(session_id, said("x", 1)),
        lambda: store.replace_conversation(session_id, [said("x", 1)]),
        lambda: store.delete_session(session_id),
        lambda: store.export_session(session_id),
        lambda: store.copy_session(session_id, "copy"),
        lambda: store.truncate_conversation(session_id, 0),
        lambda: store.update_session_name(session_id, "n", True),
        lambda: store.update_extension_data(session_id, {"e": 1}),
        lambda: store.update_token_stats(session_id, TokenStatsUpdate(total_tokens=1)),
        lambda: store.update_provider_config(session_id, "p", None),
        lambda: store.update_recipe(session_id, {"r": 1}, None),
    ]


async def _seed(store: Store) -> str:
    session = await store.create_session("/w", "seed")
    await store.replace_conversation(session.id, [said("seed text", 1), said("more", 2)])
    await store.update_extension_data(session.id, {"k": [1]})
    return session.id


class RobustnessTests:
    """Isolation, bad input, durability and concurrency; mixed into the suite class."""

    @requirement("G-2", "G-1", "SS-5", "SS-15")
    def test_any_unknown_id_is_not_found_and_touches_nothing(self, harness: H) -> None:
        """G-2, G-1, SS-5, SS-15: ids the store did not issue (separators, traversal, wildcards,
        look-alikes, key-family names) are NotFound in every operation and never reach
        another session's data."""
        with opened(harness) as store:
            seeded = harness.run(_seed(store))
            before = harness.run(store_snapshot(store))

            def check(session_id: str) -> None:
                if session_id == seeded:
                    return

                async def body() -> None:
                    for call in _id_calls(store, session_id):
                        with pytest.raises(NotFound):
                            await call()
                    hits = await store.search_chat_history("seed", exclude_session_id=session_id)
                    assert [h.session_id for h in hits] == [seeded]

                harness.run(body())
                assert_exact(harness.run(store_snapshot(store)), before, "store")

            harness.for_all(check, session_id=adversarial_ids())
            for near in (seeded + " ", seeded.upper() + "X", "*", seeded[:-1], f"../{seeded}"):
                check(near)

    @requirement("G-3", "SS-15")
    def test_invalid_ids_are_rejected_everywhere(self, harness: H) -> None:
        """G-3, SS-15: ids outside the domain raise InvalidArgument in every operation (also
        search's exclude_session_id), and nothing is written."""
        with opened(harness) as store:
            harness.run(_seed(store))
            before = harness.run(store_snapshot(store))

            def check(bad: Any) -> None:
                async def body() -> None:
                    for call in _id_calls(store, bad):
                        with pytest.raises(InvalidArgument):
                            await call()
                    if bad is not None:  # None means "exclude nothing"
                        with pytest.raises(InvalidArgument):
                            await store.search_chat_history("seed", exclude_session_id=bad)

                harness.run(body())
                assert_exact(harness.run(store_snapshot(store)), before, "store")

            harness.for_all(check, bad=invalid_ids())

    @requirement("G-5", "SS-2", "SS-15")
    def test_values_outside_the_json_domain_write_nothing(self, harness: H) -> None:
        """G-5, SS-2, SS-15: a non-JSON value anywhere (extension data, recipe, model config,
        message parts or metadata) raises InvalidArgument and changes nothing."""
        with opened(harness) as store:
            session_id = harness.run(_seed(store))
            before = harness.run(store_snapshot(store))

            def check(bad: Any) -> None:
                calls: list[Callable[[], Awaitable[object]]] = [
                    lambda: store.update_extension_data(session_id, {"x": bad}),
                    lambda: store.update_recipe(session_id, {"x": bad}, None),
                    lambda: store.update_provider_config(session_id, "p", {"x": bad}),
                    lambda: store.add_message(session_id, said("x", metadata={"x": bad})),
                    lambda: store.replace_conversation(
                        session_id, [said("ok"), said("x", metadata={"m": bad})]
                    ),
                    lambda: store.add_message(
                        session_id, Message("user", ({"type": "t", "v": bad},))
                    ),
                ]

                async def body() -> None:
                    for call in calls:
                        with pytest.raises(InvalidArgument):
                            await call()

                harness.run(body())
                assert_exact(harness.run(store_snapshot(store)), before, "store")

            harness.for_all(check, bad=invalid_json_values())

    @requirement("G-19")
    def test_namespaces_on_one_root_are_isolated(self, harness: H) -> None:
        """G-19: a store on the same directory or database file but another namespace sees no
        session, message or insight of this one, and issues its ids independently."""
        neighbour = harness.new_context(root=harness.context.root)
        seeded = harness.with_store(_seed)

        async def body(store: Store) -> None:
            assert await store.list_sessions_by_types(list(ALL_TYPES)) == []
            assert await store.search_chat_history("seed") == []
            assert (await store.get_insights()).total_sessions == 0
            with pytest.raises(NotFound):
                await store.get_session(seeded)
            own = await store.create_session("/w", "own")
            await store.delete_session(own.id)

        harness.with_store(body, neighbour)

        async def still_there(store: Store) -> None:
            assert [s.id for s in await store.list_sessions()] == [seeded]
            assert (await store.get_session(seeded)).message_count == 2

        harness.with_store(still_there)

    @needs(Capability.DURABLE)
    @requirement("SS-24", "SS-4", "G-16")
    def test_everything_survives_reopening(self, harness: H) -> None:
        """SS-24, SS-4, G-16: sessions, conversations, every field and the id counter survive
        closing (twice) and reopening; no id is reused after reopening, not even the id of the
        newest session, deleted just before closing."""

        async def write(store: Store) -> tuple[set[str], str, Snapshot]:
            first = await _seed(store)
            second = await store.create_session("/w2", "second", SessionType.HIDDEN)
            await store.update_token_stats(second.id, TokenStatsUpdate(total_tokens=2**64 - 1))
            await store.update_recipe(second.id, {"r": -0.0}, {"k": "v"})
            await store.add_message(second.id, said("hello again", 7))
            doomed = await store.create_session("/w", "doomed")
            await store.delete_session(doomed.id)
            written = await store_snapshot(store)
            await store.close()
            await store.close()  # G-16: idempotent
            return {first, second.id}, doomed.id, written

        kept, doomed, written = harness.with_store(write)
        issued = {*kept, doomed}
        first = harness.with_store(store_snapshot)
        assert {s.id for s in first.sessions} == kept
        assert sum(s.message_count for s in first.sessions) == 3
        assert_exact(first, written, "snapshot after reopening")
        second = harness.with_store(store_snapshot)
        assert_exact(second, first, "snapshot after a second reopening")

        async def after(store: Store) -> None:
            for _ in range(3):
                fresh = await store.create_session("/w", "after reopening")
                assert fresh.id not in issued, f"id {fresh.id!r} reused after reopening"
                issued.add(fresh.id)
            (hit,) = await store.search_chat_history("again")
            assert hit.message_content == "hello again"

        harness.with_store(after)

    @requirement("SS-23", "G-18")
    def test_concurrent_appends_lose_and_duplicate_nothing(self, harness: H) -> None:
        """SS-23, G-18: many tasks (on two store objects) append to one session at once: every
        message is stored exactly once, each task's messages in its order, and message_count
        equals the number stored."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "busy")
            async with harness.open() as other:

                async def writer(number: int) -> None:
                    target = store if number % 2 else other
                    for n in range(PER_WRITER):
                        await target.add_message(session.id, said(f"w{number}-{n}", n))

                await asyncio.gather(*(writer(w) for w in range(WRITERS)))
            got = await store.get_session(session.id, True)
            assert got.conversation is not None
            texts = [m.content[0]["text"] for m in got.conversation]
            assert len(texts) == len(set(texts)), "a message was stored twice"
            expected = {f"w{w}-{n}" for w in range(WRITERS) for n in range(PER_WRITER)}
            assert set(texts) == expected, f"lost: {sorted(expected - set(texts))}"
            assert got.message_count == len(texts)
            for w in range(WRITERS):
                mine = [t for t in texts if t.startswith(f"w{w}-")]
                assert mine == [f"w{w}-{n}" for n in range(PER_WRITER)], f"writer {w}: {mine}"

        harness.with_store(scenario)

    @requirement("G-18", "SS-11", "SS-12", "SS-13")
    def test_concurrent_updates_of_different_fields_all_land(self, harness: H) -> None:
        """G-18, SS-11 .. SS-13: concurrent updates of different fields of one session (and
        appends to it) never overwrite each other."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            sid = session.id
            calls: list[Awaitable[None]] = []
            for n in range(5):
                calls += [
                    store.update_session_name(sid, "final", True),
                    store.update_extension_data(sid, {"ext": 1}),
                    store.update_token_stats(sid, TokenStatsUpdate(input_tokens=n)),
                    store.update_token_stats(sid, TokenStatsUpdate(output_tokens=7)),
                    store.update_provider_config(sid, "prov", None),
                    store.update_provider_config(sid, None, {"m": 1}),
                    store.update_recipe(sid, {"r": 1}, None),
                    store.update_recipe(sid, None, {"k": "v"}),
                    store.add_message(sid, said(f"m{n}")),
                ]
            await asyncio.gather(*calls)
            got = await store.get_session(sid)
            assert (got.name, got.user_set_name, got.extension_data) == ("final", True, {"ext": 1})
            assert got.output_tokens == 7 and got.input_tokens in range(5)
            assert (got.provider_name, got.model_config) == ("prov", {"m": 1})
            assert (got.recipe, got.user_recipe_values) == ({"r": 1}, {"k": "v"})
            assert got.message_count == 5

        harness.with_store(scenario)

    @requirement("SS-9", "G-17")
    def test_readers_never_see_half_a_replaced_conversation(self, harness: H) -> None:
        """SS-9, G-17: while conversations are replaced back and forth, every read (of the
        session, its export and search) sees one whole conversation, with a matching
        message_count."""
        old = [said(f"old {n}", n) for n in range(6)]
        new = [said(f"new {n}", n) for n in range(3)]

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.replace_conversation(session.id, old)
            stop = asyncio.Event()
            seen: list[tuple[str, ...]] = []

            async def replacer() -> None:
                for n in range(15):
                    await store.replace_conversation(session.id, new if n % 2 == 0 else old)
                stop.set()

            async def reader() -> None:
                while not stop.is_set():
                    got = await store.get_session(session.id, True)
                    assert got.conversation is not None
                    assert got.message_count == len(got.conversation)
                    texts = tuple(m.content[0]["text"] for m in got.conversation)
                    seen.append(texts)
                    hits = await store.search_chat_history("old new", limit=100)
                    kinds = {h.message_content.split()[0] for h in hits}
                    assert len(kinds) == 1 and len(hits) in (len(old), len(new)), kinds
                    await asyncio.sleep(0)

            await asyncio.gather(replacer(), reader(), reader())
            whole = {tuple(m.content[0]["text"] for m in c) for c in (old, new)}
            assert set(seen) <= whole, f"torn reads: {set(seen) - whole}"

        harness.with_store(scenario)
