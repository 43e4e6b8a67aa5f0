"""Controller metrics: cycle reports -> Prometheus values, energy integration, the HTTP exposition."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import urllib.request
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from controller.cycle import CycleReport
from controller.metrics import ControllerMetrics, EnergyIntegrator, serve_metrics
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.writer import WriteRecord
from drivers.capabilities import BatteryReading, LoadReading, MeterReading, PvReading
from drivers.modbus_client import ClientStats
from parkctl.errors import ParkError

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 15, 12, 0, tzinfo=TZ)
SITE = "zixing-pilot"
S = timedelta(seconds=1)


def report(
    t: datetime = T0, *, grid: float | None = 100.0, pv: tuple[float | None, ...] = (300.0, 200.0),
    bat: float | None = -50.0, soc: float = 55.0, load: float | None = 80.0, errors: tuple[str, ...] = (),
    writes: tuple[WriteRecord, ...] = (), work_s: float = 0.004, overrun: bool = False,
    pv_limit: float | None = None,
) -> CycleReport:  # fmt: skip
    snap = Snapshot(
        ts=t,
        meter=None if grid is None else MeterReading(t, grid),
        pv={f"pv{i + 1}": None if p is None else PvReading(t, p, 600, None) for i, p in enumerate(pv)},
        batteries={"b1": None if bat is None else BatteryReading(t, bat, soc, 1000, 500, 500)},
        loads={"chiller": None if load is None else LoadReading(t, load, True)},
    )
    sp = Setpoints(pv_limit_kw={"pv1": pv_limit, "pv2": None}, battery_p_kw={"b1": -50.0},
                   load_shed={"chiller": False}, reason="rules")  # fmt: skip
    phases = {"read": 0.002, "decide": 0.0005, "write": 0.001}
    return CycleReport(t, snap, sp, writes, errors, phases, work_s, overrun)


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def m(reg: CollectorRegistry) -> ControllerMetrics:
    return ControllerMetrics(reg, SITE)


def val(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, {"site": SITE, **labels})


def test_power_flows_soc_and_setpoints(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    m.on_cycle(report(pv_limit=250.0))
    assert val(reg, "parkctl_grid_power_kw") == 100.0
    assert val(reg, "parkctl_pv_power_kw") == 500.0
    assert val(reg, "parkctl_battery_power_kw") == -50.0
    assert val(reg, "parkctl_site_load_power_kw") == 100.0 + 500.0 - 50.0  # grid + pv + battery
    assert val(reg, "parkctl_device_pv_power_kw", device="pv2") == 200.0
    assert val(reg, "parkctl_device_battery_power_kw", device="b1") == -50.0
    assert val(reg, "parkctl_battery_soc_pct", device="b1") == 55.0
    assert val(reg, "parkctl_device_load_power_kw", device="chiller") == 80.0
    assert val(reg, "parkctl_pv_limit_kw", device="pv1") == 250.0
    assert val(reg, "parkctl_pv_limit_kw", device="pv2") == math.inf  # no cap
    assert val(reg, "parkctl_battery_setpoint_kw", device="b1") == -50.0
    assert val(reg, "parkctl_load_shed", device="chiller") == 0.0
    assert val(reg, "parkctl_device_stale", device="meter", kind="meter") == 0.0
    assert val(reg, "parkctl_cycles_total") == 1.0
    assert val(reg, "parkctl_last_cycle_timestamp_seconds") == T0.timestamp()


def test_stale_readings_are_nan_never_old_numbers(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    m.on_cycle(report())
    m.on_cycle(report(T0 + S, grid=None, pv=(None, 200.0), bat=None, load=None))
    for name in ("parkctl_grid_power_kw", "parkctl_pv_power_kw", "parkctl_battery_power_kw",
                 "parkctl_site_load_power_kw"):  # fmt: skip
        assert math.isnan(val(reg, name) or 0.0), name  # a partial total is NaN too
    assert math.isnan(val(reg, "parkctl_device_pv_power_kw", device="pv1") or 0.0)
    assert val(reg, "parkctl_device_pv_power_kw", device="pv2") == 200.0
    assert math.isnan(val(reg, "parkctl_battery_soc_pct", device="b1") or 0.0)
    assert math.isnan(val(reg, "parkctl_device_load_power_kw", device="chiller") or 0.0)
    assert val(reg, "parkctl_device_stale", device="meter", kind="meter") == 1.0
    assert val(reg, "parkctl_device_stale", device="pv1", kind="pv") == 1.0
    assert val(reg, "parkctl_device_stale", device="pv2", kind="pv") == 0.0
    assert val(reg, "parkctl_device_stale", device="chiller", kind="load") == 1.0


def test_device_that_disappears_loses_its_series(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    m.on_cycle(report(pv=(300.0, 200.0, 100.0)))
    assert val(reg, "parkctl_device_pv_power_kw", device="pv3") == 100.0
    m.on_cycle(report(T0 + S, pv=(300.0, 200.0)))
    assert val(reg, "parkctl_device_pv_power_kw", device="pv3") is None
    assert val(reg, "parkctl_device_stale", device="pv3", kind="pv") is None


def test_counters_histograms_and_writes(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    w = (WriteRecord(T0, "b1", "battery_p_kw", -50.0, True), WriteRecord(T0, "chiller", "load_shed", True, False))
    m.on_cycle(report(writes=w, work_s=0.004))
    m.on_cycle(report(T0 + S, errors=("decide: ValueError('x')", "read pv1: TimeoutError()"), work_s=1.5,
                      overrun=True))  # fmt: skip
    assert val(reg, "parkctl_cycles_total") == 2
    assert val(reg, "parkctl_cycle_overruns_total") == 1
    assert val(reg, "parkctl_decide_errors_total") == 1
    assert val(reg, "parkctl_setpoint_writes_total", device="b1", result="ok") == 1
    assert val(reg, "parkctl_setpoint_writes_total", device="chiller", result="failed") == 1
    assert val(reg, "parkctl_cycle_work_seconds_count") == 2
    assert val(reg, "parkctl_cycle_work_seconds_bucket", le="0.005") == 1
    assert val(reg, "parkctl_cycle_work_seconds_bucket", le="1.0") == 1
    assert val(reg, "parkctl_cycle_work_seconds_bucket", le="2.0") == 2
    assert val(reg, "parkctl_cycle_work_seconds_sum") == pytest.approx(1.504)
    assert val(reg, "parkctl_cycle_phase_seconds_count", phase="read") == 2
    assert val(reg, "parkctl_cycle_phase_seconds_count", phase="publish") is None


def test_publish_phase_is_taken_from_the_previous_report(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    first = report()
    m.on_cycle(first)
    first.phase_s["publish"] = 0.0003  # what Runtime.run_cycle does after the observers returned
    m.on_cycle(report(T0 + S))
    assert val(reg, "parkctl_cycle_phase_seconds_count", phase="publish") == 1
    assert val(reg, "parkctl_cycle_phase_seconds_sum", phase="publish") == pytest.approx(0.0003)


def test_green_utilization_step_by_step() -> None:
    e = EnergyIntegrator(max_gap_s=120)
    assert e.add(T0, grid_kw=100.0, pv_kw=0.0).pv_kwh == 0  # first report: nothing to integrate yet
    assert math.isnan(e.green_utilization)
    # 0 -> 36 s: grid 100 -> -100, pv 0 -> 400. Trapezoids over 0.01 h:
    # import (100 + 0)/2 * 0.01 = 0.5; export (0 + 100)/2 * 0.01 = 0.5; pv (0 + 400)/2 * 0.01 = 2.0
    # PV exported: min(export, pv) at the ends = 0 and 100 -> 0.5; kept 1.5 of 2.0
    s = e.add(T0 + 36 * S, grid_kw=-100.0, pv_kw=400.0)
    assert (s.import_kwh, s.export_kwh, s.pv_kwh, s.pv_exported_kwh) == pytest.approx((0.5, 0.5, 2.0, 0.5))
    assert e.green_utilization == pytest.approx(0.75)
    # 36 -> 72 s: grid -100 -> -300, pv 400 -> 200: export beyond PV (battery) is not PV's: min(300, 200)
    # export (100 + 300)/2 * 0.01 = 2.0; pv (400 + 200)/2 * 0.01 = 3.0; pv exported (100 + 200)/2 * 0.01 = 1.5
    s = e.add(T0 + 72 * S, grid_kw=-300.0, pv_kw=200.0)
    assert (s.import_kwh, s.export_kwh, s.pv_kwh, s.pv_exported_kwh) == pytest.approx((0.0, 2.0, 3.0, 1.5))
    assert e.green_utilization == pytest.approx((1.5 + 1.5) / (2.0 + 3.0))  # 0.6
    # grid unknown at one end: PV still counts, the green ratio leaves the interval out
    s = e.add(T0 + 108 * S, grid_kw=None, pv_kw=200.0)
    assert (s.pv_kwh, s.grid_unmeasured_s, s.pv_unmeasured_s) == pytest.approx((2.0, 36.0, 0.0))
    assert e.green_utilization == pytest.approx(0.6)
    # a gap longer than max_gap_s is not guessed across
    s = e.add(T0 + 300 * S, grid_kw=0.0, pv_kw=200.0)
    assert (s.pv_kwh, s.import_kwh, s.grid_unmeasured_s, s.pv_unmeasured_s) == (0.0, 0.0, 192.0, 192.0)
    # out-of-order timestamps integrate nothing
    assert e.add(T0 + 200 * S, grid_kw=0.0, pv_kw=200.0) == type(s)()


def test_energy_counters_follow_the_reports(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    m.on_cycle(report(T0, grid=100.0, pv=(0.0, 0.0)))
    m.on_cycle(report(T0 + 36 * S, grid=-100.0, pv=(300.0, 100.0)))
    assert val(reg, "parkctl_grid_import_energy_kwh_total") == pytest.approx(0.5)
    assert val(reg, "parkctl_grid_export_energy_kwh_total") == pytest.approx(0.5)
    assert val(reg, "parkctl_pv_energy_kwh_total") == pytest.approx(2.0)
    assert val(reg, "parkctl_pv_exported_energy_kwh_total") == pytest.approx(0.5)
    assert val(reg, "parkctl_green_utilization_ratio") == pytest.approx(0.75)
    m.on_cycle(report(T0 + 72 * S, grid=None, pv=(300.0, 100.0)))
    assert val(reg, "parkctl_energy_unmeasured_seconds_total", quantity="grid") == pytest.approx(36.0)
    assert val(reg, "parkctl_energy_unmeasured_seconds_total", quantity="pv") == 0.0


def test_plan_status_fallback_and_age(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    assert math.isnan(val(reg, "parkctl_plan_age_seconds") or 0.0)
    assert val(reg, "parkctl_optimizer_status", status="optimal") == 0.0
    m.on_plan("optimal", plan_ts=T0 - 90 * S, solve_s=0.8)
    m.on_cycle(report())
    assert val(reg, "parkctl_plan_age_seconds") == 90.0
    assert val(reg, "parkctl_optimizer_status", status="optimal") == 1.0
    assert val(reg, "parkctl_optimizer_last_solve_seconds") == 0.8
    assert val(reg, "parkctl_fallback_active") == 0.0
    m.on_plan("infeasible", plan_ts=T0 - 90 * S, solve_s=0.3, fallback_active=True)
    assert val(reg, "parkctl_optimizer_status", status="optimal") == 0.0
    assert val(reg, "parkctl_optimizer_status", status="infeasible") == 1.0
    assert val(reg, "parkctl_fallback_active") == 1.0
    assert val(reg, "parkctl_optimizer_solves_total", status="optimal") == 1
    m.on_plan("Weird status!", plan_ts=None)  # free text never becomes a label value
    assert val(reg, "parkctl_optimizer_status", status="other") == 1.0
    assert math.isnan(val(reg, "parkctl_plan_age_seconds") or 0.0)
    assert math.isnan(val(reg, "parkctl_optimizer_last_solve_seconds") or 0.0)


def test_device_stats_mirror_the_drivers(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    m.update_devices({"pv1": ClientStats(read_errors=3, write_errors=1, reconnects=2, connected=True)})
    assert val(reg, "parkctl_device_read_errors_total", device="pv1") == 3
    assert val(reg, "parkctl_device_write_errors_total", device="pv1") == 1
    assert val(reg, "parkctl_device_reconnects_total", device="pv1") == 2
    assert val(reg, "parkctl_device_connected", device="pv1") == 1
    m.update_devices({"pv1": ClientStats(read_errors=5, connected=False)})
    assert val(reg, "parkctl_device_read_errors_total", device="pv1") == 5
    assert val(reg, "parkctl_device_connected", device="pv1") == 0


def test_registries_are_isolated() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    ControllerMetrics(a, SITE).on_cycle(report())
    ControllerMetrics(b, SITE)  # same names in another registry: no clash
    assert a.get_sample_value("parkctl_cycles_total", {"site": SITE}) == 1
    assert b.get_sample_value("parkctl_cycles_total", {"site": SITE}) == 0


def test_bad_site_name_is_refused(reg: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="site"):
        ControllerMetrics(reg, "a/b")


def test_exposition_over_http_passes_promtool(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus): exposition lint not run")
    m.on_plan("optimal", plan_ts=T0, solve_s=0.5)
    m.update_devices({"pv1": ClientStats(read_errors=1, connected=True)})
    m.on_cycle(report())
    m.on_cycle(report(T0 + 15 * S, grid=None, pv=(None, 10.0)))
    server = serve_metrics(reg, port=0)
    try:
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            assert resp.status == 200
            body = resp.read()
    finally:
        server.close()
    text = body.decode()
    assert 'parkctl_grid_power_kw{site="zixing-pilot"} NaN' in text
    assert 'parkctl_pv_limit_kw{device="pv2",site="zixing-pilot"} +Inf' in text
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()
    assert lint.stdout.strip() == b"" and lint.stderr.strip() == b""  # no warnings either


def test_port_in_use_is_one_line_park_error(reg: CollectorRegistry) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ParkError) as info:
            serve_metrics(reg, port=port)
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "in use" in msg and "\n" not in msg


def test_server_close_frees_the_port(reg: CollectorRegistry) -> None:
    server = serve_metrics(reg, port=0)
    server.close()
    again = serve_metrics(reg, port=server.port)  # the same port binds again at once
    again.close()


class _Meter:
    id = "meter"

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    async def read_meter(self) -> MeterReading:
        return MeterReading(self.clock.now(), 42.0)


class _Pv:
    id = "pv1"

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    async def read_pv(self) -> PvReading:
        raise TimeoutError("no answer")

    async def set_pv_limit(self, limit_kw: float | None) -> None:
        return None


class _Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t


async def test_metrics_as_a_runtime_observer(reg: CollectorRegistry, m: ControllerMetrics) -> None:
    from controller.cycle import CycleSettings, Runtime
    from controller.devices import DeviceSet

    clock = _Clock()
    devices = DeviceSet(meter=_Meter(clock), pv={"pv1": _Pv(clock)})
    rt = Runtime(devices, lambda snap, prev: prev, clock, CycleSettings(), observers=[m])  # type: ignore[arg-type]
    await rt.run_cycle()
    clock.t = T0 + S
    await rt.run_cycle()
    assert val(reg, "parkctl_cycles_total") == 2
    assert val(reg, "parkctl_grid_power_kw") == 42.0
    assert math.isnan(val(reg, "parkctl_pv_power_kw") or 0.0)  # pv1 failed to read
    assert val(reg, "parkctl_device_stale", device="pv1", kind="pv") == 1.0
    assert val(reg, "parkctl_cycle_phase_seconds_count", phase="publish") == 1  # the first cycle's
    assert val(reg, "parkctl_grid_import_energy_kwh_total") == pytest.approx(42.0 / 3600)
