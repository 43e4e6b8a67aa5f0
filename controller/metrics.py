"""Prometheus metrics for the controller: an :class:`~controller.cycle.Observer` plus an HTTP endpoint.

Names follow the project's units (kW, kWh, %, seconds) and sign convention (grid + import, battery +
discharge). A reading the cycle did not get (``None`` in the snapshot) shows as NaN, never as the last
number seen; a park total is NaN unless every device in it was read, because a partial sum looks
plausible and is wrong.

Energy counters integrate the power of successive cycle reports over their timestamps (trapezoids;
an interval longer than ``max_gap_s`` or with an unknown end is skipped and counted as unmeasured).
``parkctl_green_utilization_ratio`` is PV kept on site ÷ PV generated since start: the controller
cannot see the PV it curtailed, so unlike ``green_utilization`` in the simulator's kpis.json (÷ PV
*available*) it does not penalise curtailment. Export is attributed to PV first (min(export, PV)).

Every series carries a ``site`` label so several parks can share one Prometheus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from controller.cycle import CycleReport
from controller.snapshot import Snapshot
from drivers import topics as tp
from parkctl.http_serve import ServedHttp, bind_error

NAN = math.nan
CYCLE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
OPTIMIZER_STATUSES = ("optimal", "time_limit", "infeasible", "no_solution", "error")
_STATUS = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_STATUSES = 16  # bound the label's cardinality whatever the planner reports


class DeviceStats(Protocol):
    """What :meth:`ControllerMetrics.update_devices` needs (drivers.modbus_client.ClientStats fits)."""

    @property
    def read_errors(self) -> int: ...
    @property
    def write_errors(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Flows:
    """Park power flows in kW; None when a device they depend on was not read this cycle."""

    grid_kw: float | None
    pv_kw: float | None
    battery_kw: float | None
    load_kw: float | None


def park_flows(snap: Snapshot) -> Flows:
    pv_ok = all(r is not None for r in snap.pv.values())
    bat_ok = all(r is not None for r in snap.batteries.values())
    return Flows(
        grid_kw=snap.meter.p_kw if snap.meter is not None else None,
        pv_kw=snap.pv_kw if pv_ok else None,
        battery_kw=snap.battery_kw if bat_ok else None,
        load_kw=snap.site_load_kw() if snap.complete else None,
    )


@dataclass(frozen=True, slots=True)
class EnergyStep:
    """Energy added by one interval between two reports (kWh), and seconds that could not be measured."""

    import_kwh: float = 0.0
    export_kwh: float = 0.0
    pv_kwh: float = 0.0
    pv_exported_kwh: float = 0.0
    grid_unmeasured_s: float = 0.0
    pv_unmeasured_s: float = 0.0


class EnergyIntegrator:
    """Trapezoidal integration of grid and PV power across successive reports."""

    def __init__(self, max_gap_s: float = 120.0) -> None:
        self.max_gap_s = max_gap_s
        self._prev: tuple[datetime, float | None, float | None] | None = None
        self.green_pv_kwh = 0.0
        self.green_kept_kwh = 0.0

    @property
    def green_utilization(self) -> float:
        """PV kept on site ÷ PV generated so far; NaN before any PV was measured."""
        return self.green_kept_kwh / self.green_pv_kwh if self.green_pv_kwh > 0 else NAN

    def add(self, ts: datetime, grid_kw: float | None, pv_kw: float | None) -> EnergyStep:
        prev, self._prev = self._prev, (ts, grid_kw, pv_kw)
        if prev is None:
            return EnergyStep()
        dt = (ts - prev[0]).total_seconds()
        if dt <= 0:
            return EnergyStep()
        g0, g1 = (prev[1], grid_kw) if dt <= self.max_gap_s else (None, None)
        p0, p1 = (prev[2], pv_kw) if dt <= self.max_gap_s else (None, None)
        h = dt / 3600.0
        imp = exp = pv = pv_exp = 0.0
        if g0 is not None and g1 is not None:
            imp = (max(g0, 0) + max(g1, 0)) / 2 * h
            exp = (max(-g0, 0) + max(-g1, 0)) / 2 * h
        if p0 is not None and p1 is not None:
            pv = (p0 + p1) / 2 * h
            if g0 is not None and g1 is not None:
                pv_exp = (min(max(-g0, 0), p0) + min(max(-g1, 0), p1)) / 2 * h
                self.green_pv_kwh += pv
                self.green_kept_kwh += pv - pv_exp
        grid_ok, pv_ok = g0 is not None and g1 is not None, p0 is not None and p1 is not None
        return EnergyStep(imp, exp, pv, pv_exp, 0.0 if grid_ok else dt, 0.0 if pv_ok else dt)


def _nan(v: float | None) -> float:
    return NAN if v is None else v


class ControllerMetrics:
    """Maps cycle reports, planner results and driver statistics onto one registry's metrics."""

    def __init__(self, registry: CollectorRegistry, site: str, *, max_gap_s: float = 120.0) -> None:
        self.site = tp.check_name(site, "site")
        self.registry = registry
        self.energy = EnergyIntegrator(max_gap_s)
        self._devices: dict[str, DeviceStats] = {}
        self._labelled: dict[int, set[tuple[str, ...]]] = {}
        self._statuses: set[str] = set(OPTIMIZER_STATUSES)
        self._pending_publish: dict[str, float] | None = None
        self._plan_ts: datetime | None = None
        r, s = registry, ("site",)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, (*s, *labels), registry=r)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, (*s, *labels), registry=r)

        self.grid_kw = gauge("parkctl_grid_power_kw", "Grid power at the connection point, + import / - export")
        self.pv_kw = gauge("parkctl_pv_power_kw", "Park PV output; NaN unless every plant was read")
        self.battery_kw = gauge("parkctl_battery_power_kw", "Park battery power, + discharge; NaN unless all read")
        self.load_kw = gauge("parkctl_site_load_power_kw", "Site consumption = grid + PV + battery; NaN if incomplete")
        self.dev_pv_kw = gauge("parkctl_device_pv_power_kw", "PV output per plant", "device")
        self.dev_bat_kw = gauge("parkctl_device_battery_power_kw", "Battery power per unit, + discharge", "device")
        self.dev_load_kw = gauge("parkctl_device_load_power_kw", "Interruptible load power per load", "device")
        self.soc = gauge("parkctl_battery_soc_pct", "Battery state of charge in %", "device")
        self.pv_limit = gauge("parkctl_pv_limit_kw", "Commanded PV cap per plant (+Inf: uncapped)", "device")
        self.bat_set = gauge("parkctl_battery_setpoint_kw", "Commanded battery power, + discharge", "device")
        self.shed = gauge("parkctl_load_shed", "1 while an interruptible load is commanded shed", "device")
        self.stale = gauge("parkctl_device_stale", "1: reading missing or too old", "device", "kind")
        self.green = gauge("parkctl_green_utilization_ratio", "PV kept on site / PV generated since start")
        self.import_kwh = counter("parkctl_grid_import_energy_kwh", "Energy imported from the grid")
        self.export_kwh = counter("parkctl_grid_export_energy_kwh", "Energy exported to the grid")
        self.pv_kwh = counter("parkctl_pv_energy_kwh", "PV energy generated")
        self.pv_exp_kwh = counter("parkctl_pv_exported_energy_kwh", "PV energy exported (export attributed to PV)")
        self.unmeasured = counter("parkctl_energy_unmeasured_seconds", "Time not integrated", "quantity")
        self.work = Histogram("parkctl_cycle_work_seconds", "Work time of one cycle", s,
                              registry=r, buckets=CYCLE_BUCKETS_S)  # fmt: skip
        self.phase = Histogram("parkctl_cycle_phase_seconds", "Time per cycle phase (publish: previous cycle)",
                               (*s, "phase"), registry=r, buckets=CYCLE_BUCKETS_S)  # fmt: skip
        self.cycles = counter("parkctl_cycles", "Cycles run")
        self.overruns = counter("parkctl_cycle_overruns", "Cycles whose work took longer than the period")
        self.decide_errors = counter("parkctl_decide_errors", "Cycles where decide raised")
        self.writes = counter("parkctl_setpoint_writes", "Setpoint writes attempted", "device", "result")
        self.last_cycle = gauge("parkctl_last_cycle_timestamp_seconds", "Clock time of the last cycle (Unix)")
        self.plan_age = gauge("parkctl_plan_age_seconds", "Age of the plan in force at the last cycle; NaN: none")
        self.opt_status = gauge("parkctl_optimizer_status", "1 for the optimiser's last status", "status")
        self.solves = counter("parkctl_optimizer_solves", "Optimiser runs by status", "status")
        self.solve_s = gauge("parkctl_optimizer_last_solve_seconds", "Duration of the last optimiser run")
        self.fallback = gauge("parkctl_fallback_active", "1 while the controller runs its fallback rules")
        for g in (self.grid_kw, self.pv_kw, self.battery_kw, self.load_kw, self.green, self.plan_age, self.solve_s):
            g.labels(self.site).set(NAN)
        self.fallback.labels(self.site).set(0)
        for c in (self.import_kwh, self.export_kwh, self.pv_kwh, self.pv_exp_kwh, self.cycles, self.overruns,
                  self.decide_errors, self.work):  # fmt: skip
            c.labels(self.site)  # present at 0 from the start, so increase() sees the first event
        for q in ("grid", "pv"):
            self.unmeasured.labels(self.site, q)
        for st in OPTIMIZER_STATUSES:
            self.opt_status.labels(self.site, st).set(0)
        registry.register(_DeviceStatsCollector(self))

    # -- observer ----------------------------------------------------------------------------------
    def on_cycle(self, report: CycleReport) -> None:
        site, snap = self.site, report.snapshot
        flows = park_flows(snap)
        self.grid_kw.labels(site).set(_nan(flows.grid_kw))
        self.pv_kw.labels(site).set(_nan(flows.pv_kw))
        self.battery_kw.labels(site).set(_nan(flows.battery_kw))
        self.load_kw.labels(site).set(_nan(flows.load_kw))
        bats = snap.batteries
        self._family(self.dev_pv_kw, {k: NAN if r is None else r.p_kw for k, r in snap.pv.items()})
        self._family(self.dev_bat_kw, {k: NAN if r is None else r.p_kw for k, r in bats.items()})
        self._family(self.soc, {k: NAN if r is None else r.soc_pct for k, r in bats.items()})
        self._family(self.dev_load_kw, {k: NAN if r is None else r.p_kw for k, r in snap.loads.items()})
        sp = report.setpoints
        self._family(self.pv_limit, {k: math.inf if v is None else v for k, v in sp.pv_limit_kw.items()})
        self._family(self.bat_set, dict(sp.battery_p_kw))
        self._family(self.shed, {k: float(v) for k, v in sp.load_shed.items()})
        stale = {("meter", "meter"): float(snap.meter is None)}
        for kind, readings in (("pv", snap.pv), ("battery", bats), ("load", snap.loads)):
            stale.update({(k, kind): float(r is None) for k, r in readings.items()})
        self._family(self.stale, stale)

        step = self.energy.add(report.ts, flows.grid_kw, flows.pv_kw)
        self.import_kwh.labels(site).inc(step.import_kwh)
        self.export_kwh.labels(site).inc(step.export_kwh)
        self.pv_kwh.labels(site).inc(step.pv_kwh)
        self.pv_exp_kwh.labels(site).inc(step.pv_exported_kwh)
        self.unmeasured.labels(site, "grid").inc(step.grid_unmeasured_s)
        self.unmeasured.labels(site, "pv").inc(step.pv_unmeasured_s)
        self.green.labels(site).set(self.energy.green_utilization)

        self.cycles.labels(site).inc()
        self.overruns.labels(site).inc(float(report.overrun))
        # the runtime reports a failed decide only as an error string with this prefix (see cycle.py)
        self.decide_errors.labels(site).inc(float(any(e.startswith("decide:") for e in report.errors)))
        for w in report.writes:
            self.writes.labels(site, w.device, "ok" if w.ok else "failed").inc()
        self.work.labels(site).observe(report.work_s)
        # "publish" is added to phase_s only after the observers ran: take it from the previous report
        if self._pending_publish is not None and "publish" in self._pending_publish:
            self.phase.labels(site, "publish").observe(self._pending_publish["publish"])
        for name, seconds in report.phase_s.items():
            if name != "publish":
                self.phase.labels(site, name).observe(seconds)
        self._pending_publish = report.phase_s
        self.last_cycle.labels(site).set(report.ts.timestamp())
        age = (report.ts - self._plan_ts).total_seconds() if self._plan_ts is not None else NAN
        self.plan_age.labels(site).set(age)

    def on_plan(
        self, status: str, *, plan_ts: datetime | None = None, solve_s: float | None = None,
        fallback_active: bool = False,
    ) -> None:  # fmt: skip
        """Record the planner's latest run; ``plan_ts`` is when the plan in force was made (None: none)."""
        status = status if _STATUS.fullmatch(status) else "other"
        if status not in self._statuses and len(self._statuses) >= _MAX_STATUSES:
            status = "other"
        self._statuses.add(status)
        for st in self._statuses:
            self.opt_status.labels(self.site, st).set(float(st == status))
        self.solves.labels(self.site, status).inc()
        self.solve_s.labels(self.site).set(_nan(solve_s))
        self.fallback.labels(self.site).set(float(fallback_active))
        self._plan_ts = plan_ts
        if plan_ts is None:
            self.plan_age.labels(self.site).set(NAN)

    def update_devices(self, stats: Mapping[str, DeviceStats]) -> None:
        """Mirror the drivers' own counters (read at scrape time, so a driver reset shows as a reset)."""
        self._devices = dict(stats)  # one reference swap: the scrape thread sees old or new, never half

    # -- helpers -----------------------------------------------------------------------------------
    def _family(self, metric: Gauge, values: Mapping[str, float] | Mapping[tuple[str, str], float]) -> None:
        """Set one labelled gauge family; drop series of devices no longer reported (no stale numbers)."""
        seen: set[tuple[str, ...]] = set()
        for key, v in values.items():
            labels = (self.site, *(key if isinstance(key, tuple) else (key,)))
            metric.labels(*labels).set(v)
            seen.add(labels)
        old = self._labelled.get(id(metric), set())
        for labels in old - seen:
            metric.remove(*labels)
        self._labelled[id(metric)] = seen


class _DeviceStatsCollector:
    """Scrape-time view of the last :meth:`ControllerMetrics.update_devices` mapping."""

    _SPECS = (
        ("parkctl_device_read_errors", "Failed reads reported by the device's driver", "read_errors", True),
        ("parkctl_device_write_errors", "Failed writes reported by the device's driver", "write_errors", True),
        ("parkctl_device_reconnects", "Connections re-established after a loss", "reconnects", True),
        ("parkctl_device_connected", "1 while the driver holds a connection to the device", "connected", False),
    )

    def __init__(self, owner: ControllerMetrics) -> None:
        self._owner = owner

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        return self._families(self._owner._devices)

    def _families(self, devices: Mapping[str, DeviceStats]) -> list[Metric]:
        out: list[Metric] = []
        for name, doc, attr, is_counter in self._SPECS:
            fam = (CounterMetricFamily if is_counter else GaugeMetricFamily)(name, doc, labels=("site", "device"))
            for dev, st in sorted(devices.items()):
                v = getattr(st, attr, None)
                if v is not None:
                    fam.add_metric((self._owner.site, dev), float(v))
            out.append(fam)
        return out


MetricsServer = ServedHttp  # the /metrics endpoint


def serve_metrics(registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464) -> MetricsServer:
    """Serve ``registry`` from a daemon thread. Loopback by default: metrics reveal the park's operation."""
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise bind_error("metrics", host, port, exc) from None
    return ServedHttp(host, int(httpd.server_address[1]), "/metrics", httpd, thread)
