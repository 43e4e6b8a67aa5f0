"""SunSpec codec: exact register patterns, round-trips, "not implemented" markers, and fast paths = slow paths."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.sunspec.codec import (
    BlockImage,
    Value,
    decode,
    decode_block,
    decode_points,
    encode,
    encode_block,
    scale,
    type_size,
    unscale,
    valid_range,
)
from drivers.sunspec.models import ModelDef, Point, model_def

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


# -- decode_points and BlockImage: the fast paths agree with decode_block / encode_block -------------

BLOCK_MODELS = [1, 101, 103, 113, 120, 121, 123, 124, 203, 213, 713, 802]


def _outcome(fn: Callable[[], object]) -> object:
    try:
        return ("ok", fn())
    except ValueError as exc:
        return ("ValueError", str(exc))


def _same(a: object, b: object) -> bool:
    """Equal, NaN included (a float32 point can hold any NaN pattern's neighbours)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@st.composite
def _block_regs(draw: st.DrawFn) -> tuple[ModelDef, list[int]]:
    """A model and registers for it: sometimes short, scale factors mostly sane, values anything."""
    mdef = model_def(draw(st.sampled_from(BLOCK_MODELS)))
    full = 2 + mdef.length
    n = draw(st.one_of(st.just(full), st.integers(0, full)))
    regs = draw(st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 0x8000, 0xFFFF, 0x7FFF])),
                         min_size=n, max_size=n))
    for p in mdef.points:
        if p.type == "sunssf" and p.offset < n and draw(st.booleans()):
            regs[p.offset] = draw(st.sampled_from([0xFFFE, 0, 1, 3, 0x8000, 0xFFF6]))
    return mdef, regs


@given(_block_regs(), st.data())
def test_decode_points_is_decode_block_restricted_to_the_names(block: tuple[ModelDef, list[int]],
                                                             data: st.DataObject) -> None:
    mdef, regs = block
    names = data.draw(st.lists(st.sampled_from([p.name for p in mdef.points] + ["Nope"]), max_size=6))
    full = _outcome(lambda: decode_block(mdef, regs))
    some = _outcome(lambda: decode_points(mdef, regs, tuple(names)))
    if full[0] == "ok":  # type: ignore[index]
        whole = full[1]  # type: ignore[index]
        assert _same(some, ("ok", {n: whole.get(n) for n in names}))
    else:  # the same bad scale factor refuses both
        assert some == full


def test_decode_points_scales_and_checks_every_scale_factor() -> None:
    mdef = model_def(124)
    regs = encode_block(mdef, STORAGE_VALUES)
    assert decode_points(mdef, regs, ("ChaState", "InOutWRte_SF", "MinRsvPct", "Nope")) == {
        "ChaState": 42.5, "InOutWRte_SF": -2, "MinRsvPct": None, "Nope": None}
    assert decode_points(mdef, regs[:10], ["StorCtl_Mod", "WChaMax"]) == {"StorCtl_Mod": 0b10, "WChaMax": None}
    regs[mdef.point("VAChaMax_SF").offset] = 11  # a scale factor the reading does not use, out of range
    with pytest.raises(ValueError, match="scale factor 11"):
        decode_points(mdef, regs, ("StorCtl_Mod",))


def _value_for(p: Point) -> st.SearchStrategy[Value]:
    if p.type == "sunssf":
        return st.one_of(st.none(), st.integers(-3, 3), st.just(11))
    if p.type == "string":
        return st.one_of(st.none(), st.text(alphabet="abc xyz", max_size=2 * p.size + 1))
    if p.type.startswith("float"):
        return st.one_of(st.none(), st.floats(-1e6, 1e6, width=32))
    return st.one_of(st.none(), st.integers(-70000, 70000), st.floats(-1e5, 1e5, allow_nan=False))


@st.composite
def _values(draw: st.DrawFn, mdef: ModelDef) -> dict[str, Value]:
    points = [p for p in mdef.points if p.type != "pad"]
    chosen = draw(st.lists(st.sampled_from(points), unique_by=lambda p: p.name, max_size=12))
    return {p.name: draw(_value_for(p)) for p in chosen}


@given(st.sampled_from(BLOCK_MODELS), st.data())
def test_block_image_equals_a_fresh_encode_block(model_id: int, data: st.DataObject) -> None:
    mdef = model_def(model_id)
    base = data.draw(_values(mdef))
    first = _outcome(lambda: encode_block(mdef, base))
    if first[0] != "ok":  # type: ignore[index]
        with pytest.raises(ValueError):
            BlockImage(mdef, base)
        return
    image = BlockImage(mdef, base)
    assert image.registers == first[1]  # type: ignore[index]
    merged = dict(base)
    for _ in range(3):
        update = data.draw(_values(mdef))
        expected = _outcome(lambda: encode_block(mdef, {**merged, **update}))  # noqa: B023
        before = image.registers
        assert _outcome(lambda: image.update(update)) == expected  # noqa: B023
        if expected[0] == "ok":  # type: ignore[index]
            merged.update(update)
        else:  # refused: the image is as it was
            assert image.registers == before


def test_block_image_follows_scale_factor_changes_and_ignores_the_header() -> None:
    mdef = model_def(124)
    image = BlockImage(mdef, STORAGE_VALUES)
    regs = image.update({"InOutWRte_SF": -1, "ID": 999})
    assert regs == encode_block(mdef, {**STORAGE_VALUES, "InOutWRte_SF": -1})
    assert (regs[0], regs[mdef.point("OutWRte").offset]) == (124, 750)
    with pytest.raises(ValueError, match="point OutWRte: scale factor"):
        image.update({"InOutWRte_SF": None})
    with pytest.raises(ValueError, match="no points"):
        image.update({"Nope": 1})
    assert image.registers == regs


def test_block_image_skips_only_values_that_encode_the_same() -> None:
    mdef = model_def(113)  # float32 points
    image = BlockImage(mdef, {"W": 0.0, "St": 4})
    assert image.update({"W": -0.0, "St": 4}) == encode_block(mdef, {"W": -0.0, "St": 4})  # the sign bit
    with pytest.raises(ValueError, match="St: enum16 needs a number"):
        image.update({"St": True})  # equal to 1, but refused as encode_block refuses it
    assert image.update({"St": 4.0}) == encode_block(mdef, {"W": -0.0, "St": 4.0})
    assert image.update({"W": math.nan}) == image.update({"W": math.nan})
