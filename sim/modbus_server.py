"""Simulated SunSpec devices, each served by its own pymodbus TCP server on loopback.

Every device shows a full SunSpec map at 40000 ("SunS", common model 1, device models, end marker)
built with the same model definitions and codec as the drivers. Values are computed from the park
on every read (``park.pv_state(id)`` etc. sync the physics to the shared clock), so a reader always
sees the park "now". Control writes are validated and handed to the park; read-only or unknown
registers answer ILLEGAL_DATA_ADDRESS, out-of-range values ILLEGAL_DATA_VALUE. The storage setpoint
mapping (model 124) is the one documented in :mod:`drivers.sunspec_devices`. Uses pymodbus' new
``SimDevice`` datastore, whose ``action`` hook runs on each read and before each write.

PV inverter: 1, 103, 120, 123. Storage: 1, 103, 120, 124, 713, 802. Meter: 1, 203 (W > 0 = import).
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, ClassVar, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.sunspec.codec import Value, decode_block, encode_block
from drivers.sunspec.models import ModelDef, model_def
from parkctl.errors import ParkError
from sim.scenario import Battery, Grid, PvPlant, Scenario
from sim.state import BatteryState, MeterState, PvState

log = logging.getLogger(__name__)

BASE_ADDRESS = 40000
SUNS = [0x5375, 0x6E53]
METER_ID = "meter"
V_PHASE = 230.94  # LV side of PV/storage inverters (400 V line-to-line)
V_DC = 800.0  # nominal battery voltage shown in model 802


class ParkFacade(Protocol):
    """The park methods the servers use (``sim.park.Park`` provides them)."""

    def pv_state(self, pv_id: str) -> PvState: ...
    def battery_state(self, battery_id: str) -> BatteryState: ...
    def meter_state(self) -> MeterState: ...
    def set_pv_limit(self, pv_id: str, limit_pct: float | None, revert_s: float | None) -> None: ...
    def set_battery_power(self, battery_id: str, p_kw: float, revert_s: float | None) -> None: ...


class SimServerError(ParkError):
    """A simulated device server could not start (the message names host:port)."""


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


def _ac(w: float, rated_w: float, wh: float, running: bool) -> dict[str, Value]:
    """Model 101-103 values of a three-phase LV inverter."""
    amps = abs(w) / (3 * V_PHASE)  # per phase; A is the sum
    return {"A": 3 * amps, "AphA": amps, "AphB": amps, "AphC": amps,
            "A_SF": _sf(3 * rated_w / V_PHASE, 65534), "PhVphA": V_PHASE, "PhVphB": V_PHASE,
            "PhVphC": V_PHASE, "PPVphAB": 400.0, "PPVphBC": 400.0, "PPVphCA": 400.0, "V_SF": -1,
            "W": w, "W_SF": _sf(1.5 * rated_w), "Hz": 50.0, "Hz_SF": -2, "WH": wh, "WH_SF": 0,
            "TmpCab": 35.0, "Tmp_SF": -1, "St": 4 if running else 8, "Evt1": 0, "Evt2": 0}


def _nameplate(der_type: int, rated_w: float, **extra: Value) -> dict[str, Value]:
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

    def state(self) -> Any:
        raise NotImplementedError

    def values(self, mid: int, state: Any) -> dict[str, Value]:
        raise NotImplementedError

    def write(self, mid: int, new: dict[str, Value], changed: set[str]) -> None:
        raise _Invalid(ExcCodes.ILLEGAL_ADDRESS)

    def block(self, mdef: ModelDef, state: Any) -> list[int]:
        if mdef.id == 1:
            return encode_block(mdef, {"Mn": "parkctl", "Md": f"sim-{self.kind}", "Vr": version("parkctl"),
                                       "SN": self.id[:32], "DA": 1})
        return encode_block(mdef, self.values(mdef.id, state))

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
            for mdef, at in self.layout:
                size = 2 + mdef.length
                if at >= address + count or at + size <= address:
                    continue
                regs = self.block(mdef, state)
                if set_values is not None:
                    if address < at or address + count > at + size:
                        return ExcCodes.ILLEGAL_ADDRESS  # a write must stay within one model
                    off = address - at
                    regs[off : off + count] = [int(v) for v in set_values]
                    hit = {p.name for p in mdef.points if p.offset < off + count and off < p.offset + p.size}
                    self.write(mdef.id, decode_block(mdef, regs), hit)
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
        self.held: dict[str, Value] = {"WMaxLimPct": 100.0, "WMaxLimPct_WinTms": 0, "WMaxLimPct_RvrtTms": 0,
                                       "WMaxLimPct_RmpTms": 0}

    def state(self) -> PvState:
        return self.park.pv_state(self.id)

    def values(self, mid: int, state: PvState) -> dict[str, Value]:
        if mid == 103:
            throttled = state.limit_enabled and state.p_kw < state.available_kw - 1e-3
            v = _ac(state.p_kw * 1000, self.rated_w, state.energy_kwh * 1000, state.p_kw > 0)
            return {**v, "St": 5 if throttled else 4 if state.p_kw > 0 else 2}
        if mid == 120:
            return _nameplate(4, self.rated_w)
        pct = state.limit_pct if state.limit_enabled else self.held["WMaxLimPct"]
        return {**self.held, "Conn": 1, "WMaxLimPct": pct, "WMaxLim_Ena": int(state.limit_enabled),
                "OutPFSet": 1.0, "OutPFSet_Ena": 0, "VArPct_Ena": 0, "WMaxLimPct_SF": -2, "OutPFSet_SF": -3}

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
        self.held: dict[str, Value] = {**self.IDLE, "InOutWRte_WinTms": 0, "InOutWRte_RvrtTms": 0,
                                       "InOutWRte_RmpTms": 0}

    def state(self) -> BatteryState:
        return self.park.battery_state(self.id)

    def values(self, mid: int, state: BatteryState) -> dict[str, Value]:
        b, w, soc = self.spec, state.p_kw * 1000, state.soc_pct
        cha_st = 3 if w > 0 else 4 if w < 0 else 5 if soc >= b.soc_max_pct else (
            2 if soc <= b.soc_min_pct else 6)
        wsf, esf = _sf(self.wchamax, 65534), _sf(self.cap_wh, 65534)
        if mid == 103:
            return _ac(w, self.wchamax, state.discharge_kwh * 1000, w != 0)
        if mid == 120:
            return _nameplate(82, b.p_discharge_max_kw * 1000, WHRtg=self.cap_wh, WHRtg_SF=esf,
                              MaxChaRte=b.p_charge_max_kw * 1000, MaxChaRte_SF=wsf,
                              MaxDisChaRte=b.p_discharge_max_kw * 1000, MaxDisChaRte_SF=wsf)
        if mid == 124:
            if state.watchdog_tripped:  # the device reverted: show it idle
                self.held.update(self.IDLE)
            gra = min(65534.0, b.ramp_kw_per_s * 1000 / self.wchamax * 100)
            return {**self.held, "WChaMax": self.wchamax, "WChaMax_SF": wsf, "WChaGra": gra,
                    "WDisChaGra": gra, "WChaDisChaGra_SF": 0, "MinRsvPct": b.soc_min_pct,
                    "MinRsvPct_SF": -1, "ChaState": soc, "ChaState_SF": -2, "ChaSt": cha_st,
                    "ChaGriSet": 1, "InOutWRte_SF": -2}
        if mid == 713:
            avail = max(0.0, soc - b.soc_min_pct) / 100 * self.cap_wh
            return {"SoC": soc, "SoH": state.soh_pct, "WHRtg": self.cap_wh, "WHAvail": avail, "Sta": 0,
                    "WH_SF": esf, "Pct_SF": -2}
        a_sf, ah = _sf(3 * self.wchamax / V_DC), self.cap_wh / V_DC
        return {"SoC": soc, "SoH": state.soh_pct, "AHRtg": ah, "AHRtg_SF": _sf(ah, 65534),
                "WHRtg": self.cap_wh, "WHRtg_SF": esf, "WChaRteMax": state.available_charge_kw * 1000,
                "WDisChaRteMax": state.available_discharge_kw * 1000, "WChaDisChaMax_SF": wsf,
                "SoCMax": b.soc_max_pct, "SoCMin": b.soc_min_pct, "SoC_SF": -2, "SoH_SF": -2, "ChaSt": cha_st,
                "LocRemCtl": 0, "Typ": 4, "State": 4 if state.watchdog_tripped else 3, "Evt1": 0, "Evt2": 0,
                "EvtVnd1": 0, "EvtVnd2": 0, "V": V_DC, "V_SF": -1, "CellV_SF": -3, "A": w / V_DC,
                "A_SF": a_sf, "AMax_SF": a_sf, "W": w, "W_SF": _sf(1.5 * self.wchamax), "SetOp": 1,
                "SetInvState": 3, "AlmRst": 0}

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

    def values(self, mid: int, state: MeterState) -> dict[str, Value]:
        w, v, r3 = state.p_kw * 1000, state.voltage_v, math.sqrt(3)
        amps, phv = abs(w) / (r3 * v) if v > 0 else 0.0, v / r3
        return {"A": 3 * amps, "AphA": amps, "AphB": amps, "AphC": amps,
                "A_SF": _sf(3 * self.max_w / r3 / self.v_ll), "PhV": phv, "PhVphA": phv, "PhVphB": phv,
                "PhVphC": phv, "PPV": v, "PhVphAB": v, "PhVphBC": v, "PhVphCA": v, "V_SF": _sf(2 * self.v_ll),
                "Hz": state.frequency_hz, "Hz_SF": -2, "W": w, "W_SF": _sf(self.max_w),
                "TotWhImp": state.import_kwh * 1000, "TotWhExp": state.export_kwh * 1000, "TotWh_SF": 1,
                "Evt": 0}


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    unit_id: int
    kind: str  # "pv", "storage" or "meter"


def _bind_problem(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on (pymodbus only says that it cannot)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return "listen failed"


class SunSpecServer:
    """The TCP server of one simulated device; ``start`` again after ``stop`` reuses the port."""

    def __init__(self, device: SimSunSpecDevice, host: str = "127.0.0.1", port: int = 0,
                 unit_id: int = 1) -> None:
        self.device, self.host, self.port, self.unit_id = device, host, port, unit_id
        self._server: ModbusTcpServer | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port, self.unit_id, self.device.kind)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> Endpoint:
        if self._server is not None:
            return self.endpoint
        sim = SimDevice(self.unit_id, simdata=self.device.simdata(), action=self.device.action)
        server = ModbusTcpServer(sim, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise SimServerError(f"cannot serve simulated {self.device.kind} {self.device.id!r} on "
                                  f"{self.host}:{self.port}: {_bind_problem(self.host, self.port)}") from None
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._server = server
        log.info("simulated %s %r on %s:%d", self.device.kind, self.device.id, self.host, self.port)
        return self.endpoint

    async def stop(self) -> None:
        """Stop listening and drop every client connection."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class ParkEndpoints:
    """Where each simulated device listens, by device id; ``stop()`` stops them all."""

    devices: Mapping[str, Endpoint]
    servers: Mapping[str, SunSpecServer] = field(repr=False, compare=False)

    def __getitem__(self, device_id: str) -> Endpoint:
        return self.devices[device_id]

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()


async def start_park_servers(park: ParkFacade, scenario: Scenario, host: str = "127.0.0.1",
                             base_port: int = 0) -> ParkEndpoints:
    """One server per PV plant, battery and the grid meter (``METER_ID``).

    ``base_port = 0`` lets the OS choose each port; otherwise devices get consecutive ports from
    ``base_port`` in scenario order (PV, batteries, meter).
    """
    devices: list[SimSunSpecDevice] = [PvDevice(p, park) for p in scenario.pv]
    devices += [StorageDevice(b, park) for b in scenario.batteries]
    devices.append(MeterDevice(scenario.grid, park))
    servers: dict[str, SunSpecServer] = {}
    try:
        for i, device in enumerate(devices):
            server = SunSpecServer(device, host, base_port + i if base_port else 0)
            await server.start()
            servers[device.id] = server
    except BaseException:
        for server in servers.values():
            await server.stop()
        raise
    return ParkEndpoints({k: s.endpoint for k, s in servers.items()}, servers)
