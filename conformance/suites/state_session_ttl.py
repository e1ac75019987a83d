"""Time-to-live tests (capability ``ttl``; ST-15 .. ST-18).

A store opened for a context whose options hold ``ttl_seconds`` must use that TTL; a copy of
the context without the option reaches the same storage through a store without TTL. The
tests sleep for real (about six seconds in all) and use the system clock, because engines
such as Redis expire data on their own clock.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from agentstores.spec.errors import InvalidArgument
from agentstores.spec.values import system_clock

from ..backend import Capability
from ..harness import Harness
from ..markers import needs, requirement
from ..models.state_session import RecordingModule
from .state_session_support import (
    load_states,
    opened,
    save_states,
)

__all__ = ["TTL_OPTION", "TtlTests"]


#: The context option that carries a store's time to live in seconds (ST-18).
TTL_OPTION = "ttl_seconds"
#: The TTL of the TTL tests, and the slack allowed after a deadline, in seconds.
_TTL = 1
_SLACK = 0.35


class _Timeline:
    """Real time since a start, for the TTL tests."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.start

    def sleep_until(self, seconds: float) -> None:
        delay = self.start + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class TtlTests:
    """Expiry, sliding deadlines, handles without TTL, and the TTL option."""

    # --- time to live ------------------------------------------------------------------------

    def _ttl_context(self, harness: Harness[Any]) -> Any:
        return harness.new_context(clock=system_clock, options={TTL_OPTION: _TTL})

    @needs(Capability.TTL)
    @requirement("ST-15", "ST-16", "ST-6")
    def test_ttl_expires_untouched_sessions(self, harness: Harness[Any]) -> None:
        """ST-15, ST-16, ST-6: a session neither saved nor loaded for the TTL expires; listing
        and a failed save do not renew it; an expired session is gone everywhere."""
        with opened(harness, self._ttl_context(harness)) as store:
            clock = _Timeline()
            harness.run(save_states(store, "s", "u", {"m": {"v": 1}}))
            harness.run(save_states(store, "kept", "u", {"m": {"v": 1}}))
            saved = clock.now()
            clock.sleep_until(saved + 0.3)
            with pytest.raises(InvalidArgument):
                harness.run(
                    store.save_session_state("s", user_id="u", m=RecordingModule({"bad": {1, 2}}))
                )
            clock.sleep_until(saved + 0.5)
            assert harness.run(store.list_sessions("u")) == ["kept", "s"]
            clock.sleep_until(saved + 0.8)
            renewing = clock.now()  # "kept" lives at least until renewing + TTL
            harness.run(save_states(store, "kept", "u", {"m": {"v": 2}}))
            clock.sleep_until(saved + _TTL + _SLACK)
            assert harness.run(load_states(store, "s", "u", ["m"])) is None, (
                "ST-15: the session outlived its TTL (or a listing or failed save renewed it)"
            )
            listed = harness.run(store.list_sessions("u"))
            assert "s" not in listed, "ST-6: an expired session is still listed"
            # On a slow machine the renewed "kept" may have run out too by now: only a listing
            # that ended before its deadline must show it.
            if clock.now() < renewing + _TTL:
                assert listed == ["kept"], "ST-16: a session saved within its TTL was lost"
            assert harness.run(store.delete_session_state("s", user_id="u")) is False
            harness.run(save_states(store, "s", "u", {"other": {}}))
            assert harness.run(load_states(store, "s", "u", ["m", "other"])) == {"other": {}}

    @needs(Capability.TTL)
    @requirement("ST-16")
    def test_ttl_save_slides(self, harness: Harness[Any]) -> None:
        """ST-16: a save restarts the session's time to live."""
        with opened(harness, self._ttl_context(harness)) as store:
            clock = _Timeline()
            harness.run(save_states(store, "s", "u", {"m": {"round": 0}}))
            first = clock.now()  # without sliding, "s" expires by first + TTL
            clock.sleep_until(0.7)  # with sliding, not before 0.7 + TTL
            harness.run(save_states(store, "s", "u", {"m": {"round": 1}}))
            clock.sleep_until(first + _TTL + 0.2)
            assert harness.run(load_states(store, "s", "u", ["m"])) == {"m": {"round": 1}}, (
                "ST-16: a save did not restart the TTL"
            )

    @needs(Capability.TTL)
    @requirement("ST-16")
    def test_ttl_load_slides(self, harness: Harness[Any]) -> None:
        """ST-16: a load that finds the session restarts its time to live, also one that
        allows a missing session and names no stored module."""
        with opened(harness, self._ttl_context(harness)) as store:
            clock = _Timeline()
            harness.run(save_states(store, "s", "u", {"m": {"v": 1}}))
            first = clock.now()  # without sliding, "s" expires by first + TTL
            clock.sleep_until(0.7)  # with sliding, not before 0.7 + TTL
            harness.run(store.load_session_state("s", user_id="u", other=RecordingModule()))
            clock.sleep_until(first + _TTL + 0.2)
            loaded = harness.run(load_states(store, "s", "u", ["m"]))
            assert loaded == {"m": {"v": 1}}, "ST-16: a load did not restart the TTL"

    @needs(Capability.TTL)
    @requirement("ST-17")
    def test_ttl_handle_without_ttl_keeps_deadlines(self, harness: Harness[Any]) -> None:
        """ST-17: a handle without TTL saving over expiring data keeps its deadline (the data
        does not become permanent), its loads do not extend it, and what it creates alone
        never expires."""
        with_ttl = self._ttl_context(harness)
        without_ttl = dataclasses.replace(with_ttl, options={})
        with opened(harness, with_ttl) as expiring, opened(harness, without_ttl) as plain:
            clock = _Timeline()
            harness.run(save_states(expiring, "s", "u", {"m": {"by": "ttl"}}))
            saved = clock.now()
            harness.run(save_states(plain, "forever", "u", {"m": {"by": "plain"}}))
            clock.sleep_until(saved + 0.3)
            harness.run(save_states(plain, "s", "u", {"m": {"by": "plain"}}))
            clock.sleep_until(saved + 0.6)
            assert harness.run(load_states(plain, "s", "u", ["m"])) == {"m": {"by": "plain"}}
            clock.sleep_until(saved + _TTL + _SLACK)
            assert harness.run(load_states(plain, "s", "u", ["m"])) is None, (
                "ST-17: a save or load without TTL removed or extended the deadline"
            )
            loaded = harness.run(load_states(expiring, "forever", "u", ["m"]))
            assert loaded == {"m": {"by": "plain"}}, "ST-17: a session saved without TTL expired"

    @needs(Capability.TTL)
    @requirement("ST-18")
    def test_ttl_option_is_checked(self, harness: Harness[Any]) -> None:
        """ST-18: a TTL that is not a positive int is refused when the store is configured."""
        for bad in [0, -1, 1.5, "1", True]:
            context = harness.new_context(clock=system_clock, options={TTL_OPTION: bad})
            with pytest.raises(InvalidArgument):
                harness.with_store(lambda store: store.list_sessions("u"), context)
