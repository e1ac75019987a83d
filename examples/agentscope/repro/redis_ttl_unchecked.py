"""RedisSession: ``key_ttl`` is not checked when the session is configured (ST-18).

``RedisSession(key_ttl=...)`` accepts any value. ``0``, ``-1``, ``1.5`` and ``True`` are only
found out at the first save, which then fails with a Redis error (``invalid expire time``)
or ``DataError`` every time; ``"1"`` (a string) is used as 1 second. The kit found it in
``test_ttl_option_is_checked``, which expects the bad value to be refused up front.
"""

from __future__ import annotations

import asyncio

import redis.exceptions
from _common import Module, Verdict, redis_port
from agentscope.session import RedisSession


async def main(port: int) -> None:
    verdict = Verdict("RedisSession: key_ttl accepted unchecked")
    for ttl in [0, -1, 1.5, True]:
        session = RedisSession(port=port, key_prefix="repro:", key_ttl=ttl)
        try:
            await session.save_session_state("s", user_id="u", agent=Module({"v": 1}))
            error = "none"
        except redis.exceptions.RedisError as exc:
            error = f"{type(exc).__name__}: {exc}"
        verdict.check(error != "none", f"key_ttl={ttl!r} accepted; every save fails ({error})")
        await session.get_client().aclose()
    session = RedisSession(port=port, key_prefix="repro:", key_ttl="1")
    await session.save_session_state("s", user_id="u", agent=Module({"v": 1}))
    ttl = await session.get_client().ttl("repro:user_id:u:session:s:state")
    verdict.check(ttl == 1, f"key_ttl='1' (a str) accepted and used as {ttl} s")
    await session.get_client().aclose()
    verdict.exit()


if __name__ == "__main__":
    with redis_port() as port:
        asyncio.run(main(port))
