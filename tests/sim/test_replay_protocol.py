"""`parkctl replay --protocol`: the same strategies over real Modbus TCP and MQTT, same park, same answers."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from sim.replay import replay
from sim.scenario import load_scenario
from tests.sim.test_day import broker_url


def test_rules_over_the_protocols_agree_with_the_replay_in_process(tmp_path: Path, mosquitto_broker: object) -> None:
    sc = load_scenario("chenzhou-summer-weekday")
    sc = sc.model_copy(update={"start": sc.local_start + timedelta(hours=11)})  # PV surplus: the rules work
    days = 1.0 / 24  # an hour
    inproc = replay(sc, days, ["none", "rules"], tmp_path / "a", cycle_s=60.0, report=False)
    wire = replay(sc, days, ["none", "rules"], tmp_path / "b", cycle_s=60.0, report=False, protocol=True,
                  mqtt_url=broker_url(mosquitto_broker))  # fmt: skip
    assert wire["rules"]["run"]["protocol"] is True and wire["none"]["run"]["protocol"] is False
    assert (tmp_path / "b" / "rules" / "controller.db").exists()  # it was a controller over sockets
    assert wire["none"]["total"] == inproc["none"]["total"]  # none never leaves the process
    a, b = inproc["rules"]["total"], wire["rules"]["total"]
    assert b["export_limit_violation_s"] == 0 and b["import_limit_violation_s"] == 0
    assert b["pv_available_kwh"] == pytest.approx(a["pv_available_kwh"])  # the same day
    assert b["green_utilization"] == pytest.approx(a["green_utilization"], abs=0.01)
    assert b["grid_import_kwh"] == pytest.approx(a["grid_import_kwh"], rel=0.05, abs=20)
    assert json.loads((tmp_path / "b" / "kpis.json").read_text())["rules"]["run"]["protocol"] is True
