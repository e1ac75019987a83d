"""Concurrency on one and two store objects, durability and closing (ST-7, ST-13, ST-14,
G-16 .. G-18).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..backend import Capability
from ..harness import Harness
from ..markers import needs, requirement
from ..strategies import ADVERSARIAL_IDS
from .state_session_support import (
    assert_same_states,
    load_states,
    opened,
    save_states,
)

__all__ = ["ConcurrencyTests", "DurabilityTests"]


class ConcurrencyTests:
    """Many tasks and two store objects at once: whole states, nothing lost."""

    # --- concurrency -------------------------------------------------------------------------

    @requirement("ST-7", "ST-13", "G-17", "G-18")
    def test_concurrent_loads_see_whole_saves(self, harness: Harness[Any]) -> None:
        """ST-7, ST-13, G-17, G-18: loads racing large multi-module saves, on one store object
        and on two, always see every module of one save, never a torn or mixed state."""
        payload = "x" * 100_000

        def states(version: int) -> dict[str, Any]:
            return {"a": {"v": version, "pad": payload}, "b": {"v": version}}

        async def body(one: Any, two: Any) -> None:
            await save_states(one, "s", "u", states(0))
            saved = {0}

            async def writer(store: Any, versions: range) -> None:
                for version in versions:
                    saved.add(version)
                    await save_states(store, "s", "u", states(version))

            async def reader(store: Any) -> None:
                for _ in range(12):
                    loaded = await load_states(store, "s", "u", ["a", "b"])
                    assert loaded is not None, "ST-13: an existing session vanished mid-save"
                    assert set(loaded) == {"a", "b"}, f"ST-7: a load saw modules {set(loaded)}"
                    version = loaded["a"]["v"]
                    assert loaded["b"]["v"] == version, "ST-7: a load mixed two saves"
                    assert loaded["a"]["pad"] == payload, "ST-7: a load saw a torn state"
                    assert version in saved
                    await asyncio.sleep(0)

            await asyncio.gather(
                writer(one, range(1, 9)),
                writer(two, range(9, 17)),
                *(reader(store) for store in (one, two, one, two)),
            )
            final = await load_states(two, "s", "u", ["a", "b"])
            assert final is not None and final["a"]["v"] == final["b"]["v"]

        with opened(harness) as one, opened(harness) as two:
            harness.run(body(one, two))

    @requirement("ST-13", "G-18")
    def test_concurrent_saves_are_all_kept(self, harness: Harness[Any]) -> None:
        """ST-13, G-18: many tasks on two store objects saving distinct sessions of one user
        lose none of them, in loads and in the listing."""

        async def body(one: Any, two: Any) -> None:
            async def save(store: Any, index: int) -> None:
                await save_states(store, f"s{index:03d}", "u", {"m": {"i": index}})

            stores = (one, two)
            await asyncio.gather(*(save(stores[i % 2], i) for i in range(40)))
            expected = [f"s{i:03d}" for i in range(40)]
            assert await one.list_sessions("u") == expected
            assert await two.list_sessions("u") == expected
            for index in range(40):
                loaded = await load_states(stores[(index + 1) % 2], f"s{index:03d}", "u", ["m"])
                assert loaded == {"m": {"i": index}}

        with opened(harness) as one, opened(harness) as two:
            harness.run(body(one, two))

    @requirement("ST-13", "ST-8")
    def test_concurrent_deletes_succeed_once(self, harness: Harness[Any]) -> None:
        """ST-13, ST-8: of concurrent deletes of one session exactly one returns True."""

        async def body(one: Any, two: Any) -> None:
            for round_ in range(5):
                session = f"s{round_}"
                await save_states(one, session, "u", {"m": {}})
                results = await asyncio.gather(
                    *(store.delete_session_state(session, user_id="u") for store in [one, two] * 4)
                )
                assert sorted(results) == [False] * 7 + [True], f"ST-13: deletes gave {results}"
            assert await one.list_sessions("u") == []

        with opened(harness) as one, opened(harness) as two:
            harness.run(body(one, two))

    @requirement("ST-13", "ST-9")
    def test_listing_agrees_with_loads_after_races(self, harness: Harness[Any]) -> None:
        """ST-13, ST-9: after racing saves and deletes of the same sessions, a session is
        listed exactly when a load finds it, and its state is one of those saved."""

        async def body(one: Any, two: Any) -> None:
            sessions = [f"s{i}" for i in range(6)]

            async def churn(store: Any, seed: int) -> None:
                for step in range(10):
                    session = sessions[(seed * 7 + step * 3) % len(sessions)]
                    if (seed + step) % 3 == 0:
                        await store.delete_session_state(session, user_id="u")
                    else:
                        await save_states(store, session, "u", {"m": {"by": seed}})

            await asyncio.gather(*(churn((one, two)[seed % 2], seed) for seed in range(6)))
            for store in (one, two):
                listed = await store.list_sessions("u")
                for session in sessions:
                    loaded = await load_states(store, session, "u", ["m"])
                    assert (loaded is not None) == (session in listed), (
                        f"ST-13: {session!r} listed={session in listed} but loadable="
                        f"{loaded is not None}"
                    )
                    if loaded is not None:
                        assert loaded["m"]["by"] in range(6)

        with opened(harness) as one, opened(harness) as two:
            harness.run(body(one, two))


class DurabilityTests:
    """Closing and reopening."""

    # --- durability and closing --------------------------------------------------------------

    @needs(Capability.DURABLE)
    @requirement("ST-14", "G-16")
    def test_sessions_survive_reopening(self, harness: Harness[Any]) -> None:
        """ST-14, G-16: after close and reopen every session is there, exact; deletions stay."""
        hostile = [i for i in ADVERSARIAL_IDS if i != "a"][::3]
        states = {
            "agent": {"big": 2**100, "neg": -0.0, "f": 1.0, "t": True, "s": "é\u202e"},
            "memory": {"deep": [[[{"k": [None]}]]], "empty": {}},
        }
        context = harness.new_context()
        with opened(harness, context) as store:
            for session in hostile:
                harness.run(save_states(store, session, "a", states))
            harness.run(save_states(store, "deleted", "a", states))
            assert harness.run(store.delete_session_state("deleted", user_id="a")) is True
            harness.run(save_states(store, hostile[0], "a", {"agent": {"v": "last"}}))
        with opened(harness, context) as store:
            assert harness.run(store.list_sessions("a")) == sorted(hostile)
            for session in hostile[1:]:
                loaded = harness.run(load_states(store, session, "a", list(states)))
                assert_same_states(loaded, states)
            loaded = harness.run(load_states(store, hostile[0], "a", list(states)))
            assert loaded == {"agent": {"v": "last"}}
            assert harness.run(load_states(store, "deleted", "a", [])) is None

    @requirement("G-16")
    def test_close_is_idempotent(self, harness: Harness[Any]) -> None:
        """G-16: close() may be called twice (and again by the opener's exit)."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"m": {"v": 1}})
            await store.close()
            await store.close()

        harness.with_store(body)
