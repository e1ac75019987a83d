"""JSONSession: a load running while a save writes sees an empty or half-written file
(ST-7, ST-13, G-17, G-18).

agentscope saves by opening ``{user}_{session}.json`` in mode ``"w"`` (which empties it at
once) and then writing the new JSON; it has no temporary file and rename, and no lock. A load
in that window reads ``""`` or a prefix of the document and fails with ``JSONDecodeError``,
although the session has existed all along. The kit found it in
``test_concurrent_loads_see_whole_saves`` (one event loop, two ``JSONSession`` objects on one
directory); this script shows it the same way, and then from a second process.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import tempfile

from _common import Module, Verdict
from agentscope.session import JSONSession

_PAD = "x" * 100_000


async def _race(directory: str) -> tuple[int, int]:
    """Save and load one session concurrently; (torn loads, loads)."""
    writer, reader = JSONSession(save_dir=directory), JSONSession(save_dir=directory)
    await writer.save_session_state("s", user_id="u", a=Module({"v": 0, "pad": _PAD}))
    torn = loads = 0

    async def write() -> None:
        for version in range(1, 60):
            await writer.save_session_state("s", user_id="u", a=Module({"v": version, "pad": _PAD}))

    async def read() -> None:
        nonlocal torn, loads
        for _ in range(60):
            loads += 1
            try:
                await reader.load_session_state("s", user_id="u", a=Module())
            except json.JSONDecodeError:
                torn += 1
            await asyncio.sleep(0)

    await asyncio.gather(write(), read(), read())
    return torn, loads


def _write_forever(directory: str, rounds: int) -> None:
    async def go() -> None:
        session = JSONSession(save_dir=directory)
        for version in range(rounds):
            await session.save_session_state(
                "p", user_id="u", a=Module({"v": version, "pad": _PAD})
            )

    asyncio.run(go())


async def _race_processes(directory: str) -> tuple[int, int]:
    """A second process saves while this one loads; (torn loads, loads)."""
    session = JSONSession(save_dir=directory)
    await session.save_session_state("p", user_id="u", a=Module({"v": -1, "pad": _PAD}))
    process = multiprocessing.get_context("spawn").Process(
        target=_write_forever, args=(directory, 400)
    )
    process.start()
    torn = loads = 0
    while process.is_alive() or loads == 0:
        loads += 1
        try:
            await session.load_session_state("p", user_id="u", a=Module())
        except json.JSONDecodeError:
            torn += 1
    process.join()
    return torn, loads


async def main() -> None:
    verdict = Verdict("JSONSession: loads racing saves")
    with tempfile.TemporaryDirectory() as directory:
        torn, loads = await _race(directory)
        verdict.check(torn > 0, f"one process: {torn} of {loads} loads read a torn file")
        torn, loads = await _race_processes(directory)
        verdict.check(torn > 0, f"two processes: {torn} of {loads} loads read a torn file")
    verdict.exit()


if __name__ == "__main__":
    asyncio.run(main())
