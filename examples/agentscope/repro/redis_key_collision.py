"""RedisSession: two different (user, session) pairs share one key (ST-11, G-2).

agentscope's key is ``key_prefix + "user_id:{user_id}:session:{session_id}:state"`` with the
ids inserted as they are, so ``("a:session:b", "c")`` and ``("a", "b:session:c")`` both use
``user_id:a:session:b:session:c:state``: one user reads and overwrites another's state. The
kit found it in ``test_collision_pairs_are_isolated``.
"""

from __future__ import annotations

import asyncio

from _common import Module, Verdict, redis_port
from agentscope.session import RedisSession


async def main(port: int) -> None:
    verdict = Verdict("RedisSession: (user, session) pairs that share a key")
    session = RedisSession(port=port, key_prefix="repro:")
    await session.save_session_state("c", user_id="a:session:b", agent=Module({"owner": "first"}))
    other = Module()
    await session.load_session_state("b:session:c", user_id="a", agent=other)
    verdict.check(
        other.state == {"owner": "first"},
        "user 'a' loads session 'b:session:c' and gets user 'a:session:b''s session 'c'",
    )
    await session.save_session_state("b:session:c", user_id="a", agent=Module({"owner": "a"}))
    first = Module()
    await session.load_session_state("c", user_id="a:session:b", agent=first)
    verdict.check(first.state == {"owner": "a"}, "user 'a''s save overwrote the other pair")
    keys = await session.get_client().keys("repro:*")
    verdict.check(keys == ["repro:user_id:a:session:b:session:c:state"], f"one key: {keys}")
    await session.get_client().aclose()
    verdict.exit()


if __name__ == "__main__":
    with redis_port() as port:
        asyncio.run(main(port))
