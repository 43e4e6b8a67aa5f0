"""What the simulated SunSpec devices show: register images computed from the park, and the writes they take.

Every device shows a full SunSpec map at 40000 ("SunS", common model 1, device models, end marker)
built with the same model definitions and codec as the drivers. Values follow the park on every
read (``park.pv_state(id)`` etc. sync the physics to the shared clock), so a reader always sees the
park "now". Control writes are validated and handed to the park; read-only or unknown registers
answer ILLEGAL_DATA_ADDRESS, out-of-range values ILLEGAL_DATA_VALUE. The storage setpoint mapping
(model 124) is the one documented in :mod:`drivers.sunspec_devices`.

Each model's values come in two parts: :meth:`~SimSunSpecDevice.fixed` (nameplate, scale factors,
constants), encoded once into a cached :class:`~drivers.sunspec.codec.BlockImage`, and
:meth:`~SimSunSpecDevice.live` (what follows the park or the device's held settings), re-encoded
on every read. The registers are what one ``encode_block`` of both would give, every value checked
as there.

PV inverter: 1, 103, 120, 123. Storage: 1, 103, 120, 124, 713, 802. Meter: 1, 203 (W > 0 = import).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any, ClassVar, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData

from drivers.sunspec.codec import BlockImage, Value, decode_points
from drivers.sunspec.models import ModelDef, model_def
from sim.scenario import Battery, Grid, PvPlant
from sim.state import BatteryState, MeterState, PvState

log = logging.getLogger(__name__)

BASE_ADDRESS = 40000
SUNS = [0x5375, 0x6E53]
METER_ID = "meter"
V_PHASE = 230.94  # LV side of PV/storage inverters (400 V line-to-line)
V_DC = 800.0  # nominal battery voltage shown in model 802

Values = dict[str, Value]


class ParkFacade(Protocol):
    """The park methods the servers use (``sim.park.Park`` provides them)."""

    def pv_state(self, pv_id: str) -> PvState: ...
    def battery_state(self, battery_id: str) -> BatteryState: ...
    def meter_state(self) -> MeterState: ...
    def set_pv_limit(self, pv_id: str, limit_pct: float | None, revert_s: float | None) -> None: ...
    def set_battery_power(self, battery_id: str, p_kw: float, revert_s: float | None) -> None: ...


class _Invalid(Exception):
    """A write the device refuses; carries the Modbus exception code."""

    def __init__(self, code: ExcCodes) -> None:
        self.code = code


def _sf(max_abs: float, limit: int = 32767, finest: int = -2) -> int:
    """Finest scale factor at which ``max_abs`` still fits ``limit``."""
    sf = finest
    while max_abs / 10.0**sf > limit:
        sf += 1
    return sf


def _ac_fixed(rated_w: float) -> Values:
    """The constant part of models 101-103 for a three-phase LV inverter."""
    return {"A_SF": _sf(3 * rated_w / V_PHASE, 65534), "PhVphA": V_PHASE, "PhVphB": V_PHASE, "PhVphC": V_PHASE,
            "PPVphAB": 400.0, "PPVphBC": 400.0, "PPVphCA": 400.0, "V_SF": -1, "W_SF": _sf(1.5 * rated_w),
            "Hz": 50.0, "Hz_SF": -2, "WH_SF": 0, "TmpCab": 35.0, "Tmp_SF": -1, "Evt1": 0, "Evt2": 0}


def _ac_live(w: float, wh: float, st: int) -> Values:
    amps = abs(w) / (3 * V_PHASE)  # per phase; A is the sum
    return {"A": 3 * amps, "AphA": amps, "AphB": amps, "AphC": amps, "W": w, "WH": wh, "St": st}


def _nameplate(der_type: int, rated_w: float, **extra: Value) -> Values:
    q, amps = 0.44 * rated_w, rated_w / (3 * V_PHASE)
    return {"DERTyp": der_type, "WRtg": rated_w, "WRtg_SF": _sf(rated_w, 65534), "VARtg": rated_w,
            "VARtg_SF": _sf(rated_w, 65534), "VArRtgQ1": q, "VArRtgQ2": q, "VArRtgQ3": -q, "VArRtgQ4": -q,
            "VArRtg_SF": _sf(q), "ARtg": amps, "ARtg_SF": _sf(amps, 65534), "PFRtgQ1": 0.9, "PFRtgQ2": 0.9,
            "PFRtgQ3": -0.9, "PFRtgQ4": -0.9, "PFRtg_SF": -3, **extra}


def _num(new: Mapping[str, Value], name: str, lo: float, hi: float) -> float:
    v = new.get(name)
    if not isinstance(v, int | float) or not lo <= v <= hi:
        raise _Invalid(ExcCodes.ILLEGAL_VALUE)
    return float(v)


class SimSunSpecDevice:
    """One simulated device: its SunSpec map, refreshed from the park on reads, and its control writes."""

    kind = ""
    models: tuple[int, ...] = ()
    writable: ClassVar[Mapping[int, frozenset[str]]] = {}

    def __init__(self, device_id: str, park: ParkFacade) -> None:
        self.id, self.park = device_id, park
        self.layout: list[tuple[ModelDef, int]] = []
        address = BASE_ADDRESS + len(SUNS)
        for mid in (1, *self.models):
            self.layout.append((model_def(mid), address))
            address += 2 + model_def(mid).length
        self._images: dict[int, BlockImage] = {}

    def state(self) -> Any:
        raise NotImplementedError

    def fixed(self, mid: int) -> Values:
        """Values of model ``mid`` that never change (encoded once)."""
        return {}

    def live(self, mid: int, state: Any) -> Values:
        """Values of model ``mid`` that follow the park or the held settings, re-encoded on every read.

        The same names on every call: a name left out keeps its last value, it does not turn into
        "not implemented" (model 1 is all fixed and not asked).
        """
        return {}

    def write(self, mid: int, new: dict[str, Value], changed: set[str]) -> None:
        """Take a write to model ``mid``: ``new`` holds its writable points as they would be after it,
        ``changed`` the names of the points written; raise :class:`_Invalid` to refuse it."""
        raise _Invalid(ExcCodes.ILLEGAL_ADDRESS)

    def block(self, mdef: ModelDef, state: Any) -> list[int]:
        """The registers of ``mdef`` now: ``encode_block(mdef, {**fixed, **live})``, kept between reads."""
        image = self._images.get(mdef.id)
        if image is None:
            fixed = self._common() if mdef.id == 1 else self.fixed(mdef.id)
            image = self._images[mdef.id] = BlockImage(mdef, fixed)
        live = self.live(mdef.id, state) if mdef.id != 1 else None
        return image.update(live) if live else image.registers

    def _common(self) -> Values:
        return {"Mn": "parkctl", "Md": f"sim-{self.kind}", "Vr": version("parkctl"), "SN": self.id[:32], "DA": 1}

    def simdata(self) -> list[SimData]:
        """Initial image, split into runs of read-only and writable registers."""
        state = self.state()
        regs, ro = list(SUNS), [True, True]
        for mdef, _ in self.layout:
            regs += self.block(mdef, state)
            rw = self.writable.get(mdef.id, frozenset())
            ro += [p.name not in rw for p in mdef.points for _ in range(p.size)]
        regs, ro = [*regs, 0xFFFF, 0], [*ro, True, True]
        runs, start = [], 0
        for i in range(1, len(regs) + 1):
            if i == len(regs) or ro[i] != ro[start]:
                runs.append(SimData(BASE_ADDRESS + start, values=regs[start:i], datatype=DataType.REGISTERS,
                                    readonly=ro[start]))
                start = i
        return runs

    async def action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                     set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus hook, before every read and write: refresh the touched models, apply writes."""
        try:
            state = self.state()
            end = address + count
            for mdef, at in self.layout:
                size = 2 + mdef.length
                if at >= end or at + size <= address:
                    continue
                regs = self.block(mdef, state)
                if set_values is not None:
                    if address < at or end > at + size:
                        return ExcCodes.ILLEGAL_ADDRESS  # a write must stay within one model
                    off = address - at
                    regs[off : off + count] = [int(v) for v in set_values]
                    hit = {p.name for p in mdef.points if p.offset < off + count and off < p.offset + p.size}
                    # from the wire: decoded as a client would, every scale factor checked
                    self.write(mdef.id, decode_points(mdef, regs, self.writable.get(mdef.id, ())), hit)
                registers[at - start : at - start + size] = regs
        except _Invalid as exc:
            return exc.code
        except Exception:
            log.exception("simulated %s %r failed to serve a request", self.kind, self.id)
            return ExcCodes.DEVICE_FAILURE
        return None


class PvDevice(SimSunSpecDevice):
    kind, models = "pv", (103, 120, 123)
    writable: ClassVar[Mapping[int, frozenset[str]]] = {123: frozenset(
        {"WMaxLimPct", "WMaxLimPct_WinTms", "WMaxLimPct_RvrtTms", "WMaxLimPct_RmpTms", "WMaxLim_Ena"})}

    def __init__(self, plant: PvPlant, park: ParkFacade) -> None:
        super().__init__(plant.id, park)
        self.rated_w = plant.ac_kw * 1000
        self.held: Values = {"WMaxLimPct": 100.0, "WMaxLimPct_WinTms": 0, "WMaxLimPct_RvrtTms": 0,
                             "WMaxLimPct_RmpTms": 0}

    def state(self) -> PvState:
        return self.park.pv_state(self.id)

    def fixed(self, mid: int) -> Values:
        if mid == 103:
            return _ac_fixed(self.rated_w)
        if mid == 120:
            return _nameplate(4, self.rated_w)
        return {"Conn": 1, "OutPFSet": 1.0, "OutPFSet_Ena": 0, "VArPct_Ena": 0, "WMaxLimPct_SF": -2,
                "OutPFSet_SF": -3}

    def live(self, mid: int, state: PvState) -> Values:
        if mid == 103:
            throttled = state.limit_enabled and state.p_kw < state.available_kw - 1e-3
            return _ac_live(state.p_kw * 1000, state.energy_kwh * 1000,
                            5 if throttled else 4 if state.p_kw > 0 else 2)
        if mid == 123:
            pct = state.limit_pct if state.limit_enabled else self.held["WMaxLimPct"]
            return {**self.held, "WMaxLimPct": pct, "WMaxLim_Ena": int(state.limit_enabled)}
        return {}

    def write(self, mid: int, new: dict[str, Value], changed: set[str]) -> None:
        pct, ena = _num(new, "WMaxLimPct", 0, 100), _num(new, "WMaxLim_Ena", 0, 1)
        rvrt = _num(new, "WMaxLimPct_RvrtTms", 0, 65534)
        self.held.update({k: new[k] for k in self.held})
        self.park.set_pv_limit(self.id, pct if ena == 1 else None, rvrt or None)


class StorageDevice(SimSunSpecDevice):
    kind, models = "storage", (103, 120, 124, 713, 802)
    writable: ClassVar[Mapping[int, frozenset[str]]] = {124: frozenset(
        {"StorCtl_Mod", "OutWRte", "InWRte", "InOutWRte_WinTms", "InOutWRte_RvrtTms", "InOutWRte_RmpTms"})}
    IDLE: ClassVar[Mapping[str, Value]] = {"StorCtl_Mod": 0, "OutWRte": 0.0, "InWRte": 0.0}

    def __init__(self, battery: Battery, park: ParkFacade) -> None:
        super().__init__(battery.id, park)
        self.spec = battery
        self.wchamax = max(battery.p_charge_max_kw, battery.p_discharge_max_kw) * 1000  # base of the rates
        self.cap_wh = battery.capacity_kwh * 1000
        self.held: Values = {**self.IDLE, "InOutWRte_WinTms": 0, "InOutWRte_RvrtTms": 0, "InOutWRte_RmpTms": 0}

    def state(self) -> BatteryState:
        return self.park.battery_state(self.id)

    def fixed(self, mid: int) -> Values:
        b = self.spec
        wsf, esf = _sf(self.wchamax, 65534), _sf(self.cap_wh, 65534)
        if mid == 103:
            return _ac_fixed(self.wchamax)
        if mid == 120:
            return _nameplate(82, b.p_discharge_max_kw * 1000, WHRtg=self.cap_wh, WHRtg_SF=esf,
                              MaxChaRte=b.p_charge_max_kw * 1000, MaxChaRte_SF=wsf,
                              MaxDisChaRte=b.p_discharge_max_kw * 1000, MaxDisChaRte_SF=wsf)
        if mid == 124:
            gra = min(65534.0, b.ramp_kw_per_s * 1000 / self.wchamax * 100)
            return {"WChaMax": self.wchamax, "WChaMax_SF": wsf, "WChaGra": gra, "WDisChaGra": gra,
                    "WChaDisChaGra_SF": 0, "MinRsvPct": b.soc_min_pct, "MinRsvPct_SF": -1, "ChaState_SF": -2,
                    "ChaGriSet": 1, "InOutWRte_SF": -2}
        if mid == 713:
            return {"WHRtg": self.cap_wh, "Sta": 0, "WH_SF": esf, "Pct_SF": -2}
        a_sf, ah = _sf(3 * self.wchamax / V_DC), self.cap_wh / V_DC
        return {"AHRtg": ah, "AHRtg_SF": _sf(ah, 65534), "WHRtg": self.cap_wh, "WHRtg_SF": esf,
                "WChaDisChaMax_SF": wsf, "SoCMax": b.soc_max_pct, "SoCMin": b.soc_min_pct, "SoC_SF": -2,
                "SoH_SF": -2, "LocRemCtl": 0, "Typ": 4, "Evt1": 0, "Evt2": 0, "EvtVnd1": 0, "EvtVnd2": 0,
                "V": V_DC, "V_SF": -1, "CellV_SF": -3, "A_SF": a_sf, "AMax_SF": a_sf,
                "W_SF": _sf(1.5 * self.wchamax), "SetOp": 1, "SetInvState": 3, "AlmRst": 0}

    def live(self, mid: int, state: BatteryState) -> Values:
        b, w, soc = self.spec, state.p_kw * 1000, state.soc_pct
        if mid == 103:
            return _ac_live(w, state.discharge_kwh * 1000, 4 if w != 0 else 8)
        cha_st = 3 if w > 0 else 4 if w < 0 else 5 if soc >= b.soc_max_pct else (
            2 if soc <= b.soc_min_pct else 6)
        if mid == 124:
            if state.watchdog_tripped:  # the device reverted: show it idle
                self.held.update(self.IDLE)
            return {**self.held, "ChaState": soc, "ChaSt": cha_st}
        if mid == 713:
            avail = max(0.0, soc - b.soc_min_pct) / 100 * self.cap_wh
            return {"SoC": soc, "SoH": state.soh_pct, "WHAvail": avail}
        if mid == 802:
            return {"SoC": soc, "SoH": state.soh_pct, "WChaRteMax": state.available_charge_kw * 1000,
                    "WDisChaRteMax": state.available_discharge_kw * 1000, "ChaSt": cha_st,
                    "State": 4 if state.watchdog_tripped else 3, "A": w / V_DC, "W": w}
        return {}

    def write(self, mid: int, new: dict[str, Value], changed: set[str]) -> None:
        mode = int(_num(new, "StorCtl_Mod", 0, 3))
        out_pct, in_pct = _num(new, "OutWRte", -100, 100), _num(new, "InWRte", -100, 100)
        rvrt = _num(new, "InOutWRte_RvrtTms", 0, 65534)
        p_kw = ((out_pct if mode & 2 else 0.0) - (in_pct if mode & 1 else 0.0)) * self.wchamax / 100_000
        self.held.update({k: new[k] for k in self.held})
        if changed & {"StorCtl_Mod", "OutWRte", "InWRte", "InOutWRte_RvrtTms"}:
            self.park.set_battery_power(self.id, p_kw, rvrt or None)


class MeterDevice(SimSunSpecDevice):
    kind, models = "meter", (203,)

    def __init__(self, grid: Grid, park: ParkFacade, device_id: str = METER_ID) -> None:
        super().__init__(device_id, park)
        self.max_w = 1.5 * max(grid.import_cap_kw, grid.export_cap_kw) * 1000
        self.v_ll = grid.voltage_kv * 1000

    def state(self) -> MeterState:
        return self.park.meter_state()

    def fixed(self, mid: int) -> Values:
        return {"A_SF": _sf(3 * self.max_w / math.sqrt(3) / self.v_ll), "V_SF": _sf(2 * self.v_ll), "Hz_SF": -2,
                "W_SF": _sf(self.max_w), "TotWh_SF": 1, "Evt": 0}

    def live(self, mid: int, state: MeterState) -> Values:
        w, v, r3 = state.p_kw * 1000, state.voltage_v, math.sqrt(3)
        amps, phv = abs(w) / (r3 * v) if v > 0 else 0.0, v / r3
        return {"A": 3 * amps, "AphA": amps, "AphB": amps, "AphC": amps, "PhV": phv, "PhVphA": phv,
                "PhVphB": phv, "PhVphC": phv, "PPV": v, "PhVphAB": v, "PhVphBC": v, "PhVphCA": v,
                "Hz": state.frequency_hz, "W": w, "TotWhImp": state.import_kwh * 1000,
                "TotWhExp": state.export_kwh * 1000}
