"""Post-processing never outputs simultaneous charge and discharge, and never changes green or SoC."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.data import derive
from optimizer.flows import Flows, clean, green_kwh, soe_path
from optimizer.inputs import PvInput
from tests.optimizer.builders import battery, inputs


@settings(max_examples=60, deadline=None)
@given(
    ch=st.lists(st.floats(0, 50), min_size=4, max_size=4),
    dis=st.lists(st.floats(0, 50), min_size=4, max_size=4),
    eta=st.floats(0.8, 1.0),
    pv=st.lists(st.floats(0, 200), min_size=4, max_size=4),
)
def test_netting_keeps_soc_green_and_balance(ch: list[float], dis: list[float], eta: float, pv: list[float]) -> None:
    inp = inputs([60.0] * 4, [0.5] * 4, export_cap=30.0, pv=[PvInput(id="pv", available_kw=pv)],
                 batteries=[battery(capacity_kwh=1000, soc_init_pct=50, eta_charge=eta, eta_discharge=eta,
                                    soc_min_pct=0, soc_max_pct=100)])  # fmt: skip
    d = derive(inp)
    c, x = np.array([ch]), np.array([dis])
    net = 60.0 - np.array(pv) + c[0] - x[0]
    raw = Flows(
        imp=np.maximum(net, 0),
        exp=np.maximum(-net, 0),
        pv=np.array([pv]),
        ch=c,
        dis=x,
        soe=soe_path(d, c, x),
        shed=np.zeros((0, 4)),
        dl=np.zeros((0, 4)),
        dl_on=np.zeros((0, 4), bool),
    )
    out, _notes = clean(raw, d)
    assert (np.minimum(out.ch, out.dis) == 0).all()
    assert out.soe == pytest.approx(raw.soe, abs=1e-9)
    assert (np.minimum(out.imp, out.exp) == 0).all()
    balance = out.imp - out.exp + out.pv.sum(axis=0) + (out.dis - out.ch).sum(axis=0) - 60.0
    assert np.abs(balance).max() < 1e-9
    if (out.exp <= 30.0 + 1e-9).all() and (raw.exp <= 30.0 + 1e-9).all():
        assert green_kwh(d, out) >= green_kwh(d, raw) - 1e-9
    assert out.imp.sum() <= raw.imp.sum() + 1e-9
