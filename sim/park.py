"""The simulated park: every device's physics on one time axis, behind the facade protocol adapters use.

Adapters read frozen states and send commands; each call first brings the physics up to ``clock.now()``.
Integration runs in ``physics_step_s`` substeps on a grid anchored at the scenario start, with commands
held constant over a substep; a command at an instant between grid points splits that step, so partial
steps happen exactly at command and sync instants. Profiles (PV availability, base load, load duty) are
precomputed a day at a time as plain lists, which keeps the per-substep loop tight. All methods are
thread-safe (Modbus servers may call from their own threads). Times inside are seconds since the start.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np

from parkctl.clock import Clock
from sim import weather
from sim.battery import Bess
from sim.interruptible import SheddableLoad
from sim.kpi import DEMAND_WINDOW_S, Kpi, Recorder, TariffTable, seconds_to_next
from sim.pv import Inverter
from sim.scenario import Scenario
from sim.state import BatteryState, CommandResult, LoadState, MeterState, PvState

BLOCK_S = 86400.0  # profiles are generated this much at a time
MAX_ADVANCE = timedelta(days=31)  # one call integrating more than this is almost surely a wrong clock
ROW_S = 60.0
_EPS = 1e-7  # seconds: below the 1 µs resolution of datetimes, above float rounding for a year of seconds


class Park:
    """PV plants, batteries, base load, interruptible loads and the meter at the point of connection."""

    def __init__(self, scenario: Scenario, clock: Clock) -> None:
        self._sc = scenario
        self._clock = clock
        self._tz = scenario.site.tz
        self._start = scenario.local_start
        self._start_utc = scenario.start.astimezone(UTC)
        self._dt = float(scenario.physics_step_s)
        self._block_n = max(1, round(BLOCK_S / self._dt))
        self._tariff = TariffTable(scenario)
        self._lock = threading.RLock()
        self._el = 0.0
        self._now = self._start
        self._block = -1
        self._load_block(0)
        self._pv = {p.id: Inverter(p, self._pv_av[i][0]) for i, p in enumerate(scenario.pv)}
        self._bess = {b.id: Bess(b) for b in scenario.batteries}
        self._loads = {
            ld.id: SheddableLoad(ld, self._nominal[i][0]) for i, ld in enumerate(scenario.interruptible_loads)
        }
        self._avail = {pid: self._pv_av[i][0] for i, pid in enumerate(self._pv)}
        self._grid_kw = self._base[0] + sum(ld.p_kw for ld in self._loads.values()) - sum(self._avail.values())
        self._kpi = Kpi(scenario, seconds_to_next(self._start, DEMAND_WINDOW_S))
        energies, socs = self._snapshot()
        first_row = seconds_to_next(self._start, ROW_S)
        self._rec = Recorder(scenario, self._tariff, first_row, self._columns(), {**energies, **socs})

    # -- ids and lookups -------------------------------------------------------------------------
    @property
    def pv_ids(self) -> tuple[str, ...]:
        return tuple(self._pv)

    @property
    def battery_ids(self) -> tuple[str, ...]:
        return tuple(self._bess)

    @property
    def load_ids(self) -> tuple[str, ...]:
        return tuple(self._loads)

    @property
    def scenario(self) -> Scenario:
        return self._sc

    @property
    def now(self) -> datetime:
        """How far the physics has been integrated (site-local)."""
        return self._now

    @staticmethod
    def _find(devices: dict[str, object], kind: str, dev_id: str) -> object:
        try:
            return devices[dev_id]
        except KeyError:
            known = ", ".join(devices) or "none"
            raise ValueError(f"unknown {kind} id {dev_id!r}; known: {known}") from None

    def _inv(self, pv_id: str) -> Inverter:
        inv = self._find(self._pv, "PV plant", pv_id)  # type: ignore[arg-type]
        assert isinstance(inv, Inverter)
        return inv

    def _bat(self, battery_id: str) -> Bess:
        bat = self._find(self._bess, "battery", battery_id)  # type: ignore[arg-type]
        assert isinstance(bat, Bess)
        return bat

    def _load(self, load_id: str) -> SheddableLoad:
        ld = self._find(self._loads, "load", load_id)  # type: ignore[arg-type]
        assert isinstance(ld, SheddableLoad)
        return ld

    # -- time --------------------------------------------------------------------------------------
    def sync(self) -> None:
        """Bring the physics up to the clock."""
        self.advance_to(self._clock.now())

    def advance_to(self, t: datetime) -> None:
        """Integrate up to ``t``; nothing happens when ``t`` is not later than the physics time."""
        if t.tzinfo is None:
            raise ValueError("advance_to needs a timezone-aware datetime")
        with self._lock:
            target = (t - self._start).total_seconds()
            if target <= self._el + _EPS:
                return
            if t - self._now > MAX_ADVANCE:
                raise ValueError(
                    f"advancing the park from {self._now.isoformat()} to {t.isoformat()} is more than "
                    f"{MAX_ADVANCE.days} days at once; is the clock started at the scenario start?"
                )
            self._integrate(target)
            self._now = t.astimezone(self._tz)

    def _integrate(self, target: float) -> None:
        dt, el = self._dt, self._el
        while el < target - _EPS:
            k = int((el + _EPS) / dt)
            block = k // self._block_n
            if block != self._block:
                self._load_block(block)
            i = k - block * self._block_n
            if el > k * dt + _EPS or target < (k + 1) * dt - _EPS:  # a partial step
                end = min((k + 1) * dt, target)
                self._run(i, 1, el, end - el)
                el = end
                continue
            k_end = min(int((target + _EPS) / dt), (block + 1) * self._block_n)
            self._run(i, k_end - k, k * dt, dt)
            el = k_end * dt
        self._el = target

    def _load_block(self, block: int) -> None:
        sc, n = self._sc, self._block_n
        t_rel = (block * n + np.arange(n)) * self._dt
        prof = weather.sample(sc, t_rel, self._dt)
        self._pv_av = [prof.pv_kw[p.id].tolist() for p in sc.pv]
        self._base = prof.base_load_kw.tolist()
        self._nominal = [prof.interruptible_kw[ld.id].tolist() for ld in sc.interruptible_loads]
        self._price = self._tariff.prices(prof.times).tolist()
        self._block = block

    def _run(self, i0: int, n: int, t0: float, dt: float) -> None:
        """The hot loop: ``n`` substeps of ``dt`` from block index ``i0`` / time ``t0``."""
        pv_steps = [(inv.step, av) for inv, av in zip(self._pv.values(), self._pv_av, strict=True)]
        bess_steps = [b.step for b in self._bess.values()]
        load_steps = [(ld.step, nom) for ld, nom in zip(self._loads.values(), self._nominal, strict=True)]
        base, price, add = self._base, self._price, self._kpi.add
        next_row = self._rec.next_t - _EPS
        g = self._grid_kw
        for j in range(n):
            i = i0 + j
            t = t0 + j * dt
            av = pv = 0.0
            for step, avail in pv_steps:
                a = avail[i]
                av += a
                pv += step(t, dt, a)
            bat = 0.0
            for bstep in bess_steps:
                bat += bstep(t, dt)
            il = 0.0
            for lstep, nom in load_steps:
                il += lstep(t, dt, nom[i])
            bl = base[i]
            g = bl + il - pv - bat
            add(t, dt, av, pv, bl, il, g, price[i])
            if t + dt >= next_row:
                self._record(t + dt)
                next_row = self._rec.next_t - _EPS
        self._grid_kw = g
        for pid, avail in zip(self._pv, self._pv_av, strict=True):
            self._avail[pid] = avail[i0 + n - 1]

    # -- recording ---------------------------------------------------------------------------------
    def _snapshot(self) -> tuple[dict[str, float], dict[str, float]]:
        k = self._kpi
        bat = 3600.0 * sum(b.discharge_kwh - b.charge_kwh for b in self._bess.values())
        energies = {
            "pv_available_kw": k.pv_av, "pv_kw": k.pv, "base_load_kw": k.base, "interruptible_kw": k.il,
            "load_kw": k.base + k.il, "battery_kw": bat, "grid_kw": k.imp - k.exp,
        }  # fmt: skip
        cap = sum(b.cap_kwh for b in self._bess.values())
        socs = {"soc_pct": 100.0 * sum(b.energy_kwh for b in self._bess.values()) / cap if cap else 0.0}
        for pid, inv in self._pv.items():
            energies[f"pv_{pid}_kw"] = inv.energy_kws
        for bid, b in self._bess.items():
            energies[f"bess_{bid}_kw"] = 3600.0 * (b.discharge_kwh - b.charge_kwh)
            socs[f"bess_{bid}_soc_pct"] = b.soc_pct
        for lid, ld in self._loads.items():
            energies[f"load_{lid}_kw"] = ld.energy_kws
        return energies, socs

    def _columns(self) -> list[str]:
        cols = ["pv_available_kw", "pv_kw", "base_load_kw", "interruptible_kw", "load_kw", "battery_kw",
                "grid_kw", "soc_pct", "price_cny_per_kwh", "period"]  # fmt: skip
        cols += [f"pv_{p}_kw" for p in self._pv]
        for b in self._bess:
            cols += [f"bess_{b}_kw", f"bess_{b}_soc_pct"]
        return cols + [f"load_{ld}_kw" for ld in self._loads]

    def _record(self, t1: float) -> None:
        energies, socs = self._snapshot()
        self._rec.record(t1, energies, socs)

    def _at(self, el: float) -> datetime:
        """Site-local time ``el`` seconds after the start (absolute time, right across DST changes)."""
        return (self._start_utc + timedelta(seconds=el)).astimezone(self._tz)

    # -- states --------------------------------------------------------------------------------------
    def pv_state(self, pv_id: str) -> PvState:
        with self._lock:
            inv = self._inv(pv_id)
            self.sync()
            lim = inv.limit_pct
            return PvState(self._now, self._avail[pv_id], inv.p_kw, 100.0 if lim is None else lim,
                           lim is not None, inv.energy_kwh)  # fmt: skip

    def battery_state(self, battery_id: str) -> BatteryState:
        with self._lock:
            b = self._bat(battery_id)
            self.sync()
            ch, dis = b.available_kw()
            return BatteryState(
                self._now, b.p_kw, b.setpoint_kw, b.soc_pct, 100.0, ch, dis, b.charge_kwh, b.discharge_kwh,
                b.watchdog_tripped,
            )  # fmt: skip

    def meter_state(self) -> MeterState:
        with self._lock:
            self.sync()
            g = self._sc.grid
            p = self._grid_kw
            volts = g.voltage_kv * 1000.0 * (1.005 - 0.01 * p / g.import_cap_kw)  # drop with import
            k = self._kpi
            return MeterState(self._now, p, k.imp / 3600.0, k.exp / 3600.0, volts, g.frequency_hz)

    def load_state(self, load_id: str) -> LoadState:
        with self._lock:
            ld = self._load(load_id)
            self.sync()
            since = None if ld.running else self._at(ld.since)
            return LoadState(self._now, ld.p_kw, ld.running, since, ld.sheds_on(self._now.date()))

    # -- commands ------------------------------------------------------------------------------------
    def set_pv_limit(self, pv_id: str, limit_pct: float | None, revert_s: float | None = None) -> None:
        """Enable an active-power limit in % of the AC rating (``None`` lifts it)."""
        with self._lock:
            inv = self._inv(pv_id)
            self.sync()
            inv.set_limit(self._el, limit_pct, revert_s)

    def set_battery_power(self, battery_id: str, p_kw: float, revert_s: float | None = None) -> None:
        """A new setpoint (+ discharge); re-arms the device watchdog (``revert_s`` overrides its time)."""
        with self._lock:
            b = self._bat(battery_id)
            self.sync()
            b.set_power(self._el, p_kw, revert_s)

    def request_shed(self, load_id: str) -> CommandResult:
        with self._lock:
            ld = self._load(load_id)
            self.sync()
            return ld.request_shed(self._el, self._now.date())

    def request_restore(self, load_id: str) -> CommandResult:
        with self._lock:
            ld = self._load(load_id)
            self.sync()
            return ld.request_restore(self._el)

    # -- results -------------------------------------------------------------------------------------
    def kpis(self) -> dict[str, float]:
        """Ground-truth KPIs from the scenario start up to the physics time (no sync)."""
        with self._lock:
            return self._kpi.report(self._sc, list(self._pv.values()), list(self._bess.values()),
                                    list(self._loads.values()))  # fmt: skip

    def timeseries(self) -> list[dict[str, object]]:
        """One row per completed minute of sim time (see :class:`sim.kpi.Recorder`)."""
        with self._lock:
            return [dict(r) for r in self._rec.rows]
