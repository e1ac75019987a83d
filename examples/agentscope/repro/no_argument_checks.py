"""JSONSession and RedisSession check no argument (ST-1, ST-6, G-1, G-3, G-5).

The spec asks a store to refuse, with ``InvalidArgument`` and before writing anything, ids
outside the id domain (empty, non-``str``, NUL, longer than 256), module names outside it,
states that are not JSON objects or hold non-JSON values, values that are not modules, and
an ``allow_not_exist`` that is not a bool. agentscope checks none of these; where Python or
the engine happens to fail, its own exception escapes. The kit found it in
``test_invalid_ids_are_rejected``, ``test_empty_user_id_is_not_an_alias``,
``test_module_names_are_ids``, ``test_invalid_states_are_rejected``,
``test_non_modules_are_rejected``, ``test_allow_not_exist_must_be_a_bool`` and (Redis) the
state machine's ``save_invalid`` rule. Consequences shown here:

* non-``str`` ids are formatted into the file name or key, so user ``5`` *is* user ``"5"``,
  and user ``None`` is user ``"None"`` (Redis) or the empty user (JSON, where a false user
  id means "no user"): a wrong type silently reaches another user's data;
* the empty id is accepted: for ``JSONSession`` the empty user is an alias, see
  ``json_id_collision.py``; session ``""`` is stored as ``u_.json`` / ``...session::state``;
* a state that is not a JSON object (``[1, 2]``, ``3``, ``None``) is stored and later handed
  to ``load_state_dict`` as it is;
* NaN is written as the token ``NaN``, so the stored document is not JSON (RFC 8259): a
  strict JSON reader rejects it;
* in a load, a value that is not a module is ignored when the stored state lacks its name,
  while the other modules are loaded;
* ``allow_not_exist="false"`` (a truthy str) allows a missing session; ``0`` does not.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

from _common import Module, Verdict, read_text, redis_port
from agentscope.session import JSONSession, RedisSession


def _strict_json(text: str) -> bool:
    def refuse(constant: str) -> Any:
        raise ValueError(f"non-JSON constant {constant}")

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


async def _check(verdict: Verdict, name: str, session: Any, raw: Any, none_is: str) -> None:
    """Run every check on one agentscope session; ``raw(session_id, user_id)`` reads the
    stored text directly (file or key); user ``None`` is expected to alias ``none_is``."""
    await session.save_session_state("s", user_id=5, agent=Module({"owner": "int 5"}))
    module = Module()
    await session.load_session_state("s", user_id="5", agent=module)
    verdict.check(module.state == {"owner": "int 5"}, f"{name}: user 5 (an int) is user '5'")
    await session.save_session_state("s", user_id=None, agent=Module({"owner": "None"}))
    module = Module()
    await session.load_session_state("s", user_id=none_is, agent=module)
    verdict.check(module.state == {"owner": "None"}, f"{name}: user None is user {none_is!r}")

    await session.save_session_state("", user_id="u", agent=Module({"v": 1}))
    verdict.check(await raw("", "u") is not None, f"{name}: session id '' accepted and stored")
    await session.save_session_state("e", user_id="", agent=Module({"v": "empty user"}))
    module = Module()
    await session.load_session_state("e", user_id="", agent=module)
    verdict.check(module.loaded, f"{name}: user id '' accepted and stored")
    names = ["", "x" * 300]
    await session.save_session_state("s", user_id="u", **{n: Module({"v": 1}) for n in names})
    modules = {n: Module() for n in names}
    await session.load_session_state("s", user_id="u", **modules)
    verdict.check(
        all(m.loaded for m in modules.values()), f"{name}: module names '' and 300 x accepted"
    )

    await session.save_session_state("s", user_id="u", agent=Module([1, 2]))
    module = Module({"untouched": True})
    await session.load_session_state("s", user_id="u", agent=module)
    verdict.check(module.state == [1, 2], f"{name}: state [1, 2] stored and loaded back")

    await session.save_session_state("s", user_id="u", agent=Module({"v": float("nan")}))
    text = await raw("s", "u")
    verdict.check(not _strict_json(text), f"{name}: NaN stored as non-JSON text {text!r}")

    agent = Module()
    await session.load_session_state("s", user_id="u", agent=agent, other={"not": "a module"})
    verdict.check(agent.loaded, f"{name}: a load with a dict as module ran without error")

    module = Module()
    await session.load_session_state("missing", "u", "false", agent=module)
    try:
        await session.load_session_state("missing", "u", 0, agent=module)
        refused = False
    except ValueError:
        refused = True
    verdict.check(refused, f"{name}: allow_not_exist='false' allows, 0 refuses")


async def main() -> None:
    verdict = Verdict("JSONSession and RedisSession: no argument checks")
    with tempfile.TemporaryDirectory() as directory:

        async def read_file(session_id: str, user_id: str) -> str | None:
            return read_text(directory, f"{user_id}_{session_id}.json")

        await _check(verdict, "JSONSession", JSONSession(save_dir=directory), read_file, "")
        try:
            await JSONSession(save_dir=directory).save_session_state("a\x00b", agent=Module())
            escaped = "nothing"
        except Exception as exc:
            escaped = type(exc).__name__
        verdict.check(escaped == "ValueError", f"JSONSession: a NUL in an id raises {escaped}")
    with redis_port() as port:
        session = RedisSession(port=port, key_prefix="repro:")
        client = session.get_client()

        async def read_key(session_id: str, user_id: str) -> str | None:
            value: str | None = await client.get(session._get_session_key(session_id, user_id))
            return value

        await _check(verdict, "RedisSession", session, read_key, "None")
        await session.save_session_state("a\x00b", user_id="u", agent=Module())
        verdict.check(await read_key("a\x00b", "u") is not None, "RedisSession: NUL id stored")
        await client.aclose()
    verdict.exit()


if __name__ == "__main__":
    asyncio.run(main())
