"""JSONSession: a save that fails on an unserialisable state destroys the stored state
(ST-6, ST-7, G-5, G-11).

agentscope opens the session file in mode ``"w"`` first and calls ``json.dumps`` inside the
``with`` block: when a state holds something JSON cannot encode (a set, a datetime, a
circular list), ``TypeError``/``ValueError`` is raised after the file was emptied. The
previous state is gone, and every later load fails with ``JSONDecodeError`` until the next
successful save.

In the committed report this is hidden behind an earlier failure of the same tests
(``test_invalid_states_are_rejected`` stops at its first example, ``[1, 2]``, which agentscope
accepts without error); it is confirmed here by hand. ``RedisSession`` serialises before it
writes, so it keeps the old state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile

from _common import Module, Verdict, read_text, redis_port
from agentscope.session import JSONSession, RedisSession


async def _json(verdict: Verdict) -> None:
    with tempfile.TemporaryDirectory() as directory:
        session = JSONSession(save_dir=directory)
        await session.save_session_state("s", user_id="u", agent=Module({"v": "precious"}))
        try:
            await session.save_session_state("s", user_id="u", agent=Module({"tags": {"a", "b"}}))
        except TypeError as exc:
            print(f"    (the save raised {type(exc).__name__}: {exc})")
        text = read_text(directory, "u_s.json")
        verdict.check(text == "", f"JSONSession: the session file now holds {text!r}")
        try:
            await session.load_session_state("s", user_id="u", agent=Module())
            lost = False
        except json.JSONDecodeError:
            lost = True
        verdict.check(lost, "JSONSession: the previous state cannot be loaded any more")


async def _redis(verdict: Verdict, port: int) -> None:
    session = RedisSession(port=port, key_prefix="repro:")
    await session.save_session_state("s", user_id="u", agent=Module({"v": "precious"}))
    with contextlib.suppress(TypeError):
        await session.save_session_state("s", user_id="u", agent=Module({"tags": {"a", "b"}}))
    module = Module()
    await session.load_session_state("s", user_id="u", agent=module)
    print(f"    (for comparison, RedisSession still loads {module.state})")
    await session.get_client().aclose()


async def main() -> None:
    verdict = Verdict("JSONSession: a failed save empties the session file")
    await _json(verdict)
    with redis_port() as port:
        await _redis(verdict, port)
    verdict.exit()


if __name__ == "__main__":
    asyncio.run(main())
