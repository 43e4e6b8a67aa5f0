"""check-config against the real simulated park: pymodbus servers on loopback and a private Mosquitto."""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from controller.check import CheckReport, acheck_config, add_check_config_parser, check_config, cmd_check_config
from controller.config import ControllerConfig
from parkctl.clock import SimClock
from sim.broker import BrokerUrl, PrivateMosquitto, free_port
from sim.day import controller_config_for, running_park
from sim.modbus_server import ParkEndpoints
from sim.mqtt_devices import SimMqttLoads
from sim.scenario import load_scenario

MODBUS_IDS = ["pv-roof-a", "pv-roof-b", "pv-carport", "pv-warehouse", "bess-1", "bess-2", "meter"]
LOAD_IDS = ["chiller-1", "chiller-2", "compressor-1", "furnace-1"]


@dataclass
class SimPark:
    endpoints: ParkEndpoints
    broker: BrokerUrl
    loads: SimMqttLoads
    config: ControllerConfig


@pytest.fixture
async def sim_park(mosquitto_broker: PrivateMosquitto) -> AsyncIterator[SimPark]:
    """The summer park at 11:00 on a paused SimClock: Modbus servers up, MQTT loads online."""
    sc = load_scenario("chenzhou-summer-weekday")
    sc = sc.model_copy(update={"start": sc.local_start + timedelta(hours=11)})
    clock = SimClock(sc.local_start, paused=True)
    async with running_park(sc, clock, str(mosquitto_broker.url)) as (_, endpoints, broker, loads):
        yield SimPark(endpoints, broker, loads, controller_config_for(sc, endpoints, broker, 1.0, "rules"))


def write(tmp_path: Path, config: ControllerConfig | dict[str, object], name: str = "park.yaml") -> Path:
    data = config.model_dump(mode="json") if isinstance(config, ControllerConfig) else config
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def with_modbus(config: ControllerConfig, device_id: str, **changes: object) -> ControllerConfig:
    modbus = [d.model_copy(update=changes) if d.id == device_id else d for d in config.modbus]
    return config.model_copy(update={"modbus": modbus})


def rows(report: CheckReport) -> dict[str, tuple[bool, str]]:
    return {r.name: (r.ok, r.detail) for r in report.rows}


async def test_good_config_passes_probe(sim_park: SimPark, tmp_path: Path) -> None:
    report = await acheck_config(write(tmp_path, sim_park.config), True)
    assert report.exit_code == 0, report.render()
    assert [r.name for r in report.rows] == [*MODBUS_IDS, "mqtt", *LOAD_IDS]
    by_name = {r.name: r for r in report.rows}
    assert {1, 103, 120, 123} <= set(by_name["pv-roof-a"].models)
    assert {1, 124, 713, 802} <= set(by_name["bess-1"].models)
    assert by_name["meter"].models == (1, 203)
    for name in MODBUS_IDS:
        latency = by_name[name].latency_ms
        assert latency is not None and 0 < latency < 1000
    assert "of 2000 kW" in by_name["pv-roof-a"].detail
    assert "SoC 30.0 %" in by_name["bess-1"].detail
    assert by_name["chiller-1"].detail.startswith("online")
    assert "last state" not in by_name["chiller-1"].detail  # the paused park has published none yet
    table = report.render()
    assert "all 12 checks ok" in table
    assert table.splitlines()[1].split()[:4] == ["DEVICE", "KIND", "ENDPOINT", "RESULT"]


async def test_sync_entry_point_and_command_from_their_own_loop(
    sim_park: SimPark, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check_config runs its own event loop (as the CLI does) while the park serves from this one."""
    path = write(tmp_path, sim_park.config)
    report = await asyncio.to_thread(check_config, path, True)
    assert report.exit_code == 0, report.render()
    args = argparse.Namespace(file=path, probe=True, timeout=3.0)
    assert await asyncio.to_thread(cmd_check_config, args) == 0
    assert "all 12 checks ok" in capsys.readouterr().out


async def test_wrong_port_fails_that_device_only(sim_park: SimPark, tmp_path: Path) -> None:
    config = with_modbus(sim_park.config, "pv-roof-b", port=free_port())
    started = time.monotonic()
    report = await acheck_config(write(tmp_path, config), True, timeout_s=2.0)
    assert time.monotonic() - started < 2.0
    assert report.exit_code == 1
    result = rows(report)
    ok, detail = result.pop("pv-roof-b")
    assert not ok and "cannot connect" in detail
    assert all(ok for ok, _ in result.values()), result
    assert "1 of 12 checks failed" in report.render()


async def test_port_without_modbus_fails_within_the_budget(sim_park: SimPark, tmp_path: Path) -> None:
    """A device pointed at something that is not Modbus (here the MQTT broker) costs at most its budget."""
    config = with_modbus(sim_park.config, "meter", port=sim_park.broker.port)
    started = time.monotonic()
    report = await acheck_config(write(tmp_path, config), True, timeout_s=1.0)
    assert time.monotonic() - started < 2.0
    assert not rows(report)["meter"][0]
    assert rows(report)["bess-2"][0]


async def test_nameplate_mismatch_is_a_failure(sim_park: SimPark, tmp_path: Path) -> None:
    config = with_modbus(sim_park.config, "pv-roof-a", rated_kw=1800.0)
    config = with_modbus(config, "bess-2", rated_kw=1000.0)  # matches model 120 WRtg: no complaint
    report = await acheck_config(write(tmp_path, config), True)
    ok, detail = rows(report)["pv-roof-a"]
    assert not ok and "nameplate 2000 kW but rated_kw 1800 configured" in detail
    assert rows(report)["bess-2"][0]
    assert report.exit_code == 1


async def test_load_state_is_shown_with_availability(sim_park: SimPark, tmp_path: Path) -> None:
    assert await sim_park.loads.devices["furnace-1"].publish_state()  # retained, as every 5 s in a live park
    report = await acheck_config(write(tmp_path, sim_park.config), True)
    detail = rows(report)["furnace-1"][1]
    assert re.fullmatch(r"online; last state \d+\.\d kW running at 2026-07-15 11:00:00\+0800", detail), detail


async def test_loads_offline_or_never_seen_are_reported(sim_park: SimPark, tmp_path: Path) -> None:
    await sim_park.loads.devices["chiller-2"].kill()  # the broker publishes its will: offline, retained
    loads = [*sim_park.config.loads, sim_park.config.loads[0].model_copy(update={"id": "ghost-1"})]
    report = await acheck_config(write(tmp_path, sim_park.config.model_copy(update={"loads": loads})), True)
    result = rows(report)
    assert result["chiller-2"] == (False, "availability 'offline'")
    assert not result["ghost-1"][0] and "no retained availability" in result["ghost-1"][1]
    assert result["chiller-1"][0] and result["mqtt"][0]
    assert "controller status: none retained" in result["mqtt"][1]
    assert report.exit_code == 1


async def test_unreachable_broker_fails_broker_and_loads_not_devices(sim_park: SimPark, tmp_path: Path) -> None:
    mqtt = sim_park.config.mqtt
    assert mqtt is not None
    config = sim_park.config.model_copy(
        update={"mqtt": mqtt.model_copy(update={"url": f"mqtt://127.0.0.1:{free_port()}"})}
    )
    report = await acheck_config(write(tmp_path, config), True, timeout_s=2.0)
    result = rows(report)
    assert not result["mqtt"][0] and "cannot connect" in result["mqtt"][1]
    assert all(result[i] == (False, "not checked: no broker") for i in LOAD_IDS)
    assert all(result[i][0] for i in MODBUS_IDS)


async def test_history_file_location_is_checked(sim_park: SimPark, tmp_path: Path) -> None:
    storage = sim_park.config.storage
    good = sim_park.config.model_copy(update={"storage": storage.model_copy(update={"path": str(tmp_path / "h.db")})})
    report = await acheck_config(write(tmp_path, good), True)
    assert report.rows[0].name == "history" and report.rows[0].ok and report.exit_code == 0
    bad_path = str(tmp_path / "missing" / "h.db")
    bad = sim_park.config.model_copy(update={"storage": storage.model_copy(update={"path": bad_path})})
    report = await acheck_config(write(tmp_path, bad), True)
    assert rows(report)["history"] == (False, f"directory {str(tmp_path / 'missing')!r} does not exist")
    assert report.exit_code == 1


def minimal(**over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "site": {"name": "test-park"},
        "grid": {"import_cap_kw": 1000, "export_cap_kw": 0},
        "modbus": [{"id": "meter", "kind": "meter", "port": 1502}, {"id": "pv-1", "kind": "pv", "rated_kw": 100}],
    }
    return {**data, **over}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (minimal(grid={"import_cap_kw": -5, "export_cap_kw": 0}), "field 'grid.import_cap_kw'"),
        (minimal(cycle={"period_s": 1, "perod_s": 2}), "field 'cycle.perod_s'"),
        (minimal(mqtt={"url": "http://broker:1883"}), "field 'mqtt.url': 'http://broker:1883': scheme"),
        (minimal(mqtt={"url": "mqtt://u:s3/cr@et@broker:1883"}), "field 'mqtt.url': 'mqtt://***@broker:1883': Port"),
        (minimal(modbus=[{"id": "meter", "kind": "meter"}, {"id": "pv-1", "kind": "pv", "rated_kw": 1}]),
         "field 'modbus.1': 'pv-1' has the same host, port and unit id as 'meter'"),
    ],
)  # fmt: skip
def test_invalid_config_names_the_field(tmp_path: Path, data: dict[str, object], field: str) -> None:
    report = check_config(write(tmp_path, data), probe=True)
    assert report.exit_code == 2
    assert report.error is not None and field in report.error
    assert "s3/cr" not in report.error  # the password of the URL case
    assert report.rows == ()


def test_valid_config_without_probe(tmp_path: Path) -> None:
    report = check_config(write(tmp_path, minimal()), probe=False)
    assert report.exit_code == 0 and report.error is None
    assert "not probed" in report.render()


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="parkctl")
    add_check_config_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["check-config", str(tmp_path / "missing.yaml"), "--probe", "--timeout", "1.5"])
    assert args.probe and args.timeout == 1.5
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("parkctl: error: ") and "does not exist" in err
    with pytest.raises(SystemExit):
        parser.parse_args(["check-config", "x.yaml", "--timeout", "0"])
