"""RedisSession: a save through a handle without TTL makes expiring data permanent (ST-17).

With ``key_ttl`` set, agentscope saves with ``SET key value EX ttl`` and loads with
``GETEX key EX ttl`` (a sliding TTL, which works). A ``RedisSession`` without ``key_ttl``
saves with a plain ``SET``, which removes the key's expiry: a session that should expire
(for privacy or clean-up) silently lives forever once any handle without TTL saves it. The
kit found it in ``test_ttl_handle_without_ttl_keeps_deadlines``.
"""

from __future__ import annotations

import asyncio

from _common import Module, Verdict, redis_port
from agentscope.session import RedisSession


async def main(port: int) -> None:
    verdict = Verdict("RedisSession: TTL dropped by a handle without TTL")
    expiring = RedisSession(port=port, key_prefix="repro:", key_ttl=1)
    plain = RedisSession(port=port, key_prefix="repro:")
    key = "repro:user_id:u:session:s:state"
    await expiring.save_session_state("s", user_id="u", agent=Module({"by": "ttl"}))
    before = await plain.get_client().pttl(key)
    await plain.save_session_state("s", user_id="u", agent=Module({"by": "plain"}))
    after = await plain.get_client().pttl(key)
    verdict.check(0 < before <= 1000 and after == -1, f"PTTL {before} ms before, {after} after")
    await asyncio.sleep(1.5)
    module = Module()
    await plain.load_session_state("s", user_id="u", agent=module)
    verdict.check(module.loaded, "the session is still there 1.5 s after its 1 s deadline")
    for session in (expiring, plain):
        await session.get_client().aclose()
    verdict.exit()


if __name__ == "__main__":
    with redis_port() as port:
        asyncio.run(main(port))
