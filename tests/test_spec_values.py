"""The executable value rules of spec/general.md (G-1 .. G-5, G-12 .. G-15) on their own."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstores.conformance import strategies
from agentstores.conformance.compare import same_json
from agentstores.spec.errors import (
    InvalidArgument,
    NotFound,
    NotSupported,
    StorageUnavailable,
    StoreError,
)
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.values import (
    MAX_ID_LENGTH,
    check_id,
    check_json_value,
    dump_json,
    load_json,
)


@given(strategies.ids())
def test_every_generated_id_is_valid(value: str) -> None:
    assert check_id(value) == value


@given(strategies.invalid_ids())
def test_invalid_ids_are_rejected(value: Any) -> None:
    with pytest.raises(InvalidArgument):
        check_id(value)


def test_id_length_bound_is_in_code_points() -> None:
    assert check_id("é" * MAX_ID_LENGTH)
    with pytest.raises(InvalidArgument):
        check_id("é" * (MAX_ID_LENGTH + 1))


@given(strategies.json_values())
def test_json_values_round_trip_exactly(value: Any) -> None:
    check_json_value(value)
    back = load_json(dump_json(value))
    assert same_json(back, value)


@given(strategies.invalid_json_values())
def test_invalid_json_values_are_rejected(value: Any) -> None:
    with pytest.raises(InvalidArgument):
        check_json_value(value)


def test_negative_zero_and_big_integers_survive() -> None:
    back = load_json(dump_json({"z": -0.0, "big": 2**200, "t": True, "f": 1.0}))
    assert math.copysign(1.0, back["z"]) == -1.0
    assert back["big"] == 2**200
    assert back["t"] is True
    assert isinstance(back["f"], float)


def test_nesting_bound() -> None:
    deep: Any = 1
    for _ in range(64):
        deep = [deep]
    check_json_value(deep)
    with pytest.raises(InvalidArgument):
        check_json_value([deep])


@given(strategies.messages())
def test_messages_round_trip_through_json(message: Message) -> None:
    assert message_from_json(load_json(dump_json(message_to_json(message)))) == message


@pytest.mark.parametrize(
    "obj",
    [
        {"role": "", "content": []},
        {"role": "user", "content": [{"text": "no type"}]},
        {"role": "user", "content": [{"type": "text"}]},
        {"role": "user", "content": [], "created_at": -1},
        {"role": "user", "content": [], "surprise": 1},
        {"role": "user", "content": "not a list"},
    ],
)
def test_malformed_messages_are_rejected(obj: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        message_from_json(obj)


def test_errors_subclass_the_builtins_whose_meaning_they_share() -> None:
    assert issubclass(NotFound, KeyError) and issubclass(NotFound, StoreError)
    assert issubclass(InvalidArgument, ValueError)
    assert issubclass(NotSupported, NotImplementedError)
    assert issubclass(StorageUnavailable, ConnectionError)
    assert str(NotFound("thread 'x' not found")) == "thread 'x' not found"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_bit_for_bit(value: float) -> None:
    assert same_json(load_json(dump_json(value)), value)
