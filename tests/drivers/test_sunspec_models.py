"""Register maps come from the official SunSpec definitions and are self-consistent."""

from __future__ import annotations

import pytest

from drivers.sunspec.codec import type_size
from drivers.sunspec.models import HEADER_LEN, SUPPORTED_MODELS, model_def, parse_model

# Fixed-block lengths ("L") published by SunSpec for the models the project uses.
PUBLISHED_LENGTHS = {1: 66, 103: 50, 120: 26, 121: 30, 123: 24, 124: 24, 203: 105, 713: 7, 802: 62}


@pytest.mark.parametrize(("model_id", "length"), sorted(PUBLISHED_LENGTHS.items()))
def test_lengths_match_the_standard(model_id: int, length: int) -> None:
    assert model_def(model_id).length == length


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_points_are_contiguous_typed_and_scaled_consistently(model_id: int) -> None:
    mdef = model_def(model_id)
    assert mdef.id == model_id
    assert [p.name for p in mdef.points[:HEADER_LEN]] == ["ID", "L"]
    offset = 0
    for p in mdef.points:
        assert p.offset == offset
        size = type_size(p.type)  # every type we meet is one the codec handles
        assert p.size == (size if size is not None else p.size)
        if isinstance(p.sf, str):
            assert mdef.point(p.sf).type == "sunssf", p.name
        offset += p.size
    assert mdef.length == offset - HEADER_LEN


def test_points_the_drivers_rely_on() -> None:
    inv = model_def(103)
    w = inv.point("W")
    assert (w.offset, w.type, w.sf, w.units, w.access, w.mandatory) == (14, "int16", "W_SF", "W", "R", True)
    assert inv.point("WH").type == "acc32"
    ctl = model_def(123)
    assert ctl.point("WMaxLimPct").writable and ctl.point("WMaxLimPct").sf == "WMaxLimPct_SF"
    assert [ctl.point(n).offset for n in ("WMaxLimPct", "WMaxLimPct_RvrtTms", "WMaxLim_Ena")] == [5, 7, 9]
    stor = model_def(124)
    assert dict(stor.point("StorCtl_Mod").symbols) == {"CHARGE": 0, "DiSCHARGE": 1}  # bit indices
    assert stor.point("OutWRte").type == "int16" and stor.point("InWRte").sf == "InOutWRte_SF"
    assert not stor.point("ChaState").writable
    assert model_def(713).point("SoC").sf == "Pct_SF"
    assert model_def(203).point("TotWhImp").offset == 46
    assert model_def(1).point("SN").size == 16


def test_lookup_helpers_and_unknown_models() -> None:
    mdef = model_def(103)
    assert mdef.has("W") and not mdef.has("Nope")
    assert mdef.at(25) is mdef.point("WH")  # second register of the acc32
    assert mdef.at(500) is None
    with pytest.raises(KeyError, match="no point"):
        mdef.point("Nope")
    with pytest.raises(KeyError, match="no SunSpec definition"):
        model_def(9999)
    with pytest.raises(ValueError, match="ID and L"):
        parse_model({"id": 5, "group": {"name": "x", "points": [{"name": "A", "type": "uint16", "size": 1}]}})
