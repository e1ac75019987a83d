"""JSONSession: ids are used as paths, so they escape the directory or cannot be saved
(ST-11, ST-12, G-2, G-19).

agentscope joins ``save_dir`` and ``f"{user_id}_{session_id}.json"`` with ``os.path.join``
and never checks the result. So:

* a user id ``../x`` writes into the parent of ``save_dir``; ``../../escaped`` further up;
* a user id ``../<neighbour>/u`` writes into another store's directory and replaces that
  store's session ``("u", "s")``;
* an absolute user id (``/some/dir/x``) replaces ``save_dir`` entirely (``os.path.join``
  drops everything before an absolute component);
* a valid id with a ``/`` in it (``"a/b"``) cannot be saved at all when the directory
  ``{user}_a`` happens not to exist: FileNotFoundError.

The kit found these in ``test_ids_never_escape_the_store``, ``test_hostile_ids_are_isolated``,
``test_list_order_and_paging``, ``test_list_matches_the_model``,
``test_sessions_survive_reopening`` and the state machine (all fail on the first such id).
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from _common import Module, Verdict, exists
from agentscope.session import JSONSession


async def main() -> None:
    verdict = Verdict("JSONSession: ids that are paths")
    with tempfile.TemporaryDirectory() as root:
        mine_dir = os.path.join(root, "deep", "mine")
        theirs_dir = os.path.join(root, "deep", "theirs")
        mine, theirs = JSONSession(save_dir=mine_dir), JSONSession(save_dir=theirs_dir)
        await theirs.save_session_state("s", user_id="u", agent=Module({"owner": "theirs"}))

        await mine.save_session_state("s", user_id="../x", agent=Module({"v": 1}))
        verdict.check(
            exists(root, "deep", "x_s.json"),
            "user '../x' wrote deep/x_s.json, outside save_dir",
        )
        await mine.save_session_state("s", user_id="../../escaped", agent=Module({"v": 1}))
        verdict.check(
            exists(root, "escaped_s.json"),
            "user '../../escaped' wrote two levels above save_dir",
        )
        await mine.save_session_state("s", user_id="../theirs/u", agent=Module({"owner": "mine"}))
        victim = Module()
        await theirs.load_session_state("s", user_id="u", agent=victim)
        verdict.check(
            victim.state == {"owner": "mine"},
            "user '../theirs/u' replaced the neighbouring store's session ('u', 's')",
        )
        target = os.path.join(root, "absolute")
        os.makedirs(target)
        await mine.save_session_state("s", user_id=os.path.join(target, "x"), agent=Module())
        verdict.check(
            exists(target, "x_s.json"),
            "an absolute user id wrote where it points, ignoring save_dir",
        )
        try:
            await mine.save_session_state("a/b", user_id="u", agent=Module({"v": 1}))
            unsaveable = False
        except FileNotFoundError as exc:
            print(f"    ({type(exc).__name__}: {exc})")
            unsaveable = True
        verdict.check(unsaveable, "the valid session id 'a/b' cannot be saved")
    verdict.exit()


if __name__ == "__main__":
    asyncio.run(main())
