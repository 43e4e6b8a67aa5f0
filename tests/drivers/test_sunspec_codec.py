"""SunSpec codec: exact register patterns, round-trips and "not implemented" markers."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.sunspec.codec import (
    decode,
    decode_block,
    encode,
    encode_block,
    scale,
    type_size,
    unscale,
    valid_range,
)
from drivers.sunspec.models import model_def

INT_TYPES = ["int16", "uint16", "enum16", "bitfield16", "count", "acc16", "int32", "uint32", "enum32",
             "bitfield32", "acc32", "int64", "uint64", "acc64", "sunssf"]


@pytest.mark.parametrize(
    ("type_", "regs", "value"),
    [
        ("int16", [0xFFFF], -1),
        ("int16", [0x7FFF], 32767),
        ("uint16", [0x1234], 0x1234),
        ("int32", [0x0001, 0x0000], 65536),  # high word first
        ("int32", [0xFFFF, 0xFFFE], -2),
        ("uint32", [0x0000, 0x0001], 1),
        ("acc32", [0x0001, 0x0002], 0x0001_0002),
        ("acc64", [0, 0, 0, 7], 7),
        ("sunssf", [0xFFFE], -2),
        ("bitfield16", [0b10], 2),
    ],
)
def test_known_register_patterns(type_: str, regs: list[int], value: int) -> None:
    assert decode(type_, regs) == value
    assert encode(type_, value) == regs


@pytest.mark.parametrize(
    ("type_", "regs"),
    [
        ("int16", [0x8000]),
        ("uint16", [0xFFFF]),
        ("enum16", [0xFFFF]),
        ("bitfield16", [0xFFFF]),
        ("acc16", [0]),
        ("sunssf", [0x8000]),
        ("int32", [0x8000, 0x0000]),
        ("uint32", [0xFFFF, 0xFFFF]),
        ("bitfield32", [0xFFFF, 0xFFFF]),
        ("acc32", [0, 0]),
        ("acc64", [0, 0, 0, 0]),
        ("float32", [0x7FC0, 0x0000]),
    ],
)
def test_not_implemented_values_decode_to_none_and_back(type_: str, regs: list[int]) -> None:
    assert decode(type_, regs) is None
    assert encode(type_, None) == regs


def test_other_nans_and_empty_strings_are_not_implemented() -> None:
    other_nan = list(struct.unpack(">HH", struct.pack(">f", -math.nan)))
    assert decode("float32", other_nan) is None
    assert decode("string", [0] * 8) is None
    assert encode("string", None, 4) == [0, 0, 0, 0]
    assert decode("pad", [0x8000]) is None


@pytest.mark.parametrize("type_", INT_TYPES)
def test_reserved_and_out_of_range_values_are_refused(type_: str) -> None:
    lo, hi = valid_range(type_)
    if type_.startswith("acc"):
        return  # accumulators wrap instead
    with pytest.raises(ValueError, match="range"):
        encode(type_, hi + 1)
    with pytest.raises(ValueError, match="range"):
        encode(type_, lo - 1)


def test_accumulators_roll_over_and_zero_means_not_implemented() -> None:
    assert encode("acc16", 65536 + 5) == [5]
    assert decode("acc32", encode("acc32", 2**32 + 9)) == 9
    assert encode("acc32", 0) == [0, 0]  # a fresh counter can be served ...
    assert decode("acc32", [0, 0]) is None  # ... but SunSpec reads it as "not implemented"


def test_bad_scale_factor_and_wrong_inputs() -> None:
    with pytest.raises(ValueError, match="scale factor"):
        decode("sunssf", [11])
    with pytest.raises(ValueError):
        encode("int16", "12")
    with pytest.raises(ValueError, match="does not fit"):
        encode("string", "x" * 9, 4)
    with pytest.raises(ValueError):
        type_size("ipv6addr")
    with pytest.raises(ValueError):
        unscale(math.inf, 0)


@given(data=st.data(), type_=st.sampled_from(INT_TYPES))
def test_integer_round_trip(data: st.DataObject, type_: str) -> None:
    lo, hi = valid_range(type_)
    value = data.draw(st.integers(lo, hi))
    regs = encode(type_, value)
    assert len(regs) == type_size(type_)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode(type_, regs) == value


@given(st.floats(width=32, allow_nan=False))
def test_float32_round_trip(value: float) -> None:
    assert decode("float32", encode("float32", value)) == value


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x7FF), min_size=1, max_size=8))
def test_string_round_trip(text: str) -> None:
    size = 8
    regs = encode("string", text, size)
    assert len(regs) == size
    assert decode("string", regs) == text


@given(st.integers(-32767, 32767), st.integers(-4, 4))
def test_scale_unscale_round_trip(raw: int, sf: int) -> None:
    value = scale(raw, sf)
    assert value is not None
    assert unscale(value, sf) == raw


def test_scale_with_missing_parts() -> None:
    assert scale(None, 0) is None
    assert scale(5, None) is None
    assert scale(1234, -2) == 12.34
    assert scale(12, 3) == 12000.0


STORAGE_VALUES = {"WChaMax": 2_000_000.0, "WChaMax_SF": 2, "WChaGra": 25, "WDisChaGra": 25,
                  "WChaDisChaGra_SF": 0, "StorCtl_Mod": 0b10, "ChaState": 42.5, "ChaState_SF": -2,
                  "OutWRte": 75.0, "InWRte": -12.5, "InOutWRte_RvrtTms": 60, "InOutWRte_SF": -2}


def test_block_round_trip_model_124() -> None:
    mdef = model_def(124)
    regs = encode_block(mdef, STORAGE_VALUES)
    assert len(regs) == 2 + mdef.length
    assert regs[:2] == [124, mdef.length]
    back = decode_block(mdef, regs)
    for name, value in STORAGE_VALUES.items():
        assert back[name] == pytest.approx(value), name
    assert back["MinRsvPct"] is None  # left out: not implemented
    assert back["ChaSt"] is None


def test_block_with_missing_scale_factor_and_short_block() -> None:
    mdef = model_def(124)
    regs = encode_block(mdef, {**STORAGE_VALUES, "ChaState": None, "ChaState_SF": None})
    assert decode_block(mdef, regs)["ChaState"] is None
    regs[mdef.point("ChaState").offset] = 5000  # value present, scale factor not implemented
    assert decode_block(mdef, regs)["ChaState"] is None
    short = decode_block(mdef, regs[:10])  # a device with an older, shorter model
    assert short["StorCtl_Mod"] == 0b10
    assert short["WChaMax"] is None  # its scale factor lies beyond the block
    assert short["InOutWRte_SF"] is None


def test_encode_block_names_the_point_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="point WChaMax"):
        encode_block(model_def(124), {**STORAGE_VALUES, "WChaMax": 1e9})
    with pytest.raises(ValueError, match="point OutWRte: scale factor"):
        encode_block(model_def(124), {"OutWRte": 10.0})
    with pytest.raises(ValueError, match="no points"):
        encode_block(model_def(124), {"Nope": 1})
