"""Property: whatever faults hit a short simulated evening, the controller keeps its invariants.

Random schedules of one to three faults (every kind the rules strategy can feel; the planner's faults are
covered with mpc in test_faults.py) drive an hour of the faults-day park from 17:45, when the batteries
carry the evening peak against a 3.8 MW import cap, over real Modbus TCP and a real Mosquitto. Asserted
from the day's faults.json: no violation second outside the fault windows (each plus its settling
time), SoC within bounds, every alarm raised is cleared again before the day ends, every fault that
bit raised an alarm, and no plan, setpoint or alarm the park saw is missing from the database.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim.day import SimOptions, simulate_day
from sim.faults import Fault, check_faults
from sim.scenario import Scenario, load_scenario

DEVICES = ["meter", "bess-1", "bess-2", "pv-roof-a", "pv-carport"]
LOADS = ["chiller-1", "furnace-1", "compressor-1"]
KINDS = ["modbus_down", "modbus_slow", "modbus_garbage", "meter_stale", "load_no_ack", "load_malformed",
         "broker_restart", "controller_restart"]  # fmt: skip


@st.composite
def fault(draw: st.DrawFn) -> Fault:
    kind = draw(st.sampled_from(KINDS))
    start = timedelta(minutes=draw(st.integers(2, 30)))
    end = start + timedelta(minutes=draw(st.integers(1, 8)))
    target = None
    if kind.startswith("modbus"):
        target = draw(st.sampled_from(DEVICES))
    elif kind.startswith("load"):
        target = draw(st.sampled_from(LOADS))
    # slower than the client's whole budget (timeout 0.3 s, one retry): a reply late by less can still be
    # read on the retry, and then the controller rightly sees no fault to alarm on
    extra = {"delay_s": draw(st.sampled_from([1.0, 2.0]))} if kind == "modbus_slow" else {}
    if kind == "controller_restart":
        return Fault.model_validate({"kind": kind, "start": start, "end": draw(st.sampled_from([None, end]))})
    return Fault.model_validate({"kind": kind, "target": target, "start": start, "end": end, **extra})


def valid(faults: list[Fault]) -> bool:
    try:
        check_faults(faults, DEVICES, LOADS)
    except ValueError:
        return False
    return True


def evening(faults: list[Fault]) -> Scenario:
    sc = load_scenario("faults-day")
    # the day's demand-response event (and the prior days it needs) is not what this property is about
    return sc.model_copy(update={"start": sc.local_start + timedelta(hours=17, minutes=45), "faults": faults,
                                 "demand_response": None})  # fmt: skip


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(fault(), min_size=1, max_size=3).filter(valid))
# found by CI: a timed-out PV write handled after the fault ended was counted as a second setpoint
@example([Fault(kind="modbus_slow", target="bess-1", start=timedelta(minutes=15), end=timedelta(minutes=21),
                delay_s=1.0),
          Fault(kind="modbus_slow", target="pv-roof-a", start=timedelta(minutes=11), end=timedelta(minutes=12),
                delay_s=2.0)])  # fmt: skip
def test_random_faults_keep_the_invariants(tmp_path: Path, faults: list[Fault]) -> None:
    out = tmp_path / f"run-{abs(hash(tuple(faults)))}"
    asyncio.run(simulate_day(evening(faults), SimOptions(hours=1.0, cycle_s=15, out_dir=out)))
    r = json.loads((out / "faults.json").read_text())
    assert r["violations"]["attributable_to_controller_s"] == 0, r["violations"]
    assert r["soc"]["within_bounds"], r["soc"]
    assert r["every_alarm_cleared"], [f["alarms"] for f in r["faults"]]
    assert r["every_fault_alarmed"], r["faults"]
    rec = r["records"]
    assert rec["setpoints"]["lost_by_device"] == {} and rec["alarms"]["lost"] == 0 and rec["plans"]["lost"] == 0
