"""JSONSession: two different (user, session) pairs share one file (ST-11, G-2).

agentscope names the file ``{user_id}_{session_id}.json``, and ``{session_id}.json`` for an
empty user id. The join is not injective, so ``("alice_x", "s1")`` and ``("alice", "x_s1")``
both use ``alice_x_s1.json``, and so does ``("", "alice_x_s1")``: one user reads and
overwrites another's state. The kit found it in ``test_collision_pairs_are_isolated``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from _common import Module, Verdict
from agentscope.session import JSONSession


async def main() -> None:
    verdict = Verdict("JSONSession: (user, session) pairs that share a file")
    with tempfile.TemporaryDirectory() as directory:
        session = JSONSession(save_dir=directory)
        await session.save_session_state(
            "s1", user_id="alice_x", agent=Module({"owner": "alice_x"})
        )
        other = Module()
        await session.load_session_state("x_s1", user_id="alice", agent=other)
        verdict.check(
            other.state == {"owner": "alice_x"},
            "alice loads session 'x_s1' and gets alice_x's session 's1'",
        )
        await session.save_session_state("x_s1", user_id="alice", agent=Module({"owner": "alice"}))
        first = Module()
        await session.load_session_state("s1", user_id="alice_x", agent=first)
        verdict.check(
            first.state == {"owner": "alice"},
            "alice's save overwrote alice_x's session 's1'",
        )
        await session.save_session_state("alice_x_s1", user_id="", agent=Module({"owner": ""}))
        again = Module()
        await session.load_session_state("s1", user_id="alice_x", agent=again)
        verdict.check(
            again.state == {"owner": ""},
            "the empty user id's session 'alice_x_s1' is the same file too",
        )
        verdict.check(os.listdir(directory) == ["alice_x_s1.json"], "one file for three pairs")
    verdict.exit()


if __name__ == "__main__":
    asyncio.run(main())
